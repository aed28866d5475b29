"""The private parts of eventsourcing that keyledger overrides or calls are still there,
with the parameters keyledger passes: an upgrade that changes one fails here, by name,
rather than somewhere in a command. Written against eventsourcing 9.5.6 (STYLE habit 11);
the library's own recorder cases run against keyledger's recorders in
``tests/integration/test_recorder_conformance.py``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore, SQLiteTrackingRecorder

WRITTEN_AGAINST = "9.5"

PRIVATE_METHODS: list[tuple[Callable[..., Any], list[str], str]] = [
    (SQLiteApplicationRecorder._insert_events, ["self", "c", "stored_events"], "adapters/sqlite_views.py"),
    (PostgresAggregateRecorder._insert_stored_events, ["self", "curs", "stored_events"], "postgres_views.py"),
    (SQLiteTrackingRecorder._max_tracking_id, ["self", "application_name", "c"], "adapters/sql_views.py"),
    (SQLiteTrackingRecorder._insert_tracking, ["self", "c", "tracking"], "adapters/sql_views.py"),
    (
        PostgresTrackingRecorder._max_tracking_id,
        ["self", "application_name", "curs"],
        "adapters/sql_views.py",
    ),
    (PostgresTrackingRecorder._insert_tracking, ["self", "curs", "tracking"], "adapters/sql_views.py"),
    (Application._take_snapshots, ["self", "processing_event"], "keyledger/application.py"),
    (SQLiteDatastore.get_connection, ["self", "commit"], "adapters/sqlite_views.py"),
    (PostgresDatastore.get_connection, ["self"], "adapters/postgres_views.py"),
    (PostgresDatastore.transaction, ["self", "commit"], "adapters/postgres_views.py"),
]


def test_the_installed_release_is_the_one_written_against() -> None:
    """Another minor release may move what the methods below rely on: read them again."""
    assert version("eventsourcing").startswith(WRITTEN_AGAINST + ".")


@pytest.mark.parametrize(
    ("method", "parameters", "user"), PRIVATE_METHODS, ids=lambda v: getattr(v, "__qualname__", None)
)
def test_a_private_method_keyledger_relies_on_keeps_its_parameters(
    method: Callable[..., Any], parameters: list[str], user: str
) -> None:
    named = [
        p.name
        for p in inspect.signature(method).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]

    assert named == parameters, f"{method.__qualname__} changed; {user} relies on it"


def test_the_popo_tracking_recorder_keeps_its_positions_where_memory_views_reset_them() -> None:
    """adapters/memory_views.py clears ``_max_tracking_ids`` when the views are rebuilt."""
    assert isinstance(POPOTrackingRecorder().__dict__.get("_max_tracking_ids"), dict)


def test_the_postgres_recorder_still_names_its_lock_statements_and_channel() -> None:
    """adapters/postgres_views.py sends the table lock and NOTIFY as one query."""
    source = inspect.getsource(PostgresApplicationRecorder.__init__)

    assert "lock_table_statements" in source
    assert "channel_name" in source
