"""The ports the views are written through and read from.

A :class:`ViewStore` keeps the durable views of a ledger (the valid-key table, the key
catalogue, the audit trail, and every digest ever issued) next to the events, and
records the position it has reached in the same transaction as its rows (the
``TrackingRecorder`` pattern of eventsourcing 9.5). :class:`ViewWriter` is what one
event's projection writes through inside that transaction. ``memory://`` ledgers use
:class:`keyledger.adapters.driven.memory_views.MemoryViews`; SQLite and PostgreSQL ledgers use the
SQL views in ``keyledger.adapters``; one contract test suite runs against all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from keyledger.projections.audit import AuditEntry, AuditQuery
from keyledger.projections.catalogue import KeyRow, KeyView
from keyledger.projections.recorded import Recorded
from keyledger.projections.valid_keys import Principal, ValidKeyIndex

VIEWS_NAME = "keyledger_views"
"""The name the views' position is tracked under."""


class ViewWriter(ABC):
    """The writes of one transaction of the views."""

    @abstractmethod
    def entry(self, digest: bytes) -> Principal | None:
        """The valid-key entry of ``digest``, if any."""

    @abstractmethod
    def change_entries(self, drops: Sequence[bytes], puts: Sequence[tuple[bytes, Principal]]) -> None:
        """Remove ``drops`` from the valid-key table, then add ``puts``."""

    @abstractmethod
    def remember_secret(self, digest: bytes, account: str, key_id: str) -> None:
        """Record which key a digest was issued to (for point-in-time verification)."""

    @abstractmethod
    def row(self, account: str, key_id: str) -> KeyRow:
        """The catalogue row of a key (``KeyError`` if none)."""

    @abstractmethod
    def put_rows(self, rows: Sequence[KeyRow]) -> None:
        """Insert or replace catalogue rows."""

    @abstractmethod
    def add_audit(self, event: Recorded, key_name: str | None, key_ids: Sequence[str]) -> None:
        """Append the audit entry of ``event`` (chained to the account's latest entry),
        found by each of ``key_ids``."""


ReadRecorded = Callable[[int, int], list[Recorded]]
"""``read(after, limit)``: up to ``limit`` recorded events after a position, in order."""
Project = Callable[[Recorded, ViewWriter], None]
"""Applies one recorded event to the views through a writer (see
:func:`keyledger.projections.project.project`)."""


class ConsistentRead(ABC):
    """The views as one read transaction sees them: every answer is as of the same
    moment, whatever other writers commit meanwhile (see :meth:`ViewStore.consistent_read`)."""

    position: int
    """The last position the views had applied at that moment."""

    @abstractmethod
    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        """Every row of the valid-key table at that moment."""

    @abstractmethod
    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        """The audit trail's chain at each position in ``(after, upto]`` at that moment."""


class ViewStore(ABC):
    """Durable views of a ledger and the position they have reached."""

    @abstractmethod
    def position(self) -> int:
        """The last position applied (0 if none)."""

    @abstractmethod
    def write(self, events: Sequence[Recorded], project: Project, *, after: int) -> bool:
        """Apply ``events``, every event recorded after position ``after``, in one
        transaction that also records their last position. Returns ``False``, having
        changed nothing, if the views' position is no longer ``after`` (another writer
        moved it). Positions may have gaps (PostgreSQL's sequence skips the ids of
        rolled-back inserts), so only ``after`` says what the events follow."""

    def try_lock_in(self, cursor: Any) -> bool:
        """Take the views' write lock in a transaction of the events' database, if no
        other writer holds it (stores that live there; see :meth:`write_in`)."""
        raise NotImplementedError(f"{type(self).__name__} does not share the events' transactions")

    def position_in(self, cursor: Any) -> int:
        """The position, read in a transaction of the events' database (stores that
        live there; see :meth:`write_in`)."""
        raise NotImplementedError(f"{type(self).__name__} does not share the events' transactions")

    def write_in(
        self,
        cursor: Any,
        events: Sequence[Recorded],
        project: Project,
        *,
        after: int,
        position: int | None = None,
        read: Mapping[Any, Any] | None = None,
    ) -> bool:
        """:meth:`write`, in a write transaction of the events' database that the caller
        holds (stores that live there, so a command's events and views commit together).
        ``read``: rows of the views the caller has read in that transaction already, in
        the store's own form."""
        raise NotImplementedError(f"{type(self).__name__} does not share the events' transactions")

    @abstractmethod
    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        """Every row of the valid-key table."""

    @abstractmethod
    def consistent_read(self) -> AbstractContextManager[ConsistentRead]:
        """The views as of one moment, for as long as the context lasts: a read-only
        transaction on one snapshot (writers carry on, unseen), for comparing the views
        with the events without another writer's commit falling between two reads."""

    @abstractmethod
    def keys(self, account: str, now: datetime) -> list[KeyView]:
        """The account's keys in creation order."""

    @abstractmethod
    def key(self, account: str, key_id: str, now: datetime) -> KeyView | None:
        """One key, if it exists."""

    @abstractmethod
    def accounts_with_grace_due(self, now: datetime) -> list[str]:
        """Accounts holding a secret in grace whose deadline is at or before ``now``."""

    @abstractmethod
    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Audit entries matching ``query``, in position order."""

    @abstractmethod
    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        """The audit trail's chain at each position in ``(after, upto]`` (for the
        integrity check's comparison of the events with the trail)."""

    @abstractmethod
    def secret_owner(self, digest: bytes) -> tuple[str, str] | None:
        """The (account, key id) a digest was ever issued to."""

    @abstractmethod
    def record_use(self, uses: Iterable[tuple[str, str, datetime]]) -> None:
        """Record (account, key id, when) last-use times; never moves a time backwards."""

    @abstractmethod
    def keys_page(self, account: str, now: datetime, *, offset: int, limit: int) -> list[KeyView]:
        """Up to ``limit`` of the account's keys, newest first, after skipping ``offset``."""

    @abstractmethod
    def key_counts(self, account: str) -> tuple[int, int]:
        """How many keys the account has, and how many of them are not revoked."""

    # Settings: values recorded with the ledger that no event carries (its key prefix).
    # They are not a projection: a rebuild keeps them.

    @abstractmethod
    def setting(self, name: str) -> str | None:
        """The recorded value of setting ``name``, if any."""

    @abstractmethod
    def record_setting(self, name: str, value: str, *, replace: bool) -> str:
        """Record ``value`` for setting ``name`` (only if it has none, unless ``replace``);
        returns the value recorded now, which a concurrent first writer may have set."""

    @abstractmethod
    def key_hints(self) -> set[str]:
        """The display hint of every secret the catalogue shows (current and in grace)."""

    @abstractmethod
    def reset(self) -> None:
        """Delete every row and the position, to rebuild from zero."""

    @abstractmethod
    def rebuild(
        self, read: ReadRecorded, total: int, progress: Callable[[int, int], None] | None, *, page: int
    ) -> tuple[int, ValidKeyIndex]:
        """Build every view anew from the log and put it in place of the views in use,
        which stay intact and in use (written as usual) until then: ``read(after, limit)``
        reads the log in pages of ``page``; ``progress(done, total)`` is called as the
        events up to ``total`` (the head when it began) are read. Returns the position the
        new views hold and the valid-key index as of that position (the views' side
        tables, such as last use, stay)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (nothing by default)."""
