"""How the command line shows things: rich tables for people, JSON, JSON Lines and CSV
for programs, and one-line errors on stderr.

Nothing here reads a secret except :meth:`Output.secret`, which writes it to stdout
alone; every error line passes through :func:`redact` first.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from keyledger.domain import InvalidInput
from keyledger.export import ExportReport, write_entries
from keyledger.projections.audit import AuditEntry
from keyledger.projections.catalogue import KeyView
from keyledger.report import ComplianceReport
from keyledger.results import AccountSummary, Checkpoint, IntegrityReport, IssuedKey, Principal


class AuditFormat(StrEnum):
    """How ``keyledger audit`` writes entries."""

    TABLE = "table"
    JSONL = "jsonl"
    CSV = "csv"


# Anything shaped like a key of any prefix: error lines never carry one, whatever the
# message was built from.
_KEY_SHAPE = re.compile(r"[a-z0-9]{1,16}(?:_[a-z0-9]+)?_[0-9A-Za-z]{38}(?![0-9A-Za-z])")


def redact(text: str) -> str:
    """``text`` with everything shaped like a key replaced by ``[key redacted]``."""
    return _KEY_SHAPE.sub("[key redacted]", text)


def when(moment: datetime | None) -> str:
    """An instant in UTC as ISO 8601 with ``Z`` (microseconds only when there are any)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def short(moment: datetime) -> str:
    """An instant in UTC to the second, for table cells."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"


def jsonable(value: BaseModel | Principal) -> dict[str, Any]:
    """A model or principal as plain JSON types (instants as ISO 8601 strings)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    data = value._asdict()
    data["grace_until"] = None if value.grace_until is None else when(value.grace_until)
    return data


_WHOLE = frozenset({"key id", "key", "status", "hint", "pos", "last used"})


_MIN_WIDTH = {"details": 16, "in grace": 10}


def _table(title: str, columns: Iterable[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in columns:
        # Ids, instants and names of things stay on one line; free text wraps, and a long
        # token folds rather than losing characters to an ellipsis.
        if column in _WHOLE:
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, overflow="fold", min_width=_MIN_WIDTH.get(column))
    return table


def _cell(value: object) -> Text:
    # Text, never a str: a key named "[bold]" must print as itself, not as rich markup.
    return Text("-" if value is None or value == "" else str(value))


def keys_table(title: str, keys: Iterable[KeyView]) -> Table:
    """Keys as a table: labels, creator, status, hint, the secrets in grace and last use
    (to the minute; ``-`` if never used)."""
    columns = ("key id", "name", "application", "created by", "created at", "status", "hint")
    table = _table(title, (*columns, "in grace", "last used"))
    for key in keys:
        grace = ", ".join(f"{g.hint} until {when(g.grace_until)}" for g in key.grace)
        table.add_row(
            *map(
                _cell,
                (
                    key.key_id,
                    key.name,
                    key.application,
                    key.created_by,
                    short(key.created_at),
                    key.status,
                    key.hint,
                    grace,
                    None if key.last_used_at is None else short(key.last_used_at),
                ),
            )
        )
    return table


def accounts_table(accounts: Iterable[AccountSummary]) -> Table:
    """The ledger's accounts with their counts of events, keys and active keys."""
    table = _table("accounts", ("account", "events", "keys", "active keys"))
    for found in accounts:
        table.add_row(*map(_cell, (found.account, found.events, found.keys, found.active_keys)))
    return table


def key_detail(key: KeyView) -> Table:
    """One key, field by field."""
    table = Table(title=f"key {key.key_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, object]] = [
        ("account", key.account),
        ("name", key.name),
        ("purpose", key.purpose),
        ("application", key.application),
        ("created by", key.created_by),
        ("created at", when(key.created_at)),
        ("status", key.status),
        ("hint", key.hint),
        ("regenerated at", when(key.regenerated_at) if key.regenerated_at else None),
        ("revoked at", when(key.revoked_at) if key.revoked_at else None),
        ("revoked because", key.revoked_reason),
        ("last used", when(key.last_used_at) if key.last_used_at else "never (recorded to the minute)"),
    ]
    rows += [(f"in grace: {g.hint}", f"until {when(g.grace_until)}") for g in key.grace]
    for field, value in rows:
        table.add_row(field, _cell(value))
    return table


def report_table(found: ComplianceReport) -> Table:
    """A compliance report as a rich table: one row per finding."""
    table = _table(f"compliance report of {found.account} at {when(found.generated_at)}", ("finding", "keys"))
    table.add_row("active keys", _cell(found.active_keys))
    table.add_row("not regenerated", _cell(", ".join(found.not_regenerated) or "-"))
    table.add_row("unused", _cell(", ".join(found.unused) or "-"))
    grace = ", ".join(f"{g.key_id} {g.hint} until {when(g.grace_until)}" for g in found.in_grace)
    table.add_row("secrets in grace", _cell(grace or "-"))
    per_creator = ", ".join(f"{user}: {count}" for user, count in sorted(found.keys_per_creator.items()))
    table.add_row("active keys per creator", _cell(per_creator or "-"))
    table.add_row("working keys of revoked creators", _cell(found.working_keys_of_revoked_creators))
    return table


def audit_table(entries: Iterable[AuditEntry]) -> Table:
    """Audit entries as a table, oldest first, for people: without digests and chains
    (JSON Lines and CSV keep every field whole)."""
    table = _table("audit trail", ("pos", "occurred at", "account", "action", "actor", "key", "details"))
    for entry in entries:
        key = entry.key_id if entry.key_name is None else f"{entry.key_id}\n{entry.key_name}"
        details = ", ".join(
            f"{name}={value}" for name, value in sorted(entry.details.items()) if "digest" not in name
        )
        table.add_row(
            *map(
                _cell,
                (
                    entry.position,
                    short(entry.occurred_at),
                    entry.account,
                    entry.action,
                    entry.actor or "(ledger)",
                    key,
                    details,
                ),
            )
        )
    return table


class Output:
    """Where one command's results go: data to stdout, notes and errors to stderr."""

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        # Piped or redirected tables are still read by people: give them room (unless COLUMNS says).
        roomy = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        self._console = Console(highlight=False, width=160 if roomy else None)

    def emit(self, data: object) -> None:
        """Write one JSON document (one line) to stdout."""
        typer.echo(json.dumps(data, ensure_ascii=False))

    def show(self, renderable: RenderableType) -> None:
        """Print a table or text for people to stdout (too wide a table runs past the
        edge rather than losing characters)."""
        self._console.print(renderable, crop=False)

    def line(self, text: str) -> None:
        """Print one plain line to stdout (anything shaped like a key redacted)."""
        typer.echo(redact(text))

    def note(self, text: str) -> None:
        """Print one line for the operator to stderr (never data, never a secret)."""
        typer.echo(redact(text), err=True)

    def error(self, kind: str, message: str) -> None:
        """Print one error line to stderr: ``error: ...``, or a JSON object with --json."""
        message = redact(message)
        if self.json_mode:
            typer.echo(json.dumps({"error": kind, "message": message}, ensure_ascii=False), err=True)
        else:
            typer.echo(f"error: {message}", err=True)

    def warning(self, kind: str, message: str) -> None:
        """Print one warning line to stderr: ``warning: ...``, or a JSON object with --json."""
        message = redact(message)
        if self.json_mode:
            typer.echo(json.dumps({"warning": kind, "message": message}, ensure_ascii=False), err=True)
        else:
            typer.echo(f"warning: {message}", err=True)

    def secret(self, issued: IssuedKey, done: str) -> None:
        """Show a new secret once, on stdout alone, and warn on stderr to store it now."""
        secret = issued.secret.get_secret_value()
        if self.json_mode:
            self.emit(
                {
                    "account": issued.account,
                    "key_id": issued.key_id,
                    "hint": issued.hint,
                    "secret": secret,
                    "previous_valid_until": jsonable(issued)["previous_valid_until"],
                }
            )
        else:
            typer.echo(secret)
        previous = (
            f"; the previous secret works until {when(issued.previous_valid_until)}"
            if issued.previous_valid_until is not None
            else ""
        )
        self.note(f"key {issued.key_id} {done}{previous}. Store the new key now: it is not shown again.")

    def refused(self, reason: str) -> None:
        """The answer to a credential that did not verify (never echoing it)."""
        if self.json_mode:
            self.emit({"valid": False, "reason": reason})
        self.error("InvalidCredential", f"credential refused: {reason}")

    def swept(self, recorded: int, at: datetime) -> None:
        """One line per grace sweep."""
        if self.json_mode:
            self.emit({"at": when(at), "recorded": recorded})
        else:
            self.line(f"{when(at)}  recorded {recorded} GraceExpired event(s)")

    def audit(self, entries: list[AuditEntry], form: AuditFormat, path: Path | None) -> None:
        """Audit entries to stdout, or to ``path`` with a note of how many on stderr.

        JSON Lines and CSV are the entries alone; ``--json`` turns the table into a JSON array.
        """
        if path is None:
            if form is not AuditFormat.TABLE:
                write_entries(entries, sys.stdout, "jsonl" if form is AuditFormat.JSONL else "csv")
            elif self.json_mode:
                self.emit([jsonable(entry) for entry in entries])
            else:
                self.show(audit_table(entries))
            return
        try:
            with path.open("w", encoding="utf-8", newline="") as stream:
                if form is not AuditFormat.TABLE:
                    write_entries(entries, stream, "jsonl" if form is AuditFormat.JSONL else "csv")
                else:
                    Console(file=stream, width=200).print(audit_table(entries))
        except OSError as error:
            raise InvalidInput("output", f"cannot write {path}: {error.strerror}") from None
        if self.json_mode:
            self.emit({"written": len(entries), "path": str(path), "format": form.value})
        else:
            self.note(f"wrote {len(entries)} entries to {path}")

    def principal(self, principal: Principal) -> None:
        """The answer to a credential that verified."""
        if self.json_mode:
            self.emit({"valid": True, **jsonable(principal)})
            return
        grace = "" if principal.grace_until is None else f", in grace until {when(principal.grace_until)}"
        self.line(f"valid: key {principal.key_id} ({principal.name}) of account {principal.account}{grace}")

    def integrity(self, report: IntegrityReport) -> None:
        """The result of an integrity check."""
        if self.json_mode:
            self.emit(jsonable(report))
        elif report.ok:
            self.line(f"ok: {report.events_checked} events checked, every hash chain intact")
        else:
            where = "" if report.first_bad_position is None else f" at position {report.first_bad_position}"
            self.line(f"FAILED{where}: {report.reason} ({report.events_checked} events checked)")

    def export_report(self, report: ExportReport, path: Path) -> None:
        """The result of verifying an audit export against its checkpoint."""
        if self.json_mode:
            self.emit(jsonable(report))
        elif report.ok:
            self.line(f"ok: {path}: {report.lines_checked} entries proved against the checkpoint")
        else:
            where = "" if report.first_bad_line is None else f" at line {report.first_bad_line}"
            self.line(f"FAILED{where}: {report.reason} ({report.lines_checked} lines proved before it)")

    def checkpoint(self, point: Checkpoint) -> None:
        """A ledger checkpoint as JSON on stdout (one line with --json, indented otherwise:
        either reads back), and a note on stderr to keep it elsewhere."""
        if self.json_mode:
            typer.echo(point.model_dump_json())
        else:
            typer.echo(point.model_dump_json(indent=2))
        self.note(
            f"checkpoint of {len(point.accounts)} account(s) at position {point.position}: keep it outside "
            "the ledger's database, for `keyledger check --against`"
        )
