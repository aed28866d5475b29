"""``keyledger console``: the web console served on loopback for one operator, who signs
in with a one-time link printed on the terminal."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from keyledger.adapters.driving.cli_common import AccountOption, ActorOption, open_ledger, operator
from keyledger.adapters.driving.console.standalone import LOOPBACK, OneTimeLogin
from keyledger.domain import DEFAULT_ACCOUNT


def console_command(
    ctx: typer.Context,
    actor: ActorOption,
    account: AccountOption = DEFAULT_ACCOUNT,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Bind this address (default loopback; anything else is reachable by others)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Listen on this port.")] = 8765,
) -> None:
    """Serve the web console for one account and print a one-time sign-in link."""
    import uvicorn

    if host not in LOOPBACK:
        print(
            f"warning: binding {host}: anyone who can reach it and gets the link acts as {actor!r}; "
            "the link and the session travel unencrypted unless a TLS proxy is in front",
            file=sys.stderr,
        )
    with open_ledger(ctx) as ledger:
        login = OneTimeLogin(ledger, operator(account, actor))
        shown = f"[{host}]" if ":" in host else host
        print(f"keyledger console for account {account!r}, acting as {actor!r}, ledger {ledger.store}")
        print("Open this link once to sign in (it is spent by its first use):")
        print(f"  {login.link(f'http://{shown}:{port}')}", flush=True)
        uvicorn.run(login, host=host, port=port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    """Add ``keyledger console`` to the ``keyledger`` app."""
    app.command("console")(console_command)
