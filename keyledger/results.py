"""What the Ledger returns: issued keys, principals and integrity reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretStr


class IssuedKey(BaseModel):
    """A key just created or regenerated: the only time its secret is available.

    ``secret`` masks itself in ``repr`` and ``str``; call ``secret.get_secret_value()``
    to show it to its owner once.
    """

    model_config = ConfigDict(frozen=True)
    account: str
    key_id: str
    secret: SecretStr
    hint: str
    previous_valid_until: AwareDatetime | None = None
    """After a regeneration with grace: when the previous secret stops working."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified credential authenticates: one key of one account."""

    account: str
    key_id: str
    name: str
    grace_until: datetime | None
    """``None`` for a key's current secret; the deadline for a secret in grace."""


class IntegrityReport(BaseModel):
    """The result of checking every stored event against its hash chain."""

    model_config = ConfigDict(frozen=True)
    ok: bool
    events_checked: int
    first_bad_position: int | None = None
    """The position of the first event that breaks its account's chain."""
    reason: str | None = None
