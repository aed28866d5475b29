"""The durable views in the ledger's PostgreSQL database (its schema, if one is set)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from keyledger.adapters.sql_views import SQLViews
from keyledger.projections.ports import VIEWS_NAME


class PostgresViews(PostgresTrackingRecorder, SQLViews):
    """The views as tables beside ``keyledger_events``, tracked in ``keyledger_tracking``."""

    placeholder = "%s"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in self.create_statements(blob="BYTEA", position="BIGINT", time='TEXT COLLATE "C"'):
            self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]

    def table(self, name: str) -> str:
        return f'"{self.datastore.schema}".keyledger_{name}'

    @contextmanager
    def locked_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            # One advisory lock per schema serialises the writers of these views.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(self.table("audit").encode())])
            yield cursor

    @contextmanager
    def read_cursor(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            yield cursor

    def plain_rows(self, cursor: Any) -> None:
        cursor.row_factory = tuple_row

    def _delete_tracking(self, c: Any) -> None:
        c.execute(
            SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
            ),
            [VIEWS_NAME],
        )
