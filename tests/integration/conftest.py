"""Fixtures for the integration tests: stores that outlive a ledger, and raw access to
their tables, so tests can read and tamper with what a ledger wrote.

SQLite keeps events in ``stored_events`` (the ``rowid`` is the notification id) and
snapshots in ``stored_snapshots``; PostgreSQL keeps them in ``<schema>.keyledger_events``
(``notification_id``) and ``<schema>.keyledger_snapshots``.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest

from keyledger.adapters.driven.unit_of_work import Committed
from keyledger.domain import Keyring

POSTGRES_URL = os.environ.get("KEYLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("KEYLEDGER_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_url(request: pytest.FixtureRequest) -> str:
    """A new, empty store that outlives a ledger: a SQLite file, then a PostgreSQL schema."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@contextmanager
def new_postgres_schemas(count: int) -> Iterator[list[str]]:
    """URLs of ``count`` new PostgreSQL schemas, dropped afterwards; skips (or, where
    ``KEYLEDGER_REQUIRE_POSTGRES=1``, fails) when no server answers, as ``postgres_url`` does."""
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (KEYLEDGER_REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}")
    schemas = [f"kl_test_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    separator = "&" if "?" in POSTGRES_URL else "?"
    with conn:
        try:
            for schema in schemas:
                conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
            yield [f"{POSTGRES_URL}{separator}schema={schema}" for schema in schemas]
        finally:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def class_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new store of each durable kind, shared by the tests of one class (for scenarios
    too slow to repeat per test: the tests only read it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('shared') / 'keyledger.db'}"
        return
    with new_postgres_schemas(1) as (url,):
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def new_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[int], list[str]]]:
    """Make ``count`` new, empty stores of each durable kind: ``new_urls(count)``."""
    with ExitStack() as stack:

        def _new(count: int) -> list[str]:
            if request.param == "sqlite":
                files = [tmp_path / f"keyledger-{uuid.uuid4().hex[:8]}.db" for _ in range(count)]
                return [f"sqlite:///{file}" for file in files]
            return stack.enter_context(new_postgres_schemas(count))

        yield _new


@pytest.fixture
def store_tables() -> type[StoreTables]:
    """Raw access to a store's tables: ``store_tables(url)``."""
    return StoreTables


@dataclass(frozen=True)
class StoredRow:
    """One stored event as its table holds it."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


class StoreTables:
    """Reads and edits the tables of the SQLite file or PostgreSQL schema behind a URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite:")
        if self.is_sqlite:
            self.path = Path(url.removeprefix("sqlite:///"))
            self.events = "stored_events"
            self.snapshots = "stored_snapshots"
            self.position_column = "rowid"
        else:
            schema = dict(parse_qsl(urlsplit(url).query))["schema"]
            self.schema = schema
            self.events = f"{schema}.keyledger_events"
            self.snapshots = f"{schema}.keyledger_snapshots"
            self.position_column = "notification_id"

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self.is_sqlite:
            with closing(sqlite3.connect(self.path)) as conn, conn:
                yield conn
        else:
            parts = urlsplit(self.url)
            query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "schema"])
            conninfo = urlunsplit(parts._replace(query=query))
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                yield conn

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        if not self.is_sqlite:
            sql = sql.replace("?", "%s")
        with self._cursor() as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else cursor.rowcount

    def rows(self) -> list[StoredRow]:
        """Every stored event, in notification order."""
        rows = self._execute(
            f"SELECT {self.position_column}, originator_id, originator_version, topic, state "
            f"FROM {self.events} ORDER BY {self.position_column}"
        )
        return [StoredRow(int(p), _uuid(o), int(v), str(t), bytes(s)) for p, o, v, t, s in rows]

    def row(self, position: int) -> StoredRow:
        """The stored event at one notification id."""
        (found,) = [row for row in self.rows() if row.position == position]
        return found

    def snapshot_states(self) -> list[bytes]:
        """The stored state of every snapshot."""
        return [bytes(state) for (state,) in self._execute(f"SELECT state FROM {self.snapshots}")]

    def table_contents(self) -> dict[str, bytes]:
        """Every row of every table of the store (the schema on PostgreSQL), as bytes:
        binary columns as stored, every other value as its text."""
        if self.is_sqlite:
            names = [name for (name,) in self._execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        else:
            schema = self.events.split(".")[0]
            rows = self._execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (schema,)
            )
            names = [f"{schema}.{name}" for (name,) in rows]
        contents: dict[str, bytes] = {}
        for name in names:
            values = [value for row in self._execute(f"SELECT * FROM {name}") for value in row]
            contents[name] = b"\n".join(_as_bytes(value) for value in values)
        return contents

    def copy_first_row(self, table: str, first: object) -> None:
        """Insert into ``table`` (a name without schema) a copy of its first row with the
        first column replaced by ``first``."""
        name = table if self.is_sqlite else f"{self.schema}.{table}"
        (row,) = self._execute(f"SELECT * FROM {name} LIMIT 1")
        marks = ", ".join("?" * len(row))
        self._execute(f"INSERT INTO {name} VALUES ({marks})", (first, *row[1:]))

    def stream_versions(self, account: str) -> list[int]:
        """The stored versions of an account's stream, in notification order."""
        keyring_id = Keyring.id_for(account)
        return [row.version for row in self.rows() if row.originator_id == keyring_id]

    def snapshot_versions(self, account: str) -> list[int]:
        """The versions at which the account's Keyring was snapshotted."""
        keyring_id = Keyring.id_for(account)
        rows = self._execute(f"SELECT originator_id, originator_version FROM {self.snapshots}")
        return sorted(int(v) for o, v in rows if _uuid(o) == keyring_id)

    def set_state(self, position: int, state: bytes) -> None:
        """Overwrite the stored state of the event at ``position``."""
        changed = self._execute(
            f"UPDATE {self.events} SET state = ? WHERE {self.position_column} = ?", (state, position)
        )
        assert changed == 1

    def set_topic(self, position: int, topic: str) -> None:
        """Overwrite the stored topic of the event at ``position``."""
        changed = self._execute(
            f"UPDATE {self.events} SET topic = ? WHERE {self.position_column} = ?", (topic, position)
        )
        assert changed == 1

    def delete(self, position: int) -> None:
        """Delete the event at ``position``."""
        changed = self._execute(f"DELETE FROM {self.events} WHERE {self.position_column} = ?", (position,))
        assert changed == 1


def _as_bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()


def _uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def recorded_commits(unit_of_work: Any, monkeypatch: pytest.MonkeyPatch) -> list[Committed]:
    """What ``unit_of_work`` commits from now on (each command's :class:`Committed`, as its
    follower is handed it), appended to the list returned."""
    handed: list[Committed] = []
    commit = unit_of_work.commit

    def recording(stored_events: Any) -> Committed:
        committed: Committed = commit(stored_events)
        handed.append(committed)
        return committed

    monkeypatch.setattr(unit_of_work, "commit", recording)
    return handed
