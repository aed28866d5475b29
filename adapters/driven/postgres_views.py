"""The ledger's PostgreSQL database (its schema, if one is set): the durable views, the
commands' transactions (the unit of work) and the listener for new events."""

from __future__ import annotations

import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Identifier, Literal

from keyledger.adapters.driven.sql_rebuild import PROJECTED, fresh_statements, index_names
from keyledger.adapters.driven.sql_views import FRESH_SUFFIX, EventRow, Read, SQLViews, usual_reads
from keyledger.adapters.driven.sqlite_views import RowReader
from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.adapters.driven.unit_of_work import Transaction, UnitOfWork, as_notifications
from keyledger.projections.ports import VIEWS_NAME, ViewStore
from keyledger.projections.recorded import Recorded

LISTEN_WAKE = 0.1
"""Seconds between checks for a stop while listening."""
VIEWS_LOCK_PATIENCE = 0.05
"""Seconds a command's transaction tries again for the views' lock before it leaves the
views to be written after its commit (see PostgresTransaction.lock_views)."""
VIEWS_LOCK_RETRY = 0.001
"""Seconds between those tries."""


class PostgresTransaction(Transaction):
    """A command's transaction on PostgreSQL, in one psycopg pipeline: eventsourcing's
    append (the lock timeout, the events table's lock, the NOTIFY, then the insert of
    every event as one statement), then the views.

    In a pipeline the statements go out as they are issued and the server's answers
    are read only where a result is needed, so the transaction costs a round trip per
    result it waits for, not per statement: BEGIN, the append, the views' lock and
    position and the rows the views will read travel together; then the views' writes
    with the COMMIT. The events table stays locked from the append to the commit, so every
    round trip saved there is time other writers no longer wait."""

    _locked: Any
    _position: Any
    _read: dict[Read, Any]
    appended = False
    """Whether the append's answer came back (its events have their positions)."""

    def append(self, stored_events: Sequence[StoredEvent]) -> list[Notification]:
        unit_of_work = cast(PostgresUnitOfWork, self.unit_of_work)
        recorder = unit_of_work.recorder
        cursor = self.cursor
        for statement in unit_of_work.prelude:
            cursor.execute(statement, prepare=False)
        rows = [
            recorder.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        cursor.execute(unit_of_work.insert_statement, (rows,))
        # Behind the insert, in the same round trip: the views' lock, if it is free, and
        # their position (see lock_views). If the insert fails, neither runs.
        views = cast(PostgresViews, self.views)
        connection = cursor.connection
        self._locked = connection.cursor()
        self._locked.execute(views.try_lock_statement, [views._lock_key])
        self._position = connection.cursor()
        self._position.execute(views.position_statement, (VIEWS_NAME,))
        # And the rows projecting these events reads, as of that position: while this
        # transaction holds the views' lock nothing else changes them. (Read for
        # nothing if the lock is taken. An event the views cannot read is left for
        # apply_views to report.)
        self._read = {}
        mapper = self.mapper
        try:
            events = [mapper.recorded(e.state, e.topic, e.originator_version, 0, 0) for e in stored_events]
        except Exception:
            events = []
        for statement, params in usual_reads(events):
            self._read[(statement, params)] = reading = connection.cursor()
            reading.execute(views.sql(statement), params)
        ids = [int(row["notification_id"]) for row in cursor.fetchall()]
        self.appended = True
        return as_notifications(ids, stored_events)

    def prefetched(self) -> Mapping[Any, Any]:
        return self._read

    def lock_views(self) -> int | None:
        # The answers came back with the append's.
        locked = self._locked.fetchone()
        if locked is not None and locked["locked"]:
            position = self._position.fetchone()
            return int(position["max"] or 0) if position is not None else 0
        # Held by another: most often a command writing its views after its commit
        # because the lock was held when it tried, which takes a moment. Waiting that
        # moment keeps the views in this commit; leaving them would hold the lock for
        # a write of their own after it, where the next command would find it taken,
        # and leave its views too: with several writers that feeds on itself. A holder
        # that keeps it longer (a follower catching up after a writer that died, a
        # rebuild's swap) does not hold up the append: the views are written after it.
        views = cast(PostgresViews, self.views)
        deadline = time.monotonic() + VIEWS_LOCK_PATIENCE
        while time.monotonic() < deadline:
            time.sleep(VIEWS_LOCK_RETRY)
            if views.try_lock_in(self.cursor):
                # What was read with the append may predate the holder's writes.
                self._read = {}
                return views.position_in(self.cursor)
        return None

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
        self.token = secrets.token_hex(16)
        """The payload of this unit of work's NOTIFYs, so that this process's listener can
        tell its own commits (a server process id would not do: the pool reconnects, and
        after a server restart another process's connection may get a remembered id)."""
        # One statement each: a pipeline sends no query of several statements. Rendered
        # once: psycopg renders a composed query again on every execution.
        self.prelude = [
            _rendered(statement)
            for statement in (
                *recorder.lock_table_statements,
                SQL("NOTIFY {0}, {1}").format(Identifier(recorder.channel_name), Literal(self.token)),
            )
        ]
        self.insert_statement = recorder.insert_events_statement.as_string()

    @contextmanager
    def begin(self) -> Iterator[Transaction]:
        # eventsourcing's connection (its errors translated into eventsourcing's own),
        # psycopg's pipeline (see PostgresTransaction) and transaction: COMMIT goes out
        # at the end of the block, and its answer, or the first error of any statement
        # not yet read, is raised at the pipeline's end.
        with self.recorder.datastore.get_connection() as connection:
            transaction = None
            try:
                with connection.pipeline(), connection.transaction(), connection.cursor() as cursor:
                    transaction = PostgresTransaction(cursor, self)
                    yield transaction
            except psycopg.IntegrityError as error:
                # Once the append's answer is in, a constraint that fails is a view's (its
                # writes are answered with the COMMIT): not a version conflict to retry.
                if transaction is not None and transaction.appended:
                    raise PersistenceError(str(error)) from error
                raise

    def sent(self, payload: str) -> bool:
        return payload == self.token


class PostgresRowReader(RowReader):
    """Reads the log as plain rows (see :class:`RowReader`) with one statement rendered
    once (eventsourcing's ``select_notifications`` composes its query on every call and
    builds a notification per row); with the durable ``views``, reads their position in
    the same round trip, so a follower learns whether they hold what it read without
    asking again."""

    def __init__(self, recorder: ApplicationRecorder, views: PostgresViews | None = None) -> None:
        assert isinstance(recorder, PostgresApplicationRecorder)
        self.datastore = recorder.datastore
        self.statement = (
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {0}.{1} "
                "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            .format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
            .as_string()
        )
        self.views = views

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def __call__(self, after: int, limit: int) -> list[EventRow]:
        # Tried again as eventsourcing's select_notifications is: after a server restart
        # the pool's connections are dead, and the first use of each finds out.
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
            connection.cursor(row_factory=tuple_row) as tracked,
        ):
            if self.views is None:
                cursor.execute(self.statement, (after, limit), prepare=True)
                return cursor.fetchall()
            with connection.pipeline():
                cursor.execute(self.statement, (after, limit), prepare=True)
                tracked.execute(self.views.position_statement, (VIEWS_NAME,), prepare=True)
            rows = cursor.fetchall()
            found = tracked.fetchone()
        self.views_position = int(found[0] or 0) if found is not None else None
        return rows


def listen(
    recorder: ApplicationRecorder,
    notified: Callable[[], None],
    stopping: threading.Event,
    *,
    ignored: Callable[[str], bool] = lambda payload: False,
) -> None:
    """Call ``notified`` in this thread once after LISTEN is in place, then after every
    NOTIFY of a commit to ``recorder``'s events, until ``stopping`` is set (seen within
    :data:`LISTEN_WAKE` seconds); NOTIFYs whose payload ``ignored(payload)`` is true
    for are passed over. eventsourcing's subscription hands
    each wake through two threads of its own before the caller's; beside a thread busy
    verifying, every hand-over waits for the GIL."""
    assert isinstance(recorder, PostgresApplicationRecorder)
    channel = Identifier(recorder.channel_name)
    with recorder.datastore.get_connection() as connection:
        connection.execute(SQL("LISTEN {0}").format(channel))
        notified()  # whatever committed before the LISTEN took effect
        while not stopping.is_set():
            woken = False
            for notify in connection.notifies(timeout=LISTEN_WAKE, stop_after=1):
                woken = woken or not ignored(notify.payload)
            if woken and not stopping.is_set():
                # One call for every NOTIFY received by now: the commits they tell of
                # came before the caller's next read, which takes them all. (One call
                # each would read again for nothing, once per other writer's commit.)
                for _ in connection.notifies(timeout=0):
                    pass
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
        self._record_position_statement = (
            SQL("WITH recorded AS ({0}) SELECT 1 / count(*) FROM recorded")
            .format(self.insert_tracking_statement)
            .as_string()
        )
        self.position_statement = self.max_tracking_id_statement.as_string()
        """eventsourcing's read of a position, rendered once (see PostgresUnitOfWork)."""

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

    try_lock_statement = "SELECT pg_try_advisory_xact_lock(%s) AS locked"

    def record_position(self, cursor: Any, position: int) -> None:
        if not self.datastore.single_row_tracking:
            super().record_position(cursor, position)
            return
        # eventsourcing's insert, whose check (a row returned) is made by the server: no
        # row, and the division fails the transaction. Nothing is read back, so in a
        # pipeline this goes out with the COMMIT instead of waiting for its answer.
        cursor.execute(
            self._record_position_statement,
            {"application_name": VIEWS_NAME, "notification_id": position},
            prepare=True,
        )

    def try_lock_in(self, cursor: Any) -> bool:
        # Without waiting (a command tries again for a moment at most, see
        # PostgresTransaction.lock_views): if another is writing the views, the
        # command's events are applied after its commit instead.
        cursor.execute(self.try_lock_statement, [self._lock_key])
        return bool(cursor.fetchone()["locked"])

    @property
    def _lock_key(self) -> int:
        """The views' advisory lock (one per schema)."""
        return zlib.crc32(self.table("audit").encode())

    @contextmanager
    def writes_together(self, cursor: Any) -> Iterator[Any]:
        # psycopg's pipeline: the batch's statements go out together and their results
        # come back at its end (an error is raised there), one round trip for the lot.
        # The position is recorded on a cursor of its own: eventsourcing fetches that
        # insert's result, and a cursor in a pipeline may by then hold the late result
        # of one of its earlier writes instead (eventsourcing's own append does the same).
        # In a command's transaction, already in a pipeline: a nested one would cost a
        # round trip more at its end.
        connection = cursor.connection
        if connection.pgconn.pipeline_status:
            with connection.cursor() as own:
                yield own
            return
        with connection.pipeline(), connection.cursor() as own:
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
        # The audit table first: a command reads the views before it knows whether it
        # holds their lock (see PostgresTransaction.append), the audit table first of
        # all (usual_reads), so it either waits here before touching another, or this
        # waits for it to end. Dropping the others first could lock one it reads next
        # while it holds the audit table this waits for: a deadlock.
        cursor.execute(f"LOCK TABLE {self.table('audit')} IN ACCESS EXCLUSIVE MODE")
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


def _rendered(query: object) -> str:
    """A query as its text (a composed one rendered, with identifiers quoted)."""
    if isinstance(query, Composable):
        return query.as_string()
    if isinstance(query, bytes):
        return query.decode()
    if isinstance(query, str):
        return query
    raise TypeError(f"not a query eventsourcing writes: {type(query).__name__}")


def _bare(table: str) -> str:
    """A qualified table name without its schema."""
    return table.rsplit(".", 1)[-1]
