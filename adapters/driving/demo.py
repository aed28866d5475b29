"""The lifecycle demo: one account through create, verify, regenerate with grace, the
12-hour deadline, immediate regeneration, revoke and a user's removal.

It runs on a SQLite ledger of its own, a new file (in a new temporary directory unless
one is named), never the ledger a service or the CLI uses: its clock is injected, starts
a day in the past and is moved by hand, so the deadline is shown to the microsecond
without sleeping, and such backdated events have no place in a real ledger. The file's
path is printed first and the command to inspect it last; it ends with every demo key
revoked.
"""

from __future__ import annotations

import base64
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from keyledger import AuditEntry, InvalidInput, KeyLedgerError, Ledger
from keyledger.adapters.driving import render
from keyledger.domain import Actor, Permission
from keyledger.testing import ManualClock


def audit_table(entries: list[AuditEntry]) -> Table:
    """One account's audit trail, compact: position, time, action, actor and key."""
    table = Table(title="audit trail")
    for column in ("pos", "occurred at", "action", "actor", "key", "chain"):
        table.add_column(column)
    for entry in entries:
        cells = (
            str(entry.position), f"{entry.occurred_at:%m-%d %H:%M:%S}", entry.action,
            entry.actor or "(ledger)", entry.key_id or "-", entry.chain[:12],
        )  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    return table


def demo_file(file: Path | None) -> Path:
    """The demo's ledger file: ``file``, which must not exist yet (the demo never writes
    into a ledger with a history of its own), else a new one in a new temporary directory."""
    if file is None:
        return Path(tempfile.mkdtemp(prefix="keyledger-demo-")) / "demo.db"
    if file.exists():
        raise InvalidInput("file", f"{file} exists: the demo runs on a new ledger of its own")
    if not file.parent.is_dir():
        raise InvalidInput("file", f"the directory {str(file.parent)!r} does not exist")
    return file


def run_demo(file: Path | None = None, console: Console | None = None) -> Path:
    """Walk one account through the whole key lifecycle on a new ledger of its own (see
    :func:`demo_file`), print what happens, and return the ledger file's path."""
    out = console or Console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    path = demo_file(file).absolute()
    url = f"sqlite:///{path}"
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=1))
    account = "demo"
    alice = Actor(user_id="alice", account=account, permissions={Permission.INTEGRATION})
    bob = Actor(user_id="bob", account=account, permissions={Permission.INTEGRATION})
    admin = Actor(
        user_id="root", account=account, permissions={Permission.INTEGRATION, Permission.USER_MANAGEMENT}
    )
    with Ledger.open(url, clock=clock) as ledger:
        out.rule(f"keyledger demo on a ledger of its own: {path}")

        def check(label: str, secret: str) -> None:
            principal = ledger.verify(secret)
            verdict = f"valid ({principal.name})" if principal else "refused"
            out.print(f"  {clock.now:%H:%M:%S.%f}  {label:<34} {verdict}")

        first = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")
        key_one = first.secret.get_secret_value()
        out.print(f"alice creates key {first.key_id} ({first.hint}); its secret is shown once")
        check("raw key", key_one)
        check("HTTP Basic, key as user name", "Basic " + base64.b64encode(f"{key_one}:".encode()).decode())
        check("a typo in the key", key_one[:-1] + ("A" if key_one[-1] != "A" else "B"))

        second = ledger.regenerate_key(alice, first.key_id, mode="grace")
        key_two = second.secret.get_secret_value()
        out.print(f"\nalice regenerates with grace: the old secret works until {second.previous_valid_until}")
        check("old secret", key_one)
        check("new secret", key_two)
        out.print(render.keys_table("keys during the grace window", ledger.keys(account)))

        clock.advance(ledger.grace_period - timedelta(microseconds=1))
        out.print("\nthe clock moves to 1 microsecond before the deadline")
        check("old secret", key_one)
        clock.advance(timedelta(microseconds=1))
        out.print("the clock reaches the deadline")
        check("old secret", key_one)
        out.print(f"expire_grace() records {ledger.expire_grace()} GraceExpired event(s)")

        third = ledger.regenerate_key(alice, first.key_id, mode="immediate")
        out.print("\nalice regenerates immediately: the previous secret stops at once")
        check("previous secret", key_two)
        check("newest secret", third.secret.get_secret_value())

        clock.advance(timedelta(minutes=5))
        spare = ledger.create_key(alice, name="Reports", application="Looker")
        bobs = ledger.create_key(bob, name="Billing sync", application="NetSuite")
        ledger.revoke_key(bob, spare.key_id, reason="not needed")
        out.print(f"\nalice creates {spare.key_id}, bob creates {bobs.key_id}; bob revokes {spare.key_id}")
        check("revoked key", spare.secret.get_secret_value())

        clock.advance(timedelta(minutes=5))
        removed = ledger.revoke_user_access(admin, "alice")
        out.print(f"\nroot revokes alice's access; keys removed: {', '.join(removed)}")
        check("alice's key", third.secret.get_secret_value())
        check("bob's key", bobs.secret.get_secret_value())
        try:
            ledger.create_key(alice, name="Sneaky")
        except KeyLedgerError as error:
            out.print(f"  alice tries to create a key: {type(error).__name__}: {error}")

        out.print()
        out.print(render.keys_table(f"keys of {account}", ledger.keys(account)))
        out.print(audit_table(ledger.audit(account=account, limit=1000)))
        report = ledger.check_integrity()
        out.print(f"integrity check: ok={report.ok}, {report.events_checked} events checked")
        ledger.revoke_key(admin, bobs.key_id, reason="demo finished")
        out.print("the demo revokes its last working key, so no demo key is left valid")
    out.print(f"\ninspect the demo ledger: keyledger --url '{url}' audit")
    return path
