"""Rebuilding the SQL views as a bulk job, beside the views in use, then swapping them in.

The rebuild reads the log once, in position order, through the follower's reader. It folds
the current state (the valid keys, the catalogue, each account's audit head) in memory
and writes the rows that only ever grow (the audit trail, its key table, every digest
issued) into fresh tables named ``..._rebuild``, one chunk of events per short
transaction; then it writes the folded state, catches the fresh tables up with what was
recorded meanwhile (through the incremental path, which reads and writes them as it does
the tables in use), and swaps them in with one short transaction that holds the views'
lock: the last few events, the position, the renames.

Until that commit the views in use are the old ones, which commands and followers keep
writing as usual, and nothing holds a lock for longer than one chunk or one index (on
SQLite every write transaction holds the database's write lock, so commands wait at most
that long). A rebuild killed at any moment leaves the old views intact and in use; the
fresh tables it leaves behind are dropped when the next rebuild starts. Memory holds the
live state (one entry per valid secret, one row per key, one chain per account) and a few
chunks of rows, whatever the number of events.

Each chunk's rows are written in their primary key's order, and the fresh tables get
their other indexes after the load (on PostgreSQL their primary keys too), which sorts
each once: several times cheaper than growing them row by row.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from keyledger.adapters.driven.sql_views import (
    FRESH_SUFFIX,
    KEY_COLUMNS,
    SQLViews,
    json_text,
    row_params,
    stamp,
    stamp_text,
)
from keyledger.domain.chain import GENESIS
from keyledger.projections.audit import AUDIT_FIELDS, entry_values
from keyledger.projections.catalogue import KeyRow
from keyledger.projections.ports import ReadRecorded, ViewWriter
from keyledger.projections.project import project
from keyledger.projections.recorded import Recorded
from keyledger.projections.valid_keys import Principal, ValidKeyIndex

PROJECTED = ("valid", "secrets", "keys", "audit", "audit_keys")
"""The tables a rebuild makes anew (the last-used and settings side tables stay)."""
OLD_SUFFIX = "_old"
"""Ends the names of the tables a swap replaced, until they are dropped (SQLite)."""
LOAD_CHUNK = 20_000
"""Events per load transaction (on SQLite, the longest a command waits for the rebuild)."""
STATE_CHUNK = 50_000
"""Rows of the folded state per transaction."""
TAIL_PAGE = 1000
"""Events read at a time once the log is loaded; a page shorter than this is applied in
the swap's transaction."""
VALID_COLUMNS = ("digest", "account", "key_id", "name", "valid_until")
Progress = Callable[[int, int], None]

_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\S+) \(")
_INDEX = re.compile(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\S+) (.*)$", re.DOTALL)


class Fold(ViewWriter):
    """The views' state in memory, written through the projection's own port: the valid
    keys, every key's catalogue row and each account's audit head; and the rows that only
    grow, buffered until the next chunk is written."""

    def __init__(self) -> None:
        self.index = ValidKeyIndex()
        self.rows: dict[tuple[str, str], KeyRow] = {}
        self.heads: dict[str, str] = {}
        self.audit: list[tuple[Any, ...]] = []
        self.audit_keys: list[tuple[str, int]] = []
        self.secrets: list[tuple[bytes, str, str]] = []

    def entry(self, digest: bytes) -> Principal | None:
        return self.index.get(digest)

    def change_entries(self, drops: Sequence[bytes], puts: Sequence[tuple[bytes, Principal]]) -> None:
        self.index.change(drops, puts)

    def remember_secret(self, digest: bytes, account: str, key_id: str) -> None:
        self.secrets.append((digest, account, key_id))

    def row(self, account: str, key_id: str) -> KeyRow:
        return self.rows[(account, key_id)]  # changed in place: nothing else holds it

    def put_rows(self, rows: Sequence[KeyRow]) -> None:
        for row in rows:
            self.rows[(row.account, row.key_id)] = row

    def add_audit(self, event: Recorded, key_name: str | None, key_ids: Sequence[str]) -> None:
        account = event.account
        head = self.heads.get(account, GENESIS)
        self.audit.append(entry_values(event, key_name, head, stamp_text, json_text))
        self.heads[account] = event.chain
        position = event.position
        self.audit_keys.extend([(key_id, position) for key_id in key_ids])

    def drain(self) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]], list[tuple[bytes, str, str]]]:
        """The buffered rows that only grow; the buffers start empty again."""
        drained = self.audit, self.audit_keys, self.secrets
        self.audit, self.audit_keys, self.secrets = [], [], []
        return drained


def fresh_statements(
    views: SQLViews, statements: Sequence[str], index_name: Callable[[str], str]
) -> tuple[list[str], list[str]]:
    """Of the views' create statements, those of the projected tables under their fresh
    names, and those of their indexes, each named ``index_name(its name)``: (tables, indexes)."""
    names = {views.table(name): views.table(name) + FRESH_SUFFIX for name in PROJECTED}
    tables, indexes = [], []
    for statement in statements:
        if (found := _TABLE.match(statement)) and found[1] in names:
            tables.append(statement.replace(found[1], names[found[1]], 1))
        elif (found := _INDEX.match(statement)) and found[2] in names:
            indexes.append(f"CREATE INDEX {index_name(found[1])} ON {names[found[2]]} {found[3]}")
    if len(tables) != len(PROJECTED):
        raise RuntimeError("the views' create statements do not name every projected table")
    return tables, indexes


def index_of(statement: str) -> str | None:
    """The name of the index a create statement makes, if it makes one."""
    found = _INDEX.match(statement)
    return found[1] if found else None


def index_names(views: SQLViews, statements: Sequence[str]) -> list[str]:
    """The names of the projected tables' indexes, as the views' create statements give them."""
    tables = {views.table(name) for name in PROJECTED}
    return [found[1] for s in statements if (found := _INDEX.match(s)) and found[2] in tables]


def rebuild(
    views: SQLViews, read: ReadRecorded, total: int, progress: Progress | None, page: int
) -> tuple[int, ValidKeyIndex]:
    """Build the projected tables anew from the log and swap them in; returns the position
    they hold at the swap and the valid-key index as of it (see the module's docstring)."""
    fold = Fold()
    views.prepare_rebuild()
    position = 0
    if progress:
        progress(0, total)
    with _collector_spared() as spare:
        while position < total:
            events = read(position, page)
            if not events:
                break
            for event in events:
                project(event, fold)
            position = events[-1].position
            if len(fold.audit) >= LOAD_CHUNK:
                _load(views, _grown(fold))
            spare()
            if progress:
                progress(min(position, total), total)
        _load(views, _grown(fold))
        for writes in _state(fold):
            _load(views, writes)
    views.index_fresh()
    # What was recorded meanwhile, through the incremental path: in transactions of their
    # own while whole pages come, then what is left and the swap in one.
    while len(events := read(position, TAIL_PAGE)) == TAIL_PAGE:
        position = _apply(views, None, events, fold.index)
    with views.locked_transaction() as cursor:
        while events := read(position, TAIL_PAGE):
            position = _apply(views, cursor, events, fold.index)
        views.swap_in(cursor, position)
    views.drop_replaced()
    return position, fold.index


Writes = list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]
"""One load transaction: rows for fresh tables, as (table, columns, rows)."""


@contextmanager
def _collector_spared() -> Iterator[Callable[[], None]]:
    """Yields ``spare()``, which the fold calls after each page: it moves every object so
    far out of the cyclic garbage collector's reach (``gc.freeze``) until the fold ends.
    The folded state (a row per key, an entry per secret) holds no reference cycles, and
    without this each full collection would walk all of it again: a third of a rebuild's
    time at 1,000,000 keys. Collections of what is made after each freeze go on as usual.

    A host that froze objects itself (a pre-forking server does, before it forks) keeps
    its freeze: ``gc.unfreeze`` would release everything, its objects too, so then the
    fold's objects stay frozen as well (reference counting still frees them; only
    cycles among them would wait)."""
    host_froze = gc.get_freeze_count() > 0
    try:
        yield gc.freeze
    finally:
        if not host_froze:
            gc.unfreeze()


def _load(views: SQLViews, writes: Writes) -> None:
    """One load transaction, each table's rows in its primary key's order (the digests
    and key ids arrive in random order; sorted, each index page is written once)."""
    if not any(rows for _, _, rows in writes):
        return
    for table, _, rows in writes:
        rows.sort(key=PRIMARY_KEY[table])
    with views.load_transaction() as cursor:
        for table, columns, rows in writes:
            if rows:
                views.insert_fresh(cursor, table, columns, rows)


PRIMARY_KEY: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    "audit": itemgetter(0),
    "audit_keys": itemgetter(0, 1),
    "secrets": itemgetter(0),
    "valid": itemgetter(0),
    "keys": itemgetter(0, 1),
}
"""Each projected table's primary key, of a row in its ``Writes`` column order."""


def _apply(views: SQLViews, cursor: Any, events: list[Recorded], index: ValidKeyIndex) -> int:
    views.write_fresh(cursor, events, project)
    for event in events:
        index.apply(event)
    return events[-1].position


def _grown(fold: Fold) -> Writes:
    """The buffered rows that only grow, as one load transaction."""
    audit, audit_keys, secrets = fold.drain()
    return [
        ("audit", AUDIT_FIELDS, audit),
        ("audit_keys", ("key_id", "position"), audit_keys),
        ("secrets", ("digest", "account", "key_id"), secrets),
    ]


def _state(fold: Fold) -> Iterator[Writes]:
    """The folded valid keys and catalogue, in load transactions of ``STATE_CHUNK`` rows
    in their primary keys' order (each table then grows at its right-hand edge), emptying
    the catalogue as it goes (the valid keys stay: they become the follower's index)."""
    entries = fold.index.items()
    digests = sorted(digest for digest, _ in entries)
    lookup = fold.index.get
    for start in range(0, len(digests), STATE_CHUNK):
        chunk = []
        for digest in digests[start : start + STATE_CHUNK]:
            entry = lookup(digest)
            assert entry is not None
            chunk.append((digest, entry.account, entry.key_id, entry.name, stamp(entry.grace_until)))
        yield [("valid", VALID_COLUMNS, chunk)]
    del digests
    rows = fold.rows
    keys = sorted(rows)
    columns = KEY_COLUMNS.split(", ")
    for start in range(0, len(keys), STATE_CHUNK):
        yield [("keys", columns, [row_params(rows.pop(key)) for key in keys[start : start + STATE_CHUNK]])]
