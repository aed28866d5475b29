"""The eventsourcing application underneath a Ledger: stores, mapper, snapshots.

This is the one place that wires adapters to settings (cosmicpython's bootstrap): the
store URL becomes eventsourcing's environment, the pydantic mapper and the orjson
transcoder are plugged in, and Keyrings are snapshotted every
:data:`SNAPSHOT_INTERVAL` events (more apart for large ones: :func:`snapshot_interval`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    InternalError,
    Mapper,
    OperationalError,
    ProgrammingError,
    Transcoder,
)
from eventsourcing.popo import POPOFactory
from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import Environment

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.adapters.driven.sqlite_views import SQLiteUnitOfWork, SQLiteViews
from keyledger.adapters.driven.transcoding import OrjsonTranscoder, PydanticMapper
from keyledger.adapters.driven.unit_of_work import MemoryUnitOfWork, UnitOfWork
from keyledger.domain import Keyring, KeyringSnapshot
from keyledger.follower import Listen
from keyledger.projections.ports import ViewStore

SNAPSHOT_INTERVAL = 100
KEYS_PER_STEP = 1000


def snapshot_interval(base: int, keys: int) -> int:
    """Events between snapshots of a Keyring holding ``keys`` keys: ``base`` (100) up to
    1,999 keys, then ``base`` more per 1,000 keys (10,000 keys: every 1,000 events).

    A snapshot costs in proportion to the keys it holds, so a fixed interval would make
    every hundredth command on a large account far costlier than the others; growing the
    interval with the size keeps a snapshot's share of each command about the same at
    any size. Loading (once per process, then the Keyring is cached) replays at most one
    interval of events after the snapshot (the README's Decisions give the times)."""
    return base * max(1, keys // KEYS_PER_STEP)


KEYRING_CACHE_SIZE = 128
logger = logging.getLogger("keyledger")


T = TypeVar("T")
CREATE_ATTEMPTS = 5


def creating_tables(create: Callable[[], T]) -> T:
    """Run ``create``, which creates tables if they are missing, again if it loses a race
    with another process creating the same tables (its second try finds them made)."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return create()
        # sqlite3's own error escapes eventsourcing while a new connection switches the
        # file to WAL mode, which another process may be doing at the same moment.
        # PostgreSQL's catalogue reports "tuple concurrently updated" (InternalError) to
        # the loser of two concurrent CREATE ... IF NOT EXISTS.
        except (IntegrityError, ProgrammingError, OperationalError, InternalError, sqlite3.OperationalError):
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class KeyringApplication(Application[UUID]):
    """Stores Keyring events; every Ledger owns one."""

    name = "keyledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Keyring: SNAPSHOT_INTERVAL}
    snapshot_class = KeyringSnapshot

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only what the Ledger passes: a stray POSTGRES_* or *_SQLITE_DBNAME in the
        # process environment must never redirect the ledger to another store.
        settings = {
            "IS_SNAPSHOTTING_ENABLED": "y",
            # Recently used Keyrings stay in memory and are brought up to date with the
            # events since, instead of being rebuilt from their snapshot for every command;
            # commands decide on Keyring.copy() and never change the cached object, so the
            # cache can hand it out as it is (no deep copy).
            "AGGREGATE_CACHE_MAXSIZE": str(KEYRING_CACHE_SIZE),
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
            **(env or {}),
        }
        return Environment(name, settings)

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=PydanticMapper)

    def construct_views(self) -> ViewStore:
        """The durable views, in the same database as the events."""
        return creating_tables(self._construct_views)

    def _construct_views(self) -> ViewStore:
        if isinstance(self.factory, SQLiteFactory):
            return cast(SQLiteViews, self.factory.tracking_recorder(SQLiteViews))
        if self.factory.__class__.__module__ == "eventsourcing.postgres":
            from keyledger.adapters.driven.postgres_views import PostgresViews

            return cast(ViewStore, self.factory.tracking_recorder(PostgresViews))
        return MemoryViews()

    @property
    def can_subscribe(self) -> bool:
        """Whether the recorder pushes new events (PostgreSQL) rather than being polled."""
        return self.factory.__class__.__module__ == "eventsourcing.postgres"

    @property
    def is_shared(self) -> bool:
        """Whether other processes may write to the same store (not ``memory://``)."""
        return not isinstance(self.factory, POPOFactory)

    def construct_unit_of_work(self, views: ViewStore) -> UnitOfWork:
        """The commands' transactions on this store, with ``views`` written in them."""
        mapper = cast(PydanticMapper, self.mapper)
        if isinstance(self.factory, SQLiteFactory):
            return SQLiteUnitOfWork(self.recorder, views, mapper)
        if self.can_subscribe:
            from keyledger.adapters.driven.postgres_views import PostgresUnitOfWork

            return PostgresUnitOfWork(self.recorder, views, mapper)
        return MemoryUnitOfWork(self.recorder, views, mapper)

    def listener(self, unit_of_work: UnitOfWork) -> Listen | None:
        """``listen(notified, stopping)``: calls ``notified`` after each commit to the
        store, where the store can tell (PostgreSQL's NOTIFY), except the commits of
        ``unit_of_work`` (this process's commands hand their events over themselves);
        ``None`` elsewhere."""
        if not self.can_subscribe:
            return None
        from keyledger.adapters.driven.postgres_views import listen

        return partial(listen, self.recorder, ignored=unit_of_work.sent)

    def saved(self, keyring: Keyring, events: Sequence[Keyring.Event]) -> None:
        """After ``keyring``'s new ``events`` are committed, what eventsourcing's
        ``Application.save`` does after its insert: the repository's cache takes the
        Keyring, and a snapshot is written when one is due (:func:`snapshot_interval`),
        of the Keyring in hand at its new version. Never raises: a snapshot and the cache
        only speed up loading, and the command's events are already committed.

        eventsourcing caches a saved aggregate only where the cache is not brought up to
        date on each get; here it is cached either way, so the next command reads the
        account's events after this version (usually none) instead of reading and
        applying its own events again. That stays correct: the command path holds the
        account's locks until this returns, the Keyring is a copy no one changes after
        its commit, and a get still reads every event after the cached version, whoever
        wrote it."""
        try:
            repository = self.repository
            if repository.cache is not None:
                repository.cache.put(keyring.id, keyring)
            base = self.snapshotting_intervals.get(Keyring) if self.snapshotting_intervals else None
            if self.snapshots is None or not base:
                return
            interval = snapshot_interval(base, len(keyring.keys))
            if any(event.originator_version % interval == 0 for event in events):
                self.snapshots.put([KeyringSnapshot.take(keyring)])
        except Exception as error:
            logger.warning("after a command: snapshot or cache not updated: %s", type(error).__name__)
