"""Webhooks: a durable subscription per endpoint that POSTs each audit entry as JSON,
signed (:mod:`keyledger.webhook_signing`).

Each webhook delivers under the subscription name ``webhook:<id>``, so it has every
guarantee of :mod:`keyledger.subscriptions`: in order, at least once, resumed after a
restart, one deliverer per webhook across processes. It starts at the log head when it
is added (what happens from then on, not the history before). A process delivers once
it calls :meth:`keyledger.Ledger.start_webhooks` (``keyledger webhooks run``), which also
picks up webhooks added or removed elsewhere, within :data:`REFRESH_INTERVAL` seconds.

What a response means:

- ``2xx``: delivered; the next entry follows.
- a network error (refused, reset, timed out), ``5xx``, ``408`` or ``429``: the
  receiver is down or busy; the same entry is sent again after a pause doubling from
  :data:`FIRST_RETRY` up to :data:`MAX_RETRY` seconds, for as long as it takes. Nothing
  later is sent before it: order is kept and nothing is skipped.
- any other status (``4xx``, and redirects, which are not followed): the receiver
  refuses this delivery. It is tried :data:`CLIENT_ERROR_ATTEMPTS` times in all, with the
  same pauses, then recorded as failed (``failed``, ``last_failed_position``) and
  delivery moves on.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict

from keyledger.domain import InvalidInput
from keyledger.domain import keys as keyformat
from keyledger.projections.audit import ACTIONS, AuditEntry
from keyledger.projections.delivery import WebhookRecord
from keyledger.subscribers import Subscriptions
from keyledger.subscriptions import Subscription, TryAgain, Undeliverable
from keyledger.webhook_signing import SIGNATURE_HEADER, SecretUnavailable, host_key, seal, sign, unseal

if TYPE_CHECKING:
    import httpx

    from keyledger.connection import Connection

logger = logging.getLogger("keyledger")

PREFIX = "webhook:"
CLIENT_ERROR_ATTEMPTS = 8
"""Attempts at a delivery the receiver refuses with a 4xx (but 408 and 429) before it is
recorded as failed and delivery moves on. Not 1: a 4xx is often passing (a route that
404s or a check that 401s for the minute a receiver's deploy or secret rotation takes),
and with the pauses doubling from 1 s, 8 attempts span about 2 minutes. Not forever: a
receiver that really refuses an entry would otherwise hold back every entry after it."""
FIRST_RETRY = 1.0
MAX_RETRY = 300.0
REFRESH_INTERVAL = 1.0
TIMEOUT = 10.0
"""Seconds a delivery may take (connect, send, answer) before it counts as a network error."""
SECRET_MIN, SECRET_MAX = 24, 512


class Webhook(BaseModel):
    """A configured webhook and its delivery state; never its signing secret."""

    model_config = ConfigDict(frozen=True)
    webhook_id: str
    url: str
    actions: tuple[str, ...] | None
    """Only entries of these actions are sent (``None``: every entry)."""
    created_at: AwareDatetime
    position: int
    """The last position delivered (or passed over, for an action not sent)."""
    lag: int
    attempts: int
    """Failed attempts at the next entry so far."""
    last_error: str | None
    """The last failure: ``HTTP <status>``, a network error's class, or why the secret
    does not open; never a response body."""
    failed: int
    """Entries given up on after :data:`CLIENT_ERROR_ATTEMPTS` refusals."""
    last_failed_position: int | None


def check_url(url: object) -> str:
    """An ``http(s)`` URL with a host and no user or password in it."""
    if not isinstance(url, str) or len(url) > 2048 or not url.isprintable():
        raise InvalidInput("url", "must be an http:// or https:// URL of at most 2,048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url", "must not hold a user or password (it is stored and shown)")
    return url


def check_secret(secret: object, prefixes: tuple[str, ...]) -> str:
    if not isinstance(secret, str) or not SECRET_MIN <= len(secret) <= SECRET_MAX or not secret.isprintable():
        raise InvalidInput("secret", f"must be {SECRET_MIN} to {SECRET_MAX} printable characters")
    if any(keyformat.contains_key(secret, prefix) for prefix in prefixes):
        raise InvalidInput("secret", "looks like an API key of this ledger; use a secret of its own")
    return secret


def check_actions(actions: object) -> tuple[str, ...] | None:
    if actions is None:
        return None
    if isinstance(actions, str) or not isinstance(actions, list | tuple | set | frozenset):
        raise InvalidInput("actions", "must be a list of action names, or None for every action")
    for action in actions:
        if action not in ACTIONS:
            raise InvalidInput("actions", f"must name actions among {', '.join(ACTIONS)}")
    if not actions:
        raise InvalidInput("actions", "must name at least one action, or be None for every action")
    return tuple(sorted(set(actions), key=ACTIONS.index))


def new_record(url: str, secret: str, actions: tuple[str, ...] | None, now: datetime) -> WebhookRecord:
    """A new webhook, its secret sealed under the host's key."""
    webhook_id = "wh_" + secrets.token_hex(8)
    sealed = seal(secret, host_key(), webhook_id, url)
    return WebhookRecord(
        webhook_id=webhook_id, url=url, actions=actions, sealed_secret=sealed, created_at=now
    )


class Sender:
    """The handler of one webhook's subscription: one signed POST per entry."""

    def __init__(self, record: WebhookRecord, secret: str, client: httpx.Client) -> None:
        self._record = record
        self._secret = secret
        self._client = client
        self._refusals: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"Sender({self._record.webhook_id!r})"

    def __call__(self, entry: AuditEntry) -> None:
        import httpx

        record = self._record
        if record.actions is not None and entry.action not in record.actions:
            return
        body = entry.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret, int(time.time())),
            "Keyledger-Webhook-Id": record.webhook_id,
            "Keyledger-Position": str(entry.position),
            "User-Agent": "keyledger-webhooks",
        }
        try:
            status = self._client.post(record.url, content=body, headers=headers).status_code
        except httpx.HTTPError as error:
            raise TryAgain(type(error).__name__) from None
        if 200 <= status < 300:
            self._refusals.clear()
            return
        reason = f"HTTP {status}"
        if status >= 500 or status in (408, 429):
            raise TryAgain(reason)
        refused = self._refusals[entry.position] = self._refusals.get(entry.position, 0) + 1
        if refused >= CLIENT_ERROR_ATTEMPTS:
            del self._refusals[entry.position]
            raise Undeliverable(f"{reason} {refused} times")
        raise TryAgain(reason)


class WebhookDelivery:
    """Delivers every configured webhook from this process, until stopped or the ledger
    closes; picks up webhooks added or removed elsewhere every :data:`REFRESH_INTERVAL` s."""

    def __init__(self, subscriptions: Subscriptions, closing: threading.Event) -> None:
        import httpx

        self._subscriptions = subscriptions
        self._closing = closing
        self._stopping = threading.Event()
        self._key = host_key()
        self._client = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._running: dict[str, Subscription] = {}
        self._unopened: set[str] = set()
        self._refresh()
        self._thread = threading.Thread(target=self._run, name="keyledger-webhooks", daemon=True)
        self._thread.start()

    @property
    def webhook_ids(self) -> list[str]:
        """The webhooks this process delivers (or stands by for)."""
        return sorted(self._running)

    def stop(self, timeout: float | None = None) -> None:
        """Stop delivering (each webhook after the entry in hand); idempotent."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for subscription in list(self._running.values()):
            subscription.stop(timeout)
        self._running.clear()
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.wait(REFRESH_INTERVAL) and not self._closing.is_set():
            try:
                self._refresh()
            except Exception as error:
                logger.warning("webhooks: reading the configuration failed: %s", type(error).__name__)

    def _refresh(self) -> None:
        store = self._subscriptions.store()
        records = {record.webhook_id: record for record in store.webhooks()}
        for webhook_id in set(self._running) - set(records):
            self._running.pop(webhook_id).stop()
        for webhook_id, record in records.items():
            if webhook_id in self._running or self._stopping.is_set():
                continue
            try:
                secret = unseal(record.sealed_secret, self._key, webhook_id, record.url)
            except SecretUnavailable as error:
                if webhook_id not in self._unopened:
                    self._unopened.add(webhook_id)
                    logger.error("webhooks: %s; it is not delivered", error)
                    store.attempt_failed(PREFIX + webhook_id, 1, "signing secret does not open")
                continue
            self._unopened.discard(webhook_id)
            self._running[webhook_id] = self._subscriptions.subscribe(
                Sender(record, secret, self._client),
                PREFIX + webhook_id,
                100,
                internal=True,
                retry=(FIRST_RETRY, MAX_RETRY),
            )


def webhook_views(records: list[WebhookRecord], states: dict[str, Any], head: int) -> list[Webhook]:
    """The records with their delivery states (``states`` by subscription name)."""
    views = []
    for record in records:
        state = states.get(PREFIX + record.webhook_id)
        position = state.position if state is not None else 0
        views.append(
            Webhook(
                webhook_id=record.webhook_id,
                url=record.url,
                actions=record.actions,
                created_at=record.created_at,
                position=position,
                lag=max(0, head - position),
                attempts=state.attempts if state is not None else 0,
                last_error=state.last_error if state is not None else None,
                failed=state.failed if state is not None else 0,
                last_failed_position=state.last_failed_position if state is not None else None,
            )
        )
    return views


class Webhooks:
    """A Ledger's webhooks: configuration, state, and delivery from this process."""

    def __init__(
        self, connection: Connection, subscriptions: Subscriptions, now: Callable[[], datetime]
    ) -> None:
        self._connection = connection
        self._subscriptions = subscriptions
        self._now = now

    def add(self, url: str, secret: str, actions: object, prefixes: tuple[str, ...]) -> Webhook:
        url, secret = check_url(url), check_secret(secret, prefixes)
        record = new_record(url, secret, check_actions(actions), self._now())
        connection, store = self._connection, self._subscriptions.store()
        head = connection.guard(lambda: connection.app.recorder.max_notification_id() or 0)
        # The position first: a delivery that picks the webhook up starts at the head.
        connection.translate(lambda: store.save(PREFIX + record.webhook_id, head))
        connection.translate(lambda: store.add_webhook(record))
        logger.info("webhook %s added", record.webhook_id)
        return next(view for view in self.list() if view.webhook_id == record.webhook_id)

    def list(self) -> list[Webhook]:
        connection, store = self._connection, self._subscriptions.store()
        records = connection.translate(store.webhooks)
        states = {state.name: state for state in connection.translate(store.states)}
        head = connection.guard(lambda: connection.app.recorder.max_notification_id() or 0)
        return webhook_views(records, states, head)

    def remove(self, webhook_id: str) -> bool:
        if not isinstance(webhook_id, str):
            raise InvalidInput("webhook_id", "must be a string")
        connection, store = self._connection, self._subscriptions.store()
        removed: bool = connection.translate(lambda: store.remove_webhook(webhook_id))
        if removed:
            connection.translate(lambda: store.forget(PREFIX + webhook_id))
            logger.info("webhook %s removed", webhook_id)
        return removed

    def start(self) -> WebhookDelivery:
        self._connection.ready()
        delivery = WebhookDelivery(self._subscriptions, self._connection.stopping)
        self._subscriptions.track(delivery)
        return delivery
