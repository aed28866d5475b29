"""The ledger's SQLite file: its connections, the durable views, the commands' transactions
(the unit of work) and the reader of the whole log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType

from keyledger.adapters.driven.sql_rebuild import OLD_SUFFIX, PROJECTED, fresh_statements, index_of
from keyledger.adapters.driven.sql_views import FRESH_SUFFIX, EventRow, SQLViews
from keyledger.adapters.driven.unit_of_work import Transaction, UnitOfWork, as_notifications
from keyledger.projections.ports import VIEWS_NAME
from keyledger.projections.recorded import Recorded

STATEMENT_CACHE = 128
"""Prepared statements each of the ledger's SQLite connections keeps (sqlite3's default)."""


class SQLiteStore(SQLiteFactory):
    """eventsourcing's SQLite factory, its connections keeping their prepared statements.

    eventsourcing 9.5 opens its connections with ``cached_statements=True``, which sqlite3
    reads as a cache of one statement: a command runs about a dozen different statements,
    and each was parsed and planned again every time (about 40% of a command's CPU). The
    factory is named by ``PERSISTENCE_MODULE`` (eventsourcing's own extension point); the
    one private method it overrides is checked by ``tests/unit/test_eventsourcing_surface.py``.
    """

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        plain = self.datastore.pool
        self.datastore.pool = StatementCachingPool(db_name=plain.db_name, lock_timeout=plain.lock_timeout)
        plain.close()  # it has opened no connection yet


class StatementCachingPool(SQLiteConnectionPool):
    """eventsourcing's pool of SQLite connections, opened as it opens them (WAL, rows as
    ``sqlite3.Row``, autocommit) but with a statement cache of :data:`STATEMENT_CACHE`."""

    def _create_connection(self) -> SQLiteConnection:
        try:
            connection = sqlite3.connect(
                database=self.db_name, uri=True, check_same_thread=False, isolation_level=None,
                cached_statements=STATEMENT_CACHE, timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )  # fmt: skip
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            if str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        connection.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)


class SQLiteViews(SQLiteTrackingRecorder, SQLViews):
    """The views as tables beside ``stored_events``, tracked in ``tracking``."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def table(self, name: str) -> str:
        return f"keyledger_{name}"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *self._statements(),
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
        # Every read here is one statement, which SQLite runs on a consistent snapshot of
        # its own: no BEGIN and ROLLBACK around it (two more calls, and beside a thread
        # busy verifying, two more waits for the GIL).
        with self.datastore.get_connection(commit=False) as connection, _translated():
            cursor = connection.cursor().sqlite_cursor
            try:
                yield cursor
            finally:
                cursor.close()

    @contextmanager
    def snapshot_transaction(self) -> Iterator[sqlite3.Cursor]:
        # A deferred BEGIN: in WAL mode the transaction's first read fixes the snapshot
        # that every later read in it sees; writers carry on (they are not blocked by a
        # reader) and their commits stay out of view until it ends.
        with self.datastore.get_connection(commit=False) as connection, _translated():
            cursor = connection.cursor().sqlite_cursor
            cursor.execute("BEGIN")
            try:
                yield cursor
            finally:
                cursor.close()
                connection.rollback()

    def plain_rows(self, cursor: sqlite3.Cursor) -> None:
        cursor.row_factory = None

    def _delete_tracking(self, c: Any) -> None:
        c.execute("DELETE FROM tracking WHERE application_name = ?", [VIEWS_NAME])

    # Rebuilding (see keyledger.adapters.driven.sql_rebuild). SQLite cannot rename an
    # index, and index names are unique in the database: a rebuild's fresh tables get
    # their indexes under the names not in use, each name with or without TWIN, and
    # opening the file creates an index only if neither name of it exists.

    def _create_table(self, c: SQLiteCursor) -> None:
        present = _index_names(c)
        self.create_table_statements = [
            statement
            for statement in self.create_table_statements
            if (name := index_of(statement)) is None or name + TWIN not in present
        ]
        super()._create_table(c)

    def _statements(self) -> list[str]:
        # A file made before the valid keys, digests and audit key table were clustered
        # keeps its tables as they are (both work) until its next rebuild.
        return self.create_statements(
            blob="BLOB", position="INTEGER", time="TEXT", clustered=" WITHOUT ROWID"
        )

    def prepare_rebuild(self) -> None:
        with self.locked_transaction() as cursor:
            for name in PROJECTED:
                for suffix in (FRESH_SUFFIX, OLD_SUFFIX):
                    cursor.execute(f"DROP TABLE IF EXISTS {self.table(name)}{suffix}")
            tables, _ = fresh_statements(self, self._statements(), lambda name: name)
            for statement in tables:
                cursor.execute(statement)

    def index_fresh(self) -> None:
        # After the load, each in a transaction of its own: building an index sorts the
        # table's rows once, several times cheaper than growing it row by row during the
        # load, and commands wait for one index at most (the write lock is per database).
        with self.locked_transaction() as cursor:
            present = _index_names(cursor)
        _, indexes = fresh_statements(
            self, self._statements(), lambda name: name + TWIN if name in present else name
        )
        for statement in indexes:
            with self.load_transaction() as cursor:
                cursor.execute(statement)

    def swap_in(self, cursor: Any, position: int) -> None:
        for name in PROJECTED:
            table = self.table(name)
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}{OLD_SUFFIX}")
            cursor.execute(f"ALTER TABLE {table}{FRESH_SUFFIX} RENAME TO {table}")
        self._delete_tracking(cursor)
        self._insert_tracking(cursor, Tracking(VIEWS_NAME, position))

    def drop_replaced(self) -> None:
        # One table per transaction. Without zeroing the freed pages, which SQLite builds
        # may do by default (secure_delete) and which would write every page of the old
        # tables again: they hold no secret (digests and hints, as the events do).
        for name in PROJECTED:
            with self.locked_transaction() as cursor:
                cursor.execute("PRAGMA secure_delete")
                zeroing = cursor.fetchone()[0]
                cursor.execute("PRAGMA secure_delete = FAST")
                try:
                    cursor.execute(f"DROP TABLE IF EXISTS {self.table(name)}{OLD_SUFFIX}")
                finally:
                    cursor.execute(f"PRAGMA secure_delete = {int(zeroing)}")


TWIN = "_r"
"""Ends the other name of each of the views' indexes (see SQLiteViews' rebuilding)."""


def _index_names(cursor: Any) -> set[str]:
    cursor.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")
    return {str(row[0]) for row in cursor.fetchall()}


class SQLiteTransaction(Transaction):
    """A command's transaction on SQLite: eventsourcing's insert statement, once per event
    (as its own recorder does, for the positions), then the views; the first insert takes
    the database's write lock, so no other writer runs until the commit."""

    def append(self, stored_events: Sequence[StoredEvent]) -> list[Notification]:
        statement = cast(SQLiteApplicationRecorder, self.recorder).insert_events_statement
        cursor = self.cursor
        ids = []
        for event in stored_events:
            originator_id = event.originator_id
            cursor.execute(
                statement,
                (
                    originator_id.hex if isinstance(originator_id, UUID) else originator_id,
                    event.originator_version,
                    event.topic,
                    event.state,
                ),
            )
            ids.append(cursor.lastrowid)
        return as_notifications(ids, stored_events)

    def between(self, after: int, upto: int) -> list[Notification]:
        recorder = cast(SQLiteApplicationRecorder, self.recorder)
        # The table name is eventsourcing's constant, never input.
        self.cursor.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
            f"FROM {recorder.events_table_name} WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
            (after, upto),
        )
        return [
            Notification(
                id=row[0], originator_id=recorder.convert_originator_id(row[1]),
                originator_version=row[2], topic=row[3], state=row[4],
            )
            for row in self.cursor.fetchall()
        ]  # fmt: skip

    def apply_views(self, new: Sequence[Notification]) -> list[Recorded]:
        # A view's constraint is not a version conflict: not for the command to retry.
        with _translated(conflicts=False):
            return super().apply_views(new)


class SQLiteUnitOfWork(UnitOfWork):
    """Commands' transactions on the ledger's SQLite file."""

    recorder: SQLiteApplicationRecorder

    @contextmanager
    def begin(self) -> Iterator[Transaction]:
        # eventsourcing's transaction: BEGIN, then COMMIT at the end (or ROLLBACK), its
        # errors translated into eventsourcing's own.
        with _translated(), self.recorder.datastore.transaction(commit=True) as cursor:
            yield SQLiteTransaction(cursor, self)


class RowReader:
    """``read(after, limit)``: up to ``limit`` events of the log after position ``after``,
    as plain rows (position, originator id as stored, version, topic, state)."""

    views_position: int | None = None
    """The durable views' position, read in the same round trip as the last rows, where
    a store reads both together; ``None`` where it does not."""

    def __call__(self, after: int, limit: int) -> Sequence[EventRow]:
        raise NotImplementedError


class SQLiteRowReader(RowReader):
    """Reads the whole log as plain rows (position, originator id as stored, version,
    topic, state): what the readers of the log need, without a Notification and a UUID
    per event."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        # The table name is eventsourcing's constant, never input.
        self.statement = (
            "SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
            f"FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )

    def __call__(self, after: int, limit: int) -> list[EventRow]:
        """Up to ``limit`` events after position ``after``."""
        # One statement, no BEGIN and ROLLBACK around it (see SQLiteViews.read_cursor).
        with self.datastore.get_connection(commit=False) as connection, _translated():
            cursor = connection.cursor().sqlite_cursor
            try:
                cursor.row_factory = None
                return cursor.execute(self.statement, (after, limit)).fetchall()
            finally:
                cursor.close()


@contextmanager
def _translated(*, conflicts: bool = True) -> Iterator[None]:
    """sqlite3's errors as eventsourcing's, which the Ledger turns into its own. Without
    ``conflicts``, a constraint violation is not reported as a version conflict (which a
    command would retry) but as a failure of the store."""
    try:
        yield
    except sqlite3.IntegrityError as error:
        if not conflicts:
            raise PersistenceError(error) from error
        raise IntegrityError(error) from error
    except sqlite3.OperationalError as error:
        raise OperationalError(error) from error
    except sqlite3.Error as error:
        raise PersistenceError(error) from error


def row_reader(recorder: ApplicationRecorder, views: Any = None) -> RowReader:
    """The reader of ``recorder``'s events as rows (plain tuples from SQLite and
    PostgreSQL; built from notifications elsewhere). With the durable ``views`` of a
    PostgreSQL store, it reads their position with each page (see
    :attr:`RowReader.views_position`)."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteRowReader(recorder)
    if type(recorder).__module__ == "eventsourcing.postgres":
        from keyledger.adapters.driven.postgres_views import PostgresRowReader

        return PostgresRowReader(recorder, views)
    return _NotificationRows(recorder)


class _NotificationRows(RowReader):
    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder

    def __call__(self, after: int, limit: int) -> list[EventRow]:
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in self.recorder.select_notifications(start=after + 1, limit=limit)
        ]
