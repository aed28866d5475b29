"""``keyledger audit --follow``: stream audit entries as JSON Lines as they are recorded,
for piping into a SIEM, until Ctrl-C or SIGTERM.

With ``--subscription NAME`` it is a durable subscriber (:meth:`keyledger.Ledger.subscribe`):
it starts after the position saved under that name (the first entry, for a new name),
and the position moves on once a line is written and flushed; a stop (Ctrl-C, SIGTERM,
or the reader closing the pipe) saves exactly what was written, so the next run neither
repeats nor skips an entry (a kill -9 may repeat the last). Without it, it starts at the
head (or after ``--after POS``) and keeps no position. The filters (``--account``,
``--action``, ...) choose what is written; with a subscription, entries they pass over
still move its position on.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from keyledger import AuditEntry, InvalidInput, Ledger
from keyledger.adapters.driving import render
from keyledger.adapters.driving.cli_common import stopped_by_sigterm
from keyledger.projections.audit import MAX_LIMIT, AuditQuery

WAIT = 0.02
"""Seconds between two looks for new entries (without a subscription)."""


class _Lines:
    """Writes entries as JSON Lines on stdout; notes when the reader has gone."""

    def __init__(self, query: AuditQuery) -> None:
        self.query = query
        self.gone = threading.Event()

    def __call__(self, entry: AuditEntry) -> None:
        if not self.query.matches(entry):
            return
        try:
            sys.stdout.write(entry.model_dump_json() + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            # Not written, so not delivered: the subscription keeps its position.
            self.gone.set()
            raise


def follow(
    ledger: Ledger,
    out: render.Output,
    output_format: render.AuditFormat,
    subscription: str | None,
    after: int | None,
    filters: dict[str, Any],
) -> None:
    """Write entries as they are recorded until interrupted."""
    if output_format is not render.AuditFormat.JSONL:
        raise InvalidInput("format", "--follow streams JSON Lines: add --format jsonl")
    if subscription is not None and after is not None:
        raise InvalidInput("after", "a subscription starts after its saved position: no --after")
    lines = _Lines(AuditQuery.build(**filters, limit=MAX_LIMIT))
    with stopped_by_sigterm():
        try:
            if subscription is None:
                _tail(ledger, out, lines, ledger.position if after is None else after, filters)
            else:
                _subscribed(ledger, out, lines, subscription)
        except KeyboardInterrupt:
            pass


def _tail(ledger: Ledger, out: render.Output, lines: _Lines, position: int, filters: dict[str, Any]) -> None:
    out.note(f"following the audit trail after position {position}; Ctrl-C or SIGTERM stops")
    seen = position
    while not lines.gone.is_set():
        if ledger.position > seen:
            seen = ledger.position
            while entries := ledger.audit(**filters, after=position, limit=MAX_LIMIT):
                for entry in entries:
                    try:
                        lines(entry)
                    except (BrokenPipeError, ValueError):
                        return
                position = entries[-1].position
        lines.gone.wait(WAIT)


def _subscribed(ledger: Ledger, out: render.Output, lines: _Lines, name: str) -> None:
    subscription = ledger.subscribe(lines, name=name)
    out.note(f"following the audit trail as subscription {name!r}; Ctrl-C or SIGTERM stops")
    try:
        while subscription.running and not lines.gone.is_set():
            lines.gone.wait(0.1)
    finally:
        subscription.stop()
        out.note(f"subscription {name!r} stopped at position {subscription.position}")
