"""Issue 6, point 4: the ledger behaves as a small, obviously correct model of the key
lifecycle, step after step, for thousands of random histories.

The model is a few dicts: each key's creator, current secret, and secrets in grace with
their deadlines; who received each secret; the revoked users; the actions recorded.
Removing a user removes every key they created or hold a working secret of (current, or
in grace before its deadline). Hypothesis drives it and a ledger on a manual clock
through the same commands (create, regenerate with and without grace, revoke, remove
and restore a user, time passing, landing exactly on and either side of a grace
deadline, sweeping expired grace), and after every step compares what each secret ever
issued verifies as, the key catalogue, and the actions of the audit trail; and that no
secret a revoked user created or received verifies.

The ledger is a ``memory://`` one, then a SQLite file (a new one per example), whose
views are SQL tables written in the command's own transaction and read back when the
ledger is opened again (a rule only the SQLite run has): the same answers must come
from both. A SQLite example pays a commit per command, so it runs a quarter of the
memory examples (at least :data:`MIN_SQLITE_EXAMPLES`), which keeps ``make test`` fast.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
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
SQLITE_SHARE = 4
"""A SQLite example runs one in this many of the memory examples."""
MIN_SQLITE_EXAMPLES = 20


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
        self.recipient: dict[str, str] = {}
        """Every secret ever issued -> the user it was issued to (creator or regenerator)."""
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

    def working(self, key: Key, now: datetime) -> list[str]:
        """The key's secrets that work at ``now``."""
        if key.revoked:
            return []
        return [key.current, *(s for s, until in key.grace if now < until)]

    def usable_by(self, user: str, now: datetime) -> list[str]:
        """The keys ``user`` could still use at ``now``, in creation order."""
        return [
            key.key_id
            for key in self.keys.values()
            if not key.revoked
            and (key.creator == user or any(self.recipient[s] == user for s in self.working(key, now)))
        ]


class Lifecycle(RuleBasedStateMachine):
    """Drives a ledger and the model with the same commands and compares them."""

    store = "memory"
    examples = 0
    comparisons = 0

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.url = self.new_store()
        self.ledger = Ledger.open(self.url, clock=self.clock)
        self.model = Model()
        type(self).examples += 1

    @staticmethod
    def examples_to_run(sizes: Sizes) -> int:
        return sizes.model_examples

    def new_store(self) -> str:
        """The URL of a new, empty store for this example."""
        return "memory://"

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
            self.model.recipient[secret] = user
            self.model.actions.append(("KeyCreated", issued.key_id))

    @rule(user=st.sampled_from(USERS), index=st.integers(-1, 20), grace=st.booleans())
    def regenerate(self, user: str, index: int, grace: bool) -> None:
        key_id = self.pick(index)
        issued = self.expect(
            self.model.refusal(user, key_id),
            lambda: self.ledger.regenerate_key(
                self.actor(user), key_id, mode="grace" if grace else "immediate"
            ),
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
            self.model.recipient[key.current] = user
            self.model.actions.append(("KeyRegenerated", key_id))

    @rule(user=st.sampled_from(USERS), index=st.integers(0, 20), grace=st.booleans())
    def regenerate_a_key_another_user_holds(self, user: str, index: int, grace: bool) -> None:
        """Regenerate a key whose current secret another user received, so that user's
        secret goes into grace (or ends) in a key they may not have created."""
        keys, recipient = list(self.model.keys.values()), self.model.recipient
        held = [n for n, key in enumerate(keys) if not key.revoked and recipient[key.current] != user]
        if held:
            self.regenerate(user, held[index % len(held)], grace)

    @rule(user=st.sampled_from(USERS), index=st.integers(-1, 20))
    def revoke(self, user: str, index: int) -> None:
        key_id = self.pick(index)
        done = self.expect(
            self.model.refusal(user, key_id), lambda: self.ledger.revoke_key(self.actor(user), key_id) or True
        )
        if done:
            self.model.end(self.model.keys[key_id])
            self.model.actions.append(("KeyRevoked", key_id))

    @rule(user=st.sampled_from(USERS), index=st.integers(0, 20), offset=st.sampled_from([None, -1, 0]))
    def revoke_user(self, user: str, index: int, offset: int | None) -> None:
        """Remove a user now or, given an ``offset``, one microsecond before or exactly at
        the deadline of a secret in grace they received in a key they did not create (the
        boundary of the cascade's rule)."""
        now, model = self.clock(), self.model
        deadlines = sorted(
            {
                until
                for key in model.keys.values()
                if not key.revoked and key.creator != user
                for secret, until in key.grace
                if model.recipient[secret] == user and until > now
            }
        )
        if offset is not None and deadlines:
            target = deadlines[index % len(deadlines)] + timedelta(microseconds=offset)
            if target > now:
                self.clock.now = target
        refusal = UserAccessUnchanged if user in model.revoked_users else None
        removed = self.expect(refusal, lambda: self.ledger.revoke_user_access(self.actor("root"), user))
        if removed is not None:
            expected = model.usable_by(user, self.clock())
            assert removed == expected
            for key_id in expected:
                model.end(model.keys[key_id])
            model.revoked_users.add(user)
            model.actions.append(("UserAccessRevoked", user))

    @rule(user=st.sampled_from(USERS))
    def restore_user(self, user: str) -> None:
        refusal = None if user in self.model.revoked_users else UserAccessUnchanged
        done = self.expect(refusal, lambda: self.ledger.restore_user_access(self.actor("root"), user) or True)
        if done:
            self.model.revoked_users.discard(user)
            self.model.actions.append(("UserAccessRestored", user))

    @rule(seconds=st.one_of(st.integers(1, 3600), st.integers(1, 3 * 24 * 3600)))
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

    @invariant()
    def no_revoked_user_holds_a_working_key(self) -> None:
        """The cascade's invariant, whatever the model says: no secret verifies whose key's
        creator or whose own recipient is a revoked user, and the report counts none."""
        now, ledger, model = self.clock(), self.ledger, self.model

        for secret, key_id in model.owner.items():
            if ledger.verify(secret) is not None:
                creator, recipient = model.keys[key_id].creator, model.recipient[secret]
                assert creator not in model.revoked_users, f"{hint(secret)} of revoked creator {creator}"
                assert recipient not in model.revoked_users, f"{hint(secret)} issued to revoked {recipient}"
        assert [user for user in model.revoked_users if model.usable_by(user, now)] == []
        assert ledger.report("acme", now).working_keys_of_revoked_creators == 0


class SQLiteLifecycle(Lifecycle):
    """The same lifecycle on a SQLite file of its own per example, removed at teardown
    (hypothesis runs every example in one call of the test, so a function-scoped
    ``tmp_path`` would be shared by all of them)."""

    store = "sqlite"
    directory: Path | None = None

    @staticmethod
    def examples_to_run(sizes: Sizes) -> int:
        return max(MIN_SQLITE_EXAMPLES, sizes.model_examples // SQLITE_SHARE)

    def new_store(self) -> str:
        self.directory = Path(tempfile.mkdtemp(prefix="keyledger-model-"))
        return f"sqlite:///{self.directory / 'keyledger.db'}"

    @rule()
    def reopen(self) -> None:
        """Close the ledger and open its file again: it answers from what it stored."""
        self.ledger.close()
        self.ledger = Ledger.open(self.url, clock=self.clock)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)


class TestTheLedgerFollowsTheModel:
    """Random histories of the lifecycle give the ledger's answers and the model's alike."""

    @pytest.mark.parametrize("machine", [Lifecycle, SQLiteLifecycle], ids=["memory", "sqlite"])
    def test_verification_catalogue_and_audit_match_after_every_step(
        self, machine: type[Lifecycle], sizes: Sizes, tally: Tally
    ) -> None:
        """After every step of every example, each secret ever issued verifies as the model
        says, the catalogue lists the same keys, states and grace, and the audit the same actions."""
        machine.examples = machine.comparisons = 0
        wanted = machine.examples_to_run(sizes)
        agreed = False

        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=wanted,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
            agreed = True
        finally:
            examples, comparisons = machine.examples, machine.comparisons
            tally(POINT, "model equivalence: histories run", machine.store, examples, examples - (not agreed))
            tally(
                POINT,
                "model equivalence: comparisons after a step",
                machine.store,
                comparisons,
                comparisons - (not agreed),
            )

        assert examples >= wanted
        assert comparisons > examples
