"""Rebuilding every projection of the large store, on SQLite and on PostgreSQL.

The floor (issue 12) is the least work any projection that keeps one row per event must
do, measured in the same run on the same store: read the log (SELECT and ``orjson.loads``
of every stored event) and write one row per event (``(position, stored bytes)``, with
``executemany`` on SQLite and ``COPY`` on PostgreSQL) into a fresh table, in one
transaction. The read-only floor (SELECT and ``orjson.loads``) is shown beside it for
reference. The PostgreSQL store holds the same events as the SQLite one, copied with
``COPY``; its views start empty with their position at the head (the first rebuild fills
them), so that building it costs no incremental catch-up.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import psycopg

from bench.fixtures import PG_URL, postgres_schema
from bench.harness import Row, compared, paired
from bench.store_cases import EVENTS, event_count, raw_events
from bench.workspace import Workspace
from keyledger import Ledger

TARGET = 0.3
PAGE = 10_000


def sqlite_floor(path: Path) -> float:
    """Events per second of reading the log and writing one row per event, in one transaction."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("DROP TABLE IF EXISTS bench_floor")
        connection.execute("CREATE TABLE bench_floor (position INTEGER PRIMARY KEY, state BLOB NOT NULL)")
        loads, count = orjson.loads, 0
        began = time.perf_counter()
        connection.execute("BEGIN")
        rows = connection.cursor().execute(EVENTS)
        while page := rows.fetchmany(PAGE):
            for row in page:
                loads(row[4])
            connection.executemany(
                "INSERT INTO bench_floor VALUES (?, ?)", [(row[0], row[4]) for row in page]
            )
            count += len(page)
        connection.execute("COMMIT")
        rate = count / (time.perf_counter() - began)
        connection.execute("DROP TABLE bench_floor")
        return rate
    finally:
        connection.close()


def postgres_floor(schema: str) -> float:
    """:func:`sqlite_floor` on PostgreSQL, writing with ``COPY`` (on a connection of its
    own: a connection in ``COPY`` runs nothing else)."""
    with psycopg.connect(PG_URL) as reader, psycopg.connect(PG_URL, autocommit=True) as writer:
        writer.execute(f"DROP TABLE IF EXISTS {schema}.bench_floor")  # type: ignore[arg-type]
        loads, count = orjson.loads, 0
        began = time.perf_counter()
        with writer.transaction(), reader.cursor(name="log") as log, writer.cursor() as out:
            out.execute(f"CREATE TABLE {schema}.bench_floor (position BIGINT, state BYTEA)")  # type: ignore[arg-type]
            log.execute(
                f"SELECT notification_id, state FROM {schema}.keyledger_events ORDER BY notification_id"
            )  # type: ignore[arg-type]
            with out.copy(f"COPY {schema}.bench_floor (position, state) FROM STDIN") as copy:  # type: ignore[arg-type]
                while page := log.fetchmany(PAGE):
                    for position, state in page:
                        loads(state)
                        copy.write_row((position, state))
                    count += len(page)
        rate = count / (time.perf_counter() - began)
        writer.execute(f"DROP TABLE {schema}.bench_floor")  # type: ignore[arg-type]
        return rate


def _rebuilt(url: str, events: int) -> float:
    with Ledger.open(url, follow=False) as ledger:
        began = time.perf_counter()
        ledger.rebuild_projections()
        return events / (time.perf_counter() - began)


def rebuild_rows(space: Workspace) -> list[Row]:
    store = space.large()
    events = event_count(store.path)
    runs = space.scale.heavy_runs
    size = f"{events:,} events"
    floors, measured = paired(lambda: sqlite_floor(store.path), lambda: _rebuilt(store.url, events), runs)
    reads = [raw_events(store.path, lambda row: orjson.loads(row[4])) for _ in range(runs)]
    rows = [
        compared(
            "rebuild all projections (SQLite; floor: read + executemany of one row per event)", size,
            "events/s", floors, measured, higher_is_better=True, minimum=TARGET,
        ),
        replace(
            compared(
                "... same, against the read-only floor (SELECT + orjson.loads), for reference", size,
                "events/s", reads, measured, higher_is_better=True, minimum=0.0,
            ),
            target="reference", met=None,
        ),
    ]  # fmt: skip
    try:
        rows.append(_postgres_row(store.path, events, runs, size))
    except psycopg.OperationalError as error:
        rows.append(Row("rebuild all projections (PostgreSQL)", size, "-", "", error=type(error).__name__))
    return rows


def _postgres_row(path: Path, events: int, runs: int, size: str) -> Row:
    with postgres_schema("kl_bench_rebuild") as url:
        Ledger.open(url, follow=False).close()  # the tables
        schema = dict(parse_qsl(urlsplit(url).query))["schema"]
        _copy_events(path, schema)
        floors, measured = paired(lambda: postgres_floor(schema), lambda: _rebuilt(url, events), runs)
    return compared(
        "rebuild all projections (PostgreSQL; floor: read + COPY of one row per event)", size,
        "events/s", floors, measured, higher_is_better=True, minimum=TARGET,
    )  # fmt: skip


def _copy_events(path: Path, schema: str) -> None:
    """The SQLite store's events into the schema's events table, positions kept; the
    views' position set to the head (their tables stay empty until the first rebuild)."""
    source = sqlite3.connect(path)
    try:
        with psycopg.connect(PG_URL, autocommit=True) as connection, connection.transaction():
            cursor = connection.cursor()
            table = f"{schema}.keyledger_events"
            statement = (
                f"COPY {table} (notification_id, originator_id, originator_version, topic, state) FROM STDIN"
            )
            with cursor.copy(statement) as copy:  # type: ignore[arg-type]
                for row in source.execute(EVENTS):
                    copy.write_row(row)
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'notification_id'), "  # type: ignore[arg-type]
                f"(SELECT max(notification_id) FROM {table}))"
            )
            cursor.execute(
                f"INSERT INTO {schema}.keyledger_tracking (application_name, notification_id) "  # type: ignore[arg-type]
                f"VALUES ('keyledger_views', (SELECT max(notification_id) FROM {table}))"
            )
    finally:
        source.close()
