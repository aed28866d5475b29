"""Reading the whole large store: rebuilding every projection, checking integrity, and
the reviewer's audit queries."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import Row, compared, paired, percentile
from bench.workspace import Workspace
from keyledger import Ledger

PRESENT = ("KeyCreated", "KeyRegenerated", "KeyRevoked")
"""The actions the generated store holds."""
EVENTS = "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"


def raw_events(path: Path, each: Callable[[Any], object]) -> float:
    """Events per second of a raw SELECT of every stored event, calling ``each(row)``."""
    connection = sqlite3.connect(path)
    try:
        began = time.perf_counter()
        count = 0
        for row in connection.execute(EVENTS):
            each(row)
            count += 1
        return count / (time.perf_counter() - began)
    finally:
        connection.close()


def event_count(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM stored_events").fetchone()[0])
    finally:
        connection.close()


def integrity_rows(space: Workspace) -> list[Row]:
    store = space.large()
    events = event_count(store.path)
    sha256 = hashlib.sha256
    with Ledger.open(store.url, follow=False) as ledger:

        def ours() -> float:
            began = time.perf_counter()
            report = ledger.check_integrity()
            if not report.ok or report.events_checked != events:
                raise RuntimeError(f"integrity check failed: {report}")
            return events / (time.perf_counter() - began)

        floors, measured = paired(
            lambda: raw_events(store.path, lambda row: sha256(row[4]).digest()), ours, space.scale.heavy_runs
        )
    return [
        compared(
            "integrity check (floor: SELECT + sha256 of each row)", f"{events:,} events",
            "events/s", floors, measured, higher_is_better=True, minimum=0.1,
        )
    ]  # fmt: skip


def _months(first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    months = []
    start = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while start <= last:
        if start.month == 12:
            after = start.replace(year=start.year + 1, month=1)
        else:
            after = start.replace(month=start.month + 1)
        months.append((start, after))
        start = after
    return months


def audit_rows(space: Workspace) -> list[Row]:
    store = space.large()
    population = store.population
    events = event_count(store.path)
    rng = random.Random(3)
    months = _months(population.first, population.last)
    repeats = space.scale.audit_repeats
    with Ledger.open(store.url, follow=False) as ledger:
        head = ledger.position

        def account_month() -> dict[str, Any]:
            """A key's account and the month it was created in (keys were written in
            time order, so a key's place in the list tells its month)."""
            index = rng.randrange(len(population.key_ids))
            share = index / len(population.key_ids)
            moment = population.first + (population.last - population.first) * share
            since, until = next((a, b) for a, b in months if a <= moment < b)
            return {"account": population.key_ids[index][0], "since": since, "until": until}

        queries: dict[str, Callable[[], list[Any]]] = {
            "by key": lambda: ledger.audit(key_id=rng.choice(population.key_ids)[1]),
            "by actor": lambda: ledger.audit(actor=rng.choice(population.users)),
            "by account and month": lambda: ledger.audit(**account_month()),
            "by action (random page)": lambda: ledger.audit(
                action=rng.choice(PRESENT), after=rng.randrange(head)
            ),
        }
        rows = []
        for name, query in queries.items():
            for _ in range(min(20, repeats)):
                query()
            latencies, sizes = [], []
            for _ in range(repeats):
                began = time.perf_counter()
                found = query()
                latencies.append((time.perf_counter() - began) * 1000)
                sizes.append(len(found))
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            mean = sum(sizes) / len(sizes)
            rows.append(
                Row(
                    f"audit {name} (limit 100)", f"{events:,} events, mean {mean:.0f} rows",
                    f"{repeats} queries", "ms", keyledger=p99, shown=f"p50 {p50:.2f} / p99 {p99:.2f} ms",
                    target="p50 <= 5 ms, p99 <= 50 ms", met=p50 <= 5 and p99 <= 50,
                    samples={"p50": p50, "p99": p99, "ms": latencies},
                )
            )  # fmt: skip
    return rows
