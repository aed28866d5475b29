"""The ledger's SQLite file: connections that keep their prepared statements, and the
tables read only by their key stored as one B-tree each (``WITHOUT ROWID``), also in a
file made before, once it is rebuilt."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import pytest

from keyledger import Ledger
from keyledger.adapters.driven.sqlite_views import SQLiteViews
from keyledger.testing import ManualClock
from tests.integration.test_bulk_rebuild import tables, varied_history

CLUSTERED = ("keyledger_audit_keys", "keyledger_secrets", "keyledger_valid")


def table_layouts(url: str) -> dict[str, bool]:
    """Each view table of the file: whether it is a ``WITHOUT ROWID`` table."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name LIKE 'keyledger%'"
        ).fetchall()
    return {str(name): str(sql).rstrip().upper().endswith("WITHOUT ROWID") for name, sql in rows}


def test_every_connection_of_the_ledger_keeps_its_prepared_statements(
    sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eventsourcing opens its connections with ``cached_statements=True`` (a cache of one
    statement, so a command's dozen statements were parsed again every time); each of the
    ledger's connections keeps sqlite3's usual 128."""
    caches: list[Any] = []
    connect = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        caches.append(kwargs.get("cached_statements", "not given"))
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    with Ledger.open(sqlite_url, clock=clock) as ledger:
        varied_history(ledger, clock)
        ledger.check_integrity()

    assert caches
    assert all(cache == 128 for cache in caches), caches


def test_a_new_file_stores_the_tables_read_by_their_key_as_one_b_tree_each(
    sqlite_url: str, clock: ManualClock
) -> None:
    with Ledger.open(sqlite_url, clock=clock) as ledger:
        varied_history(ledger, clock)

    layouts = table_layouts(sqlite_url)
    assert {name for name, clustered in layouts.items() if clustered} == set(CLUSTERED)


def test_a_file_made_before_is_clustered_by_its_next_rebuild_with_every_row_kept(
    sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose views were made with a rowid each keeps working as it is; a rebuild
    gives it the new layout with the same rows, and every secret verifies as before."""
    made = SQLiteViews._statements

    def with_rowids(views: SQLiteViews) -> list[str]:
        return [statement.replace(" WITHOUT ROWID", "") for statement in made(views)]

    with monkeypatch.context() as before:
        before.setattr(SQLiteViews, "_statements", with_rowids)
        with Ledger.open(sqlite_url, clock=clock) as ledger:
            secrets = varied_history(ledger, clock)
    assert not any(table_layouts(sqlite_url).values())
    old = tables(sqlite_url)

    with Ledger.open(sqlite_url, clock=clock) as ledger:
        verified = [ledger.verify(secret) for secret in secrets]
        assert not any(table_layouts(sqlite_url).values())  # opening changes no table
        ledger.rebuild_projections()
        assert [ledger.verify(secret) for secret in secrets] == verified
        assert ledger.check_integrity().ok

    assert {name for name, clustered in table_layouts(sqlite_url).items() if clustered} == set(CLUSTERED)
    assert tables(sqlite_url) == old
    assert 0 < verified.count(None) < len(verified)
