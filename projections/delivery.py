"""The ports durable delivery keeps its state through: the position each subscription
has delivered up to, its failures, and the webhooks configured.

A subscription (:mod:`keyledger.subscriptions`) reads the audit trail after its saved
position and calls a handler with each entry; the position moves on only after the
handler returns. What it keeps per name lives in a :class:`DeliveryStore`, in the
ledger's own database (a ``memory://`` ledger keeps it in memory), and who may deliver
under a name at a given moment is decided by a :class:`Lease` (one holder per name,
across threads and processes; the others stand by).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import AwareDatetime, BaseModel, ConfigDict


class DeliveryState(BaseModel):
    """What is stored for one subscription name."""

    model_config = ConfigDict(frozen=True)
    name: str
    position: int
    """The last position delivered (0: none yet)."""
    attempts: int = 0
    """Failed attempts on the entry after ``position`` since it was last delivered."""
    last_error: str | None = None
    """The class of the last failure (an exception's class, or an HTTP status): never
    an entry's content, a message or a secret."""
    failed: int = 0
    """Entries given up on (webhooks only: a receiver that kept refusing with a 4xx)."""
    last_failed_position: int | None = None
    updated_at: AwareDatetime | None = None


class WebhookRecord(BaseModel):
    """A configured webhook as stored: its signing secret only sealed (see
    :mod:`keyledger.webhook_signing`), never in clear."""

    model_config = ConfigDict(frozen=True)
    webhook_id: str
    url: str
    actions: tuple[str, ...] | None
    sealed_secret: bytes
    created_at: AwareDatetime

    def __repr__(self) -> str:
        return f"WebhookRecord({self.webhook_id!r}, {self.url!r})"


class DeliveryStore(ABC):
    """Delivery state per subscription name, and the webhooks configured."""

    @abstractmethod
    def state(self, name: str) -> DeliveryState:
        """The state of ``name`` (position 0 if it has none yet)."""

    @abstractmethod
    def states(self) -> list[DeliveryState]:
        """Every name with a state, by name."""

    @abstractmethod
    def save(self, name: str, position: int, *, failed: str | None = None) -> None:
        """Record that ``name`` delivered up to ``position`` (or, with ``failed``, gave up
        on the entry there for that reason); clears the attempts. Never moves a position
        backwards: a save behind the stored position changes nothing."""

    @abstractmethod
    def attempt_failed(self, name: str, attempts: int, error: str) -> None:
        """Record a failed attempt on the entry after ``name``'s position."""

    @abstractmethod
    def forget(self, name: str) -> None:
        """Delete ``name``'s state."""

    @abstractmethod
    def add_webhook(self, record: WebhookRecord) -> None:
        """Store a new webhook."""

    @abstractmethod
    def webhooks(self) -> list[WebhookRecord]:
        """Every webhook, oldest first."""

    @abstractmethod
    def remove_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook; ``False`` if there was none."""


class LeaseLost(Exception):
    """The lease was lost (its session ended): stop delivering and stand by again."""


class Lease(ABC):
    """The right to deliver under one name: at most one holder at a time, across the
    threads and processes of a store; a holder that dies gives it up."""

    poll_interval: float
    """Seconds between two looks for new entries while holding it, where nothing tells
    of new commits (:meth:`wait` returns early where something does)."""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lease if it is free (or already held by this object); one try."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for news of a commit; whether there was news
        (``False`` where nothing tells). Raises :class:`LeaseLost`."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up (idempotent)."""


def sorted_states(states: Sequence[DeliveryState]) -> list[DeliveryState]:
    """``states`` by name."""
    return sorted(states, key=lambda state: state.name)
