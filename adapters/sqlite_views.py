"""The durable views in the ledger's SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from keyledger.adapters.sql_views import SQLViews
from keyledger.projections.ports import VIEWS_NAME


class SQLiteViews(SQLiteTrackingRecorder, SQLViews):
    """The views as tables beside ``stored_events``, tracked in ``tracking``."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def table(self, name: str) -> str:
        return f"keyledger_{name}"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *self.create_statements(blob="BLOB", position="INTEGER", time="TEXT"),
        ]

    @contextmanager
    def locked_transaction(self) -> Iterator[SQLiteCursor]:
        # BEGIN IMMEDIATE takes SQLite's write lock before reading the position, so two
        # processes never apply the same events; the other waits (busy timeout).
        with self.datastore.get_connection(commit=True) as connection, _translated():
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    @contextmanager
    def read_cursor(self) -> Iterator[sqlite3.Cursor]:
        with self.datastore.transaction(commit=False) as cursor, _translated():
            yield cursor.sqlite_cursor

    def _delete_tracking(self, c: Any) -> None:
        c.execute("DELETE FROM tracking WHERE application_name = ?", [VIEWS_NAME])


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3's errors as eventsourcing's, which the Ledger turns into its own."""
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise IntegrityError(error) from error
    except sqlite3.OperationalError as error:
        raise OperationalError(error) from error
    except sqlite3.Error as error:
        raise PersistenceError(error) from error
