"""The private parts of eventsourcing that keyledger overrides or calls are still there,
with the parameters keyledger passes: an upgrade that changes one fails here, by name,
rather than somewhere in a command. Written against eventsourcing 9.5.6 (STYLE habit 11);
the library's own recorder cases run against keyledger's recorders in
``tests/integration/test_recorder_conformance.py``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)

WRITTEN_AGAINST = "9.5"

PRIVATE_METHODS: list[tuple[Callable[..., Any], list[str], str]] = [
    (
        SQLiteTrackingRecorder._max_tracking_id,
        ["self", "application_name", "c"],
        "adapters/driven/sql_views.py",
    ),
    (SQLiteTrackingRecorder._insert_tracking, ["self", "c", "tracking"], "adapters/driven/sql_views.py"),
    (
        PostgresTrackingRecorder._max_tracking_id,
        ["self", "application_name", "curs"],
        "adapters/driven/sql_views.py",
    ),
    (PostgresTrackingRecorder._insert_tracking, ["self", "curs", "tracking"], "adapters/driven/sql_views.py"),
    (SQLiteDatastore.get_connection, ["self", "commit"], "adapters/driven/sqlite_views.py"),
    (SQLiteConnectionPool._create_connection, ["self"], "adapters/driven/sqlite_views.py"),
    (PostgresDatastore.get_connection, ["self"], "adapters/driven/postgres_views.py"),
    (PostgresDatastore.transaction, ["self", "commit"], "adapters/driven/postgres_views.py"),
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


def test_the_sqlite_pool_still_opens_connections_as_keyledger_opens_its_own() -> None:
    """adapters/driven/sqlite_views.py's StatementCachingPool replaces the pool's
    ``_create_connection`` (eventsourcing passes ``cached_statements=True``, a cache of
    one statement) and must open connections as it does otherwise; and the SQLite factory
    still builds its datastore's pool from these two settings."""
    source = inspect.getsource(SQLiteConnectionPool._create_connection)
    factory = inspect.getsource(SQLiteDatastore.__init__)

    for setting in ("uri=True", "check_same_thread=False", "isolation_level=None", "cached_statements=True"):
        assert setting in source, setting
    for attribute in ("journal_mode", "row_factory = sqlite3.Row", "SQLiteConnection(", "max_age"):
        assert attribute in source, attribute
    assert "self.pool = SQLiteConnectionPool(" in factory
    assert {"db_name", "lock_timeout"} <= set(inspect.signature(SQLiteConnectionPool.__init__).parameters)


def test_the_postgres_recorder_still_names_its_lock_statements_and_channel() -> None:
    """adapters/driven/postgres_views.py's unit of work sends the table lock's statements
    and NOTIFY, then eventsourcing's insert statement; its views read their position and
    record it with the tracking recorder's statements (the recording one returning the
    row it wrote, which the views' own statement counts)."""
    source = inspect.getsource(PostgresApplicationRecorder.__init__)
    tracking = inspect.getsource(PostgresTrackingRecorder.__init__)

    assert "lock_table_statements" in source
    assert "channel_name" in source
    assert "insert_events_statement" in inspect.getsource(PostgresAggregateRecorder.__init__)
    assert "RETURNING notification_id" in source
    assert "max_tracking_id_statement" in tracking
    assert "insert_tracking_statement" in tracking
    assert "RETURNING notification_id" in tracking


@pytest.mark.parametrize(
    ("recorder", "attributes"),
    [
        (SQLiteApplicationRecorder, ["insert_events_statement", "events_table_name", "datastore"]),
        (
            PostgresApplicationRecorder,
            ["insert_events_statement", "lock_table_statements", "channel_name", "datastore"],
        ),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_the_recorders_set_the_attributes_the_unit_of_work_appends_with(
    recorder: type[Any], attributes: list[str]
) -> None:
    """The unit of work (adapters/driven/unit_of_work.py and its store subclasses) appends
    with these public attributes of eventsourcing's recorders."""
    source = "".join(
        inspect.getsource(cls) for cls in recorder.__mro__ if cls.__module__.startswith("eventsourcing")
    )

    for attribute in attributes:
        assert re.search(rf"self\.{attribute}\b[^=\n]*=", source), attribute
