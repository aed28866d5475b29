"""What every ``keyledger`` command shares: the global options, the actor, error
handling with exit codes, instants and key ids given on the command line, and the root
command class (``--json`` before or after the command, flags without a metavar in help,
usage mistakes as one error line)."""

from __future__ import annotations

import copy
import functools
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from keyledger import Actor, InvalidInput, KeyLedgerError, Ledger, Permission, StoreUnavailable
from keyledger.adapters.driving import render
from keyledger.domain.keys import is_key_id

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
    typer.Option(
        "--at",
        help="As of this past instant (ISO 8601 with zone, e.g. 2026-01-05T09:00:00Z); a future one "
        "is refused.",
    ),
]
KeyIdArgument = Annotated[
    str, typer.Argument(help="The public key id (key_...), never the key itself.", show_default=False)
]

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
    """The root command: ``--json`` is accepted before the command and after it (as gh
    does), help shows no ``<bool>`` metavar for a flag and names arguments in capitals
    (``CREDENTIAL``, not ``{credential}``), and a usage mistake (unknown option or
    command, missing or bad value) is one ``error: ...`` line on stderr (a JSON object
    with ``--json``) and exit 2, like every other error, instead of typer's usage block.

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
        # Before parsing, which may print the help.
        _hide_flag_metavars(self, ctx)
        json_flag = next(param for param in self.params if "--json" in getattr(param, "opts", ()))
        _add_json_flag(self, json_flag)
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
    shows ``--json`` rather than ``--json <bool>`` (typer 0.29 shows a flag's type), and
    every argument its name in capitals, so usage reads ``CREDENTIAL`` (typer 0.29 writes
    ``{credential}``)."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif getattr(param, "param_type_name", None) == "argument":
            param.get_usage_pieces = functools.partial(_usage_pieces, param)
    for subcommand in getattr(command, "commands", {}).values():
        _hide_flag_metavars(subcommand, ctx)


def _usage_pieces(argument: Any, ctx: Any) -> list[str]:
    """An argument in a usage line as click writes it: ``NAME`` if required, else ``[NAME]``."""
    name = argument.name.upper()
    shown = name if argument.required else f"[{name}]"
    return [shown + ("..." if argument.nargs != 1 else "")]


def _add_json_flag(command: Any, json_flag: Any) -> None:
    """Give every subcommand its own ``--json`` flag, a copy of the root's that switches
    this invocation's output to JSON, so ``keyledger keys list --json`` works as
    ``keyledger --json keys list`` does."""
    for subcommand in getattr(command, "commands", {}).values():
        if hasattr(subcommand, "commands"):
            _add_json_flag(subcommand, json_flag)
        elif not any("--json" in getattr(param, "opts", ()) for param in subcommand.params):
            flag = copy.copy(json_flag)
            flag.expose_value = False
            flag.callback = _json_after_command
            subcommand.params.append(flag)


def _json_after_command(ctx: Any, param: Any, value: bool) -> bool:
    if value:
        found = ctx.find_object(Options)
        if found is not None:
            found.output.json_mode = True
    return value


def open_ledger(ctx: typer.Context) -> Ledger:
    """The ledger the global options name (close it with ``with``)."""
    return Ledger.open(options(ctx).url)


def operator(account: str, user_id: str) -> Actor:
    """The terminal's actor: the named user with both permissions."""
    return Actor(user_id=user_id, account=account, permissions=set(Permission))


def checked_key_id(key_id: str) -> str:
    """``key_id`` if it has a key id's shape, else :class:`InvalidInput` (exit 2), which
    says so plainly when what was given looks like a key (never echoing it)."""
    if is_key_id(key_id):
        return key_id
    if render.redact(key_id) != key_id:
        raise InvalidInput(
            "key_id",
            "that is a key, not a key id: give the public id (key_...) that `keys list` shows, and "
            "treat the key as leaked if this command line is shared or logged",
        )
    raise InvalidInput("key_id", "must be a key id: key_ and 16 letters and digits, as `keys list` shows")


def note_new_account(out: render.Output, account: str, *, started: bool) -> None:
    """Say on stderr, after a command that succeeded, that ``account`` had no events: the
    command started it (``started``), or found nothing there. Either may be a typo of
    another account's name. A command that failed says nothing more than its error."""
    what = "is new: this command started it" if started else "has no events"
    out.note(f"note: account {account!r} {what} (is the name right? `keyledger accounts` lists them)")


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


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """Let SIGTERM (a service manager's stop) end a loop or a stream as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
