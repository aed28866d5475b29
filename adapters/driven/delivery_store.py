"""Delivery state in the ledger's database: ``keyledger_subscriptions`` (each name's
position, attempts and failures) and ``keyledger_webhooks``, beside the views, in SQLite
or PostgreSQL; in memory for a ``memory://`` ledger (see
:mod:`keyledger.projections.delivery`).

The tables are created on first use. Positions only move forward: an upsert whose
``WHERE`` keeps the stored position when it is ahead, so a deliverer that lost its
lease can never move a name back.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.adapters.driven.sqlite_views import SQLiteViews
from keyledger.projections.delivery import DeliveryState, DeliveryStore, WebhookRecord, sorted_states
from keyledger.projections.ports import ViewStore

Now = Callable[[], datetime]
CREATE_ATTEMPTS = 5


def _system_now() -> datetime:
    return datetime.now(UTC)


class SQLDeliveryStore(DeliveryStore):
    """The state as two tables; ``transaction`` yields a cursor of rows by column name."""

    def __init__(
        self,
        transaction: Callable[[bool], AbstractContextManager[Any]],
        *,
        prefix: str,
        blob: str,
        placeholder: str,
        now: Now = _system_now,
    ) -> None:
        self._transaction = transaction
        self._subscriptions = f"{prefix}keyledger_subscriptions"
        self._webhooks = f"{prefix}keyledger_webhooks"
        self._placeholder = placeholder
        self._now = now
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self._subscriptions} (name TEXT PRIMARY KEY, "
            "position BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
            "failed INTEGER NOT NULL DEFAULT 0, last_failed_position BIGINT, updated_at TEXT)",
            f"CREATE TABLE IF NOT EXISTS {self._webhooks} (webhook_id TEXT PRIMARY KEY, "
            f"url TEXT NOT NULL, actions TEXT, sealed_secret {blob} NOT NULL, created_at TEXT NOT NULL)",
        ]
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                with transaction(True) as cursor:
                    for statement in statements:
                        cursor.execute(statement)
                break
            except Exception:
                # Two processes creating the same table at once: PostgreSQL's catalogue
                # refuses the loser, whose next try finds the table made.
                if attempt == CREATE_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)

    def _sql(self, statement: str) -> str:
        text = statement.format(subscriptions=self._subscriptions, webhooks=self._webhooks)
        return text.replace("?", self._placeholder)

    def _rows(self, statement: str, params: list[Any]) -> list[Any]:
        with self._transaction(False) as cursor:
            cursor.execute(self._sql(statement), params)
            return list(cursor.fetchall())

    def _write(self, statement: str, params: list[Any]) -> None:
        with self._transaction(True) as cursor:
            cursor.execute(self._sql(statement), params)

    def state(self, name: str) -> DeliveryState:
        rows = self._rows("SELECT * FROM {subscriptions} WHERE name = ?", [name])
        return _state(rows[0]) if rows else DeliveryState(name=name, position=0)

    def states(self) -> list[DeliveryState]:
        return sorted_states([_state(row) for row in self._rows("SELECT * FROM {subscriptions}", [])])

    def save(self, name: str, position: int, *, failed: str | None = None) -> None:
        now = self._now().isoformat()
        gave_up = 1 if failed is not None else 0
        self._write(
            "INSERT INTO {subscriptions} AS s (name, position, attempts, last_error, failed, "
            "last_failed_position, updated_at) VALUES (?, ?, 0, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, attempts = 0, "
            "last_error = COALESCE(excluded.last_error, s.last_error), failed = s.failed + excluded.failed, "
            "last_failed_position = COALESCE(excluded.last_failed_position, s.last_failed_position), "
            "updated_at = excluded.updated_at WHERE s.position < excluded.position",
            [name, position, failed, gave_up, position if failed is not None else None, now],
        )

    def attempt_failed(self, name: str, attempts: int, error: str) -> None:
        self._write(
            "INSERT INTO {subscriptions} AS s (name, position, attempts, last_error, updated_at) "
            "VALUES (?, 0, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET attempts = excluded.attempts, "
            "last_error = excluded.last_error, updated_at = excluded.updated_at",
            [name, attempts, error, self._now().isoformat()],
        )

    def forget(self, name: str) -> None:
        self._write("DELETE FROM {subscriptions} WHERE name = ?", [name])

    def add_webhook(self, record: WebhookRecord) -> None:
        actions = None if record.actions is None else orjson.dumps(list(record.actions)).decode()
        self._write(
            "INSERT INTO {webhooks} (webhook_id, url, actions, sealed_secret, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [record.webhook_id, record.url, actions, record.sealed_secret, record.created_at.isoformat()],
        )

    def webhooks(self) -> list[WebhookRecord]:
        rows = self._rows("SELECT * FROM {webhooks} ORDER BY created_at, webhook_id", [])
        return [
            WebhookRecord(
                webhook_id=row["webhook_id"],
                url=row["url"],
                actions=None if row["actions"] is None else tuple(orjson.loads(row["actions"])),
                sealed_secret=bytes(row["sealed_secret"]),
                created_at=datetime.fromisoformat(row["created_at"]),
            )
            for row in rows
        ]

    def remove_webhook(self, webhook_id: str) -> bool:
        with self._transaction(True) as cursor:
            cursor.execute(
                self._sql("DELETE FROM {webhooks} WHERE webhook_id = ? RETURNING webhook_id"), [webhook_id]
            )
            return bool(cursor.fetchall())


def _state(row: Any) -> DeliveryState:
    updated = row["updated_at"]
    return DeliveryState(
        name=row["name"],
        position=row["position"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        failed=row["failed"],
        last_failed_position=row["last_failed_position"],
        updated_at=None if updated is None else datetime.fromisoformat(updated),
    )


class MemoryDeliveryStore(DeliveryStore):
    """The state of a ``memory://`` ledger, in dicts (the fake of the SQL store)."""

    def __init__(self, now: Now = _system_now) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DeliveryState] = {}
        self._webhooks: dict[str, WebhookRecord] = {}
        self._now = now

    def state(self, name: str) -> DeliveryState:
        with self._lock:
            return self._states.get(name) or DeliveryState(name=name, position=0)

    def states(self) -> list[DeliveryState]:
        with self._lock:
            return sorted_states(list(self._states.values()))

    def save(self, name: str, position: int, *, failed: str | None = None) -> None:
        with self._lock:
            old = self._states.get(name) or DeliveryState(name=name, position=0)
            if old.position >= position and name in self._states:
                return
            self._states[name] = old.model_copy(
                update={
                    "position": position,
                    "attempts": 0,
                    "last_error": failed or old.last_error,
                    "failed": old.failed + (failed is not None),
                    "last_failed_position": position if failed is not None else old.last_failed_position,
                    "updated_at": self._now(),
                }
            )

    def attempt_failed(self, name: str, attempts: int, error: str) -> None:
        with self._lock:
            old = self._states.get(name) or DeliveryState(name=name, position=0)
            self._states[name] = old.model_copy(
                update={"attempts": attempts, "last_error": error, "updated_at": self._now()}
            )

    def forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)

    def add_webhook(self, record: WebhookRecord) -> None:
        with self._lock:
            self._webhooks[record.webhook_id] = record

    def webhooks(self) -> list[WebhookRecord]:
        with self._lock:
            return sorted(self._webhooks.values(), key=lambda r: (r.created_at, r.webhook_id))

    def remove_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            return self._webhooks.pop(webhook_id, None) is not None


_STORES: weakref.WeakKeyDictionary[ViewStore, DeliveryStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def delivery_store_for(views: ViewStore) -> DeliveryStore:
    """The delivery state kept beside ``views``: one store per views object."""
    with _STORES_LOCK:
        found = _STORES.get(views)
        if found is None:
            found = _construct(views)
            _STORES[views] = found
        return found


def _construct(views: ViewStore) -> DeliveryStore:
    if isinstance(views, SQLiteViews):
        datastore = views.datastore

        def sqlite_transaction(commit: bool) -> AbstractContextManager[Any]:
            return datastore.transaction(commit=commit)

        return SQLDeliveryStore(sqlite_transaction, prefix="", blob="BLOB", placeholder="?")
    if isinstance(views, MemoryViews):
        return MemoryDeliveryStore()
    from keyledger.adapters.driven.postgres_views import PostgresViews

    if isinstance(views, PostgresViews):
        pg = views.datastore

        def postgres_transaction(commit: bool) -> AbstractContextManager[Any]:
            return pg.transaction(commit=commit)

        return SQLDeliveryStore(
            postgres_transaction, prefix=f'"{pg.schema}".', blob="BYTEA", placeholder="%s"
        )
    raise TypeError(f"no delivery store for {type(views).__name__}")
