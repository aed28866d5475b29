"""Revocation seen by another process: how long after ``revoke_key`` returns in one
process another process's ``verify`` first refuses the key.

The parent creates K keys, then starts a child (``python -m bench.revocation URL``) that
opens the same store with the default following (SQLite: polling; PostgreSQL:
LISTEN/NOTIFY). For each key the parent tells the child to watch it; the child verifies
it in a tight loop until it is accepted ("armed"), the parent revokes it and sends
``time.time()`` taken when ``revoke_key`` returned; the child, still looping, notes
``time.time()`` when verify first refuses, and answers with the difference. Both clocks
are the same machine's wall clock. Measured twice: with the child spinning on verify,
and with it sleeping :data:`PAUSE` between calls.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.fixtures import postgres_schema
from bench.harness import Row, latency_row
from bench.workspace import ROOT, Workspace
from keyledger import Actor, Ledger, Permission

TIMEOUT = 10.0
"""Seconds a child waits for a key to be accepted, or refused, before giving up."""
ACCOUNT = "revocations"
PAUSE = 0.001
"""The second measurement's sleep between verifications: a verifier that waits on I/O
now and then, as a request handler does, instead of spinning (which starves the
follower's threads of the GIL, each hand-over costing up to the 5 ms switch interval)."""


def child(url: str, pause: float = 0.0) -> None:
    """The other process: watch keys as told, answer how late each refusal came.
    With ``pause``, sleep that many seconds between verifications (a verifier that
    also waits on I/O, rather than one that never lets go of the GIL)."""
    with Ledger.open(url) as ledger:

        def verify(secret: str) -> object:
            if pause:
                time.sleep(pause)
            return ledger.verify(secret)

        print("ready", flush=True)
        while line := sys.stdin.readline():
            command, _, secret = line.strip().partition(" ")
            if command != "watch":
                return
            deadline = time.monotonic() + TIMEOUT
            while verify(secret) is None:
                if time.monotonic() > deadline:
                    print("never-accepted", flush=True)
                    return
            print("armed", flush=True)
            deadline = time.monotonic() + TIMEOUT
            refused_at: float | None = None
            while verify(secret) is not None:
                if time.monotonic() > deadline:
                    break
            else:
                refused_at = time.time()
            returned = float(sys.stdin.readline().split()[1])
            print("timeout" if refused_at is None else f"latency {refused_at - returned!r}", flush=True)


def _expect(process: subprocess.Popen[str], word: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith(word):
        raise RuntimeError(f"the watching process said {line!r}, expected {word!r}")
    return line


def _send(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def latencies(url: str, count: int, pause: float = 0.0) -> list[float]:
    """Milliseconds from each revocation's return to the child's first refusal."""
    actor = Actor("revoker", ACCOUNT, {Permission.INTEGRATION})
    found: list[float] = []
    with Ledger.open(url) as ledger:
        issued = [ledger.create_key(actor, name=f"watched {n}") for n in range(count)]
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.revocation", url, str(pause)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            _expect(process, "ready")
            for key in issued:
                _send(process, f"watch {key.secret.get_secret_value()}")
                _expect(process, "armed")
                ledger.revoke_key(actor, key.key_id)
                returned = time.time()
                _send(process, f"revoked {returned!r}")
                answer = _expect(process, "")
                if not answer.startswith("latency "):
                    raise RuntimeError(f"the watching process still accepted a key after {TIMEOUT} s")
                found.append(float(answer.split()[1]) * 1000)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(30)
    return found


def _row(store: str, values: list[float]) -> Row:
    return latency_row(f"revocation seen by another process ({store})", f"{len(values)} revocations", values)


def revocation_rows(space: Workspace) -> list[Row]:
    count = space.scale.revocations
    rows: list[Row] = []
    for pause, how in ((0.0, "busy verifier"), (PAUSE, f"verifier idle {PAUSE * 1000:g} ms between calls")):
        url = f"sqlite:///{space.path(f'revocation-{len(rows)}.db')}"
        rows.append(_row(f"SQLite 20 ms poll, {how}", latencies(url, count, pause)))
        with postgres_schema(f"bench_revocation_{len(rows)}_{int(time.time())}") as url:
            rows.append(_row(f"PostgreSQL LISTEN/NOTIFY, {how}", latencies(url, count, pause)))
    return rows


if __name__ == "__main__":
    child(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
