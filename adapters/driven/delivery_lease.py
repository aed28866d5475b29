"""Leases: one deliverer per subscription name at a time (see
:class:`keyledger.projections.delivery.Lease`).

- PostgreSQL: a session-level advisory lock on a connection of the lease's own (a
  64-bit key from the schema and the name, in a range no other keyledger lock uses). The
  same connection LISTENs for commits, so a holder wakes on each NOTIFY, and finds out
  that its session is gone (and with it the lock, which the server then gives to a
  deliverer standing by) at its next wait.
- SQLite: an exclusive lock on one byte (by hash of the name) of
  ``<database>.subscriptions.lock``, which the kernel releases if the process dies.
- Within one process (and for ``memory://``): a set of the names held.

Deliverers standing by try again every :data:`STANDBY_INTERVAL` seconds (the
subscription's loop).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
import zlib
from typing import Any

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.adapters.driven.sqlite_views import SQLiteViews
from keyledger.projections.delivery import Lease, LeaseLost
from keyledger.projections.ports import ViewStore

STANDBY_INTERVAL = 0.2
"""Seconds between two tries of a deliverer standing by for a lease."""
POLL_INTERVAL = 0.02
"""Seconds between two looks for new entries where nothing tells of commits (SQLite,
memory), as the followers poll."""
NOTIFY_FALLBACK_INTERVAL = 0.25
"""On PostgreSQL, seconds between two looks for new entries without a NOTIFY."""
FILE_LOCK_RANGE = 1 << 30

_HELD: set[tuple[str, str]] = set()
_HELD_LOCK = threading.Lock()
_FILES: dict[str, int] = {}
"""One descriptor per lock file, kept open for the life of the process: closing any
descriptor of a file drops every POSIX record lock the process holds on it."""


class LocalLease(Lease):
    """Held by one thread of this process at a time (``memory://``, and the first step
    of the SQLite lease)."""

    poll_interval = POLL_INTERVAL

    def __init__(self, scope: str, name: str) -> None:
        self._key = (scope, name)
        self._held = False

    def _take_local(self) -> bool:
        with _HELD_LOCK:
            if self._key in _HELD:
                return False
            _HELD.add(self._key)
            self._held = True
            return True

    def _give_local(self) -> None:
        with _HELD_LOCK:
            if self._held:
                _HELD.discard(self._key)
                self._held = False

    def _take(self) -> bool:
        return self._take_local()

    def try_acquire(self) -> bool:
        return self._held or self._take()

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return False

    def release(self) -> None:
        self._give_local()


class FileLease(LocalLease):
    """SQLite: this process's hold, then one byte of ``<database>.subscriptions.lock``."""

    def __init__(self, database: str, name: str) -> None:
        super().__init__(database, name)
        self._path = database + ".subscriptions.lock"
        self._offset = zlib.crc32(name.encode()) % FILE_LOCK_RANGE
        self._locked = False

    def _descriptor(self) -> int:
        with _HELD_LOCK:
            fd = _FILES.get(self._path)
            if fd is None:
                fd = _FILES[self._path] = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            return fd

    def _take(self) -> bool:
        if not self._take_local():
            return False
        try:
            fcntl.lockf(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self._offset)
        except OSError as error:
            self._give_local()
            if error.errno not in (errno.EACCES, errno.EAGAIN, errno.EDEADLK):
                raise
            return False
        self._locked = True
        return True

    def release(self) -> None:
        if self._locked:
            self._locked = False
            with contextlib.suppress(OSError):
                fcntl.lockf(self._descriptor(), fcntl.LOCK_UN, 1, self._offset)
        self._give_local()


class PostgresLease(Lease):
    """PostgreSQL: a session advisory lock, and LISTEN, on a connection of its own."""

    poll_interval = NOTIFY_FALLBACK_INTERVAL

    def __init__(self, connect: Any, schema: str, channel: str, name: str) -> None:
        self._connect = connect
        self._channel = channel
        digest = hashlib.sha256(f"keyledger subscription\0{schema}\0{name}".encode()).digest()
        # In [2**61, 2**62): never one of the views' 32-bit lock keys.
        self.key = (int.from_bytes(digest[:8], "big") >> 3) | (1 << 61)
        self._connection: Any = None
        self._holding = False

    def try_acquire(self) -> bool:
        import psycopg
        from psycopg.sql import SQL, Identifier

        if self._holding:
            return True
        try:
            if self._connection is None:
                self._connection = self._connect()
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            if row is not None and row[0]:
                self._connection.execute(SQL("LISTEN {0}").format(Identifier(self._channel)))
                self._holding = True
        except psycopg.Error:
            self._close()
        return self._holding

    def wait(self, timeout: float) -> bool:
        import psycopg

        connection = self._connection
        if connection is None or not self._holding:
            raise LeaseLost("not held")
        try:
            notified = False
            for _ in connection.notifies(timeout=timeout, stop_after=1):
                notified = True
            if connection.closed or connection.broken:
                raise LeaseLost("the session ended")
        except psycopg.Error as error:
            self._close()
            raise LeaseLost(type(error).__name__) from None
        return notified

    def release(self) -> None:
        # Ending the session releases the lock and the LISTEN with it.
        self._close()

    def _close(self) -> None:
        self._holding = False
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def lease_for(views: ViewStore, channel: str | None, name: str) -> Lease:
    """The lease of subscription ``name`` on the store of ``views``; ``channel`` is the
    store's NOTIFY channel (PostgreSQL)."""
    if isinstance(views, SQLiteViews):
        return FileLease(str(views.datastore.pool.db_name), name)
    if isinstance(views, MemoryViews):
        return LocalLease(f"memory:{id(views)}", name)
    from keyledger.adapters.driven.postgres_views import PostgresViews

    if isinstance(views, PostgresViews) and channel is not None:
        pool = views.datastore.pool
        given = pool.kwargs() if callable(pool.kwargs) else (pool.kwargs or {})
        settings = {k: v for k, v in given.items() if k != "row_factory"}

        def connect() -> Any:
            import psycopg

            return psycopg.connect(**settings, autocommit=True, connect_timeout=5)

        return PostgresLease(connect, views.datastore.schema, channel, name)
    raise TypeError(f"no lease for {type(views).__name__}")
