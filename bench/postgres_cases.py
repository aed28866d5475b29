"""Commands on PostgreSQL from 1 and from 4 concurrent writer processes, against raw
psycopg inserts of rows of the same size, one transaction each, from as many processes.

Each writer is a separate process (as a deployment of several services would be), with
its own Ledger and its own account, sending the command mix for a fixed time; the floor's
writers insert into a table shaped like the events' (no table lock). The processes are
started once and reused for every run; runs alternate floor and keyledger.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import psycopg

from bench.commands import RowShape, commands_for, new_stream, timed_commands
from bench.fixtures import PG_URL, postgres_schema
from bench.harness import Row, Scale, compared, paired
from bench.workspace import Workspace
from keyledger import Ledger

FLOOR_TABLE = (
    "CREATE TABLE {schema}.floor_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
    "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
)


def writer(channel: Connection) -> None:
    """A writer process: runs what the parent sends until told to stop."""
    ledgers: dict[str, Ledger] = {}
    floors: dict[str, tuple[psycopg.Connection[Any], Any]] = {}
    try:
        while True:
            message = channel.recv()
            if message[0] == "stop":
                return
            try:
                if message[0] == "ledger":
                    _, url, account, seconds = message
                    if url not in ledgers:
                        ledgers[url] = Ledger.open(url)
                    channel.send(commands_for(ledgers[url], account, seconds))
                elif message[0] == "floor":
                    _, schema, shape, seconds = message
                    if schema not in floors:
                        floors[schema] = (psycopg.connect(PG_URL), shape.payloads())
                    channel.send(_insert_for(schema, *floors[schema], seconds))
            except Exception as error:
                channel.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        for ledger in ledgers.values():
            ledger.close()
        for connection, _ in floors.values():
            connection.close()


def _insert_for(
    schema: str, connection: psycopg.Connection[Any], payloads: Any, seconds: float
) -> tuple[int, float]:
    statement = (
        f"INSERT INTO {schema}.floor_events (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s)"
    )
    stream = new_stream()
    began = time.perf_counter()
    deadline = began + seconds
    done = 0
    while True:
        topic, state = next(payloads)
        done += 1
        with connection.transaction():
            connection.execute(statement, (stream, done, topic, state))
        if time.perf_counter() >= deadline:
            break
    return done, time.perf_counter() - began


class Writers:
    """``count`` writer processes, each behind a pipe."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.channels: list[Connection] = []
        self.processes = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=writer, args=(child,), daemon=True)
            process.start()
            self.channels.append(parent)
            self.processes.append(process)

    def rate(self, messages: list[tuple[Any, ...]]) -> float:
        """Send one message to each writer at once; the sum of their rates per second."""
        for channel, message in zip(self.channels, messages, strict=True):
            channel.send(message)
        results: list[tuple[Any, Any]] = [channel.recv() for channel in self.channels]
        for result in results:
            if result[0] == "error":
                raise RuntimeError(f"a writer process failed: {result[1]}")
        return float(sum(done / elapsed for done, elapsed in results))

    def stop(self) -> None:
        for channel in self.channels:
            channel.send(("stop",))
        for process in self.processes:
            process.join(30)


def postgres_shape(url: str, schema: str) -> RowShape:
    with psycopg.connect(PG_URL) as connection:
        rows = connection.execute(
            f"SELECT topic, length(state) FROM {schema}.keyledger_events ORDER BY notification_id"
        ).fetchall()
    return RowShape(tuple((str(topic), int(size)) for topic, size in rows))


def _writers_row(scale: Scale, count: int, url: str, schema: str, shape: RowShape) -> Row:
    writers = Writers(count)
    runs = itertools.count()

    def ours() -> float:
        run = next(runs)
        accounts = [f"w{count}-{n}-run{run}" for n in range(count)]
        return writers.rate([("ledger", url, account, scale.pg_seconds) for account in accounts])

    try:
        writers.rate([("ledger", url, f"warm-{count}-{n}", 0.2) for n in range(count)])
        writers.rate([("floor", schema, shape, 0.2)] * count)
        floors, measured = paired(
            lambda: writers.rate([("floor", schema, shape, scale.pg_seconds)] * count), ours, scale.runs
        )
    finally:
        writers.stop()
    return compared(
        f"commands on PostgreSQL, {count} writer{'s' if count > 1 else ''} (processes)",
        f"{scale.pg_seconds:g} s/run, rows ~{shape.mean_bytes:.0f} B",
        "/s", floors, measured, higher_is_better=True, minimum=0.2,
    )  # fmt: skip


def postgres_command_rows(space: Workspace) -> list[Row]:
    rows = []
    schema = f"bench_{int(time.time())}"
    with postgres_schema(schema) as url:
        with Ledger.open(url) as ledger:
            timed_commands(ledger, "warm-up", 30)
        shape = postgres_shape(url, schema)
        with psycopg.connect(PG_URL, autocommit=True) as connection:
            connection.execute(FLOOR_TABLE.format(schema=schema))
        for count in (1, 4):
            rows.append(_writers_row(space.scale, count, url, schema, shape))
    one, four = rows
    # The owner's target for several writers (issue 11, C): together at least as fast as
    # one (eventsourcing's table lock makes appends take turns).
    rows.append(
        compared(
            "commands on PostgreSQL, 4 writers together vs 1 writer",
            one.size,
            "/s",
            one.samples["keyledger"],
            four.samples["keyledger"],
            higher_is_better=True,
            minimum=1.0,
        )
    )
    return rows
