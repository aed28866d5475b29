"""Issue 6, point 4: the ledger behaves as a small, obviously correct model of the key
lifecycle, step after step, for thousands of random histories.

The model is a few dicts: each key's creator, current secret, and secrets in grace with
their deadlines; the revoked users; the actions recorded. Hypothesis drives it and a
``memory://`` ledger on a manual clock through the same commands (create, regenerate
with and without grace, revoke, remove and restore a user, time passing, landing
exactly on and either side of a grace deadline, sweeping expired grace), and after
every step compares what each secret ever issued verifies as, the key catalogue, and
the actions of the audit trail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from keyledger import (
    AccessRevoked,
    Actor,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    Ledger,
    Permission,
    UserAccessUnchanged,
)
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.reliability.conftest import Sizes, Tally

POINT = 4
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=12)
USERS = ("alice", "bob")
UNKNOWN = "key_0000000000000000"
STEPS = 50


@dataclass
class Key:
    """A key as the model knows it."""

    key_id: str
    creator: str
    current: str
    grace: list[tuple[str, datetime]] = field(default_factory=list)
    revoked: bool = False


def hint(secret: str) -> str:
    return f"kl_...{secret[-4:]}"


def hex_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def deadline(secret: tuple[str, datetime]) -> datetime:
    """Secrets in grace are listed by deadline (in the order retired, for equal deadlines)."""
    return secret[1]


class Model:
    """The lifecycle, in the plainest terms."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}
        self.owner: dict[str, str] = {}
        """Every secret ever issued -> its key id."""
        self.revoked_users: set[str] = set()
        self.actions: list[tuple[str, str | None]] = []

    def principal(self, secret: str, now: datetime) -> tuple[str, datetime | None] | None:
        key = self.keys[self.owner[secret]]
        if key.revoked:
            return None
        if secret == key.current:
            return key.key_id, None
        for retired, until in key.grace:
            if retired == secret and now < until:
                return key.key_id, until
        return None

    def catalogue(self, now: datetime) -> list[tuple[Any, ...]]:
        return [
            (
                key.key_id,
                "revoked" if key.revoked else "active",
                key.creator,
                None if key.revoked else hint(key.current),
                [] if key.revoked else sorted(((hint(s), u) for s, u in key.grace if now < u), key=deadline),
            )
            for key in self.keys.values()
        ]

    def refusal(self, user: str, key_id: str | None = None) -> type[KeyLedgerError] | None:
        """The error a key command by ``user`` (on ``key_id``) must raise, if any."""
        if user in self.revoked_users:
            return AccessRevoked
        if key_id is not None and key_id not in self.keys:
            return KeyNotFound
        if key_id is not None and self.keys[key_id].revoked:
            return KeyAlreadyRevoked
        return None

    def end(self, key: Key) -> None:
        key.revoked, key.grace = True, []


class Lifecycle(RuleBasedStateMachine):
    """Drives a ledger and the model with the same commands and compares them."""

    examples = 0
    comparisons = 0

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.ledger = Ledger.open("memory://", clock=self.clock)
        self.model = Model()
        type(self).examples += 1

    def teardown(self) -> None:
        self.ledger.close()

    def actor(self, user: str) -> Actor:
        permissions = set(Permission) if user == "root" else {Permission.INTEGRATION}
        return Actor(user_id=user, account="acme", permissions=permissions)

    def pick(self, index: int) -> str:
        keys = list(self.model.keys)
        return keys[index % len(keys)] if keys and index >= 0 else UNKNOWN

    def expect(self, refusal: type[KeyLedgerError] | None, command: Any) -> Any:
        """Run ``command``; it must raise ``refusal`` exactly, or succeed if ``None``."""
        raised: KeyLedgerError | None = None
        try:
            result = command()
        except KeyLedgerError as error:
            raised, result = error, None
        assert type(raised) is (refusal or type(None)), f"{raised!r} raised, {refusal} expected"
        return result

    @rule(user=st.sampled_from(USERS))
    def create(self, user: str) -> None:
        issued = self.expect(
            self.model.refusal(user), lambda: self.ledger.create_key(self.actor(user), name=f"{user} key")
        )
        if issued is not None:
            secret = issued.secret.get_secret_value()
            self.model.keys[issued.key_id] = Key(issued.key_id, user, secret)
            self.model.owner[secret] = issued.key_id
            self.model.actions.append(("KeyCreated", issued.key_id))

    @rule(user=st.sampled_from(USERS), index=st.integers(-1, 20), grace=st.booleans())
    def regenerate(self, user: str, index: int, grace: bool) -> None:
        key_id = self.pick(index)
        issued = self.expect(
            self.model.refusal(user, key_id),
            lambda: self.ledger.regenerate_key(self.actor(user), key_id, grace=grace),
        )
        if issued is not None:
            key, now = self.model.keys[key_id], self.clock()
            if grace:
                key.grace.append((key.current, now + GRACE))
                assert issued.previous_valid_until == now + GRACE
            else:
                key.grace = []
                assert issued.previous_valid_until is None
            key.current = issued.secret.get_secret_value()
            self.model.owner[key.current] = key_id
            self.model.actions.append(("KeyRegenerated", key_id))

    @rule(user=st.sampled_from(USERS), index=st.integers(-1, 20))
    def revoke(self, user: str, index: int) -> None:
        key_id = self.pick(index)
        done = self.expect(
            self.model.refusal(user, key_id), lambda: self.ledger.revoke_key(self.actor(user), key_id) or True
        )
        if done:
            self.model.end(self.model.keys[key_id])
            self.model.actions.append(("KeyRevoked", key_id))

    @rule(user=st.sampled_from(USERS))
    def revoke_user(self, user: str) -> None:
        refusal = UserAccessUnchanged if user in self.model.revoked_users else None
        removed = self.expect(refusal, lambda: self.ledger.revoke_user_access(self.actor("root"), user))
        if removed is not None:
            expected = [k.key_id for k in self.model.keys.values() if k.creator == user and not k.revoked]
            assert removed == expected
            for key_id in expected:
                self.model.end(self.model.keys[key_id])
            self.model.revoked_users.add(user)
            self.model.actions.append(("UserAccessRevoked", user))

    @rule(user=st.sampled_from(USERS))
    def restore_user(self, user: str) -> None:
        refusal = None if user in self.model.revoked_users else UserAccessUnchanged
        done = self.expect(refusal, lambda: self.ledger.restore_user_access(self.actor("root"), user) or True)
        if done:
            self.model.revoked_users.discard(user)
            self.model.actions.append(("UserAccessRestored", user))

    @rule(seconds=st.integers(1, 3 * 24 * 3600))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule(index=st.integers(0, 20), offset=st.sampled_from([-1, 0, 1]))
    def time_reaches_a_deadline(self, index: int, offset: int) -> None:
        now = self.clock()
        deadlines = sorted({u for k in self.model.keys.values() for _, u in k.grace if u > now})
        if deadlines:
            target = deadlines[index % len(deadlines)] + timedelta(microseconds=offset)
            if target > now:
                self.clock.now = target

    @rule()
    def sweep(self) -> None:
        now = self.clock()
        passed = sorted(
            (until, key.key_id, hex_digest(secret), secret)
            for key in self.model.keys.values()
            for secret, until in key.grace
            if until <= now
        )

        count = self.ledger.expire_grace()

        assert count == len(passed)
        for _, key_id, _, secret in passed:
            key = self.model.keys[key_id]
            key.grace = [(s, u) for s, u in key.grace if s != secret]
            self.model.actions.append(("GraceExpired", key_id))

    @invariant()
    def the_ledger_answers_as_the_model(self) -> None:
        now, ledger, model = self.clock(), self.ledger, self.model
        type(self).comparisons += 1

        for secret in model.owner:
            principal = ledger.verify(secret)
            got = None if principal is None else (principal.key_id, principal.grace_until)
            assert got == model.principal(secret, now), f"{hint(secret)} at {now}"
        listed = [
            (k.key_id, k.status, k.created_by, k.hint, [(g.hint, g.grace_until) for g in k.grace])
            for k in ledger.keys("acme")
        ]
        assert listed == model.catalogue(now)
        actions = [(e.action, e.key_id or e.details.get("user_id")) for e in ledger.audit(limit=10_000)]
        assert actions == model.actions


class TestTheLedgerFollowsTheModel:
    """Random histories of the lifecycle give the ledger's answers and the model's alike."""

    def test_verification_catalogue_and_audit_match_after_every_step(
        self, sizes: Sizes, tally: Tally
    ) -> None:
        """After every step of every example, each secret ever issued verifies as the model
        says, the catalogue lists the same keys, states and grace, and the audit the same actions."""
        Lifecycle.examples = Lifecycle.comparisons = 0
        agreed = False

        try:
            run_state_machine_as_test(
                Lifecycle,
                settings=settings(
                    max_examples=sizes.model_examples,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
            agreed = True
        finally:
            examples, comparisons = Lifecycle.examples, Lifecycle.comparisons
            tally(POINT, "model equivalence: histories run", "memory", examples, examples - (not agreed))
            tally(
                POINT,
                "model equivalence: comparisons after a step",
                "memory",
                comparisons,
                comparisons - (not agreed),
            )

        assert examples >= sizes.model_examples
        assert comparisons > examples
