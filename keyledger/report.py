"""The compliance report of one account."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.projections.catalogue import KeyView

DEFAULT_STALE_AFTER = timedelta(days=90)
DEFAULT_UNUSED_AFTER = timedelta(days=30)


class GraceDeadline(BaseModel):
    """A retired secret still working, and until when."""

    model_config = ConfigDict(frozen=True)
    key_id: str
    hint: str
    grace_until: AwareDatetime


class ComplianceReport(BaseModel):
    """What a reviewer asks of one account's keys."""

    model_config = ConfigDict(frozen=True)
    account: str
    generated_at: AwareDatetime
    active_keys: int
    not_regenerated: list[str]
    """Active keys whose secret is older than the stale threshold (90 days by default)."""
    unused: list[str]
    """Active keys not used within the unused threshold (30 days), counted from creation
    when never used."""
    in_grace: list[GraceDeadline]
    keys_per_creator: dict[str, int]
    """Active keys per creator."""
    working_keys_of_revoked_creators: int
    """Working keys created by, or holding a working secret (current, or in grace before its
    deadline) issued to, a user whose access is revoked: always 0, by the ledger's
    invariant, except for keys a removal recorded by an earlier release (which followed
    creators only) left working, counted here for a reviewer to revoke. The name predates
    recipients and is kept for API compatibility."""


def build_report(
    account: str,
    keys: list[KeyView],
    working_keys_of_revoked_creators: int,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    unused_after: timedelta = DEFAULT_UNUSED_AFTER,
) -> ComplianceReport:
    """The report of ``keys`` (the account's catalogue) as of ``now``; the count of working
    keys of revoked users (created by or issued to them) is taken from the account's
    Keyring by the caller."""
    active = [k for k in keys if k.status == "active"]
    return ComplianceReport(
        account=account,
        generated_at=now,
        active_keys=len(active),
        not_regenerated=[k.key_id for k in active if now - (k.regenerated_at or k.created_at) >= stale_after],
        unused=[k.key_id for k in active if now - (k.last_used_at or k.created_at) >= unused_after],
        in_grace=[
            GraceDeadline(key_id=k.key_id, hint=g.hint, grace_until=g.grace_until)
            for k in active
            for g in k.grace
        ],
        keys_per_creator=dict(Counter(k.created_by for k in active)),
        working_keys_of_revoked_creators=working_keys_of_revoked_creators,
    )
