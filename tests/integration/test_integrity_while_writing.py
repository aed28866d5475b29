"""The integrity check compares one consistent moment while others write: the events up
to the log head as the check began, against the valid-key table and audit trail as they
stood then. A commit by another writer during the check is never a false alarm; it is
left to the next check.

Writers are a second ledger on the same store (another process, as far as the store can
tell) driven from another thread between the check's pages, and a real writer process
committing throughout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

import keyledger.integrity
from keyledger import Actor, IntegrityReport, Ledger
from keyledger.testing import ManualClock

KEYS = 10
PAGE = 3
"""Events per page of the check here, so a ten-event ledger takes several pages."""
WRITER = """
import sys
from keyledger import Actor, Ledger, Permission

actor = Actor(user_id="writer", account=sys.argv[2], permissions=set(Permission))
with Ledger.open(sys.argv[1], follow=False) as ledger:
    print("ready", flush=True)
    while sys.stdin.readline() == "go\\n":
        key = ledger.create_key(actor, name="busy").key_id
        ledger.regenerate_key(actor, key, mode="grace")
        ledger.revoke_key(actor, key)
        print("done", flush=True)
"""


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyledger.integrity, "PAGE_SIZE", PAGE)


def fill(ledger: Ledger, actor: Actor, count: int = KEYS) -> list[str]:
    """Create ``count`` keys and regenerate the first (with grace); returns their ids."""
    keys = [ledger.create_key(actor, name=f"key {i}").key_id for i in range(count)]
    ledger.regenerate_key(actor, keys[0], mode="grace")
    return keys


def head(ledger: Ledger) -> int:
    """The newest position in the ledger's store."""
    return ledger._connection.app.recorder.max_notification_id() or 0


class TestCommitsBetweenPages:
    """Another writer commits between every two pages of the check."""

    def test_are_no_false_alarm_and_left_to_the_next_check(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor, small_pages: None
    ) -> None:
        """Keys created, regenerated and revoked by another writer while the check runs
        leave it ok, and it covers the log as it was when it began; the next check
        covers the new events too."""
        checker = open_ledger(store_url)
        writer = checker if store_url == "memory://" else open_ledger(store_url, follow=False)
        keys = fill(checker, alice)
        began = head(checker)
        pages = -(-began // PAGE)
        written: list[str] = []

        def write() -> None:
            if len(written) < pages:  # once per page of the log as the check began
                key = writer.create_key(alice, name="written meanwhile").key_id
                writer.regenerate_key(alice, key, mode="immediate")
                writer.revoke_key(alice, keys[len(written)])
                written.append(key)

        with ThreadPoolExecutor(max_workers=1) as other:
            report = checker.check_integrity(progress=lambda done, total: other.submit(write).result())
        after = checker.check_integrity()

        assert len(written) == pages >= 3
        assert report.ok, report
        assert report.events_checked == began
        assert after.ok, after
        assert after.events_checked == head(checker) == began + 3 * len(written)


class TestTheViewsConsistentRead:
    """The views' port reads one moment: what commits after the read began stays unseen."""

    def test_sees_neither_the_rows_nor_the_position_of_a_later_commit(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Keys created and revoked by another writer after a consistent read began change
        none of its answers; a new read sees them."""
        reader = open_ledger(store_url)
        writer = reader if store_url == "memory://" else open_ledger(store_url, follow=False)
        keys = fill(reader, alice)
        began = head(reader)

        with reader._connection.views.consistent_read() as read:
            first = sorted(read.valid_entries())
            writer.create_key(alice, name="later")
            writer.revoke_key(alice, keys[1])
            position = read.position
            entries = sorted(read.valid_entries())
            chains = read.audit_chains(0, began + 10)
        with reader._connection.views.consistent_read() as later:
            now = sorted(later.valid_entries())
            later_position = later.position

        assert position == began
        assert entries == first
        assert len(entries) == KEYS + 1
        assert sorted(chains) == list(range(1, began + 1))
        assert later_position == began + 2
        assert len(now) == len(entries)
        assert now != entries


class TestViewsBehindTheEvents:
    """On PostgreSQL a command commits its events without the views when another writer
    holds the views' lock; a follower applies them once the lock is free."""

    def test_are_compared_as_far_as_they_reached(
        self, postgres_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Events committed past the views' position are checked by their chain, and
        the views are compared with the events up to their own position: no false alarm."""
        checker = open_ledger(postgres_url, follow=False)
        writer = open_ledger(postgres_url, follow=False)
        fill(checker, alice)
        began = head(checker)

        with ThreadPoolExecutor(max_workers=1) as other, views_lock_held(checker, postgres_url):
            pending = other.submit(writer.create_key, alice, name="while the views are locked")
            wait_until(lambda: head(checker) > began)
            report = checker.check_integrity()
            views_at = checker._connection.views.position()
        pending.result(timeout=30)

        assert views_at == began
        assert report.ok, report
        assert report.events_checked == began + 1
        assert checker.check_integrity().ok


@contextmanager
def views_lock_held(ledger: Ledger, url: str) -> Iterator[None]:
    """Hold the PostgreSQL views' advisory lock from a connection of the test's own."""
    key = ledger._connection.views._lock_key  # type: ignore[attr-defined]
    parts = urlsplit(url)
    server = urlunsplit(
        parts._replace(query=urlencode([q for q in parse_qsl(parts.query) if q[0] != "schema"]))
    )
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        time.sleep(0.01)


CHECKS = 150
"""Checks run while the writer process commits: before the check read one moment, about
one in twenty (SQLite) to one in seven (PostgreSQL) raised a false alarm."""
ROUNDS = 30
"""At least this many rounds of the writer's three commands happen during the checks."""


class TestAWriterProcess:
    """A real writer process commits throughout while this process checks again and again."""

    def test_raises_no_false_alarm(self, durable_url: str, clock: ManualClock, alice: Actor) -> None:
        """Every one of many checks run while another process creates, regenerates and
        revokes keys reports ok."""
        url = durable_url
        reports: list[IntegrityReport] = []
        with Ledger.open(url, clock=clock) as checker, writer_process(url, "acme") as writes:
            fill(checker, alice)
            writes.start()
            deadline = time.monotonic() + 60
            while (len(reports) < CHECKS or writes.count < ROUNDS) and time.monotonic() < deadline:
                reports.append(checker.check_integrity())
            committed = writes.stop()

        assert committed >= ROUNDS
        assert len(reports) >= CHECKS
        assert [r for r in reports if not r.ok] == []


class _Writes:
    """A writer process's commands: started, then stopped after its current one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.count = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._drive, daemon=True)

    def _drive(self) -> None:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        while not self._stopping.is_set():
            stdin.write("go\n")
            stdin.flush()
            if stdout.readline() != "done\n":
                return
            self.count += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stopping.set()
        self._thread.join(timeout=30)
        return self.count


@contextmanager
def writer_process(url: str, account: str) -> Iterator[_Writes]:
    """A writer process on ``url``, committing in ``account`` once started."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, url, account], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        writes = _Writes(process)
        try:
            yield writes
        finally:
            writes.stop()
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
