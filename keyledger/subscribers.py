"""The subscriptions a Ledger runs in this process: starting them (checking what the
caller gave), listing every name's state with its lag, and stopping them when the
ledger closes. What a subscription guarantees: :mod:`keyledger.subscriptions`."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.adapters.driven.delivery_lease import lease_for
from keyledger.adapters.driven.delivery_store import delivery_store_for
from keyledger.domain import InvalidInput
from keyledger.projections.audit import MAX_LIMIT
from keyledger.projections.delivery import DeliveryState, DeliveryStore
from keyledger.subscriptions import Handler, Subscription

if TYPE_CHECKING:
    from keyledger.connection import Connection

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Stoppable(Protocol):
    def stop(self, timeout: float | None = None) -> None: ...


class SubscriptionStatus(BaseModel):
    """A subscription name, as :meth:`keyledger.Ledger.subscriptions` lists it."""

    model_config = ConfigDict(frozen=True)
    name: str
    position: int
    """The last position delivered."""
    lag: int
    """Positions recorded after it (entries not yet delivered; on PostgreSQL an upper
    bound, as its sequence may skip ids)."""
    attempts: int
    """Failed attempts on the next entry so far."""
    last_error: str | None
    """The class of the last failure; never a message or an entry's content."""
    failed: int
    """Entries given up on (webhooks' refused deliveries only)."""
    updated_at: AwareDatetime | None


class Subscriptions:
    """The subscriptions a Ledger started in this process; it stops them when it closes."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._started: list[Subscription] = []
        self._others: list[Stoppable] = []
        self._lock = threading.Lock()

    def store(self) -> DeliveryStore:
        connection = self._connection
        return connection.guard(lambda: delivery_store_for(connection.views))

    def subscribe(
        self,
        handler: Handler,
        name: str,
        batch: int,
        *,
        internal: bool = False,
        retry: tuple[float, float] | None = None,
    ) -> Subscription:
        """Start a subscription (see :meth:`keyledger.Ledger.subscribe`)."""
        if not callable(handler):
            raise InvalidInput("handler", "must be a function taking an AuditEntry")
        if not internal and (not isinstance(name, str) or not NAME.fullmatch(name)):
            raise InvalidInput(
                "name", "must be 1 to 100 of letters, digits, '.', '_' and '-', starting alnum"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_LIMIT:
            raise InvalidInput("batch", f"must be an integer from 1 to {MAX_LIMIT}")
        connection = self._connection
        store = self.store()
        connection.translate(lambda: store.save(name, 0))  # listed from now on; never moves it back
        views, recorder = connection.views, connection.app.recorder
        channel = getattr(recorder, "channel_name", None) if connection.app.can_subscribe else None
        subscription = connection.translate(
            lambda: Subscription(
                handler,
                name=name,
                batch=batch,
                views=views,
                store=store,
                lease=lease_for(views, channel, name),
                head=lambda: recorder.max_notification_id() or 0,
                closing=connection.stopping,
                retry=retry,
            )
        )
        with self._lock:
            self._started = [s for s in self._started if s.running]
            self._started.append(subscription)
        subscription.start()
        return subscription

    def statuses(self) -> list[SubscriptionStatus]:
        """Every name with a saved state, with its lag."""
        connection = self._connection
        states: list[DeliveryState] = connection.translate(self.store().states)
        head = connection.guard(lambda: connection.app.recorder.max_notification_id() or 0)
        return [
            SubscriptionStatus(
                name=state.name,
                position=state.position,
                lag=max(0, head - state.position),
                attempts=state.attempts,
                last_error=state.last_error,
                failed=state.failed,
                updated_at=state.updated_at,
            )
            for state in states
        ]

    def track(self, other: Stoppable) -> None:
        """Stop ``other`` too when the ledger closes (a webhook delivery)."""
        with self._lock:
            self._others.append(other)

    def close(self) -> None:
        """Stop every subscription started here (each finishes the entry in hand)."""
        with self._lock:
            started, self._started = self._started, []
            others, self._others = self._others, []
        for other in others:
            other.stop()
        for subscription in started:
            subscription.stop()
