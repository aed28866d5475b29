"""The state a Keyring keeps per key, and its snapshot (pydantic models, so a snapshot
stores and loads through the same mapper as the events)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

if TYPE_CHECKING:
    from keyledger.domain.keyring import Keyring


class SecretRecord(BaseModel):
    """One secret of a key, by digest: the current one, or one in grace until a deadline."""

    digest: str
    hint: str
    grace_until: AwareDatetime | None = None
    issued_to: str | None = None
    """Who received the secret: the key's creator for its first secret, the actor of the
    regeneration for each later one; kept when the secret goes into grace. ``None`` means
    unknown: a snapshot written before recipients were recorded lacks them (see
    :meth:`Keyring.from_snapshot`)."""

    def works_at(self, now: datetime) -> bool:
        """Whether the secret still works at ``now``: a current secret always does, one in
        grace while ``now < grace_until`` (recorded ``GraceExpired`` or not)."""
        return self.grace_until is None or now < self.grace_until


class KeyRecord(BaseModel):
    """What a Keyring knows of one key."""

    key_id: str
    name: str
    purpose: str
    application: str
    created_by: str
    created_at: AwareDatetime
    current: SecretRecord | None
    grace: list[SecretRecord] = []
    regenerated_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    revoked_reason: str | None = None

    @property
    def status(self) -> Literal["active", "revoked"]:
        """``revoked`` once revoked (directly or by removing its creator), else ``active``."""
        return "revoked" if self.revoked_at is not None else "active"

    def end(self, at: datetime, reason: str | None) -> None:
        """Revoke: every secret of the key stops working."""
        self.revoked_at = at
        self.revoked_reason = reason
        self.current = None
        self.grace = []

    def working(self, now: datetime) -> list[SecretRecord]:
        """The secrets that work at ``now``: the current one and those whose grace has not
        passed (a deadline at ``now`` has)."""
        found = [s for s in self.grace if s.works_at(now)]
        if self.current is not None:
            found.insert(0, self.current)
        return found

    def digests(self) -> list[str]:
        """The digests of every secret that still works (current and in grace)."""
        found = [s.digest for s in self.grace]
        if self.current is not None:
            found.insert(0, self.current.digest)
        return found


class KeyringState(BaseModel):
    """A Keyring's whole state, as a snapshot stores it."""

    account: str
    created_on: AwareDatetime
    modified_on: AwareDatetime
    chain: str
    keys: list[KeyRecord]
    revoked_users: list[str]


class KeyringSnapshot(BaseModel):
    """A Keyring as of one version, so loading an old account skips its early events."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TOPIC: ClassVar[str] = "keyledger.KeyringSnapshot"

    originator_id: UUID
    originator_version: int
    timestamp: AwareDatetime
    topic: str
    state: KeyringState

    @classmethod
    def take(cls, aggregate: Keyring) -> KeyringSnapshot:
        """Snapshot ``aggregate`` as it is now."""
        state = KeyringState(
            account=aggregate.account,
            created_on=aggregate.created_on,
            modified_on=aggregate.modified_on,
            chain=aggregate.chain,
            keys=list(aggregate.keys.values()),  # shared: see Keyring.changing
            revoked_users=sorted(aggregate.revoked_users),
        )
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=aggregate.modified_on,
            topic=aggregate.TOPIC,
            state=state,
        )

    def mutate(self, _: Any) -> Keyring:
        """Rebuild the Keyring this snapshot was taken of (one written before secrets
        recorded their recipient loads too: see :meth:`Keyring.from_snapshot`)."""
        from keyledger.domain.keyring import Keyring

        return Keyring.from_snapshot(self)
