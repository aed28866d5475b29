"""The unit of work: one command's transaction, owned in one place.

A command hands its new events over as eventsourcing's stored events. The unit of work
opens one transaction of the events' database, appends them, brings the durable views up
to them (with any events of other processes the views had not taken yet), records the
views' position, and commits; it hands back the new events' notifications and what the
views took, so the caller brings this process's index up without reading anything. The
events and the views are all or nothing, and a command pays one durable commit, not two.

eventsourcing 9.5 appends only in transactions of its own, so the stores' transactions
(:class:`~keyledger.adapters.driven.sqlite_views.SQLiteTransaction`,
:class:`~keyledger.adapters.driven.postgres_views.PostgresTransaction`) write the events
table with the recorders' public statements and attributes, the way the recorders' own
inserts do; ``tests/unit/test_eventsourcing_surface.py`` checks each attribute, and
``tests/integration/test_recorder_conformance.py`` runs eventsourcing's own recorder cases
through :meth:`UnitOfWork.begin`. A ``memory://`` ledger has no transaction to share:
its events go through the recorder's public insert and the views follow after.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Notification, PersistenceError, StoredEvent

from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.projections.ports import ViewStore
from keyledger.projections.project import project
from keyledger.projections.recorded import Recorded

CATCH_UP_LIMIT = 1000
"""Views further behind than this many events are left to the follower, after the commit:
a command does not replay other processes' backlog inside its own transaction."""


@dataclass(frozen=True, slots=True)
class Committed:
    """What a committed unit of work recorded and what the durable views took with it."""

    notifications: list[Notification]
    """The new events, with the positions the store gave them."""
    applied: list[Recorded]
    """Every event the durable views took in the same transaction, from their position
    before it up to the last new event; empty when the views were left to the follower
    (another writer held them, they were too far behind, or the store keeps no views in
    the events' transactions)."""


def as_notifications(ids: Sequence[int], stored_events: Sequence[StoredEvent]) -> list[Notification]:
    """The notifications of events just appended, given the positions the store gave them."""
    return [
        Notification(
            id=i, originator_id=s.originator_id, originator_version=s.originator_version,
            topic=s.topic, state=s.state,
        )
        for i, s in zip(ids, stored_events, strict=True)
    ]  # fmt: skip


class Transaction(ABC):
    """An open transaction of the events' database (a store's own subclass): append, bring
    the views up, and let the unit of work commit."""

    def __init__(self, cursor: Any, unit_of_work: UnitOfWork) -> None:
        self.cursor = cursor
        self.unit_of_work = unit_of_work
        self.recorder = unit_of_work.recorder
        self.views = unit_of_work.views
        self.mapper = unit_of_work.mapper

    @abstractmethod
    def append(self, stored_events: Sequence[StoredEvent]) -> list[Notification]:
        """Insert ``stored_events`` after the log's head; a version already taken raises
        eventsourcing's ``IntegrityError`` (another writer came first)."""

    @abstractmethod
    def between(self, after: int, upto: int) -> list[Notification]:
        """The events after position ``after`` up to ``upto``, read in this transaction."""

    def lock_views(self) -> int | None:
        """Take the views' lock in this transaction and read their position; ``None``
        when another writer holds them (where a store does not wait for it)."""
        if not self.views.try_lock_in(self.cursor):
            return None
        return self.views.position_in(self.cursor)

    def prefetched(self) -> Mapping[Any, Any] | None:
        """Rows of the views already read in this transaction, for :meth:`apply_views`
        (a network database reads them with the append; see ``SQLViews.write_in``)."""
        return None

    def apply_views(self, new: Sequence[Notification]) -> list[Recorded]:
        """Bring the durable views up to ``new`` (this transaction's events), with the
        events before them the views have not taken yet; returns every event applied, or
        nothing when the views are left to the follower (after the commit: when the
        lock was not taken, or the views are too far behind)."""
        views, cursor = self.views, self.cursor
        try:
            if not new:
                return []
            position = self.lock_views()
            if position is None:
                return []
            first = new[0].id
            if first - 1 - position > CATCH_UP_LIMIT:
                return []
            earlier = self.between(position, first - 1) if position < first - 1 else []
            events = []
            after = position
            for notification in [*earlier, *new]:
                events.append(self.mapper.to_recorded(notification, notification.id, after))
                after = notification.id
            read = self.prefetched()
            if not views.write_in(cursor, events, project, after=position, position=position, read=read):
                return []
        except PersistenceError:
            raise
        except Exception as error:
            # An event the views cannot take (unreadable, say): the transaction rolls back,
            # and the command learns that the store failed, not a Python error.
            raise PersistenceError(f"the views cannot take the events: {type(error).__name__}") from error
        return events


class UnitOfWork(ABC):
    """Opens the transactions in which commands append (a store's own subclass)."""

    retried: tuple[type[Exception], ...] = ()
    """The store's errors after which a command that did not land tries again (a lost
    connection on PostgreSQL, as eventsourcing's own recorder retries its insert);
    anything else is a failure of the store."""

    def __init__(self, recorder: ApplicationRecorder, views: ViewStore, mapper: PydanticMapper) -> None:
        self.recorder = recorder
        self.views = views
        self.mapper = mapper

    def sent(self, payload: str) -> bool:
        """Whether a NOTIFY with this ``payload`` was sent by this unit of work's commits:
        they are this process's commands', which hand their events to this process's
        follower themselves (PostgreSQL; elsewhere nothing notifies)."""
        return False

    @abstractmethod
    def begin(self) -> AbstractContextManager[Transaction]:
        """A new transaction: committed when the block ends, rolled back if it raises.
        The store's errors are eventsourcing's (``IntegrityError`` for a version taken,
        ``PersistenceError`` for the rest), raised at the statement or at the commit."""

    def commit(self, stored_events: Sequence[StoredEvent]) -> Committed:
        """Append ``stored_events`` and bring the durable views up to them, in one
        transaction."""
        if not stored_events:
            return Committed([], [])
        with self.begin() as transaction:
            new = transaction.append(stored_events)
            applied = transaction.apply_views(new)
        return Committed(new, applied)


class _MemoryTransaction(Transaction):
    def append(self, stored_events: Sequence[StoredEvent]) -> list[Notification]:
        ids = self.recorder.insert_events(stored_events) or []
        return as_notifications(ids, stored_events)

    def between(self, after: int, upto: int) -> list[Notification]:
        limit = max(1, upto - after)
        return list(self.recorder.select_notifications(start=after + 1, limit=limit, stop=upto))

    def apply_views(self, new: Sequence[Notification]) -> list[Recorded]:
        return []  # the views are this process's own: the follower applies the events


class MemoryUnitOfWork(UnitOfWork):
    """``memory://``: the POPO recorder's own insert (atomic under its lock); the views,
    in this process's memory, follow after."""

    @contextmanager
    def begin(self) -> Iterator[Transaction]:
        yield _MemoryTransaction(None, self)
