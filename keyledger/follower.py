"""How a Ledger keeps its views current: the durable views next to the events, and this
process's verification index in memory.

Both follow the notification log in order, each event applied exactly once at its
position. A command's own events reach the durable views in the transaction that records
them (when the views' lock is free), and this process's index before the command
returns. Other processes follow with a background thread: on PostgreSQL it LISTENs and
catches up on each NOTIFY (and polls every second as a fallback); on SQLite, whose
recorder cannot notify, it reads the events after its position every
:data:`POLL_INTERVAL` seconds. Whoever applies events to the durable views first wins;
the others see the position has moved and only update their own index. A NOTIFY moves
only the index: the process whose command committed writes the views before that
command returns, and a poll checks that it did (it may have died in between).

A follower never skips an event and never dies: an event it cannot read, or a store it
cannot reach, stops it at the position before; it tries again with a growing pause and
logs each distinct cause once at ERROR. :attr:`Follower.confirmed` is when it last
confirmed that it held every event of the log, which is what the Ledger's ``max_lag``
measures.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

from eventsourcing.persistence import ApplicationRecorder, Notification

from keyledger.adapters.driven.sqlite_views import row_reader
from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.adapters.driven.unit_of_work import Committed
from keyledger.projections.ports import ViewStore
from keyledger.projections.project import project
from keyledger.projections.recorded import Recorded
from keyledger.projections.valid_keys import ValidKeyIndex

Listen = Callable[[Callable[[], None], threading.Event], None]
"""``listen(notified, stopping)``: calls ``notified`` after each commit to the store, until
``stopping`` is set."""

PAGE_SIZE = 1000
REBUILD_PAGE_SIZE = 10_000
POLL_INTERVAL = 0.02
"""Seconds between checks of the log head by a follower on SQLite."""
NOTIFY_FALLBACK_INTERVAL = 1.0
MAX_RETRY_INTERVAL = 1.0
"""The longest pause between two attempts of a follower that keeps failing."""
logger = logging.getLogger("keyledger")


class EventUnreadable(Exception):
    """A stored event that cannot be decoded: following stops before it."""

    def __init__(self, position: int, error: BaseException, before: list[Recorded]) -> None:
        super().__init__(f"the event at position {position} cannot be read: {type(error).__name__}")
        self.position = position
        self.before = before
        """The events of the same page that precede it, read successfully."""


class Follower:
    """Keeps the durable views and this process's verification index at the log head."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: PydanticMapper,
        store: ViewStore,
        start: tuple[ValidKeyIndex, int] | None = None,
        *,
        listen: Listen | None = None,
    ) -> None:
        """Load the index from the durable views, or take ``start`` (an index and the
        position it holds, as a forked process inherits them), and catch up. ``listen``
        tells of new commits where the store can (PostgreSQL's NOTIFY)."""
        self.recorder = recorder
        self.mapper = mapper
        self.store = store
        self._listen_for = listen
        self.lock = threading.RLock()
        if start is None:
            self.position = store.position()
            self.index = ValidKeyIndex(store.valid_entries())
        else:
            self.index, self.position = start
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._views_behind = False
        self._views_read: int | None = None
        """The durable views' position as read with the events about to be applied."""
        self._index_only = False
        self._views_owed = 0
        """The last position the index took without checking the durable views (see
        :meth:`_notified`); 0 when there is none to check."""
        self._read_rows = row_reader(recorder, store)
        self._read_index_rows = row_reader(recorder)
        """What the index alone needs (see :meth:`_notified`): the events, not the views' position."""
        self.confirmed = float("-inf")
        """When (``time.monotonic()``) this follower last confirmed that it held every
        event of the log; minus infinity while it is known not to."""
        self.problem: str | None = None
        """Why the last attempt to catch up failed (``None`` once one succeeds)."""
        self._not_before = float("-inf")
        self.failed_at = float("-inf")
        """When (``time.monotonic()``) the last attempt to catch up failed."""
        self.seen_head = self.position
        """The newest position seen in the store: the head at the last confirmation, or
        the event this follower is stuck before."""
        self._logged: str | None = None
        self.try_catch_up()  # an unreadable event leaves it stuck (and saying why), not unopened

    def _recorded(self, notifications: Sequence[Notification], after: int) -> list[Recorded]:
        events = []
        for notification in notifications:
            events.append(self.mapper.to_recorded(notification, notification.id, after))
            after = notification.id
        return events

    def _read(self, after: int, limit: int = PAGE_SIZE) -> list[Recorded]:
        events = []
        read = self.mapper.recorded
        rows = (self._read_index_rows if self._index_only else self._read_rows)(after, limit)
        for position, _, version, topic, state in rows:
            try:
                events.append(read(state, topic, version, position, after))
            except Exception as error:
                raise EventUnreadable(position, error, events) from error
            after = position
        return events

    def head(self) -> int:
        """The newest position in the store."""
        return self.recorder.max_notification_id() or 0

    def catch_up(self, notifications: Sequence[Notification] = ()) -> None:
        """Apply everything recorded after this process's position: ``notifications``
        when they follow on directly (a command's own), else what the store holds."""
        with self.lock:
            if not self._index_only and self._views_owed:
                self._catch_up_views(self._views_owed)
                self._views_owed = 0
            if notifications and notifications[0].id == self.position + 1:
                self._advance(self._recorded(notifications, self.position))
            self._read_to_head()

    def _read_to_head(self) -> None:
        """Read and apply pages until one comes back short: the head as of that read;
        first bring the durable views up to this process's position if writing them
        failed after the index had moved on (a store fault)."""
        if self._views_behind:
            self._catch_up_views(self.position)
            self._views_behind = False
        while True:
            started = time.monotonic()
            try:
                events = self._read(self.position)
            except EventUnreadable as error:
                self.seen_head = max(self.seen_head, error.position)
                if error.before:
                    self._advance(error.before)
                raise
            if events:
                if not self._index_only:
                    self._views_read = self._read_rows.views_position
                self._advance(events)
            if len(events) < PAGE_SIZE:
                self.seen_head = max(self.seen_head, self.position)
                if started > self._not_before:
                    self.confirmed = started
                return

    def take(self, committed: Committed) -> None:
        """After a command committed: bring this process's index up to its events.

        When the durable views took them in the command's transaction, ``committed``
        holds every event they applied, from the views' position to the command's last
        event: if this process's position is among them, the index takes those after it
        and reads nothing (events committed since are the followers' to apply; the
        thread following other processes, woken by one of their commits or its poll, may
        have taken some or all of these already). Otherwise the index reads up to the
        head, starting with the command's own events."""
        applied = committed.applied
        with self.lock:
            if applied and applied[0].previous <= self.position <= applied[-1].position:
                for event in applied:
                    if event.position > self.position:
                        self.index.apply(event)
                self.position = applied[-1].position
                if not self._views_behind:
                    return
                self._read_to_head()
            elif applied:
                self._read_to_head()
            else:
                self.catch_up(committed.notifications)

    def missed(self) -> None:
        """This process's index is known to lack events committed by now (a command's,
        whose application failed): it is not current until a read that starts after
        this moment reaches the head. Wakes the thread that follows, to read now."""
        self._not_before = time.monotonic()
        self.confirmed = float("-inf")
        self._changed.set()

    def _advance(self, events: list[Recorded]) -> None:
        # The index first: a revocation takes effect here before any more I/O. Then the
        # durable views, which the writer has usually updated in its own commit (a read
        # tells, where trying to write would take the write lock first; the position
        # read with these events, where the store reads both together); if they fail,
        # the next advance finds them behind and catches them up.
        views, self._views_read = self._views_read, None
        after = self.position
        for event in events:
            self.index.apply(event)
        self.position = events[-1].position
        if self._index_only:
            self._views_owed = self.position
            return
        self._views_behind = True  # until the durable views are known to have these
        if views is None:
            views = self.store.position()
        if views < events[-1].position and not self.store.write(events, project, after=after):
            self._catch_up_views(events[-1].position)
        self._views_behind = False

    def _catch_up_views(self, target: int, page: int = PAGE_SIZE) -> None:
        """Bring the durable views to ``target`` at least, from wherever they are."""
        while (position := self.store.position()) < target:
            events = self._read(position, page)
            if not events:
                return
            self.store.write(events, project, after=position)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build the durable views anew from the log and swap them in (see
        :meth:`ViewStore.rebuild`); this process's index becomes the rebuilt one. Returns
        the position the new views hold.

        Nothing here holds this follower's lock until the swap is done, so verification,
        commands and following go on meanwhile, on the views in use."""
        total = self.head()
        position, index = self.store.rebuild(self._read, total, progress, page=REBUILD_PAGE_SIZE)
        with self.lock:
            # Up to this process's position before it replaces the index in use, so that
            # no secret ended by then verifies again, not even for a moment.
            while position < self.position and (events := self._read(position)):
                for event in events:
                    index.apply(event)
                position = events[-1].position
            self.index, self.position = index, position
            self._read_to_head()
        return position

    # Following other processes.

    @property
    def following(self) -> bool:
        """Whether threads of this follower apply other processes' events."""
        return bool(self._threads) and not self._stopping.is_set()

    def follow(self, subscribe: bool, confirm_every: float = NOTIFY_FALLBACK_INTERVAL) -> None:
        """Start following other processes' events in daemon threads; the log head is
        read at least every ``confirm_every`` seconds, even where NOTIFY says when."""
        if subscribe:
            listener = threading.Thread(target=self._listen, name="keyledger-listen", daemon=True)
            self._threads.append(listener)
            listener.start()
        interval = min(NOTIFY_FALLBACK_INTERVAL, confirm_every) if subscribe else POLL_INTERVAL
        poller = threading.Thread(target=self._poll, args=(interval,), name="keyledger-follow", daemon=True)
        self._threads.append(poller)
        poller.start()

    def try_catch_up(self) -> bool:
        """:meth:`catch_up`, or record why it failed in :attr:`problem` (logged at ERROR
        once per distinct cause) and return ``False``; the position stays before the
        first event not applied, so the next attempt starts there."""
        try:
            self.catch_up()
        except Exception as error:
            # The class of a store's error only: its text may quote statements or values.
            cause = (
                str(error)
                if isinstance(error, EventUnreadable)
                else f"reading after position {self.position} failed: {type(error).__name__}"
            )
            self.problem = cause
            self.failed_at = time.monotonic()
            if cause != self._logged:
                self._logged = cause
                logger.error("following the ledger is stuck: %s", cause)
            return False
        if self.problem is not None:
            logger.warning("following the ledger again, at position %d", self.position)
            self.problem = self._logged = None
        return True

    def _poll(self, interval: float) -> None:
        pause = interval
        while not self._stopping.is_set():
            self._changed.wait(pause)
            self._changed.clear()
            if self._stopping.is_set() or sys.is_finalizing():
                return
            # One read when nothing is new; after a failure, wait longer each time.
            pause = interval if self.try_catch_up() else min(MAX_RETRY_INTERVAL, max(2 * pause, 0.05))

    def _listen(self) -> None:
        listen = self._listen_for
        if listen is None:
            return
        while not self._stopping.is_set():
            try:
                # Applied in this thread, not handed to the poller: one thread fewer to
                # wake (beside a thread busy verifying, each waits for the GIL).
                listen(self._notified, self._stopping)
            except Exception as error:
                logger.warning("listening for new events failed: %s", type(error).__name__)
                self._stopping.wait(NOTIFY_FALLBACK_INTERVAL)

    def _notified(self) -> None:
        # While stuck, the poller retries with its pauses; a NOTIFY per commit would not.
        # Another process's commit: the index takes its events now, and the durable
        # views are left to that process's command, which writes them before it returns
        # (in its commit, or just after if a follower held the views' lock); the next
        # poll or command here checks that they did. Writing them from here as well
        # would hold the views' lock while those commands try for it, and each that
        # finds it taken leaves its views to be written after its commit: more writes,
        # and more followers holding the lock.
        if self.problem is None:
            with self.lock:
                self._index_only = True
                try:
                    self.try_catch_up()
                finally:
                    self._index_only = False

    def stop(self) -> None:
        """Stop following (idempotent)."""
        self._stopping.set()
        self._changed.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
