"""Shared fixtures: a controllable clock, and ledgers on every store.

PostgreSQL tests use ``KEYLEDGER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own that is
dropped afterwards. Where no server answers they skip with the reason, unless
``KEYLEDGER_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keyledger import Actor, Ledger, Permission
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    import psycopg

POSTGRES_URL = os.environ.get("KEYLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("KEYLEDGER_REQUIRE_POSTGRES") == "1"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


Clock = ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def alice() -> Actor:
    return Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})


@pytest.fixture
def bob() -> Actor:
    return Actor(user_id="bob", account="acme", permissions={Permission.INTEGRATION})


@pytest.fixture
def admin() -> Actor:
    return Actor(
        user_id="root", account="acme", permissions={Permission.INTEGRATION, Permission.USER_MANAGEMENT}
    )


def postgres_admin() -> psycopg.Connection[Any]:
    """An autocommit connection to the test server; skips the test if none answers
    (fails it where PostgreSQL is required)."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (KEYLEDGER_REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a new schema, dropped after the test."""
    conn = postgres_admin()
    schema = f"kl_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keyledger.db'}"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of each kind of store (a new, empty one)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keyledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_ledger(clock: Clock) -> Iterator[Callable[..., Ledger]]:
    """Open ledgers (closed after the test); the test clock unless one is given."""
    opened: list[Ledger] = []

    def _open(url: str = "memory://", **options: object) -> Ledger:
        options.setdefault("clock", clock)
        ledger = Ledger.open(url, **options)  # type: ignore[arg-type]
        opened.append(ledger)
        return ledger

    yield _open
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[..., Ledger]) -> Ledger:
    """A ledger in memory on the test clock."""
    return open_ledger()
