"""The ``keyledger`` command line (typer and rich): thin commands that parse, call the
Ledger and render (rendering lives in :mod:`keyledger.adapters.driving.render`).

Exit codes: 0 done; 1 refused or not found (permission, revoked access, unknown or
revoked key, unchanged user access, a credential that does not verify, a failed
integrity check); 2 usage or bad input; 3 store unavailable. Errors are one line on
stderr, never a traceback and never a secret.
"""

from __future__ import annotations

import getpass
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from keyledger import (
    DEFAULT_ACCOUNT,
    Conflict,
    InvalidInput,
    KeyNotFound,
    Ledger,
    StoreUnavailable,
)
from keyledger.adapters.driving import cli_console, cli_review, cli_webhooks, render
from keyledger.adapters.driving.cli_common import (
    EXIT_REFUSED,
    AccountOption,
    ActorOption,
    AtOption,
    CommandLine,
    JsonOption,
    KeyIdArgument,
    Options,
    UrlOption,
    checked_key_id,
    guarded,
    note_new_account,
    open_ledger,
    operator,
    options,
    parse_instant,
    stopped_by_sigterm,
)
from keyledger.adapters.driving.demo import demo_file, run_demo
from keyledger.domain.keys import KeyDiagnosis, diagnose_any

logger = logging.getLogger("keyledger.cli")

HELP = (
    "Manage the API keys of a keyledger ledger from a terminal.\n\n"
    "The operator is trusted like an account administrator: every command that changes something "
    "acts as --actor USER with both permissions, integration (manage keys) and user_management "
    "(revoke and restore a user's access), and records USER in the audit trail.\n\n"
    "Exit codes: 0 done, 1 refused or not found, 2 usage or bad input, 3 store unavailable."
)

app = typer.Typer(
    name="keyledger",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=CommandLine,
)
keys_app = typer.Typer(help="Create, list, show, regenerate and revoke API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Revoke and restore a user's access to an account.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")


@app.callback()
def main_options(ctx: typer.Context, url: UrlOption = None, json_output: JsonOption = False) -> None:
    ctx.obj = Options(url=url, output=render.Output(json_mode=json_output))


# keys


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    actor: ActorOption,
    name: Annotated[str, typer.Option("--name", help="A label for the key.", show_default=False)],
    account: AccountOption = DEFAULT_ACCOUNT,
    purpose: Annotated[str, typer.Option("--purpose", help="Free notes: what the key is for.")] = "",
    application: Annotated[str, typer.Option("--application", help="The third-party application.")] = "",
) -> None:
    """Create a key; its secret is printed once, on stdout alone."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        new = not ledger.has_account(account)
        issued = ledger.create_key(
            operator(account, actor), name=name, purpose=purpose, application=application
        )
        if new:
            note_new_account(out, account, started=True)
        out.secret(issued, "created")


@keys_app.command("list")
def keys_list(ctx: typer.Context, account: AccountOption = DEFAULT_ACCOUNT, at: AtOption = None) -> None:
    """List the account's keys in creation order (hints only, never a secret, and when each was
    last used), now or --at a past instant."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        keys = ledger.keys(account, at=parse_instant("at", at))
        if not keys and not ledger.has_account(account):
            note_new_account(out, account, started=False)
        if out.json_mode:
            out.emit([render.jsonable(key) for key in keys])
        elif keys:
            out.show(render.keys_table(f"keys of {account}", keys))
        else:
            out.line(f"account {account!r} has no keys")


@keys_app.command("show")
def keys_show(ctx: typer.Context, key_id: KeyIdArgument, account: AccountOption = DEFAULT_ACCOUNT) -> None:
    """Show one key: labels, creator, status, hint, the secrets in grace and when it was last used."""
    with guarded(ctx) as out:
        key_id = checked_key_id(key_id)
        with open_ledger(ctx) as ledger:
            key = ledger.key(account, key_id)
            if key is None:
                raise KeyNotFound(f"no key {key_id!r} in account {account!r}")
        if out.json_mode:
            out.emit(render.jsonable(key))
        else:
            out.show(render.key_detail(key))


@keys_app.command("regenerate")
def keys_regenerate(
    ctx: typer.Context,
    key_id: KeyIdArgument,
    actor: ActorOption,
    grace: Annotated[
        bool | None,
        typer.Option(
            "--grace/--immediate",
            help="--grace: the old secret works for the ledger's grace period more (12 hours "
            "by default); --immediate: every old secret stops now. One is required.",
            show_default=False,
        ),
    ] = None,
    account: AccountOption = DEFAULT_ACCOUNT,
) -> None:
    """Issue a new secret for a key; it is printed once, on stdout alone."""
    if grace is None:
        raise typer.BadParameter("choose --grace or --immediate", param_hint="'--grace' / '--immediate'")
    with guarded(ctx) as out:
        key_id = checked_key_id(key_id)
        with open_ledger(ctx) as ledger:
            issued = ledger.regenerate_key(
                operator(account, actor), key_id, mode="grace" if grace else "immediate"
            )
        out.secret(issued, "regenerated with grace" if grace else "regenerated")


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: KeyIdArgument,
    actor: ActorOption,
    account: AccountOption = DEFAULT_ACCOUNT,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the audit trail.")] = None,
) -> None:
    """Revoke a key: none of its secrets works again, and no new one is issued."""
    with guarded(ctx) as out:
        key_id = checked_key_id(key_id)
        with open_ledger(ctx) as ledger:
            ledger.revoke_key(operator(account, actor), key_id, reason=reason)
        if out.json_mode:
            out.emit({"account": account, "key_id": key_id, "status": "revoked"})
        else:
            out.line(f"key {key_id} revoked")


# users


@users_app.command("revoke")
def users_revoke(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user whose access ends.")],
    actor: ActorOption,
    account: AccountOption = DEFAULT_ACCOUNT,
) -> None:
    """Revoke a user's access and, in the same step, every key they created."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        new = not ledger.has_account(account)
        removed = ledger.revoke_user_access(operator(account, actor), user)
        if new:
            note_new_account(out, account, started=True)
        if out.json_mode:
            out.emit({"account": account, "user": user, "access": "revoked", "removed_key_ids": removed})
        else:
            keys = ", ".join(removed) if removed else "none"
            out.line(f"access of {user!r} to {account!r} revoked; keys removed: {keys}")


@users_app.command("restore")
def users_restore(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user whose access returns.")],
    actor: ActorOption,
    account: AccountOption = DEFAULT_ACCOUNT,
) -> None:
    """Restore a revoked user's access (for new keys; removed keys stay removed)."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        ledger.restore_user_access(operator(account, actor), user)
        if out.json_mode:
            out.emit({"account": account, "user": user, "access": "restored"})
        else:
            out.line(f"access of {user!r} to {account!r} restored")


# verification, audit, maintenance


@app.command()
def verify(
    ctx: typer.Context,
    credential: Annotated[
        str,
        typer.Argument(
            help="A key, or an Authorization value ('Basic ...', 'Bearer ...'). Prefer '-' and "
            "pipe the key in: an argument lands in shell history and the process list.",
            show_default=False,
        ),
    ],
    at: AtOption = None,
) -> None:
    """Tell whether a credential is a working key (now, or --at a past instant): exit 0 if valid, 1 if not.

    Example: keyledger verify - < key.txt (or type the key at the hidden prompt). A key given as
    an argument works, with a warning on stderr.
    """
    with guarded(ctx) as out:
        if credential != "-":
            out.warning(
                "CredentialInArguments",
                "a credential given as an argument lands in shell history and the process list; "
                "pipe it in instead: keyledger verify - < key.txt",
            )
        else:
            # From a terminal, ask without echoing; from a pipe or file, read it all.
            typed = sys.stdin.isatty()
            # Bytes that are not text are read as such and refused as a malformed credential.
            piped = sys.stdin.buffer.read().decode("utf-8", "replace") if not typed else ""
            credential = (getpass.getpass("key: ", stream=sys.stderr) if typed else piped).strip()
        with open_ledger(ctx) as ledger:
            principal = ledger.verify(credential, at=parse_instant("at", at))
            if principal is not None:
                out.principal(principal)
                return
            diagnosis = diagnose_any(credential, ledger.key_prefixes)
        reason = (
            "not a working key (unknown, revoked, or past its grace deadline)"
            if diagnosis is KeyDiagnosis.WELL_FORMED
            else f"not a key of this ledger: {diagnosis.value}"
        )
        out.refused(reason)
        raise typer.Exit(EXIT_REFUSED)


@app.command()
def sweep(
    ctx: typer.Context,
    every: Annotated[
        float | None,
        typer.Option("--every", help="Sweep every SECONDS until stopped (Ctrl-C); print each sweep."),
    ] = None,
) -> None:
    """Record GraceExpired for every grace deadline that has passed."""
    with guarded(ctx) as out:
        if every is not None and not every > 0:
            raise InvalidInput("every", "must be a positive number of seconds")
        with open_ledger(ctx) as ledger:
            if every is None:
                _sweep_once(out, ledger)
                return
            with stopped_by_sigterm():
                try:
                    while True:
                        try:
                            _sweep_once(out, ledger)
                        except (StoreUnavailable, Conflict) as error:
                            out.error(type(error).__name__, f"{error}; trying again in {every:g} s")
                        time.sleep(every)
                except KeyboardInterrupt:
                    out.note("sweeper stopped")


def _sweep_once(out: render.Output, ledger: Ledger) -> None:
    out.swept(ledger.expire_grace(), datetime.now(UTC))


@app.command()
def demo(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="The demo's own SQLite ledger, a file that must not exist yet; default: a new one in "
            "a temporary directory.",
        ),
    ] = None,
) -> None:
    """Walk one account through the key lifecycle, on a ledger of its own.

    Never the ledger --url or KEYLEDGER_URL names: the demo's clock is injected and starts a
    day in the past. The demo ledger's path is printed first.
    """
    with guarded(ctx) as out:
        path = demo_file(file)
        if options(ctx).url is not None:
            out.note("note: the demo runs on a ledger of its own; --url and KEYLEDGER_URL are not used")
        run_demo(path)


cli_review.register(app)
cli_console.register(app)
cli_webhooks.register(app)


def main() -> None:
    """The console script."""
    app()
