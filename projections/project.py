"""The projection: how one recorded event changes every view, written once for every
store through the :class:`~keyledger.projections.ports.ViewWriter` port."""

from __future__ import annotations

from keyledger.projections.catalogue import catalogue_changes
from keyledger.projections.facts import Fact
from keyledger.projections.ports import ViewWriter
from keyledger.projections.valid_keys import index_changes


def project(fact: Fact, writer: ViewWriter) -> None:
    """Apply one recorded event to the valid-key table, the catalogue and the audit trail."""
    drops, puts = index_changes(fact, writer.entry)
    writer.change_entries(drops, puts)
    data = fact.data
    if fact.action in ("KeyCreated", "KeyRegenerated"):
        writer.remember_secret(bytes.fromhex(data["digest"]), fact.account, data["key_id"])
    rows = catalogue_changes(fact, writer.row)
    writer.put_rows(rows)
    key_id = data.get("key_id")
    name = rows[0].name if key_id is not None else None
    key_ids = [key_id] if key_id is not None else list(data.get("removed_key_ids", ()))
    writer.add_audit(fact, name, key_ids)
