"""Subscribers in real processes: a kill -9 between the handler and the save repeats
that entry (at least once, never skipped), and several processes subscribing under one
name deliver one at a time, the others standing by and taking over when it dies."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keyledger import Actor, Ledger

DEADLINE = 20.0

SUBSCRIBER = r"""
import os, signal, sys, time
from keyledger import Ledger

url, name, out, die_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def handler(entry):
    with open(out, "a") as file:
        file.write(f"{os.getpid()} {entry.position}\n")
        file.flush()
        os.fsync(file.fileno())
    if entry.position == die_at:
        os.kill(os.getpid(), signal.SIGKILL)   # after the handler's work, before the save

with Ledger.open(url) as ledger:
    subscription = ledger.subscribe(handler, name=name)
    print("subscribed", flush=True)
    while not subscription.active:
        time.sleep(0.01)
    print("active", flush=True)
    sys.stdin.readline()
    subscription.stop()
"""


class Child:
    """A subscriber process; its stdout lines arrive in a queue."""

    def __init__(self, url: str, name: str, out: Path, die_at: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, url, name, str(out), str(die_at)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        self.reader = threading.Thread(
            target=lambda: [self.lines.put(line.strip()) for line in stdout], daemon=True
        )
        self.reader.start()

    def expect(self, word: str, timeout: float = DEADLINE) -> None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the subscriber did not say {word!r} within {timeout} s")
        assert line == word

    def says_nothing_for(self, seconds: float) -> bool:
        try:
            self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def end(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(*args: object, **kwargs: object) -> Child:
        child = Child(*args, **kwargs)  # type: ignore[arg-type]
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait()
        child.reader.join(DEADLINE)
        for stream in (child.process.stdin, child.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def delivered(out: Path) -> list[tuple[int, int]]:
    """(pid, position) per handled entry, in the order handled."""
    if not out.exists():
        return []
    return [
        (int(pid), int(position)) for pid, position in (line.split() for line in out.read_text().splitlines())
    ]


def saved(url: str, name: str) -> int:
    """The position saved under ``name``."""
    with Ledger.open(url, follow=False) as ledger:
        return next(status.position for status in ledger.subscriptions() if status.name == name)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE} s: {what}")
        time.sleep(0.01)


def create(url: str, actor: Actor, count: int) -> list[int]:
    with Ledger.open(url) as ledger:
        before = ledger.position
        for n in range(count):
            ledger.create_key(actor, name=f"key {n}")
        return [entry.position for entry in ledger.audit(after=before)]


class TestCrash:
    def test_a_kill_between_the_handler_and_the_save_repeats_that_entry(
        self, durable_url: str, tmp_path: Path, alice: Actor, children: Callable[..., Child]
    ) -> None:
        """A subscriber killed after its handler returned, before the position was saved,
        leaves that entry to be delivered again; nothing is skipped."""
        positions = create(durable_url, alice, 3)
        out = tmp_path / "delivered.txt"
        first = children(durable_url, "crashy", out, positions[1])
        first.process.wait(DEADLINE)
        assert first.process.returncode == -signal.SIGKILL

        second = children(durable_url, "crashy", out)
        second.expect("subscribed")
        wait_for(lambda: len(delivered(out)) >= 4, "the rest delivered")
        second.end()

        assert [position for _, position in delivered(out)] == [
            positions[0], positions[1], positions[1], positions[2],
        ]  # fmt: skip


class TestStandBy:
    def test_processes_under_one_name_deliver_one_at_a_time_and_take_over(
        self, durable_url: str, tmp_path: Path, alice: Actor, children: Callable[..., Child]
    ) -> None:
        """While one process delivers under a name, another stands by and delivers
        nothing; when the first is killed, the other takes over where it left off."""
        out = tmp_path / "delivered.txt"
        create(durable_url, alice, 1)
        holder = children(durable_url, "shared", out)
        holder.expect("subscribed")
        holder.expect("active")
        wait_for(lambda: len(delivered(out)) >= 1, "the first entry delivered")
        standby = children(durable_url, "shared", out)
        standby.expect("subscribed")
        assert standby.says_nothing_for(1.0), "a second deliverer became active under the same name"
        during = create(durable_url, alice, 2)
        wait_for(lambda: len(delivered(out)) >= 3, "entries delivered by the holder")
        wait_for(lambda: saved(durable_url, "shared") == during[-1], "the holder's position saved")

        os.kill(holder.process.pid, signal.SIGKILL)
        holder.process.wait(DEADLINE)
        standby.expect("active")
        after = create(durable_url, alice, 2)
        wait_for(lambda: len(delivered(out)) >= 5, "entries delivered by the one that took over")
        standby.end()

        records = delivered(out)
        assert [position for _, position in records][1:] == during + after
        assert {pid for pid, _ in records[:3]} == {holder.process.pid}
        assert {pid for pid, _ in records[3:]} == {standby.process.pid}
