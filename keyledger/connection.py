"""This process's hold on a ledger's store: what a Ledger opens, closes and, in a forked
child, opens again.

A :class:`Connection` holds the eventsourcing application (events and snapshots), the
durable views, the unit of work that commands append through, this process's
:class:`~keyledger.follower.Follower` and usage recorder, the account locks across
processes, and the per-account locks of this process. Every use of the store
goes through :meth:`Connection.guard`, which refuses once the ledger is closed, and in a
process forked after the ledger was opened first reconnects: a child gets none of the
parent's threads and must not use the parent's connections, nor close them (that would
end them for the parent too).

A connection left open is stopped when it is garbage-collected and at interpreter exit
(``weakref.finalize``), so its threads never touch the store while Python shuts down.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from eventsourcing.persistence import MapperDeserialisationError, PersistenceError

from keyledger.adapters.driven.account_locks import AccountLocks
from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.adapters.driven.unit_of_work import UnitOfWork
from keyledger.application import KeyringApplication
from keyledger.bootstrap import Clock, Connect
from keyledger.domain import IntegrityViolation, StoreUnavailable
from keyledger.follower import EventUnreadable, Follower
from keyledger.projections.ports import ViewStore
from keyledger.projections.valid_keys import ValidKeyIndex
from keyledger.usage import UsageRecorder

T = TypeVar("T")
logger = logging.getLogger("keyledger")

LOCK_STRIPES = 64
"""Commands on accounts whose names hash alike wait for each other, in one process."""


class Connection:
    """The application, views, follower, usage recorder and account locks of one open ledger in
    this process (see the module's docstring)."""

    app: KeyringApplication
    mapper: PydanticMapper
    locks: AccountLocks
    views: ViewStore
    unit_of_work: UnitOfWork
    follower: Follower
    usage: UsageRecorder

    def __init__(
        self,
        app: KeyringApplication,
        locks: AccountLocks,
        *,
        name: str,
        clock: Clock,
        follow: bool,
        lag: float,
        reconnect: Connect | None,
    ) -> None:
        self.name = name
        """The store, without any password."""
        self.lag = lag
        """Seconds verification may go without confirming the log head."""
        self._clock = clock
        self._follow = follow
        self._connect = reconnect
        self.closed = False
        self.frozen_until: datetime | None = None
        """The instant a frozen copy stops at (commands refused), or ``None``."""
        self.forked = False
        self._fork_consistent = True
        self._reconnecting = threading.Lock()
        self.stopping = threading.Event()
        """Set when the ledger closes: what runs in a thread of it stops."""
        self.stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._after_reconnect: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._threads: list[Follower | UsageRecorder] = []
        self._finalizer = weakref.finalize(self, _stop_threads, self.stopping, self._threads)
        self._attach(app, locks, None)
        _OPEN.add(self)

    def _attach(
        self, app: KeyringApplication, locks: AccountLocks, start: tuple[ValidKeyIndex, int] | None
    ) -> None:
        """Take ``app``'s store for the views, this process's follower and usage
        recorder; start following other processes if the ledger does."""
        mapper = app.mapper
        assert isinstance(mapper, PydanticMapper)
        views = self.translate(app.construct_views)
        unit_of_work = app.construct_unit_of_work(views)
        listen = app.listener(unit_of_work)
        follower = self.translate(lambda: Follower(app.recorder, mapper, views, start, listen=listen))
        self.app, self.mapper, self.locks, self.views, self.follower = app, mapper, locks, views, follower
        self.unit_of_work = unit_of_work
        self.usage = UsageRecorder(views, self._clock)
        self._threads[:] = [follower, self.usage]
        if self._follow:
            follower.follow(subscribe=app.can_subscribe, confirm_every=self.lag / 4)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call the bound method ``callback`` after a forked process has reconnected
        (to pick up the new parts); held weakly, so it keeps nothing alive."""
        self._after_reconnect.append(weakref.WeakMethod(callback))

    @property
    def following(self) -> bool:
        """Whether threads of this process apply other processes' events."""
        return self.follower.following

    def lock_for(self, account: str) -> threading.Lock:
        """This process's lock of ``account`` (one command at a time per account)."""
        return self.stripes[hash(account) % LOCK_STRIPES]

    def ready(self) -> None:
        """Refuse on a closed ledger; in a forked process, reconnect first."""
        if self.closed:
            raise StoreUnavailable("the ledger is closed")
        if self.forked:
            self.reconnect()

    def guard(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` on the store, once the ledger is open in this process."""
        self.ready()
        return self.translate(operation)

    def translate(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; the store's errors become keyledger's."""
        try:
            return operation()
        except PersistenceError as error:
            raise StoreUnavailable(f"store {self.name} failed: {type(error).__name__}") from None
        except (EventUnreadable, MapperDeserialisationError) as error:
            raise IntegrityViolation(f"{error}; check the ledger's integrity") from None

    def close(self) -> None:
        """Stop the threads and release the store's connections (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.follower.confirmed = float("-inf")
        _OPEN.discard(self)
        self._finalizer()
        if self.forked:
            return  # what the parent opened is the parent's to close
        self.locks.close()
        self.views.close()
        self.app.close()

    # Forking.

    def before_fork(self) -> None:
        # Hold the follower's lock across the fork, so the child's copy of the index is
        # never caught half way through applying a page.
        self._fork_consistent = self.follower.lock.acquire(timeout=1.0)

    def after_fork_in_parent(self) -> None:
        if self._fork_consistent:
            self.follower.lock.release()

    def after_fork_in_child(self) -> None:
        self.forked = True
        self.follower.confirmed = float("-inf")
        self.follower.lock = threading.RLock()
        self._reconnecting = threading.Lock()
        self.stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self.stopping = threading.Event()
        # The parent's follower and usage recorder are not this process's to stop or flush.
        self._finalizer.detach()
        self._threads = []
        self._finalizer = weakref.finalize(self, _stop_threads, self.stopping, self._threads)

    def reconnect(self) -> None:
        """In a forked process, before anything else: new connections, and the index
        inherited from the parent (reloaded if the fork may have caught it mid-update)
        brought up to the head, with threads of this process's own."""
        with self._reconnecting:
            if not self.forked:
                return
            if self._connect is None:
                raise StoreUnavailable(
                    "this ledger was opened before the process forked; open it again in this process"
                )
            old = self.follower
            _INHERITED.append((self.app, self.locks, self.views, old, self.usage))
            app, locks = self._connect()
            start = (old.index, old.position) if self._fork_consistent else None
            try:
                self._attach(app, locks, start)
            except BaseException:
                locks.close()
                app.close()
                raise
            self.forked = False
            _OPEN.add(self)
        for reference in self._after_reconnect:
            callback = reference()
            if callback is not None:
                callback()
        logger.info("reconnected to %s after a fork, at position %d", self.name, self.follower.position)


def _stop_threads(stopping: threading.Event, parts: list[Follower | UsageRecorder]) -> None:
    """Stop a connection's threads (a sweeper sees ``stopping``); idempotent."""
    stopping.set()
    for part in parts:
        part.stop()


_OPEN: weakref.WeakSet[Connection] = weakref.WeakSet()
"""Every connection of this process not yet closed, for the fork handlers."""
_INHERITED: list[object] = []
"""What a forked process inherited from connections opened before the fork: kept,
never closed or collected, since closing a connection shared with the parent would end
it for the parent too."""


def _before_fork() -> None:
    for connection in list(_OPEN):
        connection.before_fork()


def _after_fork_in_parent() -> None:
    for connection in list(_OPEN):
        connection.after_fork_in_parent()


def _after_fork_in_child() -> None:
    for connection in list(_OPEN):
        connection.after_fork_in_child()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
