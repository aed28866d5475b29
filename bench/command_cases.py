"""Commands on a SQLite file with durable commits, against raw ``sqlite3`` inserts of
rows of the same size, one transaction per row, at the same ``synchronous`` (FULL, WAL);
and the same commands on ``memory://`` against the same floor: a command's Python should
cost no more than the one durable commit it pays for.

Targets as the owner re-set them (issue 11, C): 0.25 on a SQLite file, 1.0 on memory."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

from bench.commands import RowShape, new_stream, timed_commands
from bench.harness import Row, compared, paired
from bench.workspace import Workspace
from keyledger import Ledger

EVENTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS floor_events (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
FULL = 2


def sqlite_shape(path: Path) -> RowShape:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT topic, length(state) FROM stored_events ORDER BY rowid").fetchall()
    finally:
        connection.close()
    return RowShape(tuple((str(topic), int(size)) for topic, size in rows))


class SQLiteFloor:
    """Raw ``sqlite3``: one INSERT per transaction into a table shaped like the events'."""

    def __init__(self, path: Path, shape: RowShape) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(f"PRAGMA synchronous={FULL}")
        (level,) = self.connection.execute("PRAGMA synchronous").fetchone()
        assert level == FULL, level
        self.connection.execute(EVENTS_TABLE)
        self.payloads = shape.payloads()

    def rows_per_second(self, count: int) -> float:
        stream, execute = str(new_stream()), self.connection.execute
        began = time.perf_counter()
        for version, (topic, state) in zip(range(1, count + 1), self.payloads, strict=False):
            execute("BEGIN")
            execute("INSERT INTO floor_events VALUES (?, ?, ?, ?)", (stream, version, topic, state))
            execute("COMMIT")
        return count / (time.perf_counter() - began)

    def close(self) -> None:
        self.connection.close()


def ledger_synchronous(path: Path) -> int:
    """The ``synchronous`` level a new connection to the file gets (eventsourcing sets
    none, so the ledger's connections run at SQLite's default)."""
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        connection.close()


def sqlite_command_rows(space: Workspace) -> list[Row]:
    scale = space.scale
    path = space.path("commands.db")
    runs = itertools.count()
    memory_runs = itertools.count()
    with Ledger.open(f"sqlite:///{path}") as ledger, Ledger.open("memory://") as memory:
        timed_commands(ledger, "warm-up", 30)
        timed_commands(memory, "warm-up", 30)
        level = ledger_synchronous(path)
        if level != FULL:
            raise RuntimeError(f"the ledger's SQLite runs at synchronous={level}, not FULL")
        shape = sqlite_shape(path)
        floor = SQLiteFloor(space.path("floor.db"), shape)
        try:
            floors, ours = paired(
                lambda: floor.rows_per_second(scale.commands),
                lambda: timed_commands(ledger, f"run-{next(runs)}", scale.commands),
                scale.runs,
            )
            memory_floors, in_memory = paired(
                lambda: floor.rows_per_second(scale.commands),
                lambda: timed_commands(memory, f"run-{next(memory_runs)}", scale.commands),
                scale.runs,
            )
        finally:
            floor.close()
    size = f"{scale.commands:,} commands/run, rows ~{shape.mean_bytes:.0f} B"
    return [
        compared(
            "commands on a SQLite file (create/regenerate/revoke)", f"{size}, fresh file",
            "/s", floors, ours, higher_is_better=True, minimum=0.25,
        ),
        compared(
            "the same commands on memory:// (floor: the SQLite one)", size,
            "/s", memory_floors, in_memory, higher_is_better=True, minimum=1.0,
        ),
    ]  # fmt: skip
