"""``keyledger webhooks add|list|remove|run``: configure webhooks, see their delivery
state, and deliver them from this process until Ctrl-C or SIGTERM.

The signing secret is read from stdin (or a hidden prompt on a terminal), never from an
argument: arguments land in shell history and the process list. Adding and delivering
need ``KEYLEDGER_WEBHOOK_KEY``, the host's key the secrets are sealed under.
"""

from __future__ import annotations

import getpass
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from keyledger import Webhook
from keyledger.adapters.driving import render
from keyledger.adapters.driving.cli_common import EXIT_REFUSED, guarded, open_ledger
from keyledger.projections.audit import ACTIONS

webhooks_app = typer.Typer(
    help="Configure webhooks (signed POSTs of each audit entry) and deliver them.", no_args_is_help=True
)


@webhooks_app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The receiver's http(s) URL.", show_default=False)],
    action: Annotated[
        list[str] | None, typer.Option("--action", help=f"Only these actions (repeat): {', '.join(ACTIONS)}.")
    ] = None,
) -> None:
    """Add a webhook; its signing secret is read from stdin (or typed at a hidden prompt).

    Example: keyledger webhooks add https://siem.example.com/keyledger < secret.txt
    """
    with guarded(ctx) as out:
        typed = sys.stdin.isatty()
        secret = (
            getpass.getpass("signing secret: ", stream=sys.stderr) if typed else sys.stdin.read()
        ).strip()
        with open_ledger(ctx) as ledger:
            webhook = ledger.add_webhook(url, secret, actions=action or None)
        if out.json_mode:
            out.emit(render.jsonable(webhook))
        else:
            out.line(f"webhook {webhook.webhook_id} added: entries from position {webhook.position} on")
            out.note("deliveries run where `keyledger webhooks run` (or Ledger.start_webhooks) runs")


@webhooks_app.command("list")
def list_webhooks(ctx: typer.Context) -> None:
    """List the webhooks with their delivery state: position, lag, attempts, last error, failed."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        found = ledger.webhooks()
    if out.json_mode:
        out.emit([render.jsonable(webhook) for webhook in found])
    elif found:
        out.show(_table(found))
    else:
        out.line("no webhooks")


@webhooks_app.command("remove")
def remove(
    ctx: typer.Context,
    webhook_id: Annotated[str, typer.Argument(metavar="WEBHOOK_ID", help="As `webhooks list` shows it.")],
) -> None:
    """Remove a webhook and its delivery state."""
    with guarded(ctx) as out:
        with open_ledger(ctx) as ledger:
            removed = ledger.remove_webhook(webhook_id)
        if not removed:
            out.error("NotFound", f"no webhook {webhook_id!r} (`keyledger webhooks list` shows them)")
            raise typer.Exit(EXIT_REFUSED)
        if out.json_mode:
            out.emit({"webhook_id": webhook_id, "removed": True})
        else:
            out.line(f"webhook {webhook_id} removed")


@webhooks_app.command("run")
def run(ctx: typer.Context) -> None:
    """Deliver every webhook from this process until Ctrl-C or SIGTERM (others added later too)."""
    with guarded(ctx) as out, open_ledger(ctx) as ledger:
        delivery = ledger.start_webhooks()
        out.note(f"delivering {len(delivery.webhook_ids)} webhook(s); Ctrl-C or SIGTERM stops")
        done = threading.Event()

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            delivery.stop()
        out.note("webhook delivery stopped")


def _table(found: list[Webhook]) -> Table:
    table = Table(title="webhooks", title_justify="left", show_edge=False)
    for column in ("id", "url", "actions", "position", "lag", "attempts", "last error", "failed"):
        table.add_column(column, no_wrap=column != "url")
    for webhook in found:
        table.add_row(
            webhook.webhook_id,
            webhook.url,
            ", ".join(webhook.actions) if webhook.actions else "all",
            str(webhook.position),
            str(webhook.lag),
            str(webhook.attempts),
            webhook.last_error or "-",
            str(webhook.failed),
        )
    return table


def register(app: typer.Typer) -> None:
    """Add ``webhooks`` to the ``keyledger`` app."""
    app.add_typer(webhooks_app, name="webhooks")
