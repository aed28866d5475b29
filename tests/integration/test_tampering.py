"""The integrity check finds stored events edited, deleted, reordered or relabelled
behind the ledger's back, and names the first bad position.

Each test records 30 events over two accounts, closes the ledger, tampers with the
table directly, then opens a fresh ledger on the same store and checks it. A ledger
whose stored events are still readable JSON must open, so that the check can run.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from keyledger import Actor, IntegrityReport, Ledger, Permission
from keyledger.domain import Keyring
from keyledger.domain.keys import checksum, digest
from keyledger.integrity import check_integrity
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoredRow, StoreTables

EVENTS = 30
ACME = Keyring.id_for("acme")
GLOBEX = Keyring.id_for("globex")
CREATED = "keyledger.KeyCreated"
REGENERATED = "keyledger.KeyRegenerated"
REVOKED = "keyledger.KeyRevoked"
VALID_KEYS = "keyledger_valid"
"""The materialised valid-key table (digest first), next to the events."""


@pytest.fixture
def gina() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


@pytest.fixture
def tables(
    durable_url: str,
    store_tables: type[StoreTables],
    clock: ManualClock,
    alice: Actor,
    bob: Actor,
    admin: Actor,
    gina: Actor,
) -> StoreTables:
    """A store holding thirty events over acme and globex, its ledger closed."""
    with Ledger.open(durable_url, clock=clock) as ledger:
        acme = [ledger.create_key(alice, name=f"Acme {i}").key_id for i in range(5)]
        globex = [ledger.create_key(gina, name=f"Globex {i}").key_id for i in range(5)]
        for acme_key, globex_key in zip(acme, globex, strict=True):
            clock.advance(seconds=7)
            ledger.regenerate_key(alice, acme_key, mode="grace")
            ledger.regenerate_key(gina, globex_key, mode="immediate")
        ledger.create_key(bob, name="Bob one")
        ledger.create_key(bob, name="Bob two")
        ledger.revoke_key(alice, acme[4], reason="unused")
        ledger.revoke_key(gina, globex[4])
        ledger.revoke_user_access(admin, "bob")
        ledger.regenerate_key(alice, acme[0], mode="immediate")
        ledger.regenerate_key(gina, globex[0], mode="grace")
        ledger.create_key(alice, name="Acme late")
        ledger.create_key(gina, name="Globex late")
        ledger.revoke_key(alice, acme[1])
    return store_tables(durable_url)


def nth(rows: list[StoredRow], account: object, topic: str, index: int) -> StoredRow:
    """The ``index``-th stored event of ``account`` with ``topic``."""
    return [row for row in rows if row.originator_id == account and row.topic == topic][index]


def next_of_account(rows: list[StoredRow], row: StoredRow) -> StoredRow:
    """The event of the same account that follows ``row``."""
    return next(r for r in rows if r.originator_id == row.originator_id and r.position > row.position)


def checked(url: str, clock: ManualClock) -> tuple[IntegrityReport, int]:
    """Open a fresh ledger on ``url``; its integrity report and position."""
    with Ledger.open(url, clock=clock) as ledger:
        return ledger.check_integrity(), ledger.position


def one_byte_changed(state: bytes, field: str) -> bytes:
    """``state`` with the first character of ``field``'s string value changed to another
    character of the same kind, so the JSON stays valid and the value keeps its shape."""
    marker = f'"{field}":"'.encode()
    at = state.index(marker) + len(marker)
    old = chr(state[at])
    new = ("1" if old != "1" else "2") if old.isdigit() else ("b" if old.lower() != "b" else "c")
    new = new.upper() if old.isupper() else new
    changed = state[:at] + new.encode() + state[at + 1 :]
    assert len(changed) == len(state)
    assert sum(a != b for a, b in zip(changed, state, strict=True)) == 1
    assert json.loads(changed)[field] != json.loads(state)[field]
    return changed


class TestAnUntouchedLedger:
    """Nothing tampered: the check passes over every event."""

    def test_checks_every_event_and_passes(
        self, tables: StoreTables, durable_url: str, clock: ManualClock
    ) -> None:
        """An untouched ledger reports ok with every stored event checked."""
        rows = tables.rows()

        report, position = checked(durable_url, clock)

        assert len(rows) == EVENTS
        assert report.ok, report
        assert report.events_checked == EVENTS == position
        assert report.first_bad_position is None


EDITS: dict[str, Callable[[list[StoredRow]], tuple[StoredRow, str]]] = {
    "a key's name": lambda rows: (nth(rows, ACME, CREATED, 2), "name"),
    "a regeneration's actor": lambda rows: (nth(rows, GLOBEX, REGENERATED, 1), "actor"),
    "a new secret's digest": lambda rows: (nth(rows, ACME, REGENERATED, 3), "digest"),
    "a timestamp": lambda rows: (nth(rows, GLOBEX, CREATED, 3), "timestamp"),
    "the chain itself": lambda rows: (nth(rows, ACME, REVOKED, 0), "chain"),
}


class TestAnEditedEvent:
    """One byte changed inside a stored event's JSON is caught at that event."""

    @pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
    def test_is_reported_at_its_position(
        self,
        tables: StoreTables,
        durable_url: str,
        clock: ManualClock,
        edit: Callable[[list[StoredRow]], tuple[StoredRow, str]],
    ) -> None:
        """Changing one character of a stored field is reported at that event's position."""
        rows = tables.rows()
        target, field = edit(rows)
        tables.set_state(target.position, one_byte_changed(target.state, field))

        report, position = checked(durable_url, clock)

        assert 1 < target.position < EVENTS
        assert not report.ok
        assert report.first_bad_position == target.position
        assert report.events_checked == target.position
        assert report.reason
        assert position == EVENTS


DELETIONS: dict[str, Callable[[list[StoredRow]], StoredRow]] = {
    "a regeneration": lambda rows: nth(rows, ACME, REGENERATED, 1),
    "a key's creation": lambda rows: nth(rows, ACME, CREATED, 1),
}


def delete_chosen(
    tables: StoreTables, choose: Callable[[list[StoredRow]], StoredRow]
) -> tuple[StoredRow, StoredRow]:
    """Delete the chosen event; returns it and the next event of its account."""
    rows = tables.rows()
    target = choose(rows)
    following = next_of_account(rows, target)
    tables.delete(target.position)
    return target, following


class TestADeletedEvent:
    """An event removed from the middle of an account's stream is caught."""

    @pytest.mark.parametrize("choose", DELETIONS.values(), ids=DELETIONS.keys())
    def test_is_reported_at_its_own_place(
        self,
        tables: StoreTables,
        durable_url: str,
        clock: ManualClock,
        choose: Callable[[list[StoredRow]], StoredRow],
    ) -> None:
        """Deleting a middle event is reported where it was (the audit trail still has
        it), before the account's next event, where its chain breaks."""
        target, following = delete_chosen(tables, choose)

        report, _ = checked(durable_url, clock)

        assert target.version > 1
        assert following.position > target.position
        assert not report.ok
        assert report.first_bad_position == target.position
        assert report.reason == "the stored events differ from the audit trail at this position"

    @pytest.mark.parametrize("choose", DELETIONS.values(), ids=DELETIONS.keys())
    def test_is_reported_at_the_accounts_next_event_without_the_views(
        self,
        tables: StoreTables,
        durable_url: str,
        clock: ManualClock,
        choose: Callable[[list[StoredRow]], StoredRow],
    ) -> None:
        """With nothing to compare against (the check given no views), the chain still catches
        the deletion, at the next event of the same account."""
        target, following = delete_chosen(tables, choose)

        with Ledger.open(durable_url, clock=clock, follow=False) as ledger:
            report = check_integrity(ledger._connection.app.recorder, ledger._connection.mapper)

        assert not report.ok
        assert report.first_bad_position == following.position
        assert report.reason == f"version {following.version} follows version {target.version - 1}"


SWAPS: dict[str, Callable[[list[StoredRow]], tuple[StoredRow, StoredRow]]] = {
    "two creations": lambda rows: (nth(rows, ACME, CREATED, 1), nth(rows, ACME, CREATED, 3)),
    "a creation and a regeneration": lambda rows: (
        nth(rows, GLOBEX, CREATED, 2),
        nth(rows, GLOBEX, REGENERATED, 2),
    ),
}


class TestSwappedEvents:
    """Two events of one account whose stored states change places are caught."""

    @pytest.mark.parametrize("choose", SWAPS.values(), ids=SWAPS.keys())
    def test_are_reported_at_the_first(
        self,
        tables: StoreTables,
        durable_url: str,
        clock: ManualClock,
        choose: Callable[[list[StoredRow]], tuple[StoredRow, StoredRow]],
    ) -> None:
        """Swapping the states of two events of one account is reported at the earlier one."""
        first, second = choose(tables.rows())
        tables.set_state(first.position, second.state)
        tables.set_state(second.position, first.state)

        report, _ = checked(durable_url, clock)

        assert first.originator_id == second.originator_id
        assert first.position < second.position
        assert not report.ok
        assert report.first_bad_position == first.position
        assert report.reason


RELABELS: dict[str, Callable[[list[StoredRow]], tuple[StoredRow, str]]] = {
    "a revocation as a restored user": lambda rows: (
        nth(rows, GLOBEX, REVOKED, 0),
        "keyledger.UserAccessRestored",
    ),
    "a regeneration under an unknown name": lambda rows: (
        nth(rows, ACME, REGENERATED, 2),
        "keyledger.KeyDisabled",
    ),
    "a regeneration as a creation": lambda rows: (nth(rows, ACME, REGENERATED, 4), CREATED),
}


class TestARelabelledEvent:
    """An event whose stored topic is replaced is caught."""

    @pytest.mark.parametrize("choose", RELABELS.values(), ids=RELABELS.keys())
    def test_is_reported_at_its_position(
        self,
        tables: StoreTables,
        durable_url: str,
        clock: ManualClock,
        choose: Callable[[list[StoredRow]], tuple[StoredRow, str]],
    ) -> None:
        """Replacing an event's topic is reported at that event's position."""
        target, topic = choose(tables.rows())
        tables.set_topic(target.position, topic)

        report, _ = checked(durable_url, clock)

        assert target.topic != topic
        assert not report.ok
        assert report.first_bad_position == target.position
        assert report.reason


class TestAForgedValidKey:
    """The valid-key table the ledger materialises next to its events is a projection of
    them: a row written there without an event is a forgery the integrity check reports.

    The database is the trust boundary: whoever can write it can grant a key, and
    verification, which reads the valid-key table rather than replaying events, accepts
    such a row until ``check_integrity`` runs and reports it. The check is the detection.
    """

    FORGED_HEAD = "kl_" + "F0rgedF0rgedF0rgedF0rgedF0rged00"
    FORGED = FORGED_HEAD + checksum(FORGED_HEAD)
    """A well-formed key (its checksum right) that no event ever issued."""

    def test_a_digest_no_event_issued_is_reported_by_the_integrity_check(
        self, tables: StoreTables, durable_url: str, clock: ManualClock
    ) -> None:
        """A digest written straight into the valid-key table, next to a real key's row,
        fails the integrity check, which names the valid-key table."""
        tables.copy_first_row(VALID_KEYS, digest(self.FORGED))

        report, position = checked(durable_url, clock)

        assert not report.ok, report
        assert report.reason == "the valid-key table differs from the events in 1 row(s)"
        assert report.first_bad_position is None
        assert report.events_checked == EVENTS == position

    def test_a_digest_no_event_issued_authenticates_until_checked(
        self, tables: StoreTables, durable_url: str, clock: ManualClock
    ) -> None:
        """The forged row verifies, as the real key whose row it copies: verification
        trusts the database it reads (the trust boundary), and leaves the forgery to the
        integrity check."""
        tables.copy_first_row(VALID_KEYS, digest(self.FORGED))

        with Ledger.open(durable_url, clock=clock) as ledger:
            principal = ledger.verify(self.FORGED)
            copied = {} if principal is None else {key.key_id: key for key in ledger.keys(principal.account)}

        assert principal is not None
        assert principal.account in ("acme", "globex")
        assert copied[principal.key_id].status == "active"
        assert copied[principal.key_id].name == principal.name


class TestAMangledStreamId:
    """A stored event whose stream id is no longer an id at all (SQLite keeps it as
    text) is reported at its position, not raised from the check."""

    @pytest.mark.parametrize("durable_url", ["sqlite"], indirect=True)
    def test_is_reported_at_its_position(
        self, tables: StoreTables, durable_url: str, clock: ManualClock
    ) -> None:
        target = nth(tables.rows(), GLOBEX, CREATED, 1)
        with closing(sqlite3.connect(tables.path)) as conn, conn:
            conn.execute(
                "UPDATE stored_events SET originator_id = 'not-a-stream' WHERE rowid = ?", (target.position,)
            )

        report, _ = checked(durable_url, clock)

        assert not report.ok
        assert report.first_bad_position == target.position
        assert report.reason == "event cannot be read"


class TestTheNewestEventDeleted:
    """The store's very last event deleted leaves every chain intact: the audit trail
    still has it, and the check reports it at its place."""

    def test_is_reported_at_its_position(
        self, tables: StoreTables, durable_url: str, clock: ManualClock
    ) -> None:
        newest = tables.rows()[-1]
        tables.delete(newest.position)

        report, _ = checked(durable_url, clock)

        assert not report.ok
        assert report.first_bad_position == newest.position
        assert report.reason == "the stored events differ from the audit trail at this position"
