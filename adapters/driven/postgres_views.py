"""The ledger's PostgreSQL database (its schema, if one is set): the durable views, the
commands' transactions (the unit of work) and the listener for new events."""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from keyledger.adapters.driven.sql_rebuild import PROJECTED, fresh_statements, index_names
from keyledger.adapters.driven.sql_views import FRESH_SUFFIX, SQLViews
from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.adapters.driven.unit_of_work import Transaction, UnitOfWork, as_notifications
from keyledger.projections.ports import VIEWS_NAME, ViewStore
from keyledger.projections.recorded import Recorded

LISTEN_WAKE = 0.1
"""Seconds between checks for a stop while listening."""


class PostgresTransaction(Transaction):
    """A command's transaction on PostgreSQL: eventsourcing's append (the lock timeout,
    the events table's lock and the NOTIFY as one query, then the insert of every event
    as one statement), then the views."""

    def append(self, stored_events: Sequence[StoredEvent]) -> list[Notification]:
        recorder = cast(PostgresApplicationRecorder, self.recorder)
        cursor = self.cursor
        cursor.execute(cast(PostgresUnitOfWork, self.unit_of_work).prelude, prepare=False)
        rows = [
            recorder.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        cursor.execute(recorder.insert_events_statement, (rows,))
        ids = [int(row["notification_id"]) for row in cursor.fetchall()]
        return as_notifications(ids, stored_events)

    def between(self, after: int, upto: int) -> list[Notification]:
        cursor = self.cursor
        cursor.execute(cast(PostgresUnitOfWork, self.unit_of_work).between_statement, (after, upto))
        return [
            Notification(
                id=row["notification_id"], originator_id=row["originator_id"],
                originator_version=row["originator_version"], topic=row["topic"], state=bytes(row["state"]),
            )
            for row in cursor.fetchall()
        ]  # fmt: skip

    def apply_views(self, new: Sequence[Notification]) -> list[Recorded]:
        try:
            return super().apply_views(new)
        except psycopg.IntegrityError as error:
            # A view's constraint, not a version conflict: not for the command to retry.
            raise PersistenceError(str(error)) from error


class PostgresUnitOfWork(UnitOfWork):
    """Commands' transactions on the ledger's PostgreSQL database."""

    retried = (InterfaceError, OperationalError)

    recorder: PostgresApplicationRecorder

    def __init__(self, recorder: ApplicationRecorder, views: ViewStore, mapper: PydanticMapper) -> None:
        super().__init__(recorder, views, mapper)
        assert isinstance(recorder, PostgresApplicationRecorder)
        schema, table = Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
        self.between_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {0}.{1} "
            "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
        ).format(schema, table)
        self.prelude = SQL("; ").join(
            [*recorder.lock_table_statements, SQL("NOTIFY {0}").format(Identifier(recorder.channel_name))]
        )

    @contextmanager
    def begin(self) -> Iterator[Transaction]:
        # eventsourcing's connection (its errors translated into eventsourcing's own) and
        # psycopg's transaction, committed at the end of the block.
        with (
            self.recorder.datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            yield PostgresTransaction(cursor, self)


def listen(recorder: ApplicationRecorder, notified: Callable[[], None], stopping: threading.Event) -> None:
    """Call ``notified`` in this thread once after LISTEN is in place, then after every
    NOTIFY of a commit to ``recorder``'s events, until ``stopping`` is set (seen within
    :data:`LISTEN_WAKE` seconds). eventsourcing's subscription hands each wake through two
    threads of its own before the caller's; beside a thread busy verifying, every
    hand-over waits for the GIL."""
    assert isinstance(recorder, PostgresApplicationRecorder)
    channel = Identifier(recorder.channel_name)
    with recorder.datastore.get_connection() as connection:
        connection.execute(SQL("LISTEN {0}").format(channel))
        notified()  # whatever committed before the LISTEN took effect
        while not stopping.is_set():
            for _ in connection.notifies(timeout=LISTEN_WAKE, stop_after=1):
                if not stopping.is_set():
                    notified()
        # The connection goes back to the pool: it must not go on listening.
        connection.execute(SQL("UNLISTEN {0}").format(channel))


class PostgresViews(PostgresTrackingRecorder, SQLViews):
    """The views as tables beside ``keyledger_events``, tracked in ``keyledger_tracking``."""

    placeholder = "%s"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in self._statements():
            self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]

    def _statements(self) -> list[str]:
        return self.create_statements(blob="BYTEA", position="BIGINT", time='TEXT COLLATE "C"')

    def table(self, name: str) -> str:
        return f'"{self.datastore.schema}".keyledger_{name}'

    @contextmanager
    def locked_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            self._lock(cursor)
            yield cursor

    def _lock(self, cursor: Any) -> None:
        # One advisory lock per schema serialises the writers of these views.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [self._lock_key])

    def try_lock_in(self, cursor: Any) -> bool:
        # A command never waits for the views: if a follower is writing them, the
        # command's events are applied after its commit instead.
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s) AS locked", [self._lock_key])
        return bool(cursor.fetchone()["locked"])

    @property
    def _lock_key(self) -> int:
        return zlib.crc32(self.table("audit").encode())

    @contextmanager
    def writes_together(self, cursor: Any) -> Iterator[Any]:
        # psycopg's pipeline: the batch's statements go out together and their results
        # come back at its end (an error is raised there), one round trip for the lot.
        # The position is recorded on a cursor of its own: eventsourcing fetches that
        # insert's result, and a cursor in a pipeline may by then hold the late result
        # of one of its earlier writes instead (eventsourcing's own append does the same).
        with cursor.connection.pipeline(), cursor.connection.cursor() as own:
            yield own

    @contextmanager
    def read_cursor(self) -> Iterator[Any]:
        # Every read here is one statement, its own transaction on the pool's autocommit
        # connection: no BEGIN and ROLLBACK round trips around it.
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            yield cursor

    @contextmanager
    def snapshot_transaction(self) -> Iterator[Any]:
        # REPEATABLE READ: every statement of the transaction sees the snapshot its first
        # one took; READ ONLY, and rolled back at the end.
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(force_rollback=True),
            connection.cursor() as cursor,
        ):
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cursor

    def plain_rows(self, cursor: Any) -> None:
        cursor.row_factory = tuple_row

    # Rebuilding (see keyledger.adapters.driven.sql_rebuild): the fresh tables are loaded
    # without the views' lock and indexed after the load (nothing else uses them, so
    # that blocks nobody); the swap drops the old tables and renames the fresh ones and
    # their indexes.

    @contextmanager
    def load_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    def prepare_rebuild(self) -> None:
        tables, _ = fresh_statements(self, self._statements(), lambda name: name + FRESH_SUFFIX)
        with self.load_transaction() as cursor:
            for name in PROJECTED:
                cursor.execute(f"DROP TABLE IF EXISTS {self.table(name)}{FRESH_SUFFIX}")
            for statement in tables:
                cursor.execute(_without_primary_key(statement))

    def insert_fresh(
        self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        statement = SQL("COPY {0} ({1}) FROM STDIN").format(
            SQL(self.table(table) + FRESH_SUFFIX),
            SQL(", ").join(Identifier(column) for column in columns),
        )
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def index_fresh(self) -> None:
        _, indexes = fresh_statements(self, self._statements(), lambda name: name + FRESH_SUFFIX)
        with self.load_transaction() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for name, key in PRIMARY_KEYS.items():
                table = self.table(name)
                cursor.execute(
                    f"ALTER TABLE {table}{FRESH_SUFFIX} ADD CONSTRAINT {_bare(table)}{FRESH_SUFFIX}_pkey "
                    f"PRIMARY KEY ({key})"
                )
            for statement in indexes:
                cursor.execute(statement)
            for name in PROJECTED:
                cursor.execute(f"ANALYZE {self.table(name)}{FRESH_SUFFIX}")

    def swap_in(self, cursor: Any, position: int) -> None:
        schema = self.datastore.schema
        for name in PROJECTED:
            table = self.table(name)
            cursor.execute(f"DROP TABLE {table}")
            cursor.execute(f"ALTER TABLE {table}{FRESH_SUFFIX} RENAME TO {_bare(table)}")
            cursor.execute(
                f'ALTER INDEX "{schema}".{_bare(table)}{FRESH_SUFFIX}_pkey RENAME TO {_bare(table)}_pkey'
            )
        for index in index_names(self, self._statements()):
            cursor.execute(f'ALTER INDEX "{schema}".{index}{FRESH_SUFFIX} RENAME TO {index}')
        self._delete_tracking(cursor)
        self._insert_tracking(cursor, Tracking(VIEWS_NAME, position))

    def _delete_tracking(self, c: Any) -> None:
        c.execute(
            SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
            ),
            [VIEWS_NAME],
        )


PRIMARY_KEYS = {
    "valid": "digest",
    "secrets": "digest",
    "keys": "account, key_id",
    "audit": "position",
    "audit_keys": "key_id, position",
}
"""The projected tables' primary keys, which a rebuild adds after the load."""


def _without_primary_key(statement: str) -> str:
    """A create statement of a projected table without its primary key (added after the load)."""
    stripped = statement.replace(" PRIMARY KEY,", ",")
    stripped = re.sub(r", PRIMARY KEY \([^)]*\)\)$", ")", stripped)
    if "PRIMARY KEY" in stripped:
        raise RuntimeError(f"a primary key the rebuild does not know how to defer: {statement[:60]}")
    return stripped


def _bare(table: str) -> str:
    """A qualified table name without its schema."""
    return table.rsplit(".", 1)[-1]
