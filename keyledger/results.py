"""What the Ledger returns: issued keys, principals, integrity reports and checkpoints."""

from __future__ import annotations

from datetime import timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from keyledger.projections.catalogue import KeyView
from keyledger.projections.valid_keys import Principal

__all__ = ["AccountHead", "Checkpoint", "Health", "IntegrityReport", "IssuedKey", "Principal"]


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
    """Why it failed; a checkpoint's failure names the account (``first_bad_position`` is
    then ``None``: which earlier event was changed cannot be known)."""


class AccountSummary(BaseModel):
    """One account of a ledger, as :meth:`keyledger.Ledger.accounts` lists it: how many
    events it holds, how many keys it has and how many of them are active."""

    model_config = ConfigDict(frozen=True)
    account: str
    events: int
    keys: int
    active_keys: int


class KeyPage(BaseModel):
    """One page of an account's keys, newest first, as :meth:`keyledger.Ledger.keys_page`
    returns it, with the counts of all the account's keys."""

    model_config = ConfigDict(frozen=True)
    keys: list[KeyView]
    total: int
    """How many keys the account has."""
    active: int
    """How many of them are not revoked."""


class AccountHead(BaseModel):
    """One account's stream at a checkpoint: its version (how many events it holds)
    and the ``chain`` of its event at that version, which covers every event before it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int = Field(ge=1)
    chain: str = Field(pattern=r"^[0-9a-f]{64}$")


class Checkpoint(BaseModel):
    """A ledger's history at one log position, to keep outside its database (as
    CloudTrail keeps digest files): :meth:`keyledger.Ledger.check_integrity` given it
    fails if any account's history up to there was since cut short or rewritten, which
    the unkeyed hash chain alone cannot show. JSON round trip: ``model_dump_json()`` and
    ``model_validate_json()``.

    Not the checkpoint of an audit export: that is :class:`keyledger.ExportCheckpoint`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    position: int = Field(ge=0)
    """The log position it covers: every event up to this global position."""
    taken_at: AwareDatetime
    """When it was taken, by the ledger's clock."""
    accounts: dict[str, AccountHead]
    """Every account that had events by then, with its stream's head."""


class Health(BaseModel):
    """Whether a ledger can show that its verification index is current.

    ``ok`` is ``False`` while :meth:`keyledger.Ledger.verify` refuses every credential:
    the ledger is closed, or this process has gone longer than the ledger's ``max_lag``
    without confirming that it holds every event of the log (its follower stuck on an
    event it cannot read, or the store unreachable). ``reason`` says which, naming the
    position and the error's class; it never holds a credential.
    """

    model_config = ConfigDict(frozen=True)
    ok: bool
    position: int
    """The position this process's verification index has reached."""
    head: int
    """The newest position this process has seen in the store: the head at its last
    confirmation, or the event it is stuck before (no store read: ``health`` never waits)."""
    behind_for: timedelta
    """How long since this process last confirmed it held every event of the log."""
    reason: str | None = None
