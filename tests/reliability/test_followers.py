"""Issue 6, point 3: a follower never skips an event and never applies one twice, across
restarts and while a transaction is held open.

A follower is a process (``worker.py`` ``follower``, forked from a zygote) that opens the
ledger and applies other processes' events to its verification index and to the
durable views; it logs each run of positions it applied, with the position it applied
them after. The writer in these tests never writes the views itself (as if it died
after each append), so the followers do all of that work, and each is killed at a
random moment while events arrive. Every follower's log must be exactly the committed
positions after its start, in order; the views must hold one audit entry per committed
event; and a last follower must answer as a rebuild.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from keyledger import Actor, AuditEntry, KeyAlreadyRevoked, Ledger, Permission

if TYPE_CHECKING:
    from tests.reliability.conftest import Sizes, StoredEvent, Tally, Zygote

POINT = 3
ACCOUNTS = ["acme", "globex"]
Log = Callable[[Path], list[dict[str, Any]]]


class Writer(threading.Thread):
    """Runs commands on a ledger until told to stop; keeps every secret it was given."""

    def __init__(self, ledger: Ledger, seed: int, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.ledger, self.rng, self.pause = ledger, random.Random(seed), pause
        self.secrets: list[str] = []
        self.commands = 0
        self.keys: dict[str, list[str]] = {account: [] for account in ACCOUNTS}
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.pause):
                self.command()
                self.commands += 1
        except BaseException as error:
            self.error = error

    def command(self) -> None:
        account = self.rng.choice(ACCOUNTS)
        actor = Actor(user_id="alice", account=account, permissions={Permission.INTEGRATION})
        keys, roll = self.keys[account], self.rng.random()
        if roll < 0.6 or not keys:
            issued = self.ledger.create_key(actor, name=f"key {len(self.secrets)}")
            keys.append(issued.key_id)
        elif roll < 0.85:
            issued = self.ledger.regenerate_key(
                actor, self.rng.choice(keys), mode="grace" if roll < 0.75 else "immediate"
            )
        else:
            key_id = keys.pop(self.rng.randrange(len(keys)))
            with contextlib.suppress(KeyAlreadyRevoked):
                self.ledger.revoke_key(actor, key_id)
            return
        self.secrets.append(issued.secret.get_secret_value())

    def finish(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.error is None, repr(self.error)


def runs(records: list[dict[str, Any]]) -> tuple[int | None, list[int], bool]:
    """A follower's start position, the positions it applied in order, and whether each
    run followed on from the one before it."""
    applied = [record for record in records if "after" in record]
    if not applied:
        return None, [], True
    positions: list[int] = []
    chained = True
    for record in applied:
        if positions and record["after"] != positions[-1]:
            chained = False
        positions.extend(record["positions"])
    return applied[0]["after"], positions, chained


def exact(start: int | None, positions: list[int], committed: list[int]) -> bool:
    """Whether ``positions`` are exactly the committed positions after ``start``, in order,
    up to the last one applied (nothing skipped, nothing twice)."""
    if start is None or not positions:
        return start is not None or not positions
    expected = [p for p in committed if start < p <= positions[-1]]
    return positions == expected


def final_follower(zygote: Zygote, url: str, logs: Path, secrets: list[str], head: int, log: Log) -> Any:
    """A follower that catches up to ``head`` and then reports what it verifies."""
    secrets_file = logs / "secrets.json"
    secrets_file.write_text(json.dumps(secrets), encoding="ascii")
    path = logs / "final.jsonl"
    pid = zygote.spawn(task="follower", url=url, log=str(path), report_at=head, secrets=str(secrets_file))
    deadline = time.monotonic() + 60
    while not any("verified" in record for record in log(path)):
        if time.monotonic() > deadline:
            zygote.kill(pid)
            pytest.fail(f"the last follower did not report within 60 s: {log(path)[-3:]}")
        time.sleep(0.01)
    return log(path)


class TestRestartingFollowers:
    """Followers killed again and again while events arrive skip nothing and repeat nothing."""

    def test_each_follower_applies_exactly_the_committed_positions(
        self,
        sqlite_url: str,
        zygote: Zygote,
        tmp_path: Path,
        child_log: Log,
        events_of: Callable[[str], list[StoredEvent]],
        all_entries: Callable[[Ledger], list[AuditEntry]],
        views: Callable[[Ledger, list[str], list[str]], dict[str, Any]],
        sizes: Sizes,
        tally: Tally,
    ) -> None:
        """Each killed follower applied the committed positions after its start in order;
        the views hold one entry per event; the last follower answers as a rebuild."""
        rng = random.Random(3)
        Ledger.open(sqlite_url).close()
        logs = []
        with Ledger.open(sqlite_url, follow=False) as ledger:
            ledger._commands._follow = lambda recordings: None  # type: ignore[method-assign]
            writer = Writer(ledger, seed=3)
            writer.start()
            try:
                for turn in range(sizes.follower_kills):
                    path = tmp_path / f"follower-{turn}.jsonl"
                    pid = zygote.spawn(task="follower", url=sqlite_url, log=str(path))
                    time.sleep(rng.uniform(0.05, 0.4))
                    zygote.kill(pid)
                    logs.append(child_log(path))
            finally:
                writer.finish()
        committed = [event.position for event in events_of(sqlite_url)]
        last = final_follower(zygote, sqlite_url, tmp_path, writer.secrets, committed[-1], child_log)

        followed = [runs(records) for records in [*logs, last]]
        held = [chained and exact(start, positions, committed) for start, positions, chained in followed]
        with Ledger.open(sqlite_url) as fresh:
            entries = all_entries(fresh)
            fresh.rebuild_projections()
            rebuilt = views(fresh, ACCOUNTS, writer.secrets)
        answers = next(record for record in last if "verified" in record)["verified"]
        seen = sum(len(positions) for _, positions, _ in followed)
        expected = sum(
            len([p for p in committed if (start or 0) < p <= positions[-1]])
            for start, positions, _ in followed
            if positions
        )

        tally(POINT, "killed followers apply exactly the committed positions", "sqlite", len(held), sum(held))
        tally(POINT, "followers: count seen == count committed", "sqlite", expected, seen)
        assert sum(1 for _, positions, _ in followed if positions) > sizes.follower_kills // 2
        assert all(held)
        assert seen == expected
        assert [entry.position for entry in entries] == committed
        assert answers == [None if p is None else p[0] for p in rebuilt["verified"]]


class TestATransactionHeldOpenOnPostgreSQL:
    """On PostgreSQL a follower skips nothing while one append is held open mid-transaction,
    while the views' lock is held as events commit, and across an id rolled back."""

    def test_the_follower_sees_every_commit_once_and_in_order(
        self,
        pg_url: str,
        zygote: Zygote,
        tmp_path: Path,
        child_log: Log,
        events_of: Callable[[str], list[StoredEvent]],
        tally: Tally,
    ) -> None:
        """The positions the follower applied are the committed ones, strictly increasing
        and as many; nothing commits while an append holds the table; events commit while
        the views' lock is held."""
        Ledger.open(pg_url).close()
        follower_log = tmp_path / "follower.jsonl"
        follower = zygote.spawn(task="follower", url=pg_url, log=str(follower_log))
        with Ledger.open(pg_url, follow=False) as ledger, Ledger.open(pg_url, follow=False) as holder:
            writer = Writer(ledger, seed=4, pause=0.01)
            writer.start()
            try:
                time.sleep(0.3)
                waited = hold_an_append(holder, writer)
                roll_back_an_id(pg_url)
                committed_meanwhile = hold_the_views_lock(holder, writer)
                time.sleep(0.2)
            finally:
                writer.finish()
        committed = [event.position for event in events_of(pg_url)]
        deadline = time.monotonic() + 30
        while (runs(child_log(follower_log))[1] or [0])[-1] < committed[-1] and time.monotonic() < deadline:
            time.sleep(0.01)
        zygote.kill(follower)

        start, positions, chained = runs(child_log(follower_log))
        held = chained and exact(start, positions, committed) and positions[-1:] == committed[-1:]
        expected = len([p for p in committed if p > (start or 0)])

        tally(POINT, "held transactions: follower applies each commit once", "postgresql", 1, int(held))
        tally(
            POINT, "held transactions: count seen == count committed", "postgresql", expected, len(positions)
        )
        assert any(b - a > 1 for a, b in itertools.pairwise(committed))  # the rolled-back id
        assert waited == 0, "a command committed while another append held the table"
        assert committed_meanwhile > 0
        assert held
        assert len(positions) == expected


def hold_an_append(holder: Ledger, writer: Writer) -> int:
    """Hold one create open inside its append (table locked, not committed) for a second
    while the writer goes on; returns how many events committed meanwhile."""
    unit_of_work: Any = holder._connection.unit_of_work
    begin = unit_of_work.begin
    inside, release = threading.Event(), threading.Event()

    @contextlib.contextmanager
    def begin_and_hold() -> Iterator[Any]:
        # After the insert and the views, before the commit.
        with begin() as transaction:
            apply_views = transaction.apply_views

            def apply_and_hold(new: Any) -> Any:
                applied = apply_views(new)
                inside.set()
                release.wait(10)
                return applied

            transaction.apply_views = apply_and_hold
            yield transaction

    unit_of_work.begin = begin_and_hold
    admin = Actor(user_id="root", account="acme", permissions=set(Permission))
    thread = threading.Thread(target=holder.create_key, args=(admin,), kwargs={"name": "held"})
    thread.start()
    try:
        assert inside.wait(10), "the held append never started"
        before = writer.ledger._connection.app.recorder.max_notification_id()
        time.sleep(1.0)
        during = (writer.ledger._connection.app.recorder.max_notification_id() or 0) - (before or 0)
    finally:
        release.set()
        thread.join(10)
        del unit_of_work.begin  # the class's own again
    return during


def roll_back_an_id(url: str) -> None:
    """Take a notification id from the sequence and roll back: a gap in the positions."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = dict(query)["schema"]
    conninfo = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        conn.execute(f"SELECT nextval('{schema}.keyledger_events_notification_id_seq')")  # type: ignore[arg-type]
        conn.rollback()


def hold_the_views_lock(holder: Ledger, writer: Writer) -> int:
    """Hold the views' write lock for a second while the writer appends; returns how
    many events committed meanwhile (each command's append does not wait for the views)."""
    store: Any = holder._connection.views
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.locked_transaction():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10), "the views' lock was never taken"
        before = holder._connection.app.recorder.max_notification_id() or 0
        time.sleep(1.0)
        during = (holder._connection.app.recorder.max_notification_id() or 0) - before
    finally:
        release.set()
        thread.join(10)
    return during
