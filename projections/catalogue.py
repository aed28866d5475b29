"""The key catalogue: per account, every key with its labels, creator, status, hint,
the secrets it has in grace and when it was last used, in creation order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.domain.keyring import USER_REMOVED_REASON
from keyledger.projections.recorded import (
    Recorded,
    RecordedGraceExpired,
    RecordedKeyCreated,
    RecordedKeyRegenerated,
    RecordedKeyRevoked,
    RecordedUserAccessRevoked,
)


class GraceSecret(BaseModel):
    """A retired secret that still works until ``grace_until``."""

    model_config = ConfigDict(frozen=True)
    hint: str
    grace_until: AwareDatetime


class KeyView(BaseModel):
    """One key as listed: never its secret, only the hint of it."""

    model_config = ConfigDict(frozen=True)
    account: str
    key_id: str
    name: str
    purpose: str
    application: str
    created_by: str
    created_at: AwareDatetime
    created_position: int
    status: Literal["active", "revoked"]
    hint: str | None
    """The current secret's hint, ``None`` once revoked."""
    regenerated_at: AwareDatetime | None
    revoked_at: AwareDatetime | None
    revoked_reason: str | None
    grace: tuple[GraceSecret, ...]
    """Retired secrets still within their grace deadline."""
    last_used_at: AwareDatetime | None = None
    """When any secret of the key last verified (recorded at most once a minute)."""


@dataclass
class KeyRow:
    """A key as the catalogue stores it (one row per key)."""

    account: str
    key_id: str
    name: str
    purpose: str
    application: str
    created_by: str
    created_at: datetime
    created_position: int
    hint: str | None
    regenerated_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    grace: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    """digest -> (hint, grace_until) of each retired secret whose GraceExpired is not recorded."""

    @property
    def next_grace_until(self) -> datetime | None:
        """The earliest deadline among the secrets in grace."""
        return min((until for _, until in self.grace.values()), default=None)

    def view(self, now: datetime, last_used_at: datetime | None = None) -> KeyView:
        """The key as listed at ``now`` (secrets whose deadline passed are not shown)."""
        return KeyView(
            account=self.account,
            key_id=self.key_id,
            name=self.name,
            purpose=self.purpose,
            application=self.application,
            created_by=self.created_by,
            created_at=self.created_at,
            created_position=self.created_position,
            status="revoked" if self.revoked_at is not None else "active",
            hint=self.hint,
            regenerated_at=self.regenerated_at,
            revoked_at=self.revoked_at,
            revoked_reason=self.revoked_reason,
            grace=tuple(
                GraceSecret(hint=hint, grace_until=until)
                for hint, until in sorted(self.grace.values(), key=lambda g: g[1])
                if now < until
            ),
            last_used_at=last_used_at,
        )

    def end(self, at: datetime, reason: str | None) -> None:
        """Revoked: no secret left."""
        self.revoked_at, self.revoked_reason, self.hint = at, reason, None
        self.grace.clear()


KeyRowLookup = Callable[[str, str], "KeyRow"]
"""Finds the row of an existing key (``KeyError`` if there is none)."""


def catalogue_changes(event: Recorded, row_of: KeyRowLookup) -> list[KeyRow]:
    """The rows one event creates or changes (changed in place when looked up)."""
    match event:
        case RecordedKeyCreated():
            return [
                KeyRow(
                    account=event.account,
                    key_id=event.key_id,
                    name=event.name,
                    purpose=event.purpose,
                    application=event.application,
                    created_by=event.created_by,
                    created_at=event.recorded_at,
                    created_position=event.position,
                    hint=event.hint,
                )
            ]
        case RecordedKeyRegenerated():
            row = row_of(event.account, event.key_id)
            if event.mode == "grace":
                until = event.grace_deadline
                assert until is not None
                assert row.hint is not None
                row.grace[event.retired_digest] = (row.hint, until)
            else:
                row.grace.clear()
            row.hint = event.hint
            row.regenerated_at = event.recorded_at
            return [row]
        case RecordedGraceExpired():
            row = row_of(event.account, event.key_id)
            row.grace.pop(event.retired_digest, None)
            return [row]
        case RecordedKeyRevoked():
            row = row_of(event.account, event.key_id)
            row.end(event.recorded_at, event.reason)
            return [row]
        case RecordedUserAccessRevoked():
            rows = [row_of(event.account, key_id) for key_id in event.removed_key_ids]
            for row in rows:
                row.end(event.recorded_at, USER_REMOVED_REASON)
            return rows
    return []
