"""The lifecycle demo: one account through create, verify, regenerate with grace, the
12-hour deadline, immediate regeneration, revoke and a user's removal.

Time is an injected clock that starts a day in the past and is moved by hand, so the
deadline is shown to the microsecond without sleeping and every recorded event lies in
the past. Each run uses a new account (``demo-<time>``) in the chosen ledger, and ends
with every demo key revoked.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table
from rich.text import Text

from keyledger import AuditEntry, KeyLedgerError, Ledger
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


def run_demo(url: str | None = None, console: Console | None = None) -> None:
    """Walk one account through the whole key lifecycle and print what happens."""
    out = console or Console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=1))
    account = f"demo-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    alice = Actor(user_id="alice", account=account, permissions={Permission.INTEGRATION})
    bob = Actor(user_id="bob", account=account, permissions={Permission.INTEGRATION})
    admin = Actor(
        user_id="root", account=account, permissions={Permission.INTEGRATION, Permission.USER_MANAGEMENT}
    )
    with Ledger.open(url, clock=clock) as ledger:
        out.rule(f"keyledger demo on {ledger.store}, account {account}")

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

        second = ledger.regenerate_key(alice, first.key_id, grace=True)
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

        third = ledger.regenerate_key(alice, first.key_id, grace=False)
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
