"""eventsourcing's own recorder test cases, run against what keyledger writes with.

keyledger extends eventsourcing 9.5 (STYLE habit 11): commands append through a unit of
work that owns the transaction and writes the events table with the recorders' public
statements, and the views stores are tracking recorders with tables of their own.
eventsourcing ships the test cases its own recorders pass (``eventsourcing.tests.persistence``);
this module runs them against each, built as the ledger builds it (``KeyringApplication`` on a
new, empty store from a store URL), so an eventsourcing upgrade or a change of keyledger's
that breaks the recorder contract fails here, loudly.

==========================  ================================  ================================
what keyledger writes with  eventsourcing counterpart         cases
==========================  ================================  ================================
``SQLiteUnitOfWork``        ``SQLiteApplicationRecorder``     ``ApplicationRecorderTestCase``
``PostgresUnitOfWork``      ``PostgresApplicationRecorder``   ``ApplicationRecorderTestCase``
                                                              and ``test_insert_subscribe``
``SQLiteViews``             ``SQLiteTrackingRecorder``        ``TrackingRecorderTestCase``
``PostgresViews``           ``PostgresTrackingRecorder``      ``TrackingRecorderTestCase``
``MemoryViews``             ``POPOTrackingRecorder``          ``TrackingRecorderTestCase``
==========================  ================================  ================================

The unit of work runs as the library's recorder: the store's own recorder, with its
``insert_events`` routed through :meth:`UnitOfWork.commit` (the path of every command),
each case ending with a check that the commits handed back every event the store holds,
once. The views are left out of those commits (the library's events are not keyledger's:
the views could not read them), as when another writer holds them. The subscription case
runs on PostgreSQL only, as in eventsourcing's own suite (its SQLite recorder cannot
subscribe), and shows that the unit of work's append notifies listeners.

Not run: the timing cases (``test_performance``, ``test_concurrent_throughput``) print a
rate and assert nothing, and timings belong in ``bench/`` (habit 8). ``AggregateRecorderTestCase``
does not apply: keyledger subclasses no aggregate recorder (snapshots use eventsourcing's
own), and the case expects ``insert_events`` to return ``None``, which an application
recorder never does. The ``memory://`` store appends with eventsourcing's POPO recorder,
unchanged, which the library's own suite covers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import unittest
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from unittest import TestCase

import psycopg
from eventsourcing.persistence import ApplicationRecorder, StoredEvent, TrackingRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.tests import persistence as library

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.adapters.driven.postgres_views import PostgresViews
from keyledger.adapters.driven.sqlite_views import SQLiteViews
from keyledger.adapters.driven.stores import parse_url
from keyledger.application import KeyringApplication

POSTGRES_URL = os.environ.get("KEYLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("KEYLEDGER_REQUIRE_POSTGRES") == "1"
TIMING = "a timing case: it prints a rate and asserts nothing; timings belong in bench/ (STYLE habit 8)"

# The mixins below are plain classes, so that pytest, which collects every
# unittest.TestCase subclass whatever its name, collects only the concrete cases.
if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


class _Store(_Base):
    """A new, empty store per test and the ledger's application on it, closed after."""

    def new_url(self) -> str:
        raise NotImplementedError

    def application(self) -> KeyringApplication:
        app = KeyringApplication(env=parse_url(self.new_url()).env)
        self.addCleanup(app.close)
        # Runs before the close (cleanups run last in, first out): the library's
        # concurrency case tells its reader threads to stop but does not wait for them,
        # and closing a SQLite connection one of them is using crashes the interpreter.
        self.addCleanup(_join_library_readers)
        return app


def _join_library_readers() -> None:
    for thread in threading.enumerate():
        if thread.name.endswith("(read_continuously)"):
            thread.join(timeout=10)


class _SQLite(_Store):
    def new_url(self) -> str:
        folder = self.enterContext(tempfile.TemporaryDirectory())
        return f"sqlite:///{folder}/keyledger.db"


class _Postgres(_Store):
    """A schema of its own per test, dropped after (as ``postgres_url`` in tests/conftest.py)."""

    def new_url(self) -> str:
        try:
            admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as error:
            if REQUIRE_POSTGRES:
                self.fail(f"PostgreSQL is required (KEYLEDGER_REQUIRE_POSTGRES=1) but unreachable: {error}")
            self.skipTest(f"no PostgreSQL server answers at {POSTGRES_URL}")
        schema = f"kl_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f"CREATE SCHEMA {schema}")

        def drop() -> None:
            with admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")

        self.addCleanup(drop)
        separator = "&" if "?" in POSTGRES_URL else "?"
        return f"{POSTGRES_URL}{separator}schema={schema}"


class _MemoryStore(_Store):
    def new_url(self) -> str:
        return "memory://"


class _ThroughUnitOfWork(_Store):
    """The store's own event recorder, its ``insert_events`` routed through the unit of
    work's commit; each case ends by checking that the commits handed back every event
    the store holds, once."""

    recorder_class: type[ApplicationRecorder]

    def create_recorder(self) -> ApplicationRecorder:
        app = self.application()
        recorder = app.recorder
        assert type(recorder) is self.recorder_class
        unit_of_work: Any = app.construct_unit_of_work(app.construct_views())
        begin = unit_of_work.begin

        @contextlib.contextmanager
        def begin_leaving_the_views() -> Iterator[Any]:
            with begin() as transaction:
                transaction.lock_views = lambda: None  # as when another writer holds them
                yield transaction

        unit_of_work.begin = begin_leaving_the_views
        self.recorder = recorder
        self.seen: list[int] = []

        def insert_events(stored_events: Sequence[StoredEvent], **_: Any) -> Sequence[int]:
            committed = unit_of_work.commit(stored_events)
            assert committed.applied == []
            ids = [notification.id for notification in committed.notifications]
            self.seen.extend(ids)
            return ids

        recorder.insert_events = insert_events  # type: ignore[method-assign]
        return recorder

    def assert_commits_handed_back_every_event(self) -> None:
        stored = self.recorder.select_notifications(start=None, limit=1_000_000)
        assert stored, "the case stored no event"
        assert sorted(self.seen) == [notification.id for notification in stored]

    def test_insert_select(self) -> None:
        """The library's case, then the commits handed back every stored event."""
        super().test_insert_select()  # type: ignore[misc]
        self.assert_commits_handed_back_every_event()

    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:
        """The library's case, then the commits handed back every stored event."""
        super().test_concurrent_no_conflicts(initial_position)  # type: ignore[misc]
        self.assert_commits_handed_back_every_event()

    @unittest.skip(TIMING)
    def test_performance(self) -> None:
        """Skipped."""

    @unittest.skip(TIMING)
    def test_concurrent_throughput(self) -> None:
        """Skipped."""


class TestSQLiteUnitOfWork(_SQLite, _ThroughUnitOfWork, library.ApplicationRecorderTestCase):
    """Commands' appends on SQLite behave as eventsourcing's SQLite recorder."""

    recorder_class = SQLiteApplicationRecorder


class TestPostgresUnitOfWork(_Postgres, _ThroughUnitOfWork, library.ApplicationRecorderTestCase):
    """Commands' appends on PostgreSQL behave as eventsourcing's PostgreSQL recorder."""

    recorder_class = PostgresApplicationRecorder

    def test_insert_subscribe(self) -> None:
        """The library's subscription case, as its own PostgreSQL suite runs it, then the
        commits handed back every stored event."""
        self.optional_test_insert_subscribe()  # type: ignore[attr-defined]
        self.assert_commits_handed_back_every_event()


class _Views(_Store):
    """The views store the application builds, checked to be the class the store URL plugs in."""

    views_class: type[TrackingRecorder]

    def create_recorder(self) -> TrackingRecorder:
        views = self.application().construct_views()
        assert isinstance(views, TrackingRecorder)
        assert type(views) is self.views_class
        return views


class TestSQLiteViews(_SQLite, _Views, library.TrackingRecorderTestCase):
    """SQLiteViews tracks positions as eventsourcing's SQLite tracking recorder does."""

    views_class = SQLiteViews


class TestPostgresViews(_Postgres, _Views, library.TrackingRecorderTestCase):
    """PostgresViews tracks positions as eventsourcing's PostgreSQL tracking recorder does."""

    views_class = PostgresViews


class TestMemoryViews(_MemoryStore, _Views, library.TrackingRecorderTestCase):
    """MemoryViews tracks positions as eventsourcing's POPO tracking recorder does."""

    views_class = MemoryViews
