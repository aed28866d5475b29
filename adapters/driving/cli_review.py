"""The reviewer's commands: the accounts, the audit trail (paged, or exported with a
checkpoint) and verifying such an export offline, the compliance report, the integrity
check (against a ledger checkpoint kept elsewhere), taking such a checkpoint, and
rebuilding the projections."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from keyledger import Checkpoint, ExportCheckpoint, Ledger, verify_export
from keyledger.adapters.driving import cli_follow, render
from keyledger.adapters.driving.cli_common import (
    EXIT_REFUSED,
    AccountOption,
    guarded,
    note_new_account,
    open_ledger,
    parse_instant,
)
from keyledger.domain import DEFAULT_ACCOUNT, InvalidInput
from keyledger.export import Format
from keyledger.projections.audit import ACTIONS, DEFAULT_LIMIT, MAX_LIMIT


def audit(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", "-a", help="Only this account.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this key id (with its removal).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only commands by this user.")] = None,
    action: Annotated[
        list[str] | None, typer.Option("--action", help=f"Only these actions (repeat): {', '.join(ACTIONS)}.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this instant (ISO 8601, with zone).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this instant (ISO 8601, with zone).")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help=f"At most this many (default {DEFAULT_LIMIT}, up to {MAX_LIMIT})."),
    ] = None,
    after: Annotated[int | None, typer.Option("--after", help="Only after this position (a cursor).")] = None,
    output_format: Annotated[
        render.AuditFormat, typer.Option("--format", help="table, jsonl (one entry per line) or csv.")
    ] = render.AuditFormat.TABLE,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Export every matching entry (jsonl or csv) and write the export's checkpoint to this "
            "file, for keyledger.verify_export; keep it apart from the export.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Stream entries as they are recorded (--format jsonl) until stopped."),
    ] = False,
    subscription: Annotated[
        str | None,
        typer.Option("--subscription", help="With --follow: resume after the position saved under NAME."),
    ] = None,
) -> None:
    """Show the audit trail, oldest first, filtered; page on with --after LAST_POSITION.

    With --follow, stream every new entry as a JSON line until Ctrl-C or SIGTERM (with
    --subscription NAME, durably: the next run resumes where this one stopped)."""
    with guarded(ctx) as out:
        filters = {
            "account": account,
            "key_id": key,
            "actor": actor,
            "action": action or None,
            "since": parse_instant("since", since),
            "until": parse_instant("until", until),
        }
        if subscription is not None and not follow:
            raise InvalidInput("subscription", "goes with --follow")
        with open_ledger(ctx) as ledger:
            if follow:
                cli_follow.follow(ledger, out, output_format, subscription, after, filters)
                return
            if checkpoint is not None:
                _export(ledger, out, output_format, output, checkpoint, limit, after, filters)
                return
            count = DEFAULT_LIMIT if limit is None else limit
            entries = ledger.audit(**filters, limit=count, after=after)  # type: ignore[arg-type]
        out.audit(entries, output_format, output)
        if len(entries) == count:
            out.note(f"more entries may follow: add --after {entries[-1].position}")


def _export(
    ledger: Ledger,
    out: render.Output,
    output_format: render.AuditFormat,
    output: Path | None,
    checkpoint: Path,
    limit: int | None,
    after: int | None,
    filters: dict[str, Any],
) -> None:
    if output_format is render.AuditFormat.TABLE:
        raise InvalidInput("format", "an export with --checkpoint is jsonl or csv")
    if limit is not None or after is not None:
        raise InvalidInput("checkpoint", "an export takes every matching entry: no --limit or --after")
    fmt: Format = "jsonl" if output_format is render.AuditFormat.JSONL else "csv"
    point = ledger.export_audit(output if output is not None else sys.stdout, fmt, **filters)
    try:
        checkpoint.write_text(point.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise InvalidInput("checkpoint", f"cannot write {checkpoint}: {error.strerror}") from None
    out.note(f"exported {point.length} entries; checkpoint written to {checkpoint}")


def accounts(ctx: typer.Context) -> None:
    """List the accounts with their counts of events, keys and active keys.

    A typo in --account (which starts a new account) shows up here.
    """
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        found = ledger.accounts()
    if out.json_mode:
        out.emit([render.jsonable(summary) for summary in found])
    elif found:
        out.show(render.accounts_table(found))
    else:
        out.line("the ledger has no accounts yet")


def verify_export_command(
    ctx: typer.Context,
    export: Annotated[
        Path, typer.Argument(help="The exported audit trail (JSON Lines or CSV).", show_default=False)
    ],
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            help="The export's checkpoint file, as `audit --checkpoint` wrote it.",
            show_default=False,
        ),
    ],
) -> None:
    """Verify an audit export against its checkpoint, offline: exit 0 if proved, 1 if not.

    No ledger is opened. A failure names the first line that cannot be proved.
    """
    with guarded(ctx) as out:
        report = verify_export(export, checkpoint)
        out.export_report(report, export)
        if not report.ok:
            where = "" if report.first_bad_line is None else f" at line {report.first_bad_line}"
            out.error("IntegrityViolation", f"export verification failed{where}: {report.reason}")
            raise typer.Exit(EXIT_REFUSED)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback drawing a bar on a terminal's stderr, silent when piped. The
    bar is gone once the block ends: print results after it, never inside it (the bar
    would be redrawn over them)."""
    bar = Progress(console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    with bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def check(
    ctx: typer.Context,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="Also fail if any account's history up to this checkpoint (from `keyledger checkpoint`, "
            "kept outside the database) was cut short or rewritten.",
        ),
    ] = None,
) -> None:
    """Check every stored event against its account's hash chain, and the views against the
    events (and the history against a checkpoint); exit 1 if any fails."""
    with guarded(ctx) as out:
        point = None if against is None else read_checkpoint(against)
        with open_ledger(ctx) as ledger, progress_bar("checking") as advance:
            report = ledger.check_integrity(progress=advance, checkpoint=point)
        out.integrity(report)
        if not report.ok:
            where = "" if report.first_bad_position is None else f" at position {report.first_bad_position}"
            out.error("IntegrityViolation", f"integrity check failed{where}: {report.reason}")
            raise typer.Exit(EXIT_REFUSED)


def read_checkpoint(path: Path) -> Checkpoint:
    """The ledger checkpoint in the JSON file at ``path``; ``InvalidInput`` if it is not one."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise InvalidInput("checkpoint", f"cannot read {path}: {error.strerror}") from None
    try:
        return Checkpoint.model_validate_json(text)
    except ValidationError:
        pass
    try:
        ExportCheckpoint.model_validate_json(text)
    except ValidationError:
        raise InvalidInput(
            "checkpoint", f"{path} is not a keyledger checkpoint (the JSON `keyledger checkpoint` writes)"
        ) from None
    raise InvalidInput(
        "checkpoint",
        f"{path} is an audit export's checkpoint (for keyledger.verify_export), not the ledger's "
        "(`keyledger checkpoint` writes that)",
    )


def checkpoint(ctx: typer.Context) -> None:
    """Print the ledger's checkpoint as JSON (each account's stream version and chain, the
    log position and the time): keep it outside the database, for `check --against`."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        point = ledger.checkpoint()
        out.checkpoint(point)


def rebuild(ctx: typer.Context) -> None:
    """Rebuild every projection (valid keys, catalogue, audit trail) from the events."""
    with guarded(ctx) as out:
        with open_ledger(ctx) as ledger, progress_bar("rebuilding") as advance:
            position = ledger.rebuild_projections(progress=advance)
        if out.json_mode:
            out.emit({"rebuilt_to_position": position})
        else:
            out.line(f"rebuilt every projection up to position {position}")


def report(
    ctx: typer.Context,
    account: AccountOption = DEFAULT_ACCOUNT,
    stale_days: Annotated[
        int, typer.Option("--stale-days", help="Flag keys not regenerated for this many days.")
    ] = 90,
    unused_days: Annotated[
        int, typer.Option("--unused-days", help="Flag keys unused for this many days.")
    ] = 30,
) -> None:
    """The account's compliance report: stale and unused keys, secrets in grace, keys per
    creator, and working keys of revoked creators (always 0)."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        if stale_days < 1 or unused_days < 1:
            raise InvalidInput("days", "thresholds must be at least 1 day")
        found = ledger.report(
            account, stale_after=timedelta(days=stale_days), unused_after=timedelta(days=unused_days)
        )
        if found.active_keys == 0 and not ledger.has_account(account):
            note_new_account(out, account, started=False)
        if out.json_mode:
            out.emit(render.jsonable(found))
        else:
            out.show(render.report_table(found))


def copy(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="The empty store to copy into: sqlite:///... or postgresql://...")
    ],
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Copy the events recorded before this instant (ISO 8601 with a zone) into a frozen "
            "copy that records nothing; without it, a writable migration.",
        ),
    ] = None,
) -> None:
    """Copy the ledger into an empty store: a frozen history (--until), or a migration.

    Every stream keeps its versions and chains; the copy's views are built at the end.
    """
    with guarded(ctx) as out:
        instant = parse_instant("until", until)
        with open_ledger(ctx) as ledger, progress_bar("copying") as advance:
            copied = ledger.copy(to, until=instant, progress=advance)
        frozen = None if instant is None else instant.isoformat()
        if out.json_mode:
            out.emit({"copied": copied, "frozen_until": frozen})
        elif frozen:
            out.line(f"copied {copied} events recorded before {frozen}; the copy is frozen there")
        else:
            out.line(f"copied {copied} events; the copy is writable")


def prefix(
    ctx: typer.Context,
    new: Annotated[
        str | None,
        typer.Argument(metavar="NEW", help="Record NEW as the prefix of the keys issued from now on."),
    ] = None,
) -> None:
    """Show the ledger's key prefix and every prefix whose keys verify; or change it.

    The prefix is recorded in the ledger: processes opened without KEYLEDGER_KEY_PREFIX
    (or key_prefix= in Python) take it, and one asking for another is refused. After a change,
    keys of the earlier prefixes keep working; restart the services that share the ledger.
    """
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        if new is not None:
            ledger.change_key_prefix(new)
        current, accepted = ledger.key_prefix, ledger.key_prefixes
    if out.json_mode:
        out.emit({"key_prefix": current, "accepted": list(accepted)})
    else:
        out.line(f"key prefix: {current}")
        out.line(f"keys that verify: {', '.join(accepted)}")


def register(app: typer.Typer) -> None:
    """Add the reviewer's and the operator's commands to the ``keyledger`` app."""
    app.command()(accounts)
    app.command()(audit)
    app.command()(check)
    app.command()(checkpoint)
    app.command()(copy)
    app.command()(prefix)
    app.command()(rebuild)
    app.command()(report)
    app.command("verify-export")(verify_export_command)
