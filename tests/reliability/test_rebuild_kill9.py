"""A rebuild killed with ``kill -9`` at any moment leaves the previous views intact and in use.

A child process opens a SQLite ledger and rebuilds its views, slowed down a little per
page so that a kill lands anywhere in it: while it reads and folds, while it loads the
fresh tables, while it writes the folded state or indexes, around the swap and while it
drops the replaced tables. After each kill the views' tables hold exactly the rows they
held before (or, once the swap committed, the rebuilt ones, which are the same), a
reopened ledger verifies the same secrets and passes its integrity check, and the next
rebuild clears what the killed one left behind.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from keyledger import Actor, Ledger, Permission
from keyledger.testing import ManualClock
from tests.integration.test_bulk_rebuild import tables, varied_history

ROUNDS = 8
CHILD = r"""
import sys, time
import keyledger.follower
from keyledger import Ledger

keyledger.follower.REBUILD_PAGE_SIZE = 40


def progress(done, total):
    print(done, flush=True)
    time.sleep(0.01)


with Ledger.open(sys.argv[1], follow=False) as ledger:
    print("ready", flush=True)
    ledger.rebuild_projections(progress=progress)
    print("done", flush=True)
"""


def projected(url: str) -> dict[str, object]:
    return {name: rows for name, rows in tables(url).items() if name != "tables"}


def leftovers(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        names = conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND (name LIKE '%_rebuild' OR name LIKE '%_old')"
        ).fetchall()
    return [str(name) for (name,) in names]


def test_a_rebuild_killed_at_any_moment_leaves_the_previous_views_in_use(tmp_path: Path) -> None:
    """Kill -9 at random moments of a rebuild: the views stay as they were, verification
    answers as before, integrity holds; a later rebuild cleans up and changes nothing."""
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    clock = ManualClock(datetime(2026, 1, 5, tzinfo=UTC))
    with Ledger.open(url, clock=clock) as ledger:
        secrets = varied_history(ledger, clock)
        bulk = Actor(user_id="bulk", account="bulk", permissions={Permission.INTEGRATION})
        secrets += [ledger.create_key(bulk, name=f"k{n}").secret.get_secret_value() for n in range(300)]
        answers = [ledger.verify(secret) for secret in secrets]
    before = projected(url)
    rng = random.Random(12)
    with subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True) as whole:
        assert whole.stdout is not None
        assert whole.stdout.readline().strip() == "ready"
        started = time.monotonic()
        assert whole.stdout.read().splitlines()[-1] == "done"
        duration = time.monotonic() - started
    killed_mid_rebuild = 0

    for _ in range(ROUNDS):
        with subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0, duration))
            os.kill(child.pid, signal.SIGKILL)
            rest = child.stdout.read()
        killed_mid_rebuild += "done" not in rest

        assert projected(url) == before
        with Ledger.open(url, follow=False, clock=clock) as reopened:
            assert [reopened.verify(secret) for secret in secrets] == answers
            assert reopened.check_integrity().ok

    assert killed_mid_rebuild >= ROUNDS // 2
    with Ledger.open(url, follow=False) as ledger:
        ledger.rebuild_projections()
    assert projected(url) == before
    assert leftovers(path) == []
