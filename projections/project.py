"""The projection: how one recorded event changes every view, written once for every
store through the :class:`~keyledger.projections.ports.ViewWriter` port."""

from __future__ import annotations

from keyledger.projections.catalogue import catalogue_changes
from keyledger.projections.ports import ViewWriter
from keyledger.projections.recorded import (
    Recorded,
    RecordedKeyCreated,
    RecordedKeyEvent,
    RecordedKeyRegenerated,
    RecordedUserAccessRevoked,
)
from keyledger.projections.valid_keys import index_changes


def project(event: Recorded, writer: ViewWriter) -> None:
    """Apply one recorded event to the valid-key table, the catalogue and the audit trail."""
    drops, puts = index_changes(event, writer.entry)
    writer.change_entries(drops, puts)
    if isinstance(event, RecordedKeyCreated | RecordedKeyRegenerated):
        writer.remember_secret(bytes.fromhex(event.digest), event.account, event.key_id)
    rows = catalogue_changes(event, writer.row)
    writer.put_rows(rows)
    if isinstance(event, RecordedKeyEvent):
        writer.add_audit(event, rows[0].name, [event.key_id])
    elif isinstance(event, RecordedUserAccessRevoked):
        writer.add_audit(event, None, event.removed_key_ids)
    else:
        writer.add_audit(event, None, [])
