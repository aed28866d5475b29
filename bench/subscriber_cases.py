"""A new entry reaching a durable subscriber in another process: how long after the
command returns the subscriber's handler is called with its entry.

The parent creates keys one at a time, noting ``time.time()`` when each ``create_key``
returns; a child (``python -m bench.subscriber_cases URL``) subscribes under a name and
prints ``position time.time()`` from its handler. The parent waits for each entry to
arrive before the next command (and a short random pause), so each latency is one
entry's alone, not a queue's. Both clocks are the same machine's wall clock. The target
is the followers' bound: p99 <= 100 ms, on SQLite (20 ms poll) and PostgreSQL (NOTIFY).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

from bench.fixtures import postgres_schema
from bench.harness import Row, latency_row
from bench.workspace import ROOT, Workspace
from keyledger import Actor, AuditEntry, Ledger, Permission

ACCOUNT = "subscribed"
TIMEOUT = 10.0


def child(url: str) -> None:
    """The subscriber: print each entry's position and when the handler got it."""

    def handler(entry: AuditEntry) -> None:
        print(f"{entry.position} {time.time()!r}", flush=True)

    with Ledger.open(url) as ledger:
        subscription = ledger.subscribe(handler, name="bench")
        while not subscription.active:
            time.sleep(0.01)
        print("ready", flush=True)
        sys.stdin.readline()
        subscription.stop()


def latencies(url: str, count: int) -> list[float]:
    """Milliseconds from each command's return to the subscriber's handler."""
    actor = Actor("bench", ACCOUNT, {Permission.INTEGRATION})
    found: list[float] = []
    with Ledger.open(url) as ledger:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.subscriber_cases", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdin is not None
        try:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("the subscriber did not start")
            for n in range(count):
                time.sleep(random.uniform(0.005, 0.03))
                ledger.create_key(actor, name=f"watched {n}")
                returned = time.time()
                position = ledger.position
                while True:
                    line = process.stdout.readline().split()
                    if not line:
                        raise RuntimeError("the subscriber ended")
                    if int(line[0]) == position:
                        found.append((float(line[1]) - returned) * 1000)
                        break
        finally:
            process.stdin.close()
            process.wait(30)
    return found


def _row(store: str, values: list[float]) -> Row:
    metric = f"entry reaches a subscriber in another process ({store})"
    return latency_row(metric, f"{len(values)} commands", values)


def subscriber_rows(space: Workspace) -> list[Row]:
    count = space.scale.revocations
    rows = [_row("SQLite, 20 ms poll", latencies(f"sqlite:///{space.path('subscriber.db')}", count))]
    with postgres_schema(f"bench_subscriber_{int(time.time())}") as url:
        rows.append(_row("PostgreSQL, LISTEN/NOTIFY", latencies(url, count)))
    return rows


if __name__ == "__main__":
    child(sys.argv[1])
