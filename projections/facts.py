"""What the views read: one recorded event as its position, account and stored fields.

Views consume the stored JSON fields directly rather than pydantic events, so that
rebuilding from the notification log does no more work per event than the views need.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

TOPIC_PREFIX = "keyledger."


@dataclass(frozen=True, slots=True)
class Fact:
    """One recorded event: its global position, stream version, action and fields."""

    position: int
    version: int
    action: str
    """The event's name: ``KeyCreated``, ``KeyRegenerated``, ..."""
    data: dict[str, Any]
    """The stored fields, JSON types (timestamps as ISO 8601 text)."""
    previous: int
    """The position of the event before this one in the store (0 for the first).
    Positions may have gaps, so this is what shows that none is missing."""

    @property
    def account(self) -> str:
        return sys.intern(str(self.data["account"]))

    @property
    def recorded_at(self) -> datetime:
        return datetime.fromisoformat(self.data["timestamp"])

    @property
    def occurred_text(self) -> str:
        """When the event took effect, as stored (ISO 8601 text): a grace deadline for
        ``GraceExpired``, else when it was recorded."""
        return str(self.data["grace_until" if self.action == "GraceExpired" else "timestamp"])

    @property
    def occurred_at(self) -> datetime:
        """When the event took effect: a grace deadline for ``GraceExpired``."""
        return datetime.fromisoformat(self.occurred_text)


def action_of(topic: str) -> str:
    """The action name of a stored topic (``keyledger.KeyCreated`` -> ``KeyCreated``)."""
    return topic.removeprefix(TOPIC_PREFIX)


def parse_time(value: str | None) -> datetime | None:
    """A stored ISO 8601 timestamp, or ``None``."""
    return None if value is None else datetime.fromisoformat(value)
