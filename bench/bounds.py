"""How close keyledger could come to the floor in the SQLite cases that miss their target,
measured beside the floor in one run: each bound does part of keyledger's work only,
with nothing else around it.

- Commands: the SQL statements a run of the ledger's commands executed, with their
  parameters (captured at eventsourcing's SQLite cursor), replayed by raw ``sqlite3`` on a
  copy of the file as it was before the run; the same with only the event inserts kept;
  and, for a sense of the Python's share, the same commands on ``memory://`` (no SQL, but
  views in dicts rather than SQL rows: not exactly the Python of the SQLite path).
- Rebuild: the rebuild's own SQL (its writes captured from a rebuild, replayed raw, after a
  raw read of every event), with no projection in Python.
- Integrity: decoding and linking each event's chain, with no version check, index or
  comparison with the views.

``python -m bench.bounds`` prints the table; ``BENCH_SCALE`` and ``BENCH_SMOKE`` size it as
for ``python -m bench``. It writes its scratch folder and, at the default scale, the
large store's cache that ``python -m bench`` shares.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import orjson
from eventsourcing.sqlite import SQLiteConnection, SQLiteCursor

from bench.command_cases import FULL, SQLiteFloor, sqlite_shape
from bench.commands import timed_commands
from bench.harness import Row, chosen_scale, compared, paired, render
from bench.store_cases import EVENTS, event_count, raw_events
from bench.workspace import Workspace
from keyledger import Ledger
from keyledger.adapters.driven.transcoding import canonical_json
from keyledger.domain.chain import GENESIS, link

Operation = tuple[str, str | None, Any]
"""A captured call: ("execute" | "executemany" | "commit" | "rollback", statement, parameters)."""


@contextmanager
def captured_calls(operations: list[Operation], thread: int | None = None) -> Iterator[None]:
    """The statements (with their parameters), commits and rollbacks that go through
    eventsourcing's SQLite cursor and connection meanwhile, in ``thread`` only if given:
    every statement of a command's transactions and of the views' writes."""
    execute, executemany = SQLiteCursor.execute, SQLiteCursor.executemany
    commit, rollback = SQLiteConnection.commit, SQLiteConnection.rollback

    def mine() -> bool:
        return thread is None or threading.get_ident() == thread

    def record_execute(self: SQLiteCursor, statement: str, parameters: Any = ()) -> None:
        if mine():
            operations.append(("execute", statement, parameters))
        execute(self, statement, parameters)

    def record_executemany(self: SQLiteCursor, statement: str, rows: Any) -> None:
        rows = list(rows)
        if mine():
            operations.append(("executemany", statement, rows))
        executemany(self, statement, rows)

    def record_commit(self: SQLiteConnection) -> None:
        if mine():
            operations.append(("commit", None, None))
        commit(self)

    def record_rollback(self: SQLiteConnection) -> None:
        if mine():
            operations.append(("rollback", None, None))
        rollback(self)

    with (
        mock.patch.object(SQLiteCursor, "execute", record_execute),
        mock.patch.object(SQLiteCursor, "executemany", record_executemany),
        mock.patch.object(SQLiteConnection, "commit", record_commit),
        mock.patch.object(SQLiteConnection, "rollback", record_rollback),
    ):
        yield


def replay(connection: sqlite3.Connection, operations: list[Operation]) -> None:
    """Run captured calls on a raw connection, parameters bound as the ledger bound them
    (compiled statements are reused from ``sqlite3``'s cache, as the ledger's are)."""
    for kind, statement, parameters in operations:
        if kind == "commit":
            connection.commit()
        elif kind == "rollback":
            connection.rollback()
        elif kind == "executemany":
            connection.executemany(str(statement), parameters)
        else:
            connection.execute(str(statement), parameters).fetchall()


def fresh_copy(source: Path, target: Path) -> sqlite3.Connection:
    """A raw connection to a copy of ``source`` whose write-ahead log has already grown to
    its working size, as the ledger's and the floor's have when they are measured (a log
    that grows on every commit pays for a larger fsync)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    connection = sqlite3.connect(target, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={FULL}")
    connection.execute("CREATE TABLE bounds_warm_up (filler BLOB)")
    for _ in range(300):
        connection.execute("BEGIN")
        connection.execute("INSERT INTO bounds_warm_up VALUES (?)", (os.urandom(60_000),))
        connection.execute("COMMIT")
    connection.execute("DROP TABLE bounds_warm_up")
    return connection


def replayed(before: Path, target: Path, operations: list[Operation], commands: int) -> Callable[[], float]:
    """Commands per second of ``operations`` (captured from ``commands`` commands) run by
    raw ``sqlite3`` on a fresh copy of ``before``."""

    def run() -> float:
        connection = fresh_copy(before, target)
        try:
            began = time.perf_counter()
            replay(connection, operations)
            return commands / (time.perf_counter() - began)
        finally:
            connection.close()

    return run


def event_inserts(operations: list[Operation]) -> list[Operation]:
    """The committed transactions of ``operations`` that insert events, with only their
    event and snapshot inserts."""
    kept: list[Operation] = []
    inside: list[Operation] | None = None
    for operation in operations:
        kind, statement, _ = operation
        if kind == "execute" and statement == "BEGIN":
            inside = []
        elif inside is not None and kind in ("commit", "rollback"):
            if kind == "commit" and inside:
                kept.extend([("execute", "BEGIN", ()), *inside, operation])
            inside = None
        elif inside is not None and statement is not None and statement.startswith("INSERT INTO stored_"):
            inside.append(operation)
    return kept


def command_rows(space: Workspace) -> list[Row]:
    scale = space.scale
    path, before = space.path("bounds-commands.db"), space.path("bounds-before.db")
    operations: list[Operation] = []
    runs, memory_runs = itertools.count(), itertools.count()
    with Ledger.open(f"sqlite:///{path}") as ledger, Ledger.open("memory://") as memory:
        timed_commands(ledger, "warm-up", 30)
        timed_commands(memory, "warm-up", 30)
        ledger.sync()
        source, copy = sqlite3.connect(path), sqlite3.connect(before)
        source.backup(copy)
        source.close()
        copy.close()
        # The command thread's calls only, not the follower's.
        with captured_calls(operations, threading.get_ident()):
            timed_commands(ledger, "captured", scale.commands)
        floor = SQLiteFloor(space.path("bounds-floor.db"), sqlite_shape(before))
        target, commands = space.path("bounds-replay.db"), scale.commands
        statements = sum(kind not in ("commit", "rollback") for kind, _, _ in operations) / commands
        measured = {
            "keyledger": lambda: timed_commands(ledger, f"run-{next(runs)}", commands),
            f"bound: its SQL replayed raw ({statements:.1f} statements/command)": replayed(
                before, target, operations, commands
            ),
            "bound: its event inserts only, replayed raw": replayed(
                before, target, event_inserts(operations), commands
            ),
            "the same commands on memory:// (no SQL; views in dicts)": lambda: timed_commands(
                memory, f"run-{next(memory_runs)}", commands
            ),
        }
        try:
            return [
                compared(
                    f"commands on a SQLite file: {label}", f"{commands:,} commands/run", "/s",
                    *paired(lambda: floor.rows_per_second(commands), run, scale.runs),
                    higher_is_better=True, minimum=0.25,
                )
                for label, run in measured.items()
            ]  # fmt: skip
        finally:
            floor.close()


def rebuild_rows(space: Workspace) -> list[Row]:
    store = space.large()
    events = event_count(store.path)
    operations: list[Operation] = []
    before = space.path("bounds-rebuild-before.db")
    shutil.copyfile(store.path, before)
    with Ledger.open(store.url, follow=False) as ledger, captured_calls(operations):
        ledger.rebuild_projections()
    target = space.path("bounds-rebuild.db")

    def sql_alone() -> float:
        connection = fresh_copy(before, target)
        try:
            began = time.perf_counter()
            connection.execute(EVENTS).fetchall()
            replay(connection, operations)
            return events / (time.perf_counter() - began)
        finally:
            connection.close()

    floors, measured = paired(
        lambda: raw_events(store.path, lambda row: orjson.loads(row[4])), sql_alone, space.scale.heavy_runs
    )
    return [
        compared(
            "rebuild: bound: its SQL alone (read every event, write the views' rows; no projection)",
            f"{events:,} events", "events/s", floors, measured, higher_is_better=True, minimum=0.5,
        )
    ]  # fmt: skip


def integrity_rows(space: Workspace) -> list[Row]:
    store = space.large()
    events = event_count(store.path)
    sha256 = hashlib.sha256
    heads: dict[Any, tuple[str, str]] = {}
    """Per stream as stored: its chain so far and its id as the chain spells it."""

    def link_each(row: Any) -> None:
        _, originator, version, topic, data = row
        chain, name = heads.get(originator) or (GENESIS, str(UUID(str(originator))))
        state = orjson.loads(data)
        if link(chain, name, version, topic, state, canonical_json) != state["chain"]:
            raise RuntimeError("a chain does not match")  # only a corrupt store; the bench's is not
        heads[originator] = (state["chain"], name)

    def least() -> float:
        heads.clear()
        return raw_events(store.path, link_each)

    floors, measured = paired(
        lambda: raw_events(store.path, lambda row: sha256(row[4]).digest()), least, space.scale.heavy_runs
    )
    return [
        compared(
            "integrity check: bound: its least work (decode and link each event; no checks, no index)",
            f"{events:,} events", "events/s", floors, measured, higher_is_better=True, minimum=0.1,
        )
    ]  # fmt: skip


def main() -> int:
    scale = chosen_scale()
    print(f"keyledger bounds, scale {scale.name}")
    with tempfile.TemporaryDirectory(prefix="keyledger-bounds-") as folder:
        space = Workspace(scale, Path(folder), cache=scale.name == "default")
        rows: list[Row] = []
        for case in (command_rows, rebuild_rows, integrity_rows):
            began = time.perf_counter()
            print(f"  {case.__module__}.{case.__name__} ...", end="", flush=True)
            rows.extend(case(space))
            print(f" {time.perf_counter() - began:.1f} s")
    print()
    print(render(rows))
    print("\nA bound row does part of keyledger's work only; its ratio is the most that work allows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
