"""What every ``keyledger`` command shares: the global options, the actor, error
handling with exit codes, instants given on the command line, and the root command
class (flags without a metavar in help, usage mistakes as one error line)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from keyledger import Actor, InvalidInput, KeyLedgerError, Ledger, Permission, StoreUnavailable
from keyledger.adapters.driving import render

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


class CommandLine(TyperGroup):
    """The root command: help shows no ``<bool>`` metavar for a flag, and a usage mistake
    (unknown option or command, missing or bad value) is one ``error: ...`` line on
    stderr (a JSON object with ``--json``) and exit 2, like every other error, instead of
    typer's usage block.

    Written against typer 0.29, which vendors click: every click error derives from
    ``typer.TyperException``, and the context is that vendored click's (not importable
    through typer's public names, hence ``Any``). The tests of the CLI's help and usage
    errors fail loudly if a typer upgrade changes either.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        json_mode = "--json" in args  # before parsing, which consumes ``args``
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as error:
            usage_error(error, json_mode=json_mode)
        ctx.meta[_JSON_MODE] = json_mode
        return ctx

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _hide_flag_metavars(self, ctx)  # before parsing, which may print the help
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as error:
            usage_error(error, json_mode=ctx.meta.get(_JSON_MODE, False))


_JSON_MODE = "keyledger.json"


def usage_error(error: typer.TyperException, *, json_mode: bool) -> NoReturn:
    """Print a click error as one error line and exit with its code (2 for usage).

    ``keyledger`` with no command (click's ``NoArgsIsHelpError``) still prints the help.
    """
    if type(error).__name__ == "NoArgsIsHelpError":
        raise error
    message = " ".join(error.format_message().split())  # click's may span lines
    command = getattr(getattr(error, "ctx", None), "command_path", None)
    hint = f" (see '{command} --help')" if command else ""
    render.Output(json_mode=json_mode).error("UsageError", message + hint)
    raise typer.Exit(getattr(error, "exit_code", EXIT_USAGE)) from None


def _hide_flag_metavars(command: Any, ctx: Any) -> None:
    """Give every flag of ``command`` and its subcommands an empty metavar, so help
    shows ``--json`` rather than ``--json <bool>`` (typer 0.29 shows a flag's type)."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for subcommand in getattr(command, "commands", {}).values():
        _hide_flag_metavars(subcommand, ctx)


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
