"""The key catalogue: per account, every key with its labels, creator, status, hint
and the secrets it has in grace, in creation order."""

from __future__ import annotations

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


@dataclass
class _Key:
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
    """digest -> (hint, grace_until) of each retired secret in grace."""

    def view(self, now: datetime) -> KeyView:
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
        )

    def end(self, at: datetime, reason: str | None) -> None:
        self.revoked_at, self.revoked_reason, self.hint = at, reason, None
        self.grace.clear()


class KeyCatalogue:
    """Every key of every account, as the ledger lists them."""

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, _Key]] = {}

    def keys(self, account: str, now: datetime) -> list[KeyView]:
        """The account's keys in creation order; grace secrets as of ``now``."""
        return [key.view(now) for key in self._accounts.get(account, {}).values()]

    def get(self, account: str, key_id: str, now: datetime) -> KeyView | None:
        """One key of the account, if it exists."""
        key = self._accounts.get(account, {}).get(key_id)
        return None if key is None else key.view(now)

    def name(self, account: str, key_id: str) -> str:
        """The key's name (empty if unknown)."""
        key = self._accounts.get(account, {}).get(key_id)
        return "" if key is None else key.name

    def accounts_with_grace_due(self, now: datetime) -> list[str]:
        """Accounts holding a secret whose grace deadline is at or before ``now``."""
        return [
            account
            for account, keys in self._accounts.items()
            if any(until <= now for key in keys.values() for _, until in key.grace.values())
        ]

    def apply(self, fact: Fact) -> None:
        """Follow one recorded event."""
        data, action = fact.data, fact.action
        if action in ("UserAccessRevoked", "UserAccessRestored"):
            for key_id in data.get("removed_key_ids", ()):
                self._accounts[fact.account][key_id].end(fact.recorded_at, USER_REMOVED_REASON)
            return
        if action == "KeyCreated":
            self._accounts.setdefault(fact.account, {})[data["key_id"]] = _Key(
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
            return
        key = self._accounts[fact.account][data["key_id"]]
        if action == "KeyRegenerated":
            if data["mode"] == "grace":
                until = parse_time(data["grace_until"])
                assert until is not None
                assert key.hint is not None
                key.grace[data["retired_digest"]] = (key.hint, until)
            else:
                key.grace.clear()
            key.hint = data["hint"]
            key.regenerated_at = fact.recorded_at
        elif action == "GraceExpired":
            key.grace.pop(data["retired_digest"], None)
        elif action == "KeyRevoked":
            key.end(fact.recorded_at, data["reason"])
