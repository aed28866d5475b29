"""What the Ledger returns: issued keys, principals and integrity reports."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretStr

from keyledger.projections.valid_keys import Principal

__all__ = ["IntegrityReport", "IssuedKey", "Principal"]


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


class IntegrityReport(BaseModel):
    """The result of checking every stored event against its hash chain."""

    model_config = ConfigDict(frozen=True)
    ok: bool
    events_checked: int
    first_bad_position: int | None = None
    """The position of the first event that breaks its account's chain."""
    reason: str | None = None
