"""The audit trail: one entry per recorded event, for compliance review.

Entries are in position order (the global order of the store). ``occurred_at`` is the
effective time (a grace deadline for ``GraceExpired``), ``recorded_at`` when the event
was written. This in-memory trail answers the reviewer's queries by scanning; it is the
reference for the indexed SQL trail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.domain import InvalidInput
from keyledger.projections.recorded import Recorded, RecordedKeyEvent

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
PROMOTED_FIELDS = frozenset({"account", "actor", "key_id", "chain", "timestamp"})
ACTIONS = (
    "KeyCreated",
    "KeyRegenerated",
    "GraceExpired",
    "KeyRevoked",
    "UserAccessRevoked",
    "UserAccessRestored",
)


class AuditEntry(BaseModel):
    """One recorded event, as a reviewer reads it (no secret: digests and hints only)."""

    model_config = ConfigDict(frozen=True)
    position: int
    account: str
    version: int
    """The event's version in its account's stream (1, 2, ...)."""
    action: str
    actor: str | None
    """Who ran the command; ``None`` for ``GraceExpired`` (recorded by the ledger)."""
    key_id: str | None
    key_name: str | None
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    details: dict[str, Any]
    previous_position: int
    """The position of the event before this one in the whole ledger (0 for the first)."""
    chain: str
    """SHA-256 over ``previous_chain`` and this event's content (see ``keyledger.domain.chain``)."""
    previous_chain: str
    """The chain of the account's previous event (64 zeros before its first)."""


class AuditQuery(BaseModel):
    """The filters of an audit query, checked: bad values raise :class:`InvalidInput`."""

    model_config = ConfigDict(frozen=True)
    account: str | None = None
    key_id: str | None = None
    actor: str | None = None
    actions: tuple[str, ...] | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = DEFAULT_LIMIT
    after: int | None = None

    @classmethod
    def build(
        cls,
        *,
        account: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        action: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
        after: int | None = None,
    ) -> AuditQuery:
        """Check the filters and return them as a query."""
        for field, text in (("account", account), ("key_id", key_id), ("actor", actor)):
            if text is not None and not isinstance(text, str):
                raise InvalidInput(field, "must be a string or None")
        if action is not None and (
            not isinstance(action, str | Sequence) or not all(isinstance(a, str) for a in action)
        ):
            raise InvalidInput("action", "must be an action name or a sequence of them")
        actions = (action,) if isinstance(action, str) else (tuple(action) if action is not None else None)
        for name in actions or ():
            if name not in ACTIONS:
                raise InvalidInput("action", f"must be one of {', '.join(ACTIONS)}")
        for field, moment in (("since", since), ("until", until)):
            if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
                raise InvalidInput(field, "must be a timezone-aware datetime")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise InvalidInput("after", "must be a position (a non-negative integer)")
        return cls(
            account=account,
            key_id=key_id,
            actor=actor,
            actions=actions,
            since=since,
            until=until,
            limit=limit,
            after=after,
        )

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes every filter (``since`` inclusive, ``until`` exclusive)."""
        return (
            (self.after is None or entry.position > self.after)
            and (self.account is None or entry.account == self.account)
            and (self.key_id is None or entry.key_id == self.key_id or self._removed(entry))
            and (self.actor is None or entry.actor == self.actor)
            and (self.actions is None or entry.action in self.actions)
            and (self.since is None or entry.occurred_at >= self.since)
            and (self.until is None or entry.occurred_at < self.until)
        )

    def _removed(self, entry: AuditEntry) -> bool:
        return self.key_id in entry.details.get("removed_key_ids", ())


AUDIT_FIELDS = tuple(AuditEntry.model_fields)
"""The fields of an audit entry, in the order of :func:`entry_values`."""
Time = TypeVar("Time")


def entry_values(
    event: Recorded,
    key_name: str | None,
    previous_chain: str,
    time: Callable[[str], Time],
    encode: Callable[[dict[str, Any]], Any],
) -> tuple[Any, ...]:
    """The audit entry of one recorded event as values in :data:`AUDIT_FIELDS` order, its
    two times as ``time`` makes them of the stored text and its details as ``encode``
    makes them of a dict: one definition for the entry in memory and the row in SQL
    (which is built from the stored fields, no model between). The details are the
    event's stored fields (:attr:`Recorded.stored`) but those the entry has columns for."""
    key_id = event.key_id if isinstance(event, RecordedKeyEvent) else None
    details = {name: value for name, value in event.stored.items() if name not in PROMOTED_FIELDS}
    return (
        event.position, event.account, event.version, event.action, event.actor, key_id,
        key_name, time(event.occurred_text), time(event.timestamp), encode(details),
        event.previous, event.chain, previous_chain,
    )  # fmt: skip


def entry_from(event: Recorded, key_name: str | None, previous_chain: str) -> AuditEntry:
    """The audit entry of one recorded event."""
    values = entry_values(event, key_name, previous_chain, datetime.fromisoformat, dict)
    return AuditEntry(**dict(zip(AUDIT_FIELDS, values, strict=True)))
