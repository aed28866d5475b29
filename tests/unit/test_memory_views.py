"""The ``memory://`` views hand a projection copies of their catalogue rows: a projection
that fails after changing a row it read leaves the views as they were."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from keyledger.adapters.driven.memory_views import MemoryViews
from keyledger.projections.catalogue import KeyRow
from keyledger.projections.ports import ViewWriter

CREATED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """What MemoryViews.write reads of an event itself (the projection reads the rest)."""

    position: int


def test_a_projection_failing_after_changing_a_row_it_read_leaves_the_row_as_it_was() -> None:
    views = MemoryViews()
    row = KeyRow(
        account="acme", key_id="key_1", name="billing", purpose="invoices", application="erp",
        created_by="alice", created_at=CREATED, created_position=1, hint="kl_...abcd",
        grace={b"old": ("kl_...wxyz", CREATED)},
    )  # fmt: skip
    kept = replace(row, grace=dict(row.grace))
    assert views.write([Event(1)], lambda _, writer: writer.put_rows([row]), after=0)  # type: ignore[list-item]

    def failing(_: Any, writer: ViewWriter) -> None:
        changed = writer.row("acme", "key_1")
        changed.grace.pop(b"old")
        changed.grace[b"new"] = ("kl_...efgh", CREATED)
        changed.end(CREATED, "changed half way")
        raise RuntimeError("the projection failed")

    with pytest.raises(RuntimeError):
        views.write([Event(2)], failing, after=1)  # type: ignore[list-item]

    assert views.rows["acme"]["key_1"] == kept
    assert views.position() == 1
