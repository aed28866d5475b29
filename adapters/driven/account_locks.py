"""Account locks: commands on one account take turns across processes.

A command loads the account's Keyring, decides, and appends at the next version; two
processes doing that at once make one of them lose and decide again. Under a steady
load the losers can keep losing (the winner is already deciding its next command), so
each store gives commands on one account a turn, taken before the Keyring is loaded and
given back after the commit:

- SQLite: an exclusive lock on one byte (by the account's hash) of ``<database>.lock``,
  beside the file like ``-wal``.
- PostgreSQL: a session-level advisory lock (two-key form, so it never meets the views'
  one-key lock), on a connection the command holds for its turn. Each command in flight
  has its own connection, kept for the next, so a thread never waits behind another
  thread's lock on a shared session. A wait longer than :data:`LOCK_TIMEOUT` fails.

Either lock is released by the system if the process dies (the kernel closes the file;
PostgreSQL ends the session). Within one process the Ledger's own locks already
serialise commands on an account; these only order processes. A turn is an
optimisation of fairness, not of correctness: the version check on append still
decides every race.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from keyledger.adapters.driven.stores import StoreSettings
from keyledger.domain import StoreUnavailable

ACCOUNT_LOCK_RANGE = 1 << 20
"""Bytes of the SQLite lock file the accounts are spread over."""
LOCK_NAMESPACE = 0x6B6C  # "kl"
"""The first key of every PostgreSQL advisory lock an account lock takes."""
LOCK_TIMEOUT = "10s"
"""How long a PostgreSQL command waits for its account's turn. (A SQLite turn waits as
long as its holder keeps it: a command's length, or until the holder dies.)"""
IDLE_CONNECTIONS = 4
"""Turn connections kept open between commands."""


class AccountLocks:
    """No locks: ``memory://`` ledgers live in one process."""

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[None]:
        """Hold ``account``'s lock (its turn) for the body of the ``with``."""
        yield

    def close(self) -> None:
        """Release what the locks hold (idempotent)."""


class FileTurns(AccountLocks):
    """SQLite: one byte of a lock file per account (by hash)."""

    def __init__(self, path: str) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[None]:
        fd = self._fd
        if fd is None:
            raise StoreUnavailable("the ledger is closed")
        offset = zlib.crc32(account.encode()) % ACCOUNT_LOCK_RANGE
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
                break
            except OSError as error:
                # Record locks belong to the process, so the kernel's deadlock check can
                # see a cycle through two threads of one process that is not one (thread
                # A holds X while thread B waits for Y; another process holds Y and asks
                # for X): wait a moment and ask again; a real holder lets go in time.
                if error.errno != errno.EDEADLK:
                    raise StoreUnavailable(f"cannot lock account {account!r}: {error.strerror}") from None
                time.sleep(random.uniform(0.001, 0.01))  # noqa: S311 - jitter, not a secret
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # closed meanwhile: the lock went with the file
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PostgresAccountLocks(AccountLocks):
    """PostgreSQL: a session advisory lock per account (by hash, within the schema)."""

    def __init__(self, connect: Callable[[], Any], schema: str, describe: str) -> None:
        self._connect = connect
        self._schema = schema
        self._describe = describe
        self._idle: list[Any] = []
        self._guard = threading.Lock()
        self._closed = False

    def key(self, account: str) -> int:
        """The second key of the account's lock: a signed 32-bit hash."""
        value = zlib.crc32(f"{self._schema}\0{account}".encode())
        return value - (1 << 32) if value >= 1 << 31 else value

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[None]:
        import psycopg

        key = self.key(account)
        for fresh in (False, True):
            connection = self._take(fresh=fresh)
            try:
                connection.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
                break
            except psycopg.Error as error:
                connection.close()
                # A kept connection may have died since (a restart, an idle timeout): one
                # more try on a new one. A lock timeout on a new one is the answer.
                if fresh or isinstance(error, psycopg.errors.LockNotAvailable):
                    raise StoreUnavailable(
                        f"store {self._describe}: cannot lock account {account!r} ({type(error).__name__})"
                    ) from None
        try:
            yield
        finally:
            try:
                connection.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, key))
            except psycopg.Error:
                connection.close()  # the session ends, and its lock with it
            else:
                self._give(connection)

    def _take(self, *, fresh: bool = False) -> Any:
        import psycopg

        with self._guard:
            if self._closed:
                raise StoreUnavailable("the ledger is closed")
            if self._idle and not fresh:
                return self._idle.pop()
        connection = None
        try:
            connection = self._connect()
            connection.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        except psycopg.Error as error:
            if connection is not None:
                connection.close()
            raise StoreUnavailable(f"store {self._describe} failed: {type(error).__name__}") from None
        return connection

    def _give(self, connection: Any) -> None:
        with self._guard:
            if not self._closed and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def account_locks_for(settings: StoreSettings) -> AccountLocks:
    """The account locks of the store ``settings`` name."""
    env = settings.env
    if settings.kind == "sqlite":
        return FileTurns(env["SQLITE_DBNAME"] + ".lock")
    if settings.kind == "postgresql":

        def connect() -> Any:
            import psycopg

            return psycopg.connect(
                host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], dbname=env["POSTGRES_DBNAME"],
                user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"],
                connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]), autocommit=True,
            )  # fmt: skip

        return PostgresAccountLocks(connect, env["POSTGRES_SCHEMA"] or "public", settings.describe())
    return AccountLocks()
