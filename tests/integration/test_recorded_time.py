"""Recorded time never goes back within an account, on a SQLite ledger whose clock steps
back: the audit trail stays in time order, grace deadlines count from the recorded time,
and the chain verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyledger import Actor, Ledger
from keyledger.testing import ManualClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=12)


class TestLedgerWithAClockSteppedBack:
    def test_recorded_times_never_go_back_and_the_chain_verifies(self, sqlite_url: str, alice: Actor) -> None:
        """A clock stepped back an hour between commands leaves the audit trail in time
        order, the old secret's deadline 12 hours after the recorded regeneration, and
        an intact chain."""
        clock = ManualClock(START)
        with Ledger.open(sqlite_url, clock=clock) as ledger:
            issued = ledger.create_key(alice, name="Shipping")
            clock.advance(minutes=10)
            ledger.create_key(alice, name="Billing")
            clock.now = START - timedelta(hours=1)  # NTP steps the clock back

            new = ledger.regenerate_key(alice, issued.key_id, mode="grace")
            ledger.revoke_key(alice, ledger.keys("acme")[1].key_id)

            entries = ledger.audit(account="acme")
            recorded = [entry.recorded_at for entry in entries]
            assert recorded == sorted(recorded)
            assert recorded[2:] == [START + timedelta(minutes=10)] * 2
            assert new.previous_valid_until == START + timedelta(minutes=10) + GRACE
            old = issued.secret.get_secret_value()
            clock.now = START + timedelta(minutes=10) + GRACE - timedelta(microseconds=1)
            assert ledger.verify(old) is not None
            clock.advance(microseconds=1)
            assert ledger.verify(old) is None
            assert ledger.check_integrity().ok
