"""The views of a ``memory://`` ledger: the same port as the SQL views, in dicts."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from threading import RLock

from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder

from keyledger.domain.chain import GENESIS
from keyledger.projections.audit import AuditEntry, AuditQuery, entry_from
from keyledger.projections.catalogue import KeyRow, KeyView
from keyledger.projections.ports import (
    VIEWS_NAME,
    ConsistentRead,
    Project,
    ReadRecorded,
    ViewStore,
    ViewWriter,
)
from keyledger.projections.project import project
from keyledger.projections.recorded import Recorded
from keyledger.projections.valid_keys import Principal, ValidKeyIndex


class _MemoryWriter(ViewWriter):
    def __init__(self, views: MemoryViews) -> None:
        self.views = views

    def entry(self, digest: bytes) -> Principal | None:
        return self.views.index.lookup(digest)

    def change_entries(self, drops: Sequence[bytes], puts: Sequence[tuple[bytes, Principal]]) -> None:
        self.views.index.change(drops, puts)

    def remember_secret(self, digest: bytes, account: str, key_id: str) -> None:
        self.views.secrets[digest] = (account, key_id)

    def row(self, account: str, key_id: str) -> KeyRow:
        # A copy, so that a projection failing half way changes nothing: every field of
        # a row is immutable but its grace dict (whose values are tuples of immutables).
        row = copy.copy(self.views.rows[account][key_id])
        row.grace = dict(row.grace)
        return row

    def put_rows(self, rows: Sequence[KeyRow]) -> None:
        for row in rows:
            self.views.rows.setdefault(row.account, {})[row.key_id] = row

    def add_audit(self, event: Recorded, key_name: str | None, key_ids: Sequence[str]) -> None:
        entry = entry_from(event, key_name, self.views.heads.get(event.account, GENESIS))
        self.views.entries.append(entry)
        self.views.heads[entry.account] = entry.chain


class _MemoryRead(ConsistentRead):
    """Copies of the views taken under their lock: the valid keys and the audit trail's
    entries (the entries are immutable, so a shallow copy of the list is enough)."""

    def __init__(
        self, position: int, valid: list[tuple[bytes, Principal]], entries: list[AuditEntry]
    ) -> None:
        self.position = position
        self._valid = valid
        self._entries = entries

    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        return iter(self._valid)

    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        return _chains(self._entries, after, upto)


def _chains(entries: list[AuditEntry], after: int, upto: int) -> dict[int, str]:
    start = bisect.bisect_right(entries, after, key=lambda e: e.position)
    stop = bisect.bisect_right(entries, upto, key=lambda e: e.position)
    return {e.position: e.chain for e in entries[start:stop]}


class MemoryViews(POPOTrackingRecorder, ViewStore):
    """Every view in this process's memory."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = RLock()
        self.index = ValidKeyIndex()
        self.secrets: dict[bytes, tuple[str, str]] = {}
        self.rows: dict[str, dict[str, KeyRow]] = {}
        self.entries: list[AuditEntry] = []
        self.heads: dict[str, str] = {}
        self.last_used: dict[tuple[str, str], datetime] = {}
        """A side table, not a projection: a rebuild keeps it."""
        self.settings: dict[str, str] = {}
        """Values recorded with the ledger that no event carries; a rebuild keeps them."""

    def position(self) -> int:
        return self.max_tracking_id(VIEWS_NAME) or 0

    def write(self, events: Sequence[Recorded], project: Project, *, after: int) -> bool:
        if not events:
            return True
        with self.lock:
            if self.position() != after:
                return False
            writer = _MemoryWriter(self)
            for event in events:
                project(event, writer)
            self.insert_tracking(Tracking(VIEWS_NAME, events[-1].position))
            return True

    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        with self.lock:
            return iter(self.index.entries())

    @contextmanager
    def consistent_read(self) -> Iterator[ConsistentRead]:
        with self.lock:
            read = _MemoryRead(self.position(), list(self.index.as_dict().items()), list(self.entries))
        yield read

    def keys(self, account: str, now: datetime) -> list[KeyView]:
        with self.lock:
            used = self.last_used
            return [
                row.view(now, used.get((account, row.key_id))) for row in self.rows.get(account, {}).values()
            ]

    def keys_page(self, account: str, now: datetime, *, offset: int, limit: int) -> list[KeyView]:
        with self.lock:
            used = self.last_used
            rows = list(self.rows.get(account, {}).values())[::-1][offset : offset + limit]
            return [row.view(now, used.get((account, row.key_id))) for row in rows]

    def key_counts(self, account: str) -> tuple[int, int]:
        with self.lock:
            rows = self.rows.get(account, {}).values()
            return len(rows), sum(1 for row in rows if row.revoked_at is None)

    def key(self, account: str, key_id: str, now: datetime) -> KeyView | None:
        with self.lock:
            row = self.rows.get(account, {}).get(key_id)
            return None if row is None else row.view(now, self.last_used.get((account, key_id)))

    def accounts_with_grace_due(self, now: datetime) -> list[str]:
        with self.lock:
            return [
                account
                for account, rows in self.rows.items()
                if any(r.next_grace_until is not None and r.next_grace_until <= now for r in rows.values())
            ]

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        with self.lock:
            for entry in self.entries:
                if query.matches(entry):
                    found.append(entry)
                    if len(found) == query.limit:
                        break
        return found

    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        with self.lock:
            return _chains(self.entries, after, upto)

    def secret_owner(self, digest: bytes) -> tuple[str, str] | None:
        return self.secrets.get(digest)

    def setting(self, name: str) -> str | None:
        return self.settings.get(name)

    def record_setting(self, name: str, value: str, *, replace: bool) -> str:
        with self.lock:
            if replace or name not in self.settings:
                self.settings[name] = value
            return self.settings[name]

    def key_hints(self) -> set[str]:
        with self.lock:
            rows = [row for by_id in self.rows.values() for row in by_id.values()]
        hints = {row.hint for row in rows if row.hint is not None}
        return hints | {hint for row in rows for hint, _ in row.grace.values()}

    def record_use(self, uses: Iterable[tuple[str, str, datetime]]) -> None:
        with self.lock:
            for account, key_id, when in uses:
                known = self.last_used.get((account, key_id))
                if known is None or known < when:
                    self.last_used[(account, key_id)] = when

    def rebuild(
        self, read: ReadRecorded, total: int, progress: Callable[[int, int], None] | None, *, page: int
    ) -> tuple[int, ValidKeyIndex]:
        # Into fresh containers, outside the lock; then what was recorded meanwhile and
        # the swap, under it.
        fresh = MemoryViews()
        position = 0
        if progress:
            progress(0, total)
        while position < total and (events := read(position, page)):
            fresh.write(events, project, after=position)
            position = events[-1].position
            if progress:
                progress(min(position, total), total)
        with self.lock:
            while events := read(position, page):
                fresh.write(events, project, after=position)
                position = events[-1].position
            self.index, self.secrets, self.rows = fresh.index, fresh.secrets, fresh.rows
            self.entries, self.heads = fresh.entries, fresh.heads
            self._max_tracking_ids.clear()
            if position:
                self.insert_tracking(Tracking(VIEWS_NAME, position))
            return position, ValidKeyIndex(fresh.index.as_dict().items())

    def reset(self) -> None:
        with self.lock:
            self.index = ValidKeyIndex()
            self.secrets.clear()
            self.rows.clear()
            self.entries.clear()
            self.heads.clear()
            self._max_tracking_ids.clear()
