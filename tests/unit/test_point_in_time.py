"""Point in time: verify, keys and valid_keys answer for any past instant, exactly.

Each test builds a small timeline on a memory ledger driven by a manual clock and checks
the answers around each instant where something changes, to the microsecond: a secret
works from its creation instant; a secret in grace works while ``t < grace_until`` and
never at ``grace_until``, whether or not ``GraceExpired`` is recorded yet (or recorded
late); an immediate regeneration, a revocation or a user removal at ``t`` ends a secret
at exactly ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from keyledger import Actor, GraceSecret, InvalidInput, IssuedKey, Ledger
from keyledger.testing import ManualClock

GRACE = timedelta(hours=12)
US = timedelta(microseconds=1)


def secret(issued: IssuedKey) -> str:
    return issued.secret.get_secret_value()


def works(ledger: Ledger, key: str, at: datetime) -> bool:
    return ledger.verify(key, at=at) is not None


class TestAroundCreation:
    """A key works from the instant it was created, and not before."""

    def test_a_key_does_not_verify_before_its_creation(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """One microsecond before its creation a key does not verify."""
        created_at = clock.now
        key = secret(ledger.create_key(alice, name="Shipping"))

        before = ledger.verify(key, at=created_at - US)
        long_before = ledger.verify(key, at=created_at - timedelta(days=365))

        assert before is None
        assert long_before is None

    def test_a_key_verifies_at_its_creation_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """At the instant of its creation a key verifies as its current secret."""
        created_at = clock.now
        issued = ledger.create_key(alice, name="Shipping")

        principal = ledger.verify(secret(issued), at=created_at)

        assert principal is not None
        assert (principal.account, principal.key_id, principal.name) == ("acme", issued.key_id, "Shipping")
        assert principal.grace_until is None

    def test_an_unknown_key_never_verifies(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """A well-formed key the ledger never issued verifies at no instant."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)
        clock.advance(hours=1)
        with Ledger.open("memory://", clock=clock) as elsewhere:
            other = secret(elsewhere.create_key(alice, name="Elsewhere"))

        answers = [ledger.verify(other, at=clock.now - delta) for delta in (US, timedelta(hours=1))]

        assert answers == [None, None]


@dataclass(frozen=True)
class Regenerated:
    """A key created at t0 and regenerated with grace at t1; nothing recorded since, and
    the clock moved well past the deadline (a future instant is refused)."""

    key_id: str
    old: str
    new: str
    t0: datetime
    t1: datetime

    @property
    def deadline(self) -> datetime:
        return self.t1 + GRACE


class TestAroundAGraceDeadline:
    """A secret retired with grace works until its deadline, exclusive."""

    @pytest.fixture
    def timeline(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> Regenerated:
        t0 = clock.now
        old = ledger.create_key(alice, name="Shipping")
        t1 = clock.advance(hours=1)
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        clock.advance(3 * GRACE)
        return Regenerated(key_id=old.key_id, old=secret(old), new=secret(new), t0=t0, t1=t1)

    def test_the_retired_secret_works_until_one_microsecond_before_its_deadline(
        self, ledger: Ledger, timeline: Regenerated
    ) -> None:
        """At grace_until - 1 µs the retired secret works, and says until when."""
        deadline = timeline.deadline

        principal = ledger.verify(timeline.old, at=deadline - US)

        assert principal is not None
        assert principal.key_id == timeline.key_id
        assert principal.grace_until == deadline

    def test_the_retired_secret_stops_at_its_deadline(self, ledger: Ledger, timeline: Regenerated) -> None:
        """At grace_until exactly, and after, the retired secret does not verify."""
        deadline = timeline.deadline

        answers = [ledger.verify(timeline.old, at=deadline + delta) for delta in (timedelta(0), US, GRACE)]

        assert answers == [None, None, None]

    def test_the_retired_secret_was_current_until_the_regeneration(
        self, ledger: Ledger, timeline: Regenerated
    ) -> None:
        """Before the regeneration the old secret was current; from its instant, in grace."""
        t1 = timeline.t1

        before = ledger.verify(timeline.old, at=t1 - US)
        at_regeneration = ledger.verify(timeline.old, at=t1)

        assert before is not None
        assert before.grace_until is None
        assert at_regeneration is not None
        assert at_regeneration.grace_until == timeline.deadline

    def test_the_new_secret_works_from_the_regeneration(self, ledger: Ledger, timeline: Regenerated) -> None:
        """The new secret does not verify before its regeneration instant, and does from it on."""
        t1, deadline = timeline.t1, timeline.deadline

        answers = [works(ledger, timeline.new, at) for at in (t1 - US, t1, deadline, deadline + GRACE)]

        assert answers == [False, True, True, True]

    def test_a_grace_expiry_recorded_late_changes_nothing_before_the_deadline(
        self, ledger: Ledger, clock: ManualClock, timeline: Regenerated
    ) -> None:
        """Recording GraceExpired hours after the deadline leaves every past answer as it was."""
        deadline = timeline.deadline
        instants = [timeline.t0, timeline.t1, deadline - US, deadline, deadline + US]
        before = [ledger.verify(timeline.old, at=at) for at in instants]
        clock.advance(GRACE + timedelta(hours=3))

        recorded = ledger.expire_grace()

        after = [ledger.verify(timeline.old, at=at) for at in instants]
        assert recorded == 1
        assert after == before
        assert [p is not None for p in after] == [True, True, True, False, False]
        assert [p.grace_until for p in after if p is not None] == [None, deadline, deadline]
        assert [e.occurred_at for e in ledger.audit(action="GraceExpired")] == [deadline]

    def test_now_verification_agrees_at_the_deadline(
        self, ledger: Ledger, clock: ManualClock, timeline: Regenerated
    ) -> None:
        """Verifying now gives the same edge: the retired secret works at deadline - 1 µs, not at it."""
        clock.now = timeline.deadline - US
        still = ledger.verify(timeline.old)

        clock.now = timeline.deadline
        stopped = ledger.verify(timeline.old)

        assert still is not None
        assert stopped is None


class TestSeveralGraceDeadlines:
    """Each secret in grace keeps its own deadline; a later regeneration never extends it."""

    def test_each_retired_secret_ends_at_its_own_deadline(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Two regenerations two hours apart retire two secrets with deadlines two hours apart."""
        first = ledger.create_key(alice, name="Shipping")
        t1 = clock.advance(hours=1)
        second = ledger.regenerate_key(alice, first.key_id, mode="grace")
        t2 = clock.advance(hours=2)
        third = ledger.regenerate_key(alice, first.key_id, mode="grace")
        clock.advance(3 * GRACE)

        around_first = [works(ledger, secret(first), at) for at in (t1 + GRACE - US, t1 + GRACE)]
        around_second = [works(ledger, secret(second), at) for at in (t2 + GRACE - US, t2 + GRACE)]
        current = [works(ledger, secret(third), at) for at in (t2 - US, t2, t2 + 2 * GRACE)]

        assert around_first == [True, False]
        assert around_second == [True, False]
        assert current == [False, True, True]


class TestImmediateEnds:
    """An immediate regeneration, a revocation or a user removal at t ends secrets at exactly t."""

    def test_an_immediate_regeneration_ends_the_old_secret_at_its_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """The old secret works until 1 µs before an immediate regeneration, and not at it."""
        old = ledger.create_key(alice, name="Shipping")
        t = clock.advance(hours=1)
        new = ledger.regenerate_key(alice, old.key_id, mode="immediate")
        clock.advance(hours=1)

        old_answers = [works(ledger, secret(old), at) for at in (t - US, t, t + US)]
        new_answers = [works(ledger, secret(new), at) for at in (t - US, t, t + US)]

        assert old_answers == [True, False, False]
        assert new_answers == [False, True, True]

    def test_an_immediate_regeneration_ends_the_secrets_in_grace_at_its_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """A secret in grace stops at an immediate regeneration, long before its deadline."""
        first = ledger.create_key(alice, name="Shipping")
        t1 = clock.advance(hours=1)
        ledger.regenerate_key(alice, first.key_id, mode="grace")
        t2 = clock.advance(hours=2)
        ledger.regenerate_key(alice, first.key_id, mode="immediate")
        clock.advance(GRACE)

        answers = [works(ledger, secret(first), at) for at in (t1, t2 - US, t2, t1 + GRACE - US)]

        assert answers == [True, True, False, False]

    def test_a_revocation_ends_every_secret_at_its_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """A revoked key's current and grace secrets work until 1 µs before, and not at it."""
        old = ledger.create_key(alice, name="Shipping")
        clock.advance(hours=1)
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        t = clock.advance(hours=1)
        ledger.revoke_key(alice, old.key_id, reason="leaked")
        clock.advance(hours=1)

        answers = {
            name: [works(ledger, key, at) for at in (t - US, t, t + US)]
            for name, key in (("old", secret(old)), ("new", secret(new)))
        }

        assert answers == {"old": [True, False, False], "new": [True, False, False]}

    def test_a_user_removal_ends_their_keys_at_its_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor
    ) -> None:
        """The keys a removed user created, grace secrets included, stop at the removal instant;
        other keys go on."""
        bobs = ledger.create_key(bob, name="Bob's sync")
        alices = ledger.create_key(alice, name="Shipping")
        clock.advance(minutes=30)
        bobs_new = ledger.regenerate_key(bob, bobs.key_id, mode="grace")
        t = clock.advance(minutes=30)
        ledger.revoke_user_access(admin, "bob")

        answers = {
            name: [works(ledger, key, at) for at in (t - US, t)]
            for name, key in (
                ("bob old", secret(bobs)),
                ("bob new", secret(bobs_new)),
                ("alice", secret(alices)),
            )
        }

        assert answers == {"bob old": [True, False], "bob new": [True, False], "alice": [True, True]}


class TestKeysAtAnInstant:
    """keys() and valid_keys() list an account as it was at any instant, in creation order."""

    @pytest.fixture
    def timeline(self, ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor) -> dict[str, datetime]:
        """Zeta, Alpha, Mid created an hour apart; Zeta regenerated with grace; Alpha revoked."""
        times = {"t0": clock.now}
        ids = [ledger.create_key(alice, name="Zeta").key_id]
        times["t1"] = clock.advance(hours=1)
        ids.append(ledger.create_key(bob, name="Alpha").key_id)
        times["t2"] = clock.advance(hours=1)
        ids.append(ledger.create_key(alice, name="Mid").key_id)
        times["t3"] = clock.advance(hours=1)
        ledger.regenerate_key(alice, ids[0], mode="grace")
        times["t4"] = clock.advance(hours=1)
        ledger.revoke_key(bob, ids[1])
        times["deadline"] = times["t3"] + GRACE
        clock.advance(3 * GRACE)  # the questions come later: a future instant is refused
        return times

    def test_lists_nothing_before_the_first_creation(
        self, ledger: Ledger, timeline: dict[str, datetime]
    ) -> None:
        """Before the first key was created the account had none."""
        t0 = timeline["t0"]

        keys = ledger.keys("acme", at=t0 - US)

        assert keys == []
        assert ledger.valid_keys("acme", at=t0 - US) == []

    def test_lists_the_keys_that_existed_then_in_creation_order(
        self, ledger: Ledger, timeline: dict[str, datetime]
    ) -> None:
        """At each instant the listing holds the keys created by then, oldest first."""
        listings = {
            name: [k.name for k in ledger.keys("acme", at=timeline[name])]
            for name in ("t0", "t1", "t2", "t4")
        }

        assert listings == {
            "t0": ["Zeta"],
            "t1": ["Zeta", "Alpha"],
            "t2": ["Zeta", "Alpha", "Mid"],
            "t4": ["Zeta", "Alpha", "Mid"],
        }
        positions = [k.created_position for k in ledger.keys("acme", at=timeline["t4"])]
        assert positions == sorted(positions)
        assert positions == [k.created_position for k in ledger.keys("acme")]

    def test_shows_each_keys_status_then(self, ledger: Ledger, timeline: dict[str, datetime]) -> None:
        """A key revoked at t4 is active at t4 - 1 µs and revoked from t4."""
        t4 = timeline["t4"]

        before = ledger.keys("acme", at=t4 - US)
        at_revocation = ledger.keys("acme", at=t4)

        assert [k.status for k in before] == ["active", "active", "active"]
        assert [k.status for k in at_revocation] == ["active", "revoked", "active"]
        assert at_revocation[1].revoked_at == t4

    def test_lists_a_secret_in_grace_only_before_its_deadline(
        self, ledger: Ledger, timeline: dict[str, datetime]
    ) -> None:
        """The retired secret of Zeta is listed with its deadline until 1 µs before it."""
        t3, deadline = timeline["t3"], timeline["deadline"]

        graces = [ledger.keys("acme", at=at)[0].grace for at in (t3 - US, t3, deadline - US, deadline)]

        assert graces[0] == ()
        assert len(graces[1]) == 1
        assert graces[1] == graces[2] == (GraceSecret(hint=graces[1][0].hint, grace_until=deadline),)
        assert graces[3] == ()

    def test_valid_keys_are_the_active_ones_then(self, ledger: Ledger, timeline: dict[str, datetime]) -> None:
        """valid_keys(at=T) lists the keys with a working secret at T, in creation order."""
        valid = {
            name: [k.name for k in ledger.valid_keys("acme", at=timeline[name] + delta)]
            for name, delta in (("t1", timedelta(0)), ("t4", -US), ("t4", timedelta(0)), ("deadline", US))
        }
        before_revocation = [k.name for k in ledger.valid_keys("acme", at=timeline["t4"] - US)]

        assert before_revocation == ["Zeta", "Alpha", "Mid"]
        assert valid["t1"] == ["Zeta", "Alpha"]
        assert valid["t4"] == ["Zeta", "Mid"]
        assert valid["deadline"] == ["Zeta", "Mid"]

    def test_an_instant_in_another_timezone_is_the_same_instant(
        self, ledger: Ledger, timeline: dict[str, datetime]
    ) -> None:
        """An aware instant given in another timezone answers as the same UTC instant."""
        t4 = timeline["t4"]
        elsewhere = t4.astimezone(timezone(timedelta(hours=-5)))

        keys = ledger.keys("acme", at=elsewhere - US)

        assert keys == ledger.keys("acme", at=t4 - US)
        assert [k.status for k in keys] == ["active", "active", "active"]


class TestNaiveInstants:
    """An instant without a timezone is refused, never guessed."""

    def test_verify_refuses_a_naive_instant(self, ledger: Ledger, alice: Actor) -> None:
        """verify(key, at=naive) raises InvalidInput."""
        key = secret(ledger.create_key(alice, name="Shipping"))

        with pytest.raises(InvalidInput) as raised:
            ledger.verify(key, at=datetime(2026, 1, 5, 9, 0))

        assert raised.value.field == "at"

    @pytest.mark.parametrize("query", ["keys", "valid_keys"])
    def test_listings_refuse_a_naive_instant(self, ledger: Ledger, alice: Actor, query: str) -> None:
        """keys(at=naive) and valid_keys(at=naive) raise InvalidInput."""
        ledger.create_key(alice, name="Shipping")

        with pytest.raises(InvalidInput) as raised:
            getattr(ledger, query)("acme", at=datetime(2026, 1, 5, 9, 0))

        assert raised.value.field == "at"

    def test_an_aware_utc_instant_is_accepted(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """The same instant with its timezone answers normally."""
        key = secret(ledger.create_key(alice, name="Shipping"))

        principal = ledger.verify(key, at=clock.now.astimezone(UTC))

        assert principal is not None


class TestFutureInstants:
    """An instant after the ledger's clock is refused: the ledger answers for the past."""

    def test_verify_refuses_a_future_instant(self, ledger: Ledger, clock: ManualClock, alice: Actor) -> None:
        """verify(key, at=now + 1 µs) raises InvalidInput naming at; at=now answers."""
        key = secret(ledger.create_key(alice, name="Shipping"))

        with pytest.raises(InvalidInput, match="in the future") as raised:
            ledger.verify(key, at=clock.now + US)

        assert raised.value.field == "at"
        assert ledger.verify(key, at=clock.now) is not None

    @pytest.mark.parametrize("query", ["keys", "valid_keys"])
    def test_listings_refuse_a_future_instant(
        self, ledger: Ledger, clock: ManualClock, alice: Actor, query: str
    ) -> None:
        """keys(at=future) and valid_keys(at=future) raise InvalidInput naming at."""
        ledger.create_key(alice, name="Shipping")

        with pytest.raises(InvalidInput, match="in the future") as raised:
            getattr(ledger, query)("acme", at=clock.now + timedelta(days=1))

        assert raised.value.field == "at"
