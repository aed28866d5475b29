"""Which failures of the store a command tries again: a lost PostgreSQL connection (as
eventsourcing's own recorder retries its insert), never a SQLite error, which has
already waited out its busy timeout and would only wait it out again."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from keyledger import Actor, Ledger, StoreUnavailable
from keyledger.adapters.driven.sqlite_views import SQLiteTransaction
from keyledger.testing import ManualClock


def test_a_sqlite_error_fails_the_command_at_once_and_records_nothing(
    sqlite_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    def locked(transaction: Any, *args: Any) -> Any:
        attempts.append(1)
        raise OperationalError("database is locked")

    with Ledger.open(sqlite_url, clock=clock) as ledger:
        ledger.create_key(alice, name="kept")
        monkeypatch.setattr(SQLiteTransaction, "append", locked)

        with pytest.raises(StoreUnavailable):
            ledger.create_key(alice, name="lost")

        monkeypatch.undo()
        assert attempts == [1]
        assert [key.name for key in ledger.keys("acme")] == ["kept"]


def test_a_lost_postgresql_connection_is_tried_again_and_the_command_succeeds_once(
    postgres_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyledger.adapters.driven.postgres_views import PostgresTransaction

    append = PostgresTransaction.append
    attempts: list[int] = []

    def lost_once(transaction: Any, *args: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return append(transaction, *args)

    with Ledger.open(postgres_url, clock=clock) as ledger:
        monkeypatch.setattr(PostgresTransaction, "append", lost_once)

        issued = ledger.create_key(alice, name="once")

        monkeypatch.undo()
        assert attempts == [1, 1]
        assert [key.name for key in ledger.keys("acme")] == ["once"]
        assert ledger.verify(issued.secret.get_secret_value()) is not None
