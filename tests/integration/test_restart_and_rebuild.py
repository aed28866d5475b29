"""Durable views resume after a restart and rebuild from zero to the same answers.

On SQLite and PostgreSQL the views record their position (the ``keyledger_views``
tracking row) in the same transaction as their rows, so a reopened ledger continues from
there: nothing is skipped, nothing applied twice, and events another process wrote while
this one was closed are applied when it opens. ``rebuild_projections`` empties the views
and replays every event; its result equals the incrementally maintained one, and the
last-used side table survives it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from keyledger import Actor, AuditEntry, KeyView, Ledger, Permission, Principal
from keyledger.testing import ManualClock

ACCOUNTS = ("acme", "globex")
CHILD_TIMEOUT = 60

WRITE_ELSEWHERE = r"""
import json, sys
from datetime import datetime
from keyledger import Actor, Ledger, Permission

config = json.loads(sys.argv[1])
now = datetime.fromisoformat(config["now"])
alice = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})
with Ledger.open(config["url"], follow=False, clock=lambda: now) as ledger:
    issued = ledger.create_key(alice, name="Written elsewhere")
    ledger.revoke_key(alice, config["revoke"], reason="revoked elsewhere")
    print(json.dumps({"key_id": issued.key_id, "secret": issued.secret.get_secret_value()}))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_store(request: pytest.FixtureRequest) -> str:
    """A new, empty store that outlives a ledger: a SQLite file, then a PostgreSQL schema."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


class Tables:
    """Reads the event and tracking tables behind a SQLite or PostgreSQL URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite:")

    def _rows(self, sqlite_sql: str, postgres_sql: str) -> list[tuple[Any, ...]]:
        if self.is_sqlite:
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn:
                return conn.execute(sqlite_sql).fetchall()
        parts = urlsplit(self.url)
        schema = dict(parse_qsl(parts.query))["schema"]
        conninfo = urlunsplit(parts._replace(query=urlencode([])))
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(postgres_sql.format(schema=schema)).fetchall()  # type: ignore[arg-type]

    def notification_ids(self) -> list[int]:
        """Every stored event's position, in order."""
        rows = self._rows(
            "SELECT rowid FROM stored_events ORDER BY rowid",
            "SELECT notification_id FROM {schema}.keyledger_events ORDER BY notification_id",
        )
        return [int(row[0]) for row in rows]

    def views_tracking(self) -> list[int]:
        """The positions recorded for the views (one row is expected)."""
        rows = self._rows(
            "SELECT notification_id FROM tracking WHERE application_name = 'keyledger_views'",
            "SELECT notification_id FROM {schema}.keyledger_tracking "
            "WHERE application_name = 'keyledger_views'",
        )
        return [int(row[0]) for row in rows]


@dataclass
class Answers:
    """What a ledger answers about its keys: listings, audit trail, verification."""

    keys: dict[str, list[KeyView]]
    audit: list[AuditEntry]
    verified: list[Principal | None]


def answers(ledger: Ledger, secrets: list[str]) -> Answers:
    verified = [ledger.verify(secret) for secret in secrets]
    ledger._connection.usage.flush()
    return Answers(
        keys={account: ledger.keys(account) for account in ACCOUNTS},
        audit=ledger.audit(limit=10_000),
        verified=verified,
    )


def first_part(ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, gina: Actor) -> list[str]:
    """Keys in two accounts, one regenerated with grace and one at once; returns the secrets."""
    issued = [
        ledger.create_key(alice, name="Shipping"),
        ledger.create_key(alice, name="Billing"),
        ledger.create_key(bob, name="Bob's sync"),
        ledger.create_key(gina, name="Globex CRM"),
    ]
    clock.advance(minutes=5)
    issued.append(ledger.regenerate_key(alice, issued[0].key_id, mode="grace"))
    issued.append(ledger.regenerate_key(alice, issued[1].key_id, mode="immediate"))
    issued.append(ledger.regenerate_key(bob, issued[2].key_id, mode="grace"))
    return [key.secret.get_secret_value() for key in issued]


def second_part(ledger: Ledger, clock: ManualClock, alice: Actor, admin: Actor, gina: Actor) -> list[str]:
    """A late grace expiry, a revocation, a user removal and a new key; returns the new secret."""
    clock.advance(hours=13)
    assert ledger.expire_grace() == 2
    shipping, billing = (view.key_id for view in ledger.keys("acme")[:2])
    ledger.revoke_key(alice, billing, reason="rotated out")
    ledger.revoke_user_access(admin, "bob")
    ledger.regenerate_key(alice, shipping, mode="grace")
    return [ledger.create_key(gina, name="Globex reports").secret.get_secret_value()]


@pytest.fixture
def gina() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


@pytest.fixture
def history(
    durable_store: str, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor, gina: Actor
) -> list[str]:
    """Both parts of the history, each written by its own ledger, closed afterwards;
    returns every secret issued."""
    with Ledger.open(durable_store, clock=clock) as ledger:
        secrets = first_part(ledger, clock, alice, bob, gina)
    with Ledger.open(durable_store, clock=clock) as ledger:
        secrets += second_part(ledger, clock, alice, admin, gina)
    return secrets


@pytest.fixture
def reopen(durable_store: str, clock: ManualClock) -> Iterator[Callable[[], Ledger]]:
    """Open the durable store again (closed after the test)."""
    opened: list[Ledger] = []

    def _open() -> Ledger:
        ledger = Ledger.open(durable_store, clock=clock)
        opened.append(ledger)
        return ledger

    yield _open
    for ledger in opened:
        ledger.close()


class TestResumingAfterRestart:
    """A reopened ledger continues from the views' tracking position."""

    def test_applies_every_event_exactly_once_across_restarts(
        self, durable_store: str, history: list[str], reopen: Callable[[], Ledger]
    ) -> None:
        """After two restarts the audit trail has one entry per stored event, each once,
        and the views' tracking row holds the newest notification id."""
        tables = Tables(durable_store)

        ledger = reopen()

        audit = ledger.audit(limit=10_000)
        stored = tables.notification_ids()
        assert len(stored) == 13
        assert [entry.position for entry in audit] == stored
        assert len({entry.position for entry in audit}) == len(audit)
        assert [entry.previous_position for entry in audit] == [0, *stored[:-1]]
        assert tables.views_tracking() == [stored[-1]]
        assert ledger.position == stored[-1]

    def test_keeps_applying_new_events_once_after_reopening(
        self, durable_store: str, history: list[str], reopen: Callable[[], Ledger], alice: Actor
    ) -> None:
        """A command after reopening adds exactly its own entry to the views."""
        ledger = reopen()
        tables = Tables(durable_store)

        issued = ledger.create_key(alice, name="After the restart")

        audit = ledger.audit(limit=10_000)
        assert [entry.position for entry in audit] == tables.notification_ids()
        assert len(audit) == 14
        assert audit[-1].key_id == issued.key_id
        assert tables.views_tracking() == [audit[-1].position]
        assert [k.name for k in ledger.keys("acme")][-1] == "After the restart"

    def test_applies_on_opening_what_another_process_wrote_while_it_was_closed(
        self,
        durable_store: str,
        history: list[str],
        reopen: Callable[[], Ledger],
        clock: ManualClock,
        tmp_path: Path,
    ) -> None:
        """Events written by a ledger in another process, while this one was closed, are
        listed, audited and verified when it opens again."""
        before = reopen()
        shipping = before.keys("acme")[0]
        assert before.verify(history[4]) is not None
        before.close()
        config = {
            "url": durable_store,
            "revoke": shipping.key_id,
            "now": clock.advance(minutes=1).isoformat(),
        }

        child = subprocess.run(
            [sys.executable, "-c", WRITE_ELSEWHERE, json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            cwd=tmp_path,
            check=False,
        )
        ledger = reopen()

        assert child.returncode == 0, child.stderr
        written = json.loads(child.stdout)
        assert ledger.verify(written["secret"]) is not None
        assert ledger.verify(history[4]) is None
        assert [(e.action, e.actor) for e in ledger.audit(after=13)] == [
            ("KeyCreated", "alice"),
            ("KeyRevoked", "alice"),
        ]
        assert ledger.key("acme", shipping.key_id).status == "revoked"  # type: ignore[union-attr]
        assert ledger.keys("acme")[-1].key_id == written["key_id"]
        assert ledger.position == max(Tables(durable_store).notification_ids())

    def test_last_uses_noted_before_closing_are_kept(
        self, durable_store: str, history: list[str], reopen: Callable[[], Ledger], clock: ManualClock
    ) -> None:
        """A verification noted just before the ledger closes shows as last use after reopening."""
        used_at = clock.advance(minutes=2)
        with Ledger.open(durable_store, clock=clock) as ledger:
            assert ledger.verify(history[-1]) is not None

        reopened = reopen()

        [_, reports] = reopened.keys("globex")
        assert reports.name == "Globex reports"
        assert reports.last_used_at == used_at


class TestRebuild:
    """rebuild_projections() replays every event into empty views, to the same answers."""

    def test_rebuilds_the_same_keys_audit_and_verification(
        self, history: list[str], reopen: Callable[[], Ledger]
    ) -> None:
        """A rebuilt ledger lists, audits and verifies exactly as before the rebuild."""
        ledger = reopen()
        before = answers(ledger, history)

        ledger.rebuild_projections()

        after = answers(ledger, history)
        assert after == before
        assert [p is not None for p in after.verified] == [
            False, False, False, True, True, False, False, True,
        ]  # fmt: skip
        assert ledger.check_integrity().ok

    def test_a_rebuild_is_what_the_next_ledger_opens(
        self, durable_store: str, history: list[str], reopen: Callable[[], Ledger]
    ) -> None:
        """A ledger opened after a rebuild loads the rebuilt views and answers as before."""
        ledger = reopen()
        before = answers(ledger, history)

        last = ledger.rebuild_projections()
        ledger.close()

        tables = Tables(durable_store)
        assert last == max(tables.notification_ids())
        assert tables.views_tracking() == [last]
        assert answers(reopen(), history) == before

    def test_reports_progress_up_to_the_total(
        self, history: list[str], reopen: Callable[[], Ledger], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """progress(done, total) is called with increasing done, ending at done == total."""
        monkeypatch.setattr("keyledger.follower.REBUILD_PAGE_SIZE", 4)
        ledger = reopen()
        calls: list[tuple[int, int]] = []

        last = ledger.rebuild_projections(progress=lambda done, total: calls.append((done, total)))

        dones = [done for done, _ in calls]
        assert len(calls) >= 4
        assert dones == sorted(set(dones))
        assert {total for _, total in calls} == {ledger.position}
        assert calls[-1] == (ledger.position, ledger.position) == (last, last)

    def test_applies_new_events_once_after_a_rebuild(
        self, durable_store: str, history: list[str], reopen: Callable[[], Ledger], alice: Actor
    ) -> None:
        """Commands after a rebuild are applied once, after the rebuilt entries."""
        ledger = reopen()
        ledger.rebuild_projections()

        issued = ledger.create_key(alice, name="After the rebuild")

        audit = ledger.audit(limit=10_000)
        assert [entry.position for entry in audit] == Tables(durable_store).notification_ids()
        assert audit[-1].key_id == issued.key_id
        assert ledger.verify(issued.secret.get_secret_value()) is not None

    def test_last_used_times_survive_a_rebuild(
        self, history: list[str], reopen: Callable[[], Ledger], clock: ManualClock
    ) -> None:
        """The last-used side table is kept: a key used before the rebuild still shows when."""
        ledger = reopen()
        used_at = clock.advance(minutes=3)
        assert ledger.verify(history[3]) is not None
        ledger._connection.usage.flush()

        ledger.rebuild_projections()

        crm = ledger.keys("globex")[0]
        assert crm.name == "Globex CRM"
        assert crm.last_used_at == used_at
        assert [k.last_used_at for k in ledger.keys("acme")] == [None, None, None]
