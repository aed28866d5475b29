"""Exporting the audit trail, and verifying an export offline.

An export is JSON Lines (one :class:`AuditEntry` per line, nothing else) or CSV (one
row per entry, ``details`` as JSON). Exporting returns an :class:`ExportCheckpoint`: the
number of lines and a rolling head, SHA-256 over the previous head and each line's position
and chain. Keep the checkpoint apart from the file (the CLI writes it to ``--checkpoint``).
It is not the ledger's own checkpoint (:class:`keyledger.Checkpoint`, from
``Ledger.checkpoint()``), which pins each account's stream for ``check_integrity``.

:func:`verify_export` checks, line by line:

- each entry's ``chain`` against its content and ``previous_chain`` (an edited line
  fails at that line; ``occurred_at`` is checked against ``recorded_at`` or, for
  ``GraceExpired``, its ``grace_until``; ``key_name`` against the key's ``KeyCreated``
  when the export holds it);
- positions strictly increasing (a reordered line fails at that line);
- for an unfiltered export, each line's ``previous_position`` is the line before's
  (positions themselves may have gaps on PostgreSQL), and for an unfiltered or
  account-only export, each account's versions and chain links without gaps from its
  first event (a deleted line fails at the line after it);
- at the end, the line count and head against the checkpoint: the head covers every
  field of every line, so a truncated file fails at the first missing line and any other
  change (such as an edited ``previous_position`` of a filtered export, which no line can
  check) fails at the last line. An edited ``position`` of a full export fails at the
  line after it.

An export filtered by key, actor, action or time is not contiguous: its lines still
each prove their content matches the chain value the ledger recorded, and its
checkpoint proves no line was since edited, removed, added or reordered, but it cannot
prove the ledger holds no other events for that key; run ``check_integrity`` on the
ledger for that.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from keyledger.domain import InvalidInput, Keyring
from keyledger.domain.chain import GENESIS, link
from keyledger.projections.audit import AuditEntry
from keyledger.projections.recorded import TOPIC_PREFIX

Format = Literal["jsonl", "csv"]
Scope = Literal["full", "account", "filtered"]
CSV_FIELDS = list(AuditEntry.model_fields)


class ExportCheckpoint(BaseModel):
    """What an export proves itself against: its length and rolling head."""

    model_config = ConfigDict(frozen=True)
    format: Format
    length: int
    head: str
    scope: Scope
    """``full`` (every event), ``account`` (every event of one account) or ``filtered``."""
    filters: dict[str, Any]


Checkpoint = ExportCheckpoint
"""The name :class:`ExportCheckpoint` had in this module before the ledger's own
checkpoint (:class:`keyledger.Checkpoint`) took it at the top level; kept here only so
that ``from keyledger.export import Checkpoint`` goes on working. New code names it
``ExportCheckpoint``."""


class ExportReport(BaseModel):
    """The result of verifying an export offline (never raised, always returned)."""

    model_config = ConfigDict(frozen=True)
    ok: bool
    lines_checked: int
    first_bad_line: int | None = None
    """1-based line (or CSV row, header excluded) where the export stops being provable."""
    reason: str | None = None


def _advance(head: str, entry: AuditEntry) -> str:
    """The rolling head after one more entry: it covers every field of the entry."""
    return hashlib.sha256(head.encode("ascii") + entry.model_dump_json().encode()).hexdigest()


def write_entries(entries: Iterable[AuditEntry], stream: IO[str], fmt: Format) -> tuple[str, int]:
    """Write entries as JSON Lines or CSV (a header, then ``details`` as JSON); returns
    the rolling head and the count. CSV values are as recorded, not defused for
    spreadsheets: open the file as text, not as a formula sheet."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput("format", "must be 'jsonl' or 'csv'")
    head, length = GENESIS, 0
    writer = csv.DictWriter(stream, CSV_FIELDS, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for entry in entries:
        if writer is None:
            stream.write(entry.model_dump_json() + "\n")
        else:
            row = entry.model_dump(mode="json")
            row["details"] = orjson.dumps(row["details"]).decode()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        head = _advance(head, entry)
        length += 1
    return head, length


def write_export(
    entries: Iterable[AuditEntry],
    target: str | Path | IO[str],
    fmt: Format,
    scope: Scope,
    filters: dict[str, Any],
) -> ExportCheckpoint:
    """Stream ``entries`` to a file path or an open text stream; returns the checkpoint."""
    if isinstance(target, str | Path):
        try:
            with open(target, "w", encoding="utf-8", newline="") as stream:
                head, length = write_entries(entries, stream, fmt)
        except OSError as error:
            raise InvalidInput("path", f"cannot write the export: {error.strerror}") from None
    else:
        head, length = write_entries(entries, target, fmt)
    return ExportCheckpoint(format=fmt, length=length, head=head, scope=scope, filters=filters)


FIELDS = frozenset(AuditEntry.model_fields)


def _entries(path: Path, fmt: Format) -> Iterable[tuple[AuditEntry, dict[str, Any]] | None]:
    """Each line (or CSV row) as a checked entry and its raw fields, or ``None`` if it is
    not exactly one audit entry."""
    if fmt == "jsonl":
        with open(path, "rb") as source:
            for raw in source:
                try:
                    record = orjson.loads(raw)
                    if not isinstance(record, dict) or set(record) != FIELDS:
                        raise ValueError("not exactly the fields of an audit entry")
                    yield AuditEntry.model_validate_json(raw, strict=True), record
                except ValueError:
                    yield None
        return
    with open(path, encoding="utf-8", errors="replace", newline="") as source:
        reader = csv.DictReader(source)
        if set(reader.fieldnames or ()) != FIELDS:
            yield None
            return
        for row in reader:
            try:
                fields: dict[str, Any] = {k: (None if v == "" else v) for k, v in row.items()}
                if None in row or set(fields) != FIELDS:
                    raise ValueError("not exactly the fields of an audit entry")
                fields["details"] = orjson.loads(fields["details"] or "{}")
                for name in ("position", "version", "previous_position"):
                    fields[name] = int(fields[name])
                yield AuditEntry.model_validate(fields), fields
            except (ValueError, TypeError):
                yield None


def _content_problem(
    entry: AuditEntry, record: dict[str, Any], names: dict[tuple[str, str], str]
) -> str | None:
    state = dict(entry.details)
    state.update(account=entry.account, actor=entry.actor, timestamp=record["recorded_at"])
    if entry.key_id is not None:
        state["key_id"] = entry.key_id
    keyring_id = str(Keyring.id_for(entry.account))
    expected = link(entry.previous_chain, keyring_id, entry.version, TOPIC_PREFIX + entry.action, state)
    if expected != entry.chain:
        return "entry does not match its chain"
    effective = entry.details.get("grace_until") if entry.action == "GraceExpired" else record["recorded_at"]
    if not isinstance(effective, str) or datetime.fromisoformat(effective) != entry.occurred_at:
        return "occurred_at does not match the entry"
    if entry.key_id is not None:
        created = str(entry.details.get("name", entry.key_name))
        known = names.setdefault((entry.account, entry.key_id), created)
        if entry.key_name != known:
            return "key_name does not match the key's creation"
    return None


def read_export_checkpoint(checkpoint: ExportCheckpoint | dict[str, Any] | str | Path) -> ExportCheckpoint:
    """An export's checkpoint: as returned, its JSON as a dict, or the path of a file
    holding its JSON (``Path("cp.json").write_text(checkpoint.model_dump_json())`` saves
    one). Anything that is not an export's checkpoint raises :class:`InvalidInput`."""
    if isinstance(checkpoint, ExportCheckpoint):
        return checkpoint
    if isinstance(checkpoint, str | Path):
        try:
            text = Path(checkpoint).read_bytes()
        except OSError as error:
            raise InvalidInput("checkpoint", f"cannot read {checkpoint}: {error.strerror}") from None
        try:
            return ExportCheckpoint.model_validate_json(text)
        except ValidationError:
            raise InvalidInput(
                "checkpoint", f"{checkpoint} does not hold the checkpoint of an audit export"
            ) from None
    if isinstance(checkpoint, dict):
        try:
            return ExportCheckpoint.model_validate(checkpoint)
        except ValidationError:
            raise InvalidInput("checkpoint", "is not the checkpoint of an audit export") from None
    raise InvalidInput(
        "checkpoint",
        "must be the ExportCheckpoint an export returned, its JSON as a dict, or a path to its JSON",
    )


def _format_of(path: Path) -> Format | None:
    """What the file looks like: ``jsonl`` (its first line is a JSON object), ``csv``
    (its first line is the export's CSV header), or ``None`` (empty, or neither)."""
    with open(path, "rb") as source:
        first = source.readline(1 << 16).strip()
    if first.startswith(b"{"):
        return "jsonl"
    if first == ",".join(CSV_FIELDS).encode():
        return "csv"
    return None


def verify_export(
    path: str | Path, checkpoint: ExportCheckpoint | dict[str, Any] | str | Path
) -> ExportReport:
    """Verify an exported audit trail against its checkpoint, offline; never raises on a
    tampered, missing or unreadable export file (see the module docstring for what is
    proved): the report's ``reason`` says ``file not found``, or ``format mismatch``
    for a CSV export checked against a JSON Lines checkpoint (or the reverse).
    ``checkpoint`` is the one the export returned, its JSON as a dict, or the path of a
    file holding its JSON; one that cannot be read, or is not an export's (the ledger's
    own :class:`keyledger.Checkpoint`, say), raises :class:`InvalidInput`."""
    point = read_export_checkpoint(checkpoint)
    source = Path(path)
    try:
        found = _format_of(source)
    except FileNotFoundError:
        return ExportReport(ok=False, lines_checked=0, reason=f"file not found: {source}")
    except OSError as error:
        return ExportReport(ok=False, lines_checked=0, reason=f"cannot read {source}: {error.strerror}")
    if found is not None and found != point.format:
        return ExportReport(
            ok=False,
            lines_checked=0,
            first_bad_line=1,
            reason=f"format mismatch: the checkpoint is of a {point.format} export, the file is {found}",
        )
    head, line = GENESIS, 0
    last_position = 0
    accounts: dict[str, tuple[int, str]] = {}
    names: dict[tuple[str, str], str] = {}

    def bad(reason: str) -> ExportReport:
        return ExportReport(ok=False, lines_checked=line - 1, first_bad_line=line, reason=reason)

    try:
        for read in _entries(source, point.format):
            line += 1
            if line > point.length:
                return bad("more lines than the checkpoint counts")
            if read is None:
                return bad("not exactly one audit entry")
            entry, record = read
            problem = _content_problem(entry, record, names)
            if problem is not None:
                return bad(problem)
            if entry.position <= last_position:
                return bad("out of position order")
            if point.scope == "full" and entry.previous_position != last_position:
                return bad("a line is missing before this one")
            if point.scope in ("full", "account"):
                seen_version, seen_chain = accounts.get(entry.account, (0, GENESIS))
                if entry.version != seen_version + 1 or entry.previous_chain != seen_chain:
                    return bad("a line of this account is missing before this one")
                accounts[entry.account] = (entry.version, entry.chain)
            last_position = entry.position
            head = _advance(head, entry)
    except OSError as error:
        return ExportReport(
            ok=False,
            lines_checked=line,
            first_bad_line=line + 1,
            reason=f"cannot read {source}: {error.strerror}",
        )
    if line < point.length:
        return ExportReport(
            ok=False, lines_checked=line, first_bad_line=line + 1, reason="lines are missing at the end"
        )
    if head != point.head:
        return ExportReport(
            ok=False,
            lines_checked=line,
            first_bad_line=line,
            reason="the export does not match its checkpoint",
        )
    return ExportReport(ok=True, lines_checked=line)
