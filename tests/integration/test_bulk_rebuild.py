"""The rebuild is a bulk job beside the views in use: its views equal the incremental ones.

``rebuild_projections`` folds the current state in memory, loads fresh tables and swaps
them in with one short transaction. These tests compare its tables, row for row, with
the tables the incremental path wrote for a varied history (grace regenerations and
their expiry, immediate regenerations, revocations, users removed and restored, several
accounts), and check that commands and verification go on while it runs, their events
reaching the rebuilt views.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from contextlib import closing
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from keyledger import Actor, Ledger, Permission, StoreUnavailable
from keyledger.adapters.driven.postgres_views import PostgresViews
from keyledger.adapters.driven.sql_views import SQLViews
from keyledger.adapters.driven.sqlite_views import SQLiteViews
from keyledger.testing import ManualClock

PROJECTED = {
    "valid": "digest",
    "secrets": "digest",
    "keys": "account, key_id",
    "audit": "position",
    "audit_keys": "key_id, position",
}
"""The rebuilt tables and the order to compare their rows in."""
MANAGE = {Permission.INTEGRATION, Permission.USER_MANAGEMENT}


def tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the rebuilt tables, and the views' position, read straight from the store."""
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            found = {
                name: conn.execute(f"SELECT * FROM keyledger_{name} ORDER BY {order}").fetchall()
                for name, order in PROJECTED.items()
            }
            found["tracking"] = conn.execute(
                "SELECT notification_id FROM tracking WHERE application_name = 'keyledger_views'"
            ).fetchall()
            found["tables"] = conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'keyledger%' ORDER BY name"
            ).fetchall()
            return found
    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    with psycopg.connect(urlunsplit(parts._replace(query=urlencode([]))), autocommit=True) as conn:
        found = {
            name: [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in conn.execute(f"SELECT * FROM {schema}.keyledger_{name} ORDER BY {order}")  # type: ignore[arg-type]
            ]
            for name, order in PROJECTED.items()
        }
        found["tracking"] = conn.execute(
            f"SELECT notification_id FROM {schema}.keyledger_tracking "  # type: ignore[arg-type]
            "WHERE application_name = 'keyledger_views'"
        ).fetchall()
        found["indexes"] = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY indexname", [schema]
        ).fetchall()
        return found


def varied_history(ledger: Ledger, clock: ManualClock) -> list[str]:
    """Three accounts, every kind of event; returns every secret issued."""
    secrets: list[str] = []
    for account in ("acme", "globex", "initech"):
        admin = Actor(user_id=f"{account}-root", account=account, permissions=MANAGE)
        dana = Actor(user_id=f"{account}-dana", account=account, permissions={Permission.INTEGRATION})
        keys = [ledger.create_key(actor, name=f"{account} {n}") for n, actor in enumerate([admin, dana] * 3)]
        secrets += [k.secret.get_secret_value() for k in keys]
        clock.advance(minutes=5)
        for mode, key in (("grace", keys[0]), ("grace", keys[1]), ("immediate", keys[2]), ("grace", keys[0])):
            secrets.append(ledger.regenerate_key(admin, key.key_id, mode=mode).secret.get_secret_value())  # type: ignore[arg-type]
        ledger.revoke_key(admin, keys[3].key_id, reason="leaked")
        regenerated_for_dana = ledger.regenerate_key(dana, keys[4].key_id, mode="grace")
        secrets.append(regenerated_for_dana.secret.get_secret_value())
        ledger.revoke_user_access(admin, dana.user_id)
        clock.advance(hours=13)
        ledger.restore_user_access(admin, dana.user_id)
        secrets.append(ledger.create_key(dana, name=f"{account} back").secret.get_secret_value())
    ledger.expire_grace()
    clock.advance(minutes=1)
    secrets.append(
        ledger.regenerate_key(
            Actor(user_id="acme-root", account="acme", permissions=MANAGE),
            ledger.keys("acme")[0].key_id,
            mode="grace",
        ).secret.get_secret_value()
    )
    return secrets


class TestBulkRebuild:
    """A rebuild's views equal the incrementally maintained ones."""

    def test_rebuilt_tables_equal_the_incremental_ones_row_for_row(
        self, durable_url: str, clock: ManualClock
    ) -> None:
        """Every row of the valid keys, digests, catalogue and audit trail, and the position,
        are the same after a rebuild as the commands left them; no fresh table is left."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            secrets = varied_history(ledger, clock)
        incremental = tables(durable_url)

        with Ledger.open(durable_url, clock=clock) as ledger:
            before = [ledger.verify(secret) for secret in secrets]
            last = ledger.rebuild_projections()
            after = [ledger.verify(secret) for secret in secrets]
            assert ledger.check_integrity().ok
        rebuilt = tables(durable_url)

        assert rebuilt == incremental
        assert last == incremental["tracking"][0][0]
        assert after == before
        assert 0 < before.count(None) < len(before)

    def test_a_second_rebuild_is_the_same_again(self, durable_url: str, clock: ManualClock) -> None:
        """Rebuilding twice (on SQLite, under the other name of each index) changes nothing,
        and opening the store afterwards creates no index twice."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            varied_history(ledger, clock)
        incremental = tables(durable_url)

        for _ in range(2):
            with Ledger.open(durable_url, clock=clock) as ledger:
                ledger.rebuild_projections()

        assert tables(durable_url) == incremental
        if durable_url.startswith("sqlite:"):
            with closing(sqlite3.connect(durable_url.removeprefix("sqlite:///"))) as conn:
                indexes = [
                    row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")
                ]
            assert len({name.removesuffix("_r") for name in indexes}) == len(indexes)

    def test_a_load_that_fails_leaves_the_views_in_use(
        self, durable_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write of the fresh tables failing (the disk full, say) fails the rebuild with
        the store's error; the views in use are untouched, the garbage collector has every
        object back, and the next rebuild succeeds (and drops what the failed one left)."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            secrets = varied_history(ledger, clock)
        incremental = tables(durable_url)
        monkeypatch.setattr("keyledger.adapters.driven.sql_rebuild.LOAD_CHUNK", 5)
        views_class = SQLiteViews if durable_url.startswith("sqlite:") else PostgresViews
        real = views_class.insert_fresh
        calls: list[str] = []

        def failing(views: SQLViews, cursor: Any, table: str, *args: Any) -> None:
            calls.append(table)
            if len(calls) == 4:
                raise OperationalError("database or disk is full")
            real(views, cursor, table, *args)

        with Ledger.open(durable_url, clock=clock) as ledger:
            before = [ledger.verify(secret) for secret in secrets]
            monkeypatch.setattr(views_class, "insert_fresh", failing)
            with pytest.raises(StoreUnavailable):
                ledger.rebuild_projections()
            assert [ledger.verify(secret) for secret in secrets] == before
            left = tables(durable_url)  # with the fresh tables, until the next rebuild drops them
            assert {k: v for k, v in left.items() if k != "tables"} == {
                k: v for k, v in incremental.items() if k != "tables"
            }
            assert gc.get_freeze_count() == 0

            monkeypatch.setattr(views_class, "insert_fresh", real)
            ledger.rebuild_projections()
            assert gc.get_freeze_count() == 0
        assert len(calls) == 4
        assert tables(durable_url) == incremental

    def test_a_hosts_own_freeze_of_the_garbage_collector_is_kept(
        self, durable_url: str, clock: ManualClock
    ) -> None:
        """A host that froze its objects (as a pre-forking server does) finds them still
        frozen after a rebuild, which releases only a freeze of its own."""
        with Ledger.open(durable_url, clock=clock) as ledger:
            varied_history(ledger, clock)
            gc.freeze()
            try:
                ledger.rebuild_projections()
                assert gc.get_freeze_count() > 0  # (some may have been freed since)
            finally:
                gc.unfreeze()

    def test_in_memory_the_rebuild_answers_as_before(self, clock: ManualClock) -> None:
        """A memory:// ledger lists, audits and verifies the same after a rebuild."""
        with Ledger.open("memory://", clock=clock) as ledger:
            secrets = varied_history(ledger, clock)
            before = (ledger.audit(limit=10_000), ledger.keys("acme"), [ledger.verify(s) for s in secrets])

            ledger.rebuild_projections()

            after = (ledger.audit(limit=10_000), ledger.keys("acme"), [ledger.verify(s) for s in secrets])
        assert after == before


class TestWhileRebuilding:
    """Commands and verification go on during a rebuild; their events reach the new views."""

    @pytest.mark.parametrize("where", ["sqlite", "postgresql", "memory"])
    def test_a_command_in_another_thread_completes_while_the_rebuild_runs(
        self, where: str, request: pytest.FixtureRequest, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Halfway through a rebuild, another thread creates a key, revokes one and
        verifies; it finishes before the rebuild goes on, and the rebuilt views hold both."""
        fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}.get(where)
        url = request.getfixturevalue(fixture) if fixture else "memory://"
        monkeypatch.setattr("keyledger.follower.REBUILD_PAGE_SIZE", 5)
        ledger = Ledger.open(url, clock=clock)
        secrets = varied_history(ledger, clock)
        acme = Actor(user_id="acme-root", account="acme", permissions=MANAGE)
        victim = next(key for key in ledger.keys("acme") if key.status == "active")
        outcome: dict[str, Any] = {}

        def meanwhile() -> None:
            outcome["created"] = ledger.create_key(acme, name="made during the rebuild")
            ledger.revoke_key(acme, victim.key_id, reason="during the rebuild")
            outcome["verified"] = ledger.verify(outcome["created"].secret.get_secret_value())

        def progress(done: int, total: int) -> None:
            if done and "thread" not in outcome:
                outcome["thread"] = thread = threading.Thread(target=meanwhile, daemon=True)
                thread.start()
                thread.join(timeout=30)
                outcome["finished"] = not thread.is_alive()

        try:
            ledger.rebuild_projections(progress=progress)

            assert outcome["finished"], "a command waited for the rebuild"
            assert outcome["verified"] is not None
            created = outcome["created"]
            assert ledger.verify(created.secret.get_secret_value()) is not None
            assert ledger.key("acme", victim.key_id).status == "revoked"  # type: ignore[union-attr]
            assert [e.action for e in ledger.audit(limit=10_000)][-2:] == ["KeyCreated", "KeyRevoked"]
            assert ledger.check_integrity().ok
            assert len(secrets) > 10
        finally:
            ledger.close()
        if where != "memory":
            with Ledger.open(url, clock=clock) as reopened:
                assert tables(url)["tracking"][0][0] == reopened.position
