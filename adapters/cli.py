"""The ``keyledger`` command line (typer and rich): thin commands that parse, call the
Ledger and render."""

from __future__ import annotations

from typing import Annotated

import typer

from keyledger.adapters.demo import run_demo
from keyledger.domain import KeyLedgerError, StoreUnavailable

app = typer.Typer(
    name="keyledger",
    help="An event-sourced ledger of API keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="KEYLEDGER_URL", help="Store URL; default ./keyledger.db."),
]


@app.callback()
def main_options(ctx: typer.Context, url: UrlOption = None) -> None:
    """An event-sourced ledger of API keys."""
    ctx.obj = {"url": url}


@app.command()
def demo(ctx: typer.Context) -> None:
    """Walk one new account through the whole key lifecycle, with an injected clock."""
    try:
        run_demo(ctx.obj["url"])
    except StoreUnavailable as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(3) from None
    except KeyLedgerError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """The console script."""
    app()
