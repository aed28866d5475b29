"""What every ``keyledger`` command shares: the global options, the actor, error
handling with exit codes, and instants given on the command line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import typer

from keyledger import Actor, InvalidInput, KeyLedgerError, Ledger, Permission, StoreUnavailable
from keyledger.adapters import render

logger = logging.getLogger("keyledger.cli")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="KEYLEDGER_URL",
        help="Store URL (sqlite:///path.db, postgresql://..., memory://); default ./keyledger.db.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable output: JSON on stdout, JSON error lines on stderr.")
]
AccountOption = Annotated[str, typer.Option("--account", "-a", help="The account (tenant).")]
ActorOption = Annotated[
    str,
    typer.Option(
        "--actor",
        help="The user you act as, recorded in the audit trail (with both permissions).",
        show_default=False,
    ),
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="As of this past instant (ISO 8601 with zone, e.g. 2026-01-05T09:00:00Z)."),
]
KeyIdArgument = Annotated[str, typer.Argument(help="The public key id (key_...), never the key itself.")]

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


@dataclass(frozen=True)
class Options:
    """The global options, shared by every command through the typer context."""

    url: str | None
    output: render.Output


def options(ctx: typer.Context) -> Options:
    """The global options of this invocation."""
    found = ctx.find_object(Options)
    assert found is not None, "the main callback sets the options"
    return found


def exit_code(error: KeyLedgerError) -> int:
    """The exit code for an error: 2 bad input, 3 store unavailable, 1 any refusal."""
    if isinstance(error, InvalidInput):
        return EXIT_USAGE
    if isinstance(error, StoreUnavailable):
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


@contextmanager
def guarded(ctx: typer.Context) -> Iterator[render.Output]:
    """Turn every error into one line on stderr and its exit code, never a traceback."""
    out = options(ctx).output
    try:
        yield out
    except KeyLedgerError as error:
        out.error(type(error).__name__, str(error))
        raise typer.Exit(exit_code(error)) from None
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise  # typer ends quietly on these (a closed pipe: `keyledger audit ... | head`)
    except Exception as error:
        # The message is left out: it was not written for the terminal and could carry input.
        logger.debug("unexpected error", exc_info=True)
        out.error("InternalError", f"unexpected {type(error).__name__}; this is a bug in keyledger")
        raise typer.Exit(EXIT_REFUSED) from None


def open_ledger(ctx: typer.Context) -> Ledger:
    """The ledger the global options name (close it with ``with``)."""
    return Ledger.open(options(ctx).url)


def operator(account: str, user_id: str) -> Actor:
    """The terminal's actor: the named user with both permissions."""
    return Actor(user_id=user_id, account=account, permissions=set(Permission))


def parse_instant(field: str, text: str | None) -> datetime | None:
    """An ISO 8601 instant with a timezone (``2026-01-05T09:00:00Z``); naive is refused."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 instant such as 2026-01-05T09:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidInput(field, "must include a timezone, such as Z or +02:00")
    return moment
