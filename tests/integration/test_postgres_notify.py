"""PostgreSQL's NOTIFY and the commands' transactions: a follower reads once for the
commits notified by the time it reads, never for its own process's commands (told by
their NOTIFY's payload), and leaves
the durable views to the process that committed; a view's constraint that fails at the
commit is a failure of the store, not a version conflict."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from keyledger import Actor, Ledger, Permission, StoreUnavailable
from keyledger.adapters.driven import sql_views
from keyledger.adapters.driven.postgres_views import PostgresTransaction, listen
from keyledger.adapters.driven.stores import parse_url
from keyledger.application import KeyringApplication
from keyledger.testing import ManualClock
from tests.integration.conftest import recorded_commits

pytestmark = pytest.mark.postgres

WAIT = 10.0


@pytest.fixture
def app(postgres_url: str) -> Iterator[KeyringApplication]:
    application = KeyringApplication(env=parse_url(postgres_url).env)
    try:
        yield application
    finally:
        application.close()


def test_notifies_that_arrive_while_the_caller_reads_wake_it_once_more(
    app: KeyringApplication, postgres_url: str
) -> None:
    """Five commits notified while the caller is busy are taken by one more call."""
    calls: list[int] = []
    busy, release = threading.Event(), threading.Event()
    stopping = threading.Event()

    def notified() -> None:
        calls.append(len(calls))
        if len(calls) == 2:  # the first NOTIFY: stay busy until five more have arrived
            busy.set()
            release.wait(WAIT)

    thread = threading.Thread(target=listen, args=(app.recorder, notified, stopping), daemon=True)
    thread.start()
    channel = app.recorder.channel_name  # type: ignore[attr-defined]
    try:
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as connection:
            _wait_for(lambda: len(calls) == 1)  # LISTEN is in place
            connection.execute(f'NOTIFY "{channel}"')
            assert busy.wait(WAIT)

            with connection.transaction():  # five commits' worth, delivered together
                for payload in range(5):
                    connection.execute(f"NOTIFY \"{channel}\", '{payload}'")
            stopping.wait(0.3)  # time for them to reach the listener's connection
            release.set()

            _wait_for(lambda: len(calls) >= 3)
            stopping.wait(0.5)  # any further call would come now
    finally:
        release.set()
        stopping.set()
        thread.join(WAIT)

    assert len(calls) == 3


def _wait_for(condition: object) -> None:
    assert callable(condition)
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the listener did not call in time")


def test_notifies_with_an_ignored_payload_do_not_wake_the_caller(
    app: KeyringApplication, postgres_url: str
) -> None:
    """A NOTIFY whose payload the caller ignores (its own commands') wakes nothing; one
    with another payload, or none, sent on the same connection, does."""
    calls: list[int] = []
    stopping = threading.Event()
    channel = app.recorder.channel_name  # type: ignore[attr-defined]
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as sender:
        thread = threading.Thread(
            target=listen,
            args=(app.recorder, lambda: calls.append(1), stopping),
            kwargs={"ignored": lambda payload: payload == "mine"},
            daemon=True,
        )
        thread.start()
        try:
            _wait_for(lambda: len(calls) == 1)  # LISTEN is in place

            for _ in range(3):
                sender.execute(f"NOTIFY \"{channel}\", 'mine'")
            stopping.wait(0.5)
            after_own = len(calls)
            sender.execute(f'NOTIFY "{channel}"')
            _wait_for(lambda: len(calls) == 2)
        finally:
            stopping.set()
            thread.join(WAIT)

    assert after_own == 1


def test_a_ledger_tells_its_own_commits_by_their_notify_payload(postgres_url: str) -> None:
    """A command's NOTIFY carries its unit of work's token: that ledger takes it as its
    own, another ledger on the same store (another process's) does not."""
    actor = Actor("alice", "acme", frozenset({Permission.INTEGRATION}))
    with (
        Ledger.open(postgres_url, follow=False) as ledger,
        Ledger.open(postgres_url, follow=False) as other,
        psycopg.connect(postgres_url.split("?")[0], autocommit=True) as listener,
    ):
        channel = ledger._connection.app.recorder.channel_name  # type: ignore[attr-defined]
        listener.execute(f'LISTEN "{channel}"')
        ledger.create_key(actor, name="one")
        payloads = [notify.payload for notify in listener.notifies(timeout=WAIT, stop_after=1)]

    assert len(payloads) == 1
    assert ledger._connection.unit_of_work.sent(payloads[0])
    assert not other._connection.unit_of_work.sent(payloads[0])
    assert not ledger._connection.unit_of_work.sent("")


def test_a_rebuild_swapping_in_while_a_command_reads_the_views_is_no_deadlock(postgres_url: str) -> None:
    """A command reads the views before it knows whether it holds their lock, the audit
    table first. A rebuild's swap that starts meanwhile waits for it at the audit table,
    before dropping any other: the command goes on to read the others, and both finish
    (dropping the others first, the swap would hold the catalogue the command reads next
    while waiting for the audit table the command holds: a deadlock, one of them failed)."""
    actor = Actor("alice", "acme", frozenset({Permission.INTEGRATION}))
    with Ledger.open(postgres_url, follow=False) as ledger:
        ledger.create_key(actor, name="one")
        schema = dict(part.split("=") for part in postgres_url.split("?")[1].split("&"))["schema"]
        outcome: dict[str, Any] = {}

        def rebuild() -> None:
            try:
                outcome["rebuilt"] = ledger.rebuild_projections()
            except Exception as error:  # the test asserts there was none
                outcome["error"] = error

        with psycopg.connect(postgres_url.split("?")[0]) as command:
            # What a command reads first, before it knows whether it holds the views' lock:
            command.execute(f"SELECT chain FROM {schema}.keyledger_audit LIMIT 1")
            thread = threading.Thread(target=rebuild, daemon=True)
            thread.start()
            with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as watcher:
                _wait_for(
                    lambda: (
                        watcher.execute(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                            [f"{schema}.keyledger_audit"],
                        ).fetchone()[0]  # type: ignore[index]
                        > 0
                    )
                )
            command.execute(f"SELECT name FROM {schema}.keyledger_keys LIMIT 1")  # and then
            command.execute(f"SELECT key_id FROM {schema}.keyledger_valid LIMIT 1")
            command.commit()
            thread.join(WAIT)

        assert "error" not in outcome, outcome
        assert outcome["rebuilt"] == ledger.position
        assert ledger.check_integrity().ok


def test_a_view_constraint_that_fails_at_the_commit_is_no_version_conflict(
    postgres_url: str, clock: ManualClock, alice: Actor
) -> None:
    """The views' writes are answered with the COMMIT: a constraint of theirs that fails
    there fails the command once (the store failed), records nothing, and is not retried
    as if another writer had taken the version."""
    schema = postgres_url.split("schema=")[1]
    with Ledger.open(postgres_url, clock=clock, follow=False) as ledger:
        ledger.create_key(alice, name="kept")
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as admin:
            (next_position,) = admin.execute(
                f"SELECT max(notification_id) + 1 FROM {schema}.keyledger_events"
            ).fetchone() or (0,)
            admin.execute(
                f"INSERT INTO {schema}.keyledger_audit SELECT %s, account, version, action, actor, key_id, "
                f"key_name, occurred_at, recorded_at, details, previous_position, chain, previous_chain "
                f"FROM {schema}.keyledger_audit LIMIT 1",
                (next_position,),
            )

            with pytest.raises(StoreUnavailable):
                ledger.create_key(alice, name="lost")

            (count,) = admin.execute(f"SELECT count(*) FROM {schema}.keyledger_events").fetchone() or (0,)
            (last,) = admin.execute(
                f"SELECT last_value FROM {schema}.keyledger_events_notification_id_seq"
            ).fetchone() or (0,)
        assert count == 1
        assert last == next_position  # one attempt took one position, and no more


def test_a_notify_moves_the_index_and_leaves_the_views_to_the_writer_until_a_poll(
    postgres_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's commit reaches this process's index at once; its durable views
    are that process's to write, and this process's next catch-up that is not a NOTIFY's
    writes them if it never did (it died between its commit and writing them)."""
    monkeypatch.setattr("keyledger.follower.NOTIFY_FALLBACK_INTERVAL", 60.0)
    writer = Ledger.open(postgres_url, clock=clock, follow=False)
    follower = Ledger.open(postgres_url, clock=clock, max_lag=timedelta(hours=1))
    try:
        writer.create_key(alice, name="before")
        follower.sync()
        before = follower._connection.views.position()
        # The writer dies after its commit: no views in the commit, none after it.
        monkeypatch.setattr(PostgresTransaction, "lock_views", lambda self: None)
        monkeypatch.setattr(writer._connection.follower, "take", lambda committed: None)

        issued = writer.create_key(alice, name="views left")

        secret = issued.secret.get_secret_value()
        _wait_for(lambda: follower.verify(secret) is not None)
        with follower._connection.follower.lock:  # once that catch-up has ended
            assert follower._connection.views.position() == before
        follower.sync()
        assert follower._connection.views.position() > before
        assert [k.name for k in follower.keys("acme")] == ["before", "views left"]
    finally:
        writer.close()
        follower.close()


def test_a_command_waits_a_moment_for_the_views_lock_and_writes_its_views_in_its_commit(
    postgres_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another holder of the views' lock for a moment (within the command's patience)
    delays a command; it does not push the command's views to a transaction of their
    own after the commit."""
    monkeypatch.setattr("keyledger.adapters.driven.postgres_views.VIEWS_LOCK_PATIENCE", 10.0)
    with Ledger.open(postgres_url, clock=clock, follow=False) as ledger:
        ledger.create_key(alice, name="first")
        connection = ledger._connection
        handed = recorded_commits(connection.unit_of_work, monkeypatch)
        key = connection.views._lock_key  # type: ignore[attr-defined]
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [key])
            threading.Timer(0.3, lambda: holder.execute("SELECT pg_advisory_unlock(%s)", [key])).start()

            ledger.create_key(alice, name="second")

        assert [event.position for event in handed[-1].applied] == [n.id for n in handed[-1].notifications]
        assert connection.views.position() == handed[-1].notifications[-1].id


def test_the_views_read_nothing_after_the_append_in_a_keys_life(
    postgres_url: str,
    clock: ManualClock,
    alice: Actor,
    bob: Actor,
    admin: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every row the views read while taking a create, a regeneration, a revocation and a
    user's removal came back with the append (see ``usual_reads``)."""
    misses: list[str] = []
    one = sql_views._Batch._one

    def counting(batch: Any, statement: str, params: Any) -> Any:
        if (statement, tuple(params)) not in batch.read:
            misses.append(statement)
        return one(batch, statement, params)

    with Ledger.open(postgres_url, clock=clock, follow=False) as ledger:
        ledger.create_key(alice, name="first")
        monkeypatch.setattr(sql_views._Batch, "_one", counting)

        key_id = ledger.create_key(alice, name="one").key_id
        ledger.regenerate_key(alice, key_id, mode="grace")
        ledger.regenerate_key(alice, key_id, mode="immediate")
        ledger.revoke_key(alice, key_id)
        ledger.create_key(bob, name="bob's")
        ledger.revoke_user_access(admin, bob.user_id)

    assert misses == []
