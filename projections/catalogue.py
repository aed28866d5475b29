"""The key catalogue: per account, every key with its labels, creator, status, hint,
the secrets it has in grace and when it was last used, in creation order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.domain.keyring import USER_REMOVED_REASON
from keyledger.projections.facts import Fact, parse_time


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


def catalogue_changes(fact: Fact, row_of: KeyRowLookup) -> list[KeyRow]:
    """The rows one event creates or changes (changed in place when looked up)."""
    data, action = fact.data, fact.action
    if action == "KeyCreated":
        return [
            KeyRow(
                account=fact.account,
                key_id=data["key_id"],
                name=data["name"],
                purpose=data["purpose"],
                application=data["application"],
                created_by=data["created_by"],
                created_at=fact.recorded_at,
                created_position=fact.position,
                hint=data["hint"],
            )
        ]
    if action == "UserAccessRevoked":
        rows = [row_of(fact.account, key_id) for key_id in data["removed_key_ids"]]
        for row in rows:
            row.end(fact.recorded_at, USER_REMOVED_REASON)
        return rows
    if action == "UserAccessRestored":
        return []
    row = row_of(fact.account, data["key_id"])
    if action == "KeyRegenerated":
        if data["mode"] == "grace":
            until = parse_time(data["grace_until"])
            assert until is not None
            assert row.hint is not None
            row.grace[data["retired_digest"]] = (row.hint, until)
        else:
            row.grace.clear()
        row.hint = data["hint"]
        row.regenerated_at = fact.recorded_at
    elif action == "GraceExpired":
        row.grace.pop(data["retired_digest"], None)
    elif action == "KeyRevoked":
        row.end(fact.recorded_at, data["reason"])
    return [row]
