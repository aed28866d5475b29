"""A ledger on a durable store answers the same after it is closed and reopened."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from keyledger import Actor, AuditEntry, Ledger, Permission, Principal
from keyledger.adapters.driven.stores import parse_url
from keyledger.application import KeyringApplication
from keyledger.domain import Keyring, KeyringSnapshot
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoreTables

ACCOUNTS = ("acme", "globex")
SNAPSHOT_INTERVAL = 100
REGENERATIONS = 105


@pytest.fixture
def gina() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


@dataclass
class History:
    """What a ledger answered before it was closed."""

    secrets: list[str]
    keys: dict[str, list[dict[str, Any]]]
    verified: list[Principal | None]
    audit: list[AuditEntry]
    position: int


def catalogue(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    """Each account's keys as listed, without when they were last used: usage is noted
    outside the ledger and written behind verification, so it is not history."""
    return {
        account: [key.model_dump(exclude={"last_used_at"}) for key in ledger.keys(account)]
        for account in ACCOUNTS
    }


def answers(ledger: Ledger, secrets: list[str]) -> History:
    """Everything a caller can ask the ledger about its keys and history."""
    verified = [ledger.verify(secret) for secret in secrets]
    ledger.sync()  # the last-use times the verifications noted, written as a close would
    return History(
        secrets=secrets,
        keys=catalogue(ledger),
        verified=verified,
        audit=ledger.audit(limit=10_000),
        position=ledger.position,
    )


def record_history(
    ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor, gina: Actor
) -> list[str]:
    """Keys in two accounts, regenerated with grace and at once, revoked, and a user
    removed; returns every secret ever issued."""
    issued = [
        ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation"),
        ledger.create_key(alice, name="Billing", application="Stripe"),
        ledger.create_key(alice, name="Reports"),
        ledger.create_key(bob, name="Bob's sync", purpose="nightly\nexport"),
        ledger.create_key(bob, name="Bob's spare"),
        ledger.create_key(gina, name="Globex CRM", application="Salesforce"),
        ledger.create_key(gina, name="Globex old"),
    ]
    shipping, billing, reports, bob_sync, _, crm, old = (key.key_id for key in issued)
    clock.advance(minutes=5)
    issued.append(ledger.regenerate_key(alice, shipping, mode="grace"))
    issued.append(ledger.regenerate_key(alice, billing, mode="immediate"))
    ledger.revoke_key(alice, reports, reason="leaked in a ticket")
    issued.append(ledger.regenerate_key(bob, bob_sync, mode="grace"))
    clock.advance(minutes=1)
    ledger.revoke_user_access(admin, "bob")
    issued.append(ledger.regenerate_key(gina, crm, mode="grace"))
    ledger.revoke_key(gina, old)
    clock.advance(minutes=1)
    return [key.secret.get_secret_value() for key in issued]


class TestReopening:
    """Closing and reopening a ledger changes none of its answers."""

    @pytest.fixture
    def before(
        self,
        durable_url: str,
        clock: ManualClock,
        alice: Actor,
        bob: Actor,
        admin: Actor,
        gina: Actor,
    ) -> History:
        with Ledger.open(durable_url, clock=clock) as ledger:
            secrets = record_history(ledger, clock, alice, bob, admin, gina)
            return answers(ledger, secrets)

    @pytest.fixture
    def reopened(
        self, durable_url: str, clock: ManualClock, before: History
    ) -> Iterator[Callable[[], Ledger]]:
        opened: list[Ledger] = []

        def _open() -> Ledger:
            ledger = Ledger.open(durable_url, clock=clock)
            opened.append(ledger)
            return ledger

        yield _open
        for ledger in opened:
            ledger.close()

    def test_lists_the_same_keys(self, before: History, reopened: Callable[[], Ledger]) -> None:
        """A reopened ledger lists the same keys of each account."""
        ledger = reopened()

        keys = catalogue(ledger)

        assert keys == before.keys
        assert [k["status"] for k in keys["acme"]] == ["active", "active", "revoked", "revoked", "revoked"]
        assert [len(k["grace"]) for k in keys["acme"]] == [1, 0, 0, 0, 0]
        assert [k["status"] for k in keys["globex"]] == ["active", "revoked"]

    def test_verifies_every_secret_ever_issued_the_same(
        self, before: History, reopened: Callable[[], Ledger]
    ) -> None:
        """A reopened ledger accepts exactly the secrets it accepted before, as the same principals."""
        ledger = reopened()

        verified = [ledger.verify(secret) for secret in before.secrets]

        assert verified == before.verified
        working = [principal is not None for principal in verified]
        # Shipping (old in grace, new), Billing (new only), Globex CRM (old in grace, new).
        assert working == [True, False, False, False, False, True, False, True, True, False, True]
        in_grace = [p for p in verified if p is not None and p.grace_until is not None]
        assert [p.name for p in in_grace] == ["Shipping", "Globex CRM"]

    def test_keeps_the_same_audit_trail(self, before: History, reopened: Callable[[], Ledger]) -> None:
        """A reopened ledger shows the same audit entries, in the same order."""
        ledger = reopened()

        audit = ledger.audit(limit=10_000)

        assert audit == before.audit
        assert len(audit) == 14
        assert [e.position for e in audit] == list(range(1, 15))

    def test_keeps_its_position_and_integrity(self, before: History, reopened: Callable[[], Ledger]) -> None:
        """A reopened ledger resumes at the same position with an intact hash chain."""
        ledger = reopened()

        report = ledger.check_integrity()

        assert ledger.position == before.position == 14
        assert report.ok, report
        assert report.events_checked == 14

    def test_reopens_twice_to_the_same_answers(self, before: History, reopened: Callable[[], Ledger]) -> None:
        """Opening the same store twice in a row gives the same answers both times."""
        first = reopened()
        second = reopened()

        assert answers(first, before.secrets) == answers(second, before.secrets) == before


class TestReopeningAnAccountPastItsSnapshot:
    """An account with more events than the snapshot interval reloads from its snapshot."""

    @pytest.fixture
    def long_history(
        self, durable_url: str, clock: ManualClock, alice: Actor, bob: Actor
    ) -> tuple[str, list[str], list[str]]:
        """Bob's key, then Alice's key regenerated 105 times (every fifth at once, the
        rest with grace); returns its key id, its secrets, and Bob's key id and secret."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            bobs = ledger.create_key(bob, name="Bob's key")
            issued = [ledger.create_key(alice, name="Busy key")]
            for turn in range(REGENERATIONS):
                clock.advance(seconds=1)
                issued.append(
                    ledger.regenerate_key(
                        alice, issued[0].key_id, mode="grace" if turn % 5 != 0 else "immediate"
                    )
                )
        return (
            issued[0].key_id,
            [key.secret.get_secret_value() for key in issued],
            [bobs.key_id, bobs.secret.get_secret_value()],
        )

    def test_a_snapshot_is_stored(
        self,
        durable_url: str,
        store_tables: type[StoreTables],
        long_history: tuple[str, list[str], list[str]],
    ) -> None:
        """Past the interval the account's Keyring is snapshotted."""
        tables = store_tables(durable_url)

        assert tables.snapshot_versions("acme") == [SNAPSHOT_INTERVAL]
        assert tables.stream_versions("acme") == list(range(1, REGENERATIONS + 3))

    def test_the_snapshot_holds_the_state_the_events_give(
        self,
        durable_url: str,
        store_tables: type[StoreTables],
        long_history: tuple[str, list[str], list[str]],
    ) -> None:
        """The snapshot, taken from the Keyring just saved, equals the Keyring replayed
        from the events alone (no snapshot) at the same version."""
        [stored] = store_tables(durable_url).snapshot_states()
        replayed = KeyringApplication(env={**parse_url(durable_url).env, "IS_SNAPSHOTTING_ENABLED": "n"})
        try:
            keyring = replayed.repository.get(Keyring.id_for("acme"), version=SNAPSHOT_INTERVAL)
            expected = KeyringSnapshot.take(keyring).model_dump(mode="json")["state"]
        finally:
            replayed.close()

        assert json.loads(stored)["state"] == expected

    def test_a_save_that_crosses_the_interval_is_snapshotted_at_its_last_version(
        self, durable_url: str, store_tables: type[StoreTables], clock: ManualClock, alice: Actor
    ) -> None:
        """One sweep records a GraceExpired per secret in one save; when those cross a
        multiple of the interval, the snapshot is of the Keyring after all of them."""
        regenerations = SNAPSHOT_INTERVAL - 3  # versions 2..98, each leaving a secret in grace
        with Ledger.open(durable_url, clock=clock) as ledger:
            key = ledger.create_key(alice, name="Busy key")
            for _ in range(regenerations):
                newest = ledger.regenerate_key(alice, key.key_id, mode="grace")
            clock.advance(seconds=13 * 3600)
            expired = ledger.expire_grace()
        with Ledger.open(durable_url, clock=clock) as reopened:
            listed = reopened.key("acme", key.key_id)
            works = reopened.verify(newest.secret.get_secret_value())
            report = reopened.check_integrity()

        assert expired == regenerations
        assert store_tables(durable_url).snapshot_versions("acme") == [1 + 2 * regenerations]
        assert listed is not None
        assert listed.grace == ()
        assert works is not None
        assert report.ok, report

    def test_verifies_after_reopening(
        self, durable_url: str, clock: ManualClock, long_history: tuple[str, list[str], list[str]]
    ) -> None:
        """After reopening, the current secret and the secrets in grace verify; older ones do not."""
        key_id, secrets, _ = long_history

        with Ledger.open(durable_url, clock=clock) as ledger:
            verified = [ledger.verify(secret) for secret in secrets]

        working = [index for index, principal in enumerate(verified) if principal is not None]
        # Turn 100 regenerated at once; turns 101..104 kept grace.
        assert working == [101, 102, 103, 104, 105]
        assert {p.key_id for p in verified if p is not None} == {key_id}

    def test_an_immediate_regeneration_after_reopening_ends_every_secret_in_grace(
        self,
        durable_url: str,
        clock: ManualClock,
        alice: Actor,
        long_history: tuple[str, list[str], list[str]],
    ) -> None:
        """A Keyring loaded from its snapshot still knows the secrets in grace it must end."""
        key_id, secrets, _ = long_history

        with Ledger.open(durable_url, clock=clock) as ledger:
            newest = ledger.regenerate_key(alice, key_id, mode="immediate")
            verified_here = [ledger.verify(secret) for secret in secrets]
            key = ledger.key("acme", key_id)
        with Ledger.open(durable_url, clock=clock) as fresh:
            verified_fresh = [fresh.verify(secret) for secret in secrets]
            works = fresh.verify(newest.secret.get_secret_value())
            report = fresh.check_integrity()

        assert verified_here == verified_fresh == [None] * len(secrets)
        assert works is not None
        assert works.key_id == key_id
        assert key is not None
        assert key.grace == ()
        assert report.ok, report
        assert report.events_checked == REGENERATIONS + 3

    def test_commands_after_reopening_use_the_snapshotted_state(
        self,
        durable_url: str,
        clock: ManualClock,
        alice: Actor,
        admin: Actor,
        long_history: tuple[str, list[str], list[str]],
    ) -> None:
        """Removing a user after reopening removes the key they created before the snapshot."""
        _, _, (bobs_key, bobs_secret) = long_history

        with Ledger.open(durable_url, clock=clock) as ledger:
            removed = ledger.revoke_user_access(admin, "bob")
            created = ledger.create_key(alice, name="After reopening")
        with Ledger.open(durable_url, clock=clock) as fresh:
            bob_verifies = fresh.verify(bobs_secret)
            new_verifies = fresh.verify(created.secret.get_secret_value())
            report = fresh.check_integrity()
            position = fresh.position

        assert removed == [bobs_key]
        assert bob_verifies is None
        assert new_verifies is not None
        assert new_verifies.name == "After reopening"
        assert report.ok, report
        assert position == REGENERATIONS + 4


class TestClosing:
    """Closing a ledger releases everything it started."""

    @pytest.mark.parametrize("work", [False, True], ids=["at once", "after a command"])
    def test_leaves_none_of_its_threads_running(
        self,
        durable_url: str,
        clock: ManualClock,
        alice: Actor,
        caplog: pytest.LogCaptureFixture,
        work: bool,
    ) -> None:
        """After close returns (at once, as a CLI command does, or after a command), no thread
        the ledger started is still running, and nothing was logged as failed."""
        before = set(threading.enumerate())
        ledger = Ledger.open(durable_url, clock=clock)
        if work:
            ledger.create_key(alice, name="Short-lived")

        ledger.close()

        left = sorted(t.name for t in set(threading.enumerate()) - before if t.is_alive())
        assert left == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
