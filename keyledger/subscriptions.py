"""Durable subscribers: a handler called with each audit entry, in position order, in a
background thread, resuming after a restart where it left off.

A subscription keeps, per name and in the ledger's own database, the last position
delivered (``keyledger_subscriptions``; :mod:`keyledger.adapters.driven.delivery_store`).
Its thread reads the audit trail after that position and calls the handler with each
entry; the position moves on once the handler has returned. So:

- **In order, never skipped.** An exception in the handler is logged (the name, the
  position and the exception's class: never the entry's content nor the message) and
  the same entry is tried again after a pause that doubles from :data:`FIRST_RETRY` up to
  :data:`MAX_RETRY` seconds, for as long as it takes.
- **At least once.** A process that dies between the handler's return and the save of
  the position delivers that entry again when the name is next subscribed; a clean
  :meth:`Subscription.stop` waits for the handler and the save, and repeats nothing.
  Handlers that must act once should key on ``entry.position``.
- **One deliverer per name.** Subscribing under a name another thread or process is
  delivering under stands by, and takes over when that one stops or dies
  (:mod:`keyledger.adapters.driven.delivery_lease`).
- **Fresh.** New entries are looked for every 20 ms on SQLite and in memory (as the
  followers poll); PostgreSQL's NOTIFY wakes the subscription at once, with a look every
  250 ms besides.

Subscriptions do not follow into a forked child: subscribe in the process that delivers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from keyledger.projections.audit import AuditEntry, AuditQuery
from keyledger.projections.delivery import DeliveryStore, Lease, LeaseLost
from keyledger.projections.ports import ViewStore

logger = logging.getLogger("keyledger")


Handler = Callable[[AuditEntry], object]
"""Called with each entry; returning (whatever it returns) counts as delivered."""
FIRST_RETRY = 0.1
MAX_RETRY = 30.0
"""The pause before the first retry of a failed entry, doubling up to this many seconds."""
CHASE_FOR = 0.5
CHASE_INTERVAL = 0.01
"""After a NOTIFY, look every :data:`CHASE_INTERVAL` s for up to :data:`CHASE_FOR` s
until the entry is in the audit trail (its views may commit just after the events)."""


class Undeliverable(Exception):
    """Raised by an internal handler (a webhook's) to give up on an entry: it is recorded
    as failed and delivery moves on. Handlers passed to ``subscribe`` are never skipped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TryAgain(Exception):
    """Raised by an internal handler (a webhook's) for a failure whose ``reason`` (an
    HTTP status, an error's class) may be recorded; the entry is tried again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """A handler following the audit trail under a durable name; see the module's docstring."""

    def __init__(
        self,
        handler: Handler,
        *,
        name: str,
        batch: int,
        views: ViewStore,
        store: DeliveryStore,
        lease: Lease,
        head: Callable[[], int],
        closing: threading.Event,
        retry: tuple[float, float] | None = None,
    ) -> None:
        self.name = name
        self._retry = retry
        self._handler = handler
        self._batch = batch
        self._views = views
        self._store = store
        self._lease = lease
        self._head = head
        self._closing = closing
        self._stopping = threading.Event()
        self._position = store.state(name).position
        self._chase_until = 0.0
        self.active = False
        """Whether this subscription holds its name's lease (else it stands by)."""
        self._thread = threading.Thread(target=self._run, name=f"keyledger-subscription-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def position(self) -> int:
        """The last position delivered under this name (the store's, while standing by)."""
        return self._position if self.active else self._store.state(self.name).position

    @property
    def lag(self) -> int:
        """Positions recorded after :attr:`position` (one read of the log head)."""
        return max(0, self._head() - self.position)

    @property
    def running(self) -> bool:
        """Whether its thread runs (until :meth:`stop`, or the ledger closes)."""
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the entry in hand, once its position is saved (idempotent): a clean
        stop repeats nothing. Waits up to ``timeout`` seconds (default: as long as the
        handler takes); from inside the handler, returns at once."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __repr__(self) -> str:
        state = "active" if self.active else ("standing by" if self.running else "stopped")
        return f"Subscription({self.name!r}, position={self._position}, {state})"

    # The thread.

    def _stopped(self) -> bool:
        return self._stopping.is_set() or self._closing.is_set()

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (cut short by a stop); whether to stop."""
        deadline = time.monotonic() + seconds
        while not self._stopped() and (left := deadline - time.monotonic()) > 0:
            self._stopping.wait(min(left, 0.05))
        return self._stopped()

    def _run(self) -> None:
        logged: str | None = None
        try:
            while not self._stopped():
                try:
                    acquired = self._lease.try_acquire()
                except Exception as error:
                    # The thread never dies of it: it says so (once per cause) and tries again.
                    if type(error).__name__ != logged:
                        logged = type(error).__name__
                        logger.error("subscription %r: taking its lease failed: %s", self.name, logged)
                    acquired = False
                if not acquired:
                    self._pause(0.2)
                    continue
                self.active = True
                try:
                    self._position = self._store.state(self.name).position
                    self._deliver_while_held()
                except LeaseLost as lost:
                    logger.warning("subscription %r lost its lease (%s); standing by", self.name, lost)
                except Exception as error:
                    logger.error("subscription %r: reading failed: %s", self.name, type(error).__name__)
                    self._pause(FIRST_RETRY)
                finally:
                    self.active = False
                    self._lease.release()
        finally:
            self._lease.release()

    def _deliver_while_held(self) -> None:
        failures = 0
        while not self._stopped():
            try:
                entries = self._read()
                failures = 0
            except Exception as error:
                failures += 1
                if failures == 1:
                    logger.warning("subscription %r: reading failed: %s", self.name, type(error).__name__)
                self._pause(self._backoff(failures))
                continue
            if not entries:
                self._wait_for_news()
                continue
            for entry in entries:
                if self._stopped() or not self._deliver(entry):
                    return

    def _read(self) -> list[AuditEntry]:
        if self._views.position() <= self._position:
            return []
        return self._views.audit(AuditQuery.build(after=self._position, limit=self._batch))

    def _wait_for_news(self) -> None:
        chasing = time.monotonic() < self._chase_until
        interval = CHASE_INTERVAL if chasing else self._lease.poll_interval
        if self._lease.wait(min(interval, 0.1)):
            self._chase_until = time.monotonic() + CHASE_FOR

    def _deliver(self, entry: AuditEntry) -> bool:
        """Call the handler until it returns, then save the position; ``False`` if
        stopped first (the entry is then delivered again by whoever comes next)."""
        attempts = 0
        failed: str | None = None
        while True:
            try:
                self._handler(entry)
                break
            except Undeliverable as given_up:
                failed = given_up.reason
                logger.warning(
                    "subscription %r gave up on the entry at position %d: %s",
                    self.name,
                    entry.position,
                    failed,
                )
                break
            except Exception as error:
                attempts += 1
                delay = self._backoff(attempts)
                cause = error.reason if isinstance(error, TryAgain) else type(error).__name__
                logger.warning(
                    "subscription %r: the handler failed on the entry at position %d (attempt %d: %s); "
                    "trying it again in %.2g s",
                    self.name, entry.position, attempts, cause, delay,
                )  # fmt: skip
                self._record(partial(self._store.attempt_failed, self.name, attempts, cause))
                if self._pause(delay):
                    return False
        return self._save(entry.position, failed)

    def _backoff(self, attempts: int) -> float:
        first, most = self._retry or (FIRST_RETRY, MAX_RETRY)
        return float(min(most, first * 2 ** min(attempts - 1, 30)))

    def _save(self, position: int, failed: str | None) -> bool:
        attempts = 0
        while True:
            try:
                self._store.save(self.name, position, failed=failed)
                self._position = position
                return True
            except Exception as error:
                attempts += 1
                logger.warning(
                    "subscription %r: saving position %d failed: %s",
                    self.name,
                    position,
                    type(error).__name__,
                )
                # Stopping now repeats this entry next time, as a crash would.
                if self._pause(self._backoff(attempts)):
                    return False

    def _record(self, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception as error:
            logger.warning("subscription %r: recording a failure failed: %s", self.name, type(error).__name__)
