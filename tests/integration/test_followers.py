"""Other processes converge on a revocation; strict mode reads its own writes across ledgers.

A ledger in another process follows new events in a background thread: by polling the
log head on SQLite, by LISTEN/NOTIFY on PostgreSQL. The tests here check that such a
follower does converge (they never assert how fast: the bound is the benchmark's). A
ledger opened with ``strict=True`` checks the log head before each verification, so it
refuses a key another ledger revoked the moment the revocation returns; a ledger that
neither follows nor is strict answers from its views as they were at its last command
or ``sync()``.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyledger import Actor, Ledger

DEADLINE = 10.0
"""Seconds the child process waits to see a change before it reports it did not."""
CHILD_TIMEOUT = 60.0

FOLLOWER = r"""
import json, sys, threading, time
from keyledger import Ledger

config = json.loads(sys.argv[1])
with Ledger.open(config["url"]) as ledger:
    old = json.loads(sys.stdin.readline())["secret"]
    threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("keyledger-"))
    print(json.dumps({"accepted": ledger.verify(old) is not None, "threads": threads}), flush=True)
    new = json.loads(sys.stdin.readline())["secret"]
    deadline = time.monotonic() + config["deadline"]
    refused = accepted = False
    while time.monotonic() < deadline and not (refused and accepted):
        refused = refused or ledger.verify(old) is None
        accepted = accepted or ledger.verify(new) is not None
        time.sleep(0.002)
    print(json.dumps({"refused_old": ledger.verify(old) is None, "saw_refused": refused,
                      "accepted_new": accepted}), flush=True)
"""


def read_line(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next line the child prints, as JSON; fails the test if none comes in time."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"the child printed nothing within {timeout} s")
    if not line:
        process.kill()
        _, stderr = process.communicate(timeout=CHILD_TIMEOUT)
        pytest.fail(f"the child exited early: {stderr}")
    return json.loads(line)  # type: ignore[no-any-return]


def send(process: subprocess.Popen[str], message: dict[str, str]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


@pytest.fixture(params=["poll", "notify"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A store several processes open: a SQLite file (followers poll) or a PostgreSQL
    schema (followers are notified)."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "poll" else "postgres_url")
    return url


class TestAnotherProcess:
    """A ledger in another process stops accepting a key revoked here."""

    def test_sees_a_revocation_and_a_new_key_without_being_told(
        self, shared_url: str, open_ledger: Callable[..., Ledger], alice: Actor, tmp_path: Path
    ) -> None:
        """A following ledger in a child process refuses the revoked key and accepts the
        new one, with no sync and no strict mode."""
        ledger = open_ledger(shared_url)
        old = ledger.create_key(alice, name="Revoked while followed")
        config = {"url": shared_url, "deadline": DEADLINE}

        with subprocess.Popen(
            [sys.executable, "-c", FOLLOWER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        ) as child:
            try:
                send(child, {"secret": old.secret.get_secret_value()})
                ready = read_line(child, CHILD_TIMEOUT)
                ledger.revoke_key(alice, old.key_id)
                new = ledger.create_key(alice, name="Created while followed")
                send(child, {"secret": new.secret.get_secret_value()})
                seen = read_line(child, CHILD_TIMEOUT)
            finally:
                child.kill()
                child.communicate(timeout=CHILD_TIMEOUT)

        assert ready["accepted"] is True
        assert seen == {"refused_old": True, "saw_refused": True, "accepted_new": True}
        expected = (
            ["keyledger-follow", "keyledger-listen"] if "postgresql" in shared_url else ["keyledger-follow"]
        )
        assert ready["threads"] == expected


class TestStrictMode:
    """A strict ledger checks the log head before answering, so it reads others' writes."""

    def test_a_ledger_opened_strict_is_strict(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger]
    ) -> None:
        """Ledger.open(..., strict=True) gives a ledger that verifies strictly."""
        ledger = open_ledger(sqlite_url, follow=False, strict=True)

        assert ledger.strict is True

    def test_refuses_at_once_a_key_another_ledger_revoked(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A strict ledger refuses a key the moment another ledger's revocation returns."""
        writer = open_ledger(sqlite_url, follow=False)
        issued = writer.create_key(alice, name="Shipping")
        key = issued.secret.get_secret_value()
        reader = open_ledger(sqlite_url, follow=False, strict=True)
        assert reader.verify(key) is not None

        writer.revoke_key(alice, issued.key_id)

        assert reader.verify(key) is None

    def test_accepts_at_once_a_key_another_ledger_created(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A strict ledger accepts a key the moment another ledger's creation returns."""
        writer = open_ledger(sqlite_url, follow=False)
        reader = open_ledger(sqlite_url, follow=False, strict=True)

        issued = writer.create_key(alice, name="Shipping")

        assert reader.verify(issued.secret.get_secret_value()) is not None

    def test_one_strict_verification_reads_the_log_head(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """verify(..., strict=True) on a ledger that is not strict also sees the revocation."""
        writer = open_ledger(sqlite_url, follow=False)
        issued = writer.create_key(alice, name="Shipping")
        key = issued.secret.get_secret_value()
        reader = open_ledger(sqlite_url, follow=False)
        assert reader.verify(key) is not None

        writer.revoke_key(alice, issued.key_id)

        assert reader.verify(key, strict=True) is None


class TestWithoutFollowing:
    """A ledger that neither follows nor is strict answers from its views until it syncs."""

    def test_opening_without_follow_starts_no_follower(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger]
    ) -> None:
        """Ledger.open(..., follow=False) starts no thread that follows the store."""
        before = set(threading.enumerate())

        open_ledger(sqlite_url, follow=False)

        started = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("keyledger-")]
        assert started == []

    def test_accepts_a_key_revoked_elsewhere_until_it_syncs(
        self, sqlite_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Without follow or strict, a key revoked by another ledger still verifies until
        sync(), which applies the revocation."""
        writer = open_ledger(sqlite_url, follow=False)
        issued = writer.create_key(alice, name="Shipping")
        key = issued.secret.get_secret_value()
        reader = open_ledger(sqlite_url, follow=False)
        writer.revoke_key(alice, issued.key_id)
        time.sleep(0.2)  # many times the SQLite poll interval: a follower would have caught up

        stale = reader.verify(key)
        reader.sync()
        fresh = reader.verify(key)

        assert stale is not None
        assert stale.key_id == issued.key_id
        assert fresh is None
        assert reader.position == writer.position
