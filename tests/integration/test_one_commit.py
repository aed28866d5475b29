"""A command's events and its views are written in one transaction (SQLite, PostgreSQL).

The recorder calls the ledger back inside the transaction that inserts the events, and
the views take them (with any events of other processes they had not taken yet) before
the commit: one durable commit per command, and all or nothing. These tests show the
"nothing": a view write that fails leaves no event behind and is not retried as a
version conflict; and that views found behind are brought to the head by the command.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.persistence import OperationalError

from keyledger import Actor, Ledger, StoreUnavailable
from keyledger.adapters.driven.sqlite_views import SQLiteRowReader
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoreTables

VIEW_TABLES = (
    "keyledger_valid",
    "keyledger_secrets",
    "keyledger_keys",
    "keyledger_audit",
    "keyledger_audit_keys",
)


def execute(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql).fetchall()


def count(path: Path, table: str) -> int:
    ((n,),) = execute(path, f"SELECT count(*) FROM {table}")
    return int(n)


def views_position(path: Path) -> int:
    rows = execute(path, "SELECT notification_id FROM tracking WHERE application_name = 'keyledger_views'")
    return int(rows[0][0]) if rows else 0


def empty_views(path: Path) -> None:
    """Drop every view row and the views' position, as if they had never been written."""
    for table in VIEW_TABLES:
        execute(path, f"DELETE FROM {table}")
    execute(path, "DELETE FROM tracking WHERE application_name = 'keyledger_views'")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "one-commit.db"


@pytest.fixture
def ledger(path: Path, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as opened:
        yield opened


def test_the_views_are_at_the_commands_position_when_it_returns(
    ledger: Ledger, path: Path, alice: Actor
) -> None:
    issued = ledger.create_key(alice, name="ci")
    ledger.regenerate_key(alice, issued.key_id, mode="grace")
    assert views_position(path) == count(path, "stored_events") == 2
    assert count(path, "keyledger_audit") == 2
    assert ledger.verify(issued.secret.get_secret_value()) is not None


def test_a_view_write_that_fails_records_no_event_and_is_not_retried(
    ledger: Ledger, path: Path, alice: Actor
) -> None:
    kept = ledger.create_key(alice, name="kept")
    execute(
        path,
        "CREATE TRIGGER refuse BEFORE INSERT ON keyledger_audit BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    with pytest.raises(StoreUnavailable) as raised:
        ledger.create_key(alice, name="lost")
    assert "refused" not in str(raised.value)
    assert count(path, "stored_events") == 1
    assert views_position(path) == 1
    assert [k.name for k in ledger.keys("acme")] == ["kept"]
    execute(path, "DROP TRIGGER refuse")
    again = ledger.create_key(alice, name="again")
    assert count(path, "stored_events") == views_position(path) == 2
    assert ledger.verify(again.secret.get_secret_value()) is not None
    assert ledger.verify(kept.secret.get_secret_value()) is not None


def test_a_command_brings_views_found_behind_to_the_head_in_its_commit(
    ledger: Ledger, path: Path, alice: Actor, bob: Actor
) -> None:
    first = ledger.create_key(alice, name="first")
    ledger.create_key(bob, name="second")
    empty_views(path)
    third = ledger.create_key(alice, name="third")
    assert views_position(path) == 3
    assert count(path, "keyledger_audit") == 3
    assert [k.name for k in ledger.keys("acme")] == ["first", "second", "third"]
    audit = [(e.position, e.action, e.chain) for e in ledger.audit("acme")]
    ledger.rebuild_projections()
    assert [(e.position, e.action, e.chain) for e in ledger.audit("acme")] == audit
    for issued in (first, third):
        assert ledger.verify(issued.secret.get_secret_value()) is not None


def test_views_more_than_a_page_behind_are_caught_up_after_the_commit(
    ledger: Ledger, path: Path, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        ledger.create_key(alice, name=f"key {n}")
    empty_views(path)
    monkeypatch.setattr("keyledger.follower.PAGE_SIZE", 2)
    ledger.create_key(alice, name="last")
    assert views_position(path) == count(path, "keyledger_audit") == 5
    assert len(ledger.keys("acme")) == 5


def test_two_ledgers_on_one_file_each_commit_their_views_with_their_events(
    path: Path, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    with (
        Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as one,
        Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as other,
    ):
        kept = one.create_key(alice, name="one")
        other.create_key(bob, name="other")
        one.revoke_key(alice, kept.key_id)
        assert views_position(path) == count(path, "keyledger_audit") == count(path, "stored_events") == 3
        assert one.verify(kept.secret.get_secret_value()) is None
        other.sync()
        assert other.verify(kept.secret.get_secret_value()) is None
        assert [k.status for k in other.keys("acme")] == ["revoked", "active"]


def test_a_command_returns_knowing_every_event_committed_before_it(
    path: Path, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    """Another ledger's key, committed before this ledger's command, verifies here as soon
    as the command returns, with no follower running: the command's views took it."""
    with (
        Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as one,
        Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as other,
    ):
        first = one.create_key(alice, name="one")
        assert other.verify(first.secret.get_secret_value()) is None
        other.create_key(bob, name="other")
        assert other.verify(first.secret.get_secret_value()) is not None


def test_a_command_that_follows_on_reads_no_more_events_after_its_commit(
    path: Path, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's own events, applied in its transaction, bring this process's index
    to its position: nothing is read after the commit (newer events of other processes
    are the followers' to apply)."""
    reads: list[int] = []
    original = SQLiteRowReader.__call__

    def counted(self: SQLiteRowReader, after: int, limit: int) -> Any:
        reads.append(after)
        return original(self, after, limit)

    monkeypatch.setattr(SQLiteRowReader, "__call__", counted)
    with Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as ledger:
        ledger.create_key(alice, name="first")
        reads.clear()
        second = ledger.create_key(alice, name="second")
        assert reads == []
        assert ledger.verify(second.secret.get_secret_value()) is not None
        assert [k.name for k in ledger.keys("acme")] == ["first", "second"]


class TestOnPostgreSQL:
    """PostgreSQL too: the views are written in the transaction that inserts the events."""

    def test_a_view_write_that_fails_records_no_event(
        self, postgres_url: str, store_tables: type[StoreTables], clock: ManualClock, alice: Actor
    ) -> None:
        tables = store_tables(postgres_url)
        with Ledger.open(postgres_url, clock=clock, follow=False) as ledger:
            ledger.create_key(alice, name="kept")
            tables._execute(
                f"ALTER TABLE {tables.schema}.keyledger_audit ADD CONSTRAINT refuse "
                "CHECK (key_name IS DISTINCT FROM 'lost') NOT VALID"
            )
            with pytest.raises(StoreUnavailable):
                ledger.create_key(alice, name="lost")
            assert len(tables.rows()) == 1
            assert [k.name for k in ledger.keys("acme")] == ["kept"]
            tables._execute(f"ALTER TABLE {tables.schema}.keyledger_audit DROP CONSTRAINT refuse")
            again = ledger.create_key(alice, name="again")
            assert [row.position for row in tables.rows()] == [e.position for e in ledger.audit("acme")]
            assert ledger.verify(again.secret.get_secret_value()) is not None
            assert ledger.check_integrity().ok


def test_an_event_the_views_cannot_take_fails_the_command_cleanly(
    ledger: Ledger, path: Path, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.create_key(alice, name="kept")

    def broken(*_: object) -> None:
        raise ValueError("a projection bug")

    monkeypatch.setattr("keyledger.adapters.driven.unit_of_work.project", broken)
    with pytest.raises(StoreUnavailable) as raised:
        ledger.create_key(alice, name="lost")
    assert "a projection bug" not in str(raised.value)
    assert count(path, "stored_events") == views_position(path) == 1


def test_a_command_whose_events_committed_returns_its_secret_when_the_views_fail_after(
    path: Path, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the commit never loses the new secret: the command returns it, it
    works once the views have caught up, and nothing answers from the stale index meanwhile."""
    with Ledger.open(f"sqlite:///{path}", clock=clock, follow=False) as ledger:
        store: Any = ledger._connection.views
        # As if another writer held the views: they are written after the commit.
        monkeypatch.setattr(store, "try_lock_in", lambda cursor: False)

        def failing_write(*_: object, **__: object) -> bool:
            raise OperationalError("disk I/O error")

        monkeypatch.setattr(store, "write", failing_write)

        issued = ledger.create_key(alice, name="committed")

        secret = issued.secret.get_secret_value()
        assert count(path, "stored_events") == 1
        assert views_position(path) == 0
        assert ledger.verify(secret) is None
        assert not ledger.health().ok
        monkeypatch.undo()
        time.sleep(0.06)  # a ledger that does not follow retries a failed catch-up after 50 ms
        principal = ledger.verify(secret)
        assert principal is not None
        assert principal.key_id == issued.key_id
        assert views_position(path) == 1
        assert ledger.health().ok
        assert [k.name for k in ledger.keys("acme")] == ["committed"]


def test_a_revocation_whose_views_fail_after_the_commit_is_never_answered_from_the_stale_index(
    path: Path, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a following ledger's index lacks a revocation it committed, the revoked key
    (and every other) is refused until the follower has read past it."""
    with Ledger.open(f"sqlite:///{path}", clock=clock) as ledger:
        revoked = ledger.create_key(alice, name="revoked")
        kept = ledger.create_key(alice, name="kept").secret.get_secret_value()
        store: Any = ledger._connection.views
        follower: Any = ledger._connection.follower
        monkeypatch.setattr(store, "try_lock_in", lambda cursor: False)
        monkeypatch.setattr(follower, "catch_up", lambda *_: (_ for _ in ()).throw(OSError("stuck")))

        ledger.revoke_key(alice, revoked.key_id)

        assert ledger.verify(revoked.secret.get_secret_value()) is None
        assert ledger.verify(kept) is None
        monkeypatch.undo()
        deadline = time.monotonic() + 10
        while ledger.verify(kept) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.verify(kept) is not None
        assert ledger.verify(revoked.secret.get_secret_value()) is None
