"""The compliance report of an account, and the last-used times behind it.

On a memory ledger with a manual clock: keys not regenerated for 90 days and keys unused
for 30 days are listed, secrets in grace are listed with their deadlines, active keys
are counted per creator, and working keys of revoked creators are always 0.
Verification records when a key was last used at most once a minute per key, off the
hot path (a background thread flushes every second, and on close); the tests flush it
themselves, or poll ``keys()`` with a bounded loop.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from keyledger import Actor, InvalidInput, IssuedKey, Ledger
from keyledger.report import GraceDeadline
from keyledger.testing import ManualClock

GRACE = timedelta(hours=12)
DAY = timedelta(days=1)


def secret(issued: IssuedKey) -> str:
    return issued.secret.get_secret_value()


def last_used(ledger: Ledger, key_id: str) -> datetime | None:
    ledger._connection.usage.flush()
    view = ledger.key("acme", key_id)
    assert view is not None
    return view.last_used_at


class TestStaleKeys:
    """Keys whose secret is 90 days old are listed as not regenerated."""

    def test_lists_a_key_never_regenerated_in_ninety_days(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """A key created 91 days ago and never regenerated is listed; one regenerated since is not."""
        created_at = clock.now
        old = ledger.create_key(alice, name="Old")
        renewed = ledger.create_key(alice, name="Renewed")
        clock.advance(days=60)
        ledger.regenerate_key(alice, renewed.key_id, mode="immediate")

        report = ledger.report("acme", now=created_at + 91 * DAY)

        assert report.not_regenerated == [old.key_id]
        assert report.active_keys == 2

    def test_a_key_is_stale_from_ninety_days(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """At 89 days a key is not stale yet; at 90 days it is."""
        created_at = clock.now
        issued = ledger.create_key(alice, name="Old")

        young = ledger.report("acme", now=created_at + 89 * DAY)
        old = ledger.report("acme", now=created_at + 90 * DAY)

        assert young.not_regenerated == []
        assert old.not_regenerated == [issued.key_id]

    def test_the_threshold_is_configurable(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """stale_after=30 days lists a key 31 days old."""
        created_at = clock.now
        issued = ledger.create_key(alice, name="Monthly")

        report = ledger.report("acme", now=created_at + 31 * DAY, stale_after=timedelta(days=30))

        assert report.not_regenerated == [issued.key_id]

    def test_a_revoked_key_is_not_listed(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """A revoked key is never reported as stale or unused: it no longer works."""
        created_at = clock.now
        issued = ledger.create_key(alice, name="Gone")
        ledger.revoke_key(alice, issued.key_id)

        report = ledger.report("acme", now=created_at + 365 * DAY)

        assert (report.not_regenerated, report.unused, report.active_keys) == ([], [], 0)


class TestUnusedKeys:
    """Active keys not used for 30 days are listed as unused."""

    def test_lists_a_key_unused_for_thirty_days_and_not_a_used_one(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """A key never used since its creation 31 days ago is listed; one used 6 days ago is not."""
        created_at = clock.now
        used = ledger.create_key(alice, name="Used")
        idle = ledger.create_key(alice, name="Idle")
        clock.advance(days=25)
        assert ledger.verify(secret(used)) is not None
        ledger._connection.usage.flush()

        report = ledger.report("acme", now=created_at + 31 * DAY)

        assert report.unused == [idle.key_id]

    def test_a_key_used_long_ago_is_unused_again(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """A key last used 40 days ago is listed as unused."""
        issued = ledger.create_key(alice, name="Once")
        used_at = clock.advance(days=1)
        assert ledger.verify(secret(issued)) is not None
        ledger._connection.usage.flush()

        report = ledger.report("acme", now=used_at + 40 * DAY)

        assert report.unused == [issued.key_id]


class TestSecretsInGrace:
    """Secrets in grace are listed with their deadlines until they pass."""

    def test_lists_a_retired_secret_with_its_deadline(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """After a regeneration with grace, the report lists the old secret's hint and deadline."""
        issued = ledger.create_key(alice, name="Shipping")
        regenerated_at = clock.advance(hours=1)
        ledger.regenerate_key(alice, issued.key_id, mode="grace")

        report = ledger.report("acme", now=regenerated_at + timedelta(hours=1))

        assert report.in_grace == [
            GraceDeadline(key_id=issued.key_id, hint=issued.hint, grace_until=regenerated_at + GRACE)
        ]

    def test_a_passed_deadline_is_not_listed(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """At its deadline, recorded or not, a secret is no longer listed in grace."""
        issued = ledger.create_key(alice, name="Shipping")
        regenerated_at = clock.advance(hours=1)
        ledger.regenerate_key(alice, issued.key_id, mode="grace")

        at_deadline = ledger.report("acme", now=regenerated_at + GRACE)
        before = ledger.report("acme", now=regenerated_at + GRACE - timedelta(microseconds=1))

        assert at_deadline.in_grace == []
        assert len(before.in_grace) == 1

    def test_lists_each_secret_in_grace_of_each_key(
        self, ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor
    ) -> None:
        """Two retired secrets of one key and one of another are each listed, soonest first per key."""
        first = ledger.create_key(alice, name="Shipping")
        second = ledger.create_key(bob, name="Bob's sync")
        t1 = clock.advance(hours=1)
        middle = ledger.regenerate_key(alice, first.key_id, mode="grace")
        ledger.regenerate_key(bob, second.key_id, mode="grace")
        t2 = clock.advance(hours=1)
        ledger.regenerate_key(alice, first.key_id, mode="grace")

        report = ledger.report("acme", now=t2)

        assert report.in_grace == [
            GraceDeadline(key_id=first.key_id, hint=first.hint, grace_until=t1 + GRACE),
            GraceDeadline(key_id=first.key_id, hint=middle.hint, grace_until=t2 + GRACE),
            GraceDeadline(key_id=second.key_id, hint=second.hint, grace_until=t1 + GRACE),
        ]


class TestCreators:
    """Active keys are counted per creator, and no working key outlives its creator's access."""

    def test_counts_active_keys_per_creator(self, ledger: Ledger, alice: Actor, bob: Actor) -> None:
        """keys_per_creator counts each creator's active keys; revoked keys are not counted."""
        ledger.create_key(alice, name="One")
        ledger.create_key(alice, name="Two")
        gone = ledger.create_key(alice, name="Gone")
        ledger.create_key(bob, name="Bob's")
        ledger.revoke_key(alice, gone.key_id)

        report = ledger.report("acme")

        assert report.keys_per_creator == {"alice": 2, "bob": 1}
        assert report.active_keys == 3

    def test_no_working_key_of_a_revoked_creator(
        self, ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor
    ) -> None:
        """After Bob's access is revoked, none of his keys works and the report counts 0."""
        bobs = ledger.create_key(bob, name="Bob's sync")
        ledger.regenerate_key(bob, bobs.key_id, mode="grace")
        ledger.create_key(bob, name="Bob's spare")
        ledger.create_key(alice, name="Alice's")
        before = ledger.report("acme")

        ledger.revoke_user_access(admin, "bob")

        after = ledger.report("acme")
        assert before.keys_per_creator == {"bob": 2, "alice": 1}
        assert after.working_keys_of_revoked_creators == 0
        assert after.keys_per_creator == {"alice": 1}
        assert after.in_grace == []
        assert ledger.verify(secret(bobs)) is None

    def test_the_report_names_its_account_and_time(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Without now, the report is generated at the ledger clock's current time."""
        ledger.create_key(alice, name="One")

        report = ledger.report("acme")

        assert (report.account, report.generated_at) == ("acme", clock.now)

    def test_a_naive_now_is_refused(self, ledger: Ledger) -> None:
        """A now without a timezone raises InvalidInput."""
        with pytest.raises(InvalidInput) as raised:
            ledger.report("acme", now=datetime(2026, 1, 5))

        assert raised.value.field == "now"


class TestLastUsed:
    """Verification records when each key was last used, at most once a minute per key."""

    def test_a_verified_key_shows_when_it_was_used(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """After a verification, keys() shows the key's last use at the verifying instant."""
        issued = ledger.create_key(alice, name="Shipping")
        used_at = clock.advance(minutes=5)

        assert ledger.verify(secret(issued)) is not None

        assert last_used(ledger, issued.key_id) == used_at
        assert [k.last_used_at for k in ledger.keys("acme")] == [used_at]

    def test_a_key_never_verified_shows_no_last_use(self, ledger: Ledger, alice: Actor) -> None:
        """A key that was never verified has no last use."""
        issued = ledger.create_key(alice, name="Shipping")

        assert last_used(ledger, issued.key_id) is None

    def test_the_background_writer_records_a_use_unasked(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Without an explicit flush, the last use appears in keys() within a bounded wait."""
        issued = ledger.create_key(alice, name="Shipping")
        used_at = clock.advance(minutes=5)

        assert ledger.verify(secret(issued)) is not None

        deadline = time.monotonic() + 10
        while ledger.keys("acme")[0].last_used_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.keys("acme")[0].last_used_at == used_at

    def test_records_at_most_once_a_minute_per_key(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Two uses 30 s apart record the first; a use 61 s after the first records its own time."""
        issued = ledger.create_key(alice, name="Shipping")
        first = clock.advance(minutes=5)
        ledger.verify(secret(issued))
        clock.advance(seconds=30)
        ledger.verify(secret(issued))
        within_the_minute = last_used(ledger, issued.key_id)

        later = clock.advance(seconds=31)
        ledger.verify(secret(issued))

        assert within_the_minute == first
        assert last_used(ledger, issued.key_id) == later

    def test_each_key_has_its_own_minute(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """A use of one key within a minute of another key's use is still recorded."""
        one = ledger.create_key(alice, name="One")
        two = ledger.create_key(alice, name="Two")
        first = clock.advance(minutes=5)
        ledger.verify(secret(one))

        second = clock.advance(seconds=10)
        ledger.verify(secret(two))

        assert (last_used(ledger, one.key_id), last_used(ledger, two.key_id)) == (first, second)

    def test_a_secret_in_grace_counts_as_a_use_of_its_key(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Verifying the retired secret of a key in grace records a use of that key."""
        issued = ledger.create_key(alice, name="Shipping")
        clock.advance(minutes=5)
        ledger.regenerate_key(alice, issued.key_id, mode="grace")
        used_at = clock.advance(minutes=5)

        principal = ledger.verify(secret(issued))

        assert principal is not None
        assert principal.grace_until is not None
        assert last_used(ledger, issued.key_id) == used_at

    def test_a_refused_key_records_no_use(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """Presenting a revoked key records nothing."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)
        clock.advance(minutes=5)

        assert ledger.verify(secret(issued)) is None

        assert last_used(ledger, issued.key_id) is None

    def test_a_point_in_time_verification_records_no_use(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """verify(key, at=T) answers a question about the past and records no use."""
        created_at = clock.now
        issued = ledger.create_key(alice, name="Shipping")
        clock.advance(minutes=5)

        assert ledger.verify(secret(issued), at=created_at) is not None

        assert last_used(ledger, issued.key_id) is None
