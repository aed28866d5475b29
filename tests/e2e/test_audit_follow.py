"""``keyledger audit --follow`` in a real process: entries stream as JSON Lines as they are
recorded, SIGTERM ends it cleanly, and with ``--subscription`` the next run resumes
after the last line written, repeating and skipping nothing."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keyledger import Actor, AuditEntry, Ledger

TIMEOUT = 20.0


def script() -> str:
    found = shutil.which("keyledger", path=str(Path(sys.executable).parent))
    assert found is not None, "the keyledger console script is not installed next to this Python"
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    found: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return found


class Following:
    """A running ``audit --follow``; its stdout and stderr lines arrive in queues."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = process.stdout, process.stderr
        self.readers = [
            threading.Thread(target=lambda: [self.out.put(line) for line in stdout], daemon=True),
            threading.Thread(target=lambda: [self.err.append(line) for line in stderr], daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def entries(self, count: int) -> list[AuditEntry]:
        try:
            return [AuditEntry.model_validate_json(self.out.get(timeout=TIMEOUT)) for _ in range(count)]
        except queue.Empty:
            pytest.fail(f"fewer than {count} lines within {TIMEOUT} s; stderr: {''.join(self.err)}")

    def wait_started(self) -> None:
        deadline = TIMEOUT
        while deadline > 0 and not any("following" in line for line in self.err):
            threading.Event().wait(0.02)
            deadline -= 0.02
        assert any("following" in line for line in self.err), "".join(self.err)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(TIMEOUT)
        for reader in self.readers:
            reader.join(TIMEOUT)
        return code


@contextmanager
def following(url: str, *args: str) -> Iterator[Following]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")} | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [script(), "--url", url, "audit", "--follow", "--format", "jsonl", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as process:  # fmt: skip
        try:
            yield Following(process)
        finally:
            if process.poll() is None:
                process.kill()


def create(url: str, actor: Actor, *names: str) -> list[int]:
    with Ledger.open(url) as ledger:
        before = ledger.position
        for name in names:
            ledger.create_key(actor, name=name)
        return [entry.position for entry in ledger.audit(after=before)]


class TestFollow:
    def test_entries_stream_until_sigterm_and_a_subscription_resumes_after_them(
        self, url: str, alice: Actor
    ) -> None:
        """A subscribed follower writes each entry as it is recorded, stops cleanly on
        SIGTERM, and the next run under the same name starts after the last line."""
        first = create(url, alice, "before")
        with following(url, "--subscription", "siem") as run:
            run.wait_started()
            during = create(url, alice, "during 1", "during 2")
            streamed = run.entries(3)
            code = run.terminate()
            assert run.out.empty()
        assert code == 0
        assert [entry.position for entry in streamed] == first + during
        assert any("stopped at position" in line for line in run.err)

        later = create(url, alice, "after")
        with following(url, "--subscription", "siem") as again:
            resumed = again.entries(1)
            assert again.terminate() == 0

        assert [entry.position for entry in resumed] == later
        assert again.out.empty()

    def test_without_a_subscription_it_starts_at_the_head(self, url: str, alice: Actor) -> None:
        """Without a name, only entries recorded after the start are written, filtered."""
        create(url, alice, "old")
        with following(url, "--action", "KeyRevoked") as run:
            run.wait_started()
            with Ledger.open(url) as ledger:
                key = ledger.create_key(alice, name="new")
                ledger.revoke_key(alice, key.key_id)
            streamed = run.entries(1)
            assert run.terminate() == 0

        assert [entry.action for entry in streamed] == ["KeyRevoked"]
        assert run.out.empty()
