"""``python -m bench``: every case of issue 5 against its floor, one table, results.json.

BENCH_SCALE=small   every case in under two minutes on 2 cores (default: the issue's sizes)
BENCH_SMOKE=1       every case once at a tiny size; fails if a case produced no figure
BENCH_ACCOUNTS=N    the large store holds N accounts of 1,000 keys (default 1,000)
BENCH_CACHE=0|DIR   where the large store is cached between runs (0: not at all)
BENCH_ONLY=a,b      run only these cases (names as listed by BENCH_ONLY=?)
BENCH_COMMIT=id     the commit measured, when not run from a git checkout

Child processes (PostgreSQL writers, the revocation watcher) import the code when they
start, so the code must not change during a run: to measure a commit while others edit
the tree, run from an export of it (``git archive``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.account_cases import account_rows
from bench.command_cases import sqlite_command_rows
from bench.console_cases import console_rows
from bench.harness import Row, chosen_scale, figure, render
from bench.postgres_cases import postgres_command_rows
from bench.rebuild_cases import rebuild_rows
from bench.revocation import revocation_rows
from bench.store_cases import audit_rows, integrity_rows
from bench.subscriber_cases import subscriber_rows
from bench.verify_cases import memory_rows, open_rows, verify_rows
from bench.workspace import Workspace

Case = Callable[[Workspace], list[Row]]
CASES: dict[str, tuple[Case, list[str]]] = {
    "verify": (verify_rows, ["verify a raw key", "verify a Basic header"]),
    "memory": (memory_rows, ["index memory per valid key"]),
    "open": (open_rows, ["open ledger until first verify"]),
    "sqlite-commands": (sqlite_command_rows, ["commands on a SQLite file"]),
    "account-size": (account_rows, ["commands on a 10,000-key account"]),
    "postgres-commands": (postgres_command_rows, ["commands on PostgreSQL, 1 writer", "... 4 writers"]),
    "rebuild": (rebuild_rows, ["rebuild all projections (SQLite, PostgreSQL)"]),
    "audit": (audit_rows, ["audit by key", "by actor", "by account and month", "by action"]),
    "revocation": (revocation_rows, ["revocation seen by another process (SQLite, PostgreSQL; busy, idle)"]),
    "integrity": (integrity_rows, ["integrity check"]),
    "console": (console_rows, ["console keys page", "console audit page"]),
    "subscriber": (subscriber_rows, ["entry reaches a subscriber in another process (SQLite, PostgreSQL)"]),
}
RESULTS = Path(__file__).resolve().parent / "results.json"
ROOT = RESULTS.parent.parent
CODE = ("keyledger", "domain", "projections", "adapters", "bench")


def provenance() -> dict[str, Any]:
    """The commit measured and whether the code differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "--short", "HEAD"),
            "modified": bool(git("status", "--porcelain", "--", *CODE)),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("BENCH_COMMIT", "unknown"), "modified": None}


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
        **provenance(),
    }


def run_case(case: Case, space: Workspace, metrics: list[str]) -> list[Row]:
    """The case's rows; a case that fails or gives nothing yields rows that say so."""
    try:
        produced = case(space)
    except Exception as error:
        traceback.print_exc()
        failure = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        return [Row(metric, "-", "-", "", error=failure) for metric in metrics]
    return produced or [Row(metric, "-", "-", "", error="the case produced no row") for metric in metrics]


def summary(row: Row) -> str:
    """One row on one line, printed as soon as its case ends."""
    if row.error is not None:
        return f"{row.metric}: ERROR {row.error}"
    ratio = "" if row.ratio is None else f", ratio {row.ratio:.2f}"
    floor = "" if row.floor is None else f" vs floor {figure(row.floor, row.unit)}"
    met = "" if row.met is None else (" (met)" if row.met else " (missed)")
    return f"{row.metric}: {row.shown or figure(row.keyledger, row.unit)}{floor}{ratio}{met}"


def main() -> int:
    scale = chosen_scale()
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]
    if only == ["?"]:
        print("\n".join(CASES))
        return 0
    unknown = set(only) - set(CASES)
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    about = machine()
    print(
        f"keyledger bench, scale {scale.name}{' (smoke)' if smoke else ''}: "
        f"{about['nproc']} x {about['cpu']}, Python {about['python']}, "
        f"load average {' '.join(f'{v:.2f}' for v in about['load_average_start'])}",
        flush=True,
    )
    changed = {True: " + uncommitted changes", False: "", None: " (not a git checkout)"}[about["modified"]]
    print(f"code: {about['commit']}{changed}", flush=True)
    rows: list[Row] = []
    cases: dict[str, dict[str, float]] = {}
    began = time.perf_counter()

    def save(complete: bool) -> None:
        about["load_average_end"] = os.getloadavg()
        record = {
            "scale": scale.name, "smoke": smoke, "complete": complete,
            "finished": datetime.now(UTC).isoformat(), "seconds": time.perf_counter() - began,
            "cases": cases, "machine": about, "stores": space.descriptions(),
            "rows": [row.as_json() for row in rows],
        }  # fmt: skip
        RESULTS.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))

    with tempfile.TemporaryDirectory(prefix="keyledger-bench-") as folder:
        space = Workspace(scale, Path(folder), cache=not smoke and scale.name == "default")
        for name, (case, metrics) in CASES.items():
            if only and name not in only:
                continue
            print(f"  {name} ...", end="", flush=True)
            start = time.perf_counter()
            produced = run_case(case, space, metrics)
            cases[name] = {"seconds": time.perf_counter() - start, "load_average": os.getloadavg()[0]}
            print(f" {cases[name]['seconds']:.1f} s (load {cases[name]['load_average']:.2f})", flush=True)
            for row in produced:
                print(f"      {summary(row)}", flush=True)
            rows.extend(produced)
            save(complete=False)
        save(complete=True)
        stores = space.descriptions()
    print()
    print(render(rows))
    print()
    print(
        f"{time.perf_counter() - began:.0f} s in all; load average at the end "
        f"{' '.join(f'{v:.2f}' for v in about['load_average_end'])} on {about['nproc']} cores. "
        "Ratios: median over back-to-back (floor, keyledger) pairs; 1.0 = as fast as the floor."
    )
    for store, how in stores.items():
        print(f"{store} store: {how}")
    missing = [row.metric for row in rows if row.error is not None or row.keyledger is None]
    if missing:
        print(f"no figure for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
