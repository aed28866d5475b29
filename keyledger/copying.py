"""Copying a ledger into an empty store: a frozen history, or a migration.

:meth:`keyledger.Ledger.copy` copies every event recorded before an instant (or every
event) into an empty store, stream by stream as stored (the same ids, versions, topics
and bytes, so every chain still verifies), in the source's log order, then builds the
copy's views with a rebuild. Positions in the copy are dense (1, 2, 3, ...) where the
source's may have gaps (PostgreSQL's sequence skips ids, SQLite reuses none): an audit
entry's position differs between the two, its chain does not.

A copy with ``until`` is a frozen history: the copy records ``frozen_until`` and every
command on it raises :class:`~keyledger.FrozenLedger` (a past must not grow a second
future); queries, ``verify(..., at=)``, exports and ``check_integrity`` work, and a
``verify`` without ``at`` refuses (it is not a ledger to authenticate live requests
against). Without ``until`` the copy is a migration, and writable.

The copy records ``copy_of`` (source and instant) before its first event and marks it
complete after its views are built; a copy cut short (a crash, ``kill -9``) is refused by
:meth:`~keyledger.Ledger.open` with a message saying so, and never mistaken for a whole
one: delete it and copy again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import orjson
from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from keyledger.adapters.driven.transcoding import PydanticMapper
from keyledger.domain import InvalidInput, StoreUnavailable
from keyledger.projections.ports import ViewStore

COPY_OF = "copy_of"
FROZEN_UNTIL = "frozen_until"
PAGE = 1000

Progress = Callable[[int, int], None]


def start(target: ViewStore, recorder: ApplicationRecorder, source: str, until: datetime | None) -> None:
    """Check that the target store is empty, and record that a copy into it has begun."""
    if (recorder.max_notification_id() or 0) > 0 or target.setting(COPY_OF) is not None:
        raise InvalidInput("to_url", "the store to copy into must be empty (it holds events)")
    note = {"source": source, "until": None if until is None else until.isoformat(), "complete": False}
    target.record_setting(COPY_OF, orjson.dumps(note).decode(), replace=True)


def events_before(
    recorder: ApplicationRecorder, mapper: PydanticMapper, until: datetime | None, progress: Progress | None
) -> Iterator[list[StoredEvent]]:
    """The source's events recorded before ``until`` (all, without), page by page in log
    order. Each account records its events in time order, so the events of an account
    before ``until`` are a prefix of its stream: the copy's streams have no gaps."""
    head = recorder.max_notification_id() or 0
    after = 0
    while after < head:
        page = recorder.select_notifications(start=after + 1, limit=PAGE, stop=head)
        if not page:
            break
        kept = [
            StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
            for n in page
            if until is None or _recorded_at(mapper, n.state, n.id) < until
        ]
        after = page[-1].id
        if kept:
            yield kept
        if progress:
            progress(after, head)


def finish(target: ViewStore, until: datetime | None) -> None:
    """Record the copy as whole (and, with ``until``, frozen at that instant)."""
    if until is not None:
        target.record_setting(FROZEN_UNTIL, until.isoformat(), replace=True)
    note = orjson.loads(target.setting(COPY_OF) or "{}")
    note["complete"] = True
    target.record_setting(COPY_OF, orjson.dumps(note).decode(), replace=True)


def frozen_until(views: ViewStore) -> datetime | None:
    """The instant a frozen copy stops at, or ``None``; refuses a copy cut short."""
    note = views.setting(COPY_OF)
    if note is not None and not orjson.loads(note).get("complete"):
        raise StoreUnavailable(
            "this store holds a copy that was cut short (it is not a whole ledger): delete it and copy again"
        )
    text = views.setting(FROZEN_UNTIL)
    return None if text is None else datetime.fromisoformat(text)


def _recorded_at(mapper: PydanticMapper, state: bytes, position: int) -> datetime:
    return datetime.fromisoformat(str(mapper.decode_bytes(state, position)["timestamp"]))
