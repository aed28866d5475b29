"""The durable views in SQL, shared by SQLite and PostgreSQL.

Five tables next to the events: the valid-key table, every digest ever issued, the key
catalogue, the audit trail (with a key -> position table, so a key's history includes
the user removal that ended it) and the last-used side table. Writes go in batches:
one transaction applies a run of events, buffering what they read and write, then
flushes with ``executemany`` and records the batch's last position in the tracking
table, all or nothing. Writers in several processes take a lock first (``BEGIN
IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) and skip events another process
has already applied.

Times are stored as fixed-width ISO 8601 text in UTC (microseconds always present), so
they sort as text exactly as they sort as times.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import Tracking

from keyledger.domain.chain import GENESIS
from keyledger.projections.audit import AUDIT_FIELDS, AuditEntry, AuditQuery, entry_values
from keyledger.projections.catalogue import KeyRow, KeyView
from keyledger.projections.ports import (
    VIEWS_NAME,
    ConsistentRead,
    Project,
    ReadRecorded,
    ViewStore,
    ViewWriter,
)
from keyledger.projections.recorded import (
    Recorded,
    RecordedKeyCreated,
    RecordedKeyEvent,
    RecordedKeyRegenerated,
    RecordedUserAccessRevoked,
)
from keyledger.projections.valid_keys import Principal, ValidKeyIndex

KEY_COLUMNS = (
    "account, key_id, name, purpose, application, created_by, created_at, created_position, hint, "
    "regenerated_at, revoked_at, revoked_reason, grace, next_grace_until"
)
AUDIT_COLUMNS = ", ".join(AUDIT_FIELDS)
KEY_MARKS = ", ".join("?" * len(KEY_COLUMNS.split(", ")))
AUDIT_MARKS = ", ".join("?" * len(AUDIT_FIELDS))
VALID_SELECT = "SELECT digest, account, key_id, name, valid_until FROM {valid}"


EventRow = tuple[int, Any, int, str, bytes]
"""A stored event as a row: position, originator id, version, topic, state."""
FRESH_SUFFIX = "_rebuild"
"""Ends the names of a rebuild's fresh tables (see ``keyledger.adapters.driven.sql_rebuild``)."""


def stamp(moment: datetime | None) -> str | None:
    """A time as fixed-width ISO 8601 text in UTC."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def stamp_text(text: str) -> str:
    """A time stored in an event (ISO 8601 text) as :func:`stamp` writes it. An event's
    times are UTC with microseconds, ``2026-11-28T21:30:00.123456Z``: only the zone's
    spelling differs, and it is swapped without parsing (a rebuild converts two per
    event); any other spelling is parsed and written again."""
    if len(text) == 27 and text[26] == "Z" and text[19] == "." and text[10] == "T":
        return text[:26] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a stored time has no time zone")
    return str(stamp(moment))


def json_text(value: Any) -> str:
    """``value`` as JSON text (how the audit trail stores an entry's details)."""
    return orjson.dumps(value).decode()


def unstamp(text: str | None) -> datetime | None:
    """A stored time back as a datetime."""
    return None if text is None else datetime.fromisoformat(text)


def _required(text: str) -> datetime:
    moment = unstamp(text)
    assert moment is not None
    return moment


def row_params(row: KeyRow) -> tuple[Any, ...]:
    grace = [[digest, hint, stamp(until)] for digest, (hint, until) in row.grace.items()]
    return (
        row.account, row.key_id, row.name, row.purpose, row.application, row.created_by,
        stamp(row.created_at), row.created_position, row.hint, stamp(row.regenerated_at),
        stamp(row.revoked_at), row.revoked_reason, orjson.dumps(grace).decode(),
        stamp(row.next_grace_until),
    )  # fmt: skip


def row_from(record: Any) -> KeyRow:
    grace = {digest: (hint, _required(until)) for digest, hint, until in orjson.loads(record["grace"])}
    return KeyRow(
        account=record["account"], key_id=record["key_id"], name=record["name"],
        purpose=record["purpose"], application=record["application"], created_by=record["created_by"],
        created_at=_required(record["created_at"]), created_position=record["created_position"],
        hint=record["hint"], regenerated_at=unstamp(record["regenerated_at"]),
        revoked_at=unstamp(record["revoked_at"]), revoked_reason=record["revoked_reason"], grace=grace,
    )  # fmt: skip


def entry_from_record(record: Any) -> AuditEntry:
    return AuditEntry(
        position=record["position"], account=record["account"], version=record["version"],
        action=record["action"], actor=record["actor"], key_id=record["key_id"],
        key_name=record["key_name"], occurred_at=_required(record["occurred_at"]),
        recorded_at=_required(record["recorded_at"]), details=orjson.loads(record["details"]),
        previous_position=record["previous_position"], chain=record["chain"],
        previous_chain=record["previous_chain"],
    )  # fmt: skip


ENTRY_SELECT = "SELECT account, key_id, name, valid_until FROM {valid} WHERE digest = ?"
ROW_SELECT = f"SELECT {KEY_COLUMNS} FROM {{keys}} WHERE account = ? AND key_id = ?"
HEAD_SELECT = "SELECT chain FROM {audit} WHERE account = ? ORDER BY position DESC LIMIT 1"
Read = tuple[str, tuple[Any, ...]]
"""One row a batch reads from the views: its statement (before :meth:`SQLViews.sql`) and parameters."""
Prefetched = Mapping[Read, Any]
"""Cursors that have run some of those reads in the writing transaction, by read."""


def usual_reads(events: Sequence[Recorded]) -> list[Read]:
    """The rows of the views that projecting ``events`` reads (unless an earlier event of
    the same batch wrote them): each account's latest audit entry, the catalogue row of
    each key an event changes, and the valid-key entry of each secret a regeneration
    retires. They follow from the events alone, so a network database can read them
    together, in one round trip (:meth:`SQLViews.write_in`); a read missing here is
    made when it is needed, and one made needlessly changes nothing. The account's audit
    head comes first: a rebuild's swap locks the audit table before the others
    (``PostgresViews.swap_in``), and these reads run before the views' lock is known."""
    reads: dict[Read, None] = {}
    for event in events:
        reads[(HEAD_SELECT, (event.account,))] = None
        if isinstance(event, RecordedKeyRegenerated):
            reads[(ENTRY_SELECT, (bytes.fromhex(event.retired_digest),))] = None
        if isinstance(event, RecordedKeyEvent) and not isinstance(event, RecordedKeyCreated):
            reads[(ROW_SELECT, (event.account, event.key_id))] = None
        elif isinstance(event, RecordedUserAccessRevoked):
            reads.update(((ROW_SELECT, (event.account, key_id)), None) for key_id in event.removed_key_ids)
    return list(reads)


class _Many:
    """``executemany`` that runs a single row with ``execute`` (a command's batch is one
    row per table; psycopg runs ``executemany`` as a pipeline, a round trip more)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if len(rows) == 1:
            self.cursor.execute(statement, rows[0])
        else:
            self.cursor.executemany(statement, rows)


class _Batch(ViewWriter):
    """The writes of one run of events, buffered and flushed at the end."""

    def __init__(
        self, views: SQLViews, cursor: Any, *, fresh: bool, suffix: str = "", read: Prefetched | None = None
    ) -> None:
        self.views, self.cursor, self.fresh = views, cursor, fresh
        self.suffix = suffix
        """Appended to each table's name: a rebuild's fresh tables are written as the others."""
        self.read = dict(read or {})
        """Rows already read in this transaction, each taken once (see :func:`usual_reads`)."""
        self.entries: dict[bytes, Principal | None] = {}
        self.secrets: dict[bytes, tuple[str, str]] = {}
        self.rows: dict[tuple[str, str], KeyRow] = {}
        self.heads: dict[str, str] = {}
        self.audit: list[tuple[Any, ...]] = []
        self.audit_keys: list[tuple[str, int]] = []

    def _one(self, statement: str, params: Sequence[Any]) -> Any:
        if self.fresh:
            return None
        cursor = self.read.pop((statement, tuple(params)), None)
        if cursor is None:
            cursor = self.cursor
            cursor.execute(self.views.sql(statement, self.suffix), params)
        return cursor.fetchone()

    def entry(self, digest: bytes) -> Principal | None:
        if digest in self.entries:
            return self.entries[digest]
        record = self._one(ENTRY_SELECT, [digest])
        if record is None:
            return None
        return Principal(record["account"], record["key_id"], record["name"], unstamp(record["valid_until"]))

    def change_entries(self, drops: Sequence[bytes], puts: Sequence[tuple[bytes, Principal]]) -> None:
        for digest in drops:
            self.entries[digest] = None
        self.entries.update(puts)

    def remember_secret(self, digest: bytes, account: str, key_id: str) -> None:
        self.secrets[digest] = (account, key_id)

    def row(self, account: str, key_id: str) -> KeyRow:
        found = self.rows.get((account, key_id))
        if found is None:
            record = self._one(ROW_SELECT, [account, key_id])
            if record is None:
                raise KeyError((account, key_id))
            found = self.rows[(account, key_id)] = row_from(record)
        return found

    def put_rows(self, rows: Sequence[KeyRow]) -> None:
        for row in rows:
            self.rows[(row.account, row.key_id)] = row

    def audit_head(self, account: str) -> str:
        """The chain of the account's latest audit entry (64 zeros if none)."""
        if account in self.heads:
            return self.heads[account]
        record = self._one(HEAD_SELECT, [account])
        return GENESIS if record is None else str(record["chain"])

    def add_audit(self, event: Recorded, key_name: str | None, key_ids: Sequence[str]) -> None:
        # The row straight from the stored fields: no AuditEntry model, and the times
        # kept as text (a rebuild writes one row per event).
        account = event.account
        self.audit.append(entry_values(event, key_name, self.audit_head(account), stamp_text, json_text))
        self.heads[account] = event.chain
        self.audit_keys.extend((key_id, event.position) for key_id in key_ids)

    def flush(self) -> None:
        views, cursor, suffix = self.views, _Many(self.cursor), self.suffix
        gone = [[digest] for digest, entry in self.entries.items() if entry is None]
        kept = [
            [digest, entry.account, entry.key_id, entry.name, stamp(entry.grace_until)]
            for digest, entry in self.entries.items()
            if entry is not None
        ]
        if gone:
            cursor.executemany(views.sql("DELETE FROM {valid} WHERE digest = ?", suffix), gone)
        if kept:
            cursor.executemany(
                views.sql(
                    "INSERT INTO {valid} (digest, account, key_id, name, valid_until) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (digest) DO UPDATE SET account = excluded.account, "
                    "key_id = excluded.key_id, name = excluded.name, valid_until = excluded.valid_until",
                    suffix,
                ),
                kept,
            )
        if self.secrets:
            cursor.executemany(
                views.sql("INSERT INTO {secrets} VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING", suffix),
                [[digest, account, key_id] for digest, (account, key_id) in self.secrets.items()],
            )
        if self.rows:
            updates = ", ".join(f"{c} = excluded.{c}" for c in KEY_COLUMNS.split(", ")[2:])
            cursor.executemany(
                views.sql(
                    f"INSERT INTO {{keys}} ({KEY_COLUMNS}) VALUES ({KEY_MARKS}) "
                    f"ON CONFLICT (account, key_id) DO UPDATE SET {updates}",
                    suffix,
                ),
                [row_params(row) for row in self.rows.values()],
            )
        if self.audit:
            cursor.executemany(
                views.sql(f"INSERT INTO {{audit}} ({AUDIT_COLUMNS}) VALUES ({AUDIT_MARKS})", suffix),
                self.audit,
            )
        if self.audit_keys:
            cursor.executemany(views.sql("INSERT INTO {audit_keys} VALUES (?, ?)", suffix), self.audit_keys)


class _SnapshotRead(ConsistentRead):
    """The views read in one snapshot transaction (see :meth:`SQLViews.consistent_read`)."""

    def __init__(self, views: SQLViews, cursor: Any) -> None:
        self.views, self.cursor = views, cursor
        self.position = views.position_in(cursor)  # the first read: the snapshot's moment
        views.plain_rows(cursor)

    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        new = tuple.__new__
        self.cursor.execute(self.views.sql(VALID_SELECT))
        for digest, account, key_id, name, until in self.cursor:
            until = None if until is None else datetime.fromisoformat(until)
            yield bytes(digest), new(Principal, (account, key_id, name, until))

    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        return self.views.audit_chains_in(self.cursor, after, upto)


class SQLViews(ViewStore):
    """The views as SQL tables; subclasses supply the dialect and the transactions."""

    TABLES = ("valid", "secrets", "keys", "audit", "audit_keys", "last_used", "settings")

    @abstractmethod
    def table(self, name: str) -> str:
        """The qualified name of one of :attr:`TABLES`."""

    @abstractmethod
    def locked_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction that holds the views' lock; yields a cursor."""

    @abstractmethod
    def read_cursor(self) -> AbstractContextManager[Any]:
        """A read-only transaction; yields a cursor."""

    @abstractmethod
    def _max_tracking_id(self, application_name: str, c: Any) -> int | None: ...

    @abstractmethod
    def _insert_tracking(self, c: Any, tracking: Tracking) -> None: ...

    @abstractmethod
    def _delete_tracking(self, c: Any) -> None: ...

    placeholder = "?"
    _sql_texts: dict[tuple[str, str], str]

    def writes_together(self, cursor: Any) -> AbstractContextManager[Any]:
        """Around a batch's writes on ``cursor`` and its position, which read nothing back
        but the position's own result: a network database sends them in one round trip
        (SQLite runs each in process). Yields the cursor to record the position with."""
        return nullcontext(cursor)

    def sql(self, statement: str, suffix: str = "") -> str:
        """``statement`` with table names filled in (each ending with ``suffix``: a
        rebuild's fresh tables) and this dialect's placeholders."""
        # Kept by statement: a command's batch fills in the same handful every time.
        try:
            texts = self._sql_texts
        except AttributeError:
            texts = self._sql_texts = {}
        text = texts.get((statement, suffix))
        if text is None:
            names = {name: self.table(name) + suffix for name in self.TABLES}
            text = statement.format(**names)
            if self.placeholder != "?":
                text = text.replace("?", self.placeholder)
            texts[(statement, suffix)] = text
        return text

    def position(self) -> int:
        with self.read_cursor() as cursor:
            return self._max_tracking_id(VIEWS_NAME, cursor) or 0

    def write(self, events: Sequence[Recorded], project: Project, *, after: int) -> bool:
        if not events:
            return True
        with self.locked_transaction() as cursor:
            return self.write_in(cursor, events, project, after=after)

    def try_lock_in(self, cursor: Any) -> bool:
        """Take the views' lock in the caller's transaction if it is free (SQLite: the
        caller's write transaction already excludes every other writer)."""
        return True

    def position_in(self, cursor: Any) -> int:
        """The views' position, read in the caller's transaction."""
        return self._max_tracking_id(VIEWS_NAME, cursor) or 0

    def write_in(
        self,
        cursor: Any,
        events: Sequence[Recorded],
        project: Project,
        *,
        after: int,
        position: int | None = None,
        read: Prefetched | None = None,
    ) -> bool:
        """Apply ``events`` in the caller's write transaction, which must hold the views'
        lock (or the database's write lock); ``False`` if the views are not at ``after``.
        ``position``: the views' position, if the caller read it in this transaction;
        ``read``: rows the caller has read in it since (see :func:`usual_reads`)."""
        if position is None:
            position = self.position_in(cursor)
        if position != after:
            return False
        batch = _Batch(self, cursor, fresh=position == 0, read=read)
        for event in events:
            project(event, batch)
        with self.writes_together(cursor) as tracking_cursor:
            batch.flush()
            self.record_position(tracking_cursor, events[-1].position)
        return True

    def record_position(self, cursor: Any, position: int) -> None:
        """Record the views' new position in the caller's transaction; raises if the
        tracking table already holds a later one (eventsourcing's check)."""
        self._insert_tracking(cursor, Tracking(VIEWS_NAME, position))

    def _select(self, statement: str, params: Sequence[Any]) -> list[Any]:
        with self.read_cursor() as cursor:
            cursor.execute(self.sql(statement), params)
            return list(cursor.fetchall())

    def valid_entries(self) -> Iterator[tuple[bytes, Principal]]:
        # Plain tuples and no per-row call but tuple's own: opening a ledger reads every
        # row of this table before it verifies anything.
        new = tuple.__new__
        with self.read_cursor() as cursor:
            self.plain_rows(cursor)
            cursor.execute(self.sql(VALID_SELECT))
            # Row by row, not in batches: rows held in a batch outlive young-generation
            # collections and get promoted, and the full passes they bring on slow the
            # opening of a large ledger.
            for digest, account, key_id, name, until in cursor:
                until = None if until is None else datetime.fromisoformat(until)
                yield bytes(digest), new(Principal, (account, key_id, name, until))

    @abstractmethod
    def plain_rows(self, cursor: Any) -> None:
        """Make ``cursor`` return rows as plain tuples."""

    def _views(self, where: str, params: Sequence[Any], now: datetime) -> list[KeyView]:
        records = self._select(
            f"SELECT {', '.join('k.' + c for c in KEY_COLUMNS.split(', '))}, u.last_used_at FROM {{keys}} k "
            "LEFT JOIN {last_used} u ON u.account = k.account AND u.key_id = k.key_id "
            f"WHERE {where} ORDER BY k.created_position",
            params,
        )
        return [row_from(r).view(now, unstamp(r["last_used_at"])) for r in records]

    def keys(self, account: str, now: datetime) -> list[KeyView]:
        return self._views("k.account = ?", [account], now)

    def keys_page(self, account: str, now: datetime, *, offset: int, limit: int) -> list[KeyView]:
        records = self._select(
            f"SELECT {', '.join('k.' + c for c in KEY_COLUMNS.split(', '))}, u.last_used_at FROM {{keys}} k "
            "LEFT JOIN {last_used} u ON u.account = k.account AND u.key_id = k.key_id "
            "WHERE k.account = ? ORDER BY k.created_position DESC LIMIT ? OFFSET ?",
            [account, limit, offset],
        )
        return [row_from(r).view(now, unstamp(r["last_used_at"])) for r in records]

    def key_counts(self, account: str) -> tuple[int, int]:
        record = self._select(
            "SELECT COUNT(*) AS total, COUNT(*) - COUNT(revoked_at) AS active FROM {keys} WHERE account = ?",
            [account],
        )[0]
        return int(record["total"]), int(record["active"])

    def key(self, account: str, key_id: str, now: datetime) -> KeyView | None:
        found = self._views("k.account = ? AND k.key_id = ?", [account, key_id], now)
        return found[0] if found else None

    def accounts_with_grace_due(self, now: datetime) -> list[str]:
        records = self._select(
            "SELECT DISTINCT account FROM {keys} "
            "WHERE next_grace_until IS NOT NULL AND next_grace_until <= ?",
            [stamp(now)],
        )
        return [r["account"] for r in records]

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        conditions: list[str] = []
        params: list[Any] = []
        source = "{audit} a"
        if query.key_id is not None:
            source = "{audit_keys} k JOIN {audit} a ON a.position = k.position"
            conditions.append("k.key_id = ?")
            params.append(query.key_id)
        for column, value in (("account", query.account), ("actor", query.actor)):
            if value is not None:
                conditions.append(f"a.{column} = ?")
                params.append(value)
        if query.actions is not None:
            conditions.append(f"a.action IN ({', '.join('?' * len(query.actions))})")
            params.extend(query.actions)
        if query.since is not None:
            conditions.append("a.occurred_at >= ?")
            params.append(stamp(query.since))
        if query.until is not None:
            conditions.append("a.occurred_at < ?")
            params.append(stamp(query.until))
        if query.after is not None:
            conditions.append("a.position > ?")
            params.append(query.after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        columns = ", ".join("a." + c for c in AUDIT_COLUMNS.split(", "))
        records = self._select(
            f"SELECT {columns} FROM {source} {where} ORDER BY a.position LIMIT ?", [*params, query.limit]
        )
        return [entry_from_record(r) for r in records]

    def audit_chains(self, after: int, upto: int) -> dict[int, str]:
        with self.read_cursor() as cursor:
            self.plain_rows(cursor)
            return self.audit_chains_in(cursor, after, upto)

    def audit_chains_in(self, cursor: Any, after: int, upto: int) -> dict[int, str]:
        """:meth:`audit_chains`, read with the caller's cursor (plain rows)."""
        cursor.execute(
            self.sql("SELECT position, chain FROM {audit} WHERE position > ? AND position <= ?"),
            [after, upto],
        )
        return {int(position): str(chain) for position, chain in cursor.fetchall()}

    @abstractmethod
    def snapshot_transaction(self) -> AbstractContextManager[Any]:
        """A read-only transaction that sees the database as of one moment until it
        ends, whatever other connections commit meanwhile; yields a cursor."""

    @contextmanager
    def consistent_read(self) -> Iterator[ConsistentRead]:
        with self.snapshot_transaction() as cursor:
            yield _SnapshotRead(self, cursor)

    def secret_owner(self, digest: bytes) -> tuple[str, str] | None:
        records = self._select("SELECT account, key_id FROM {secrets} WHERE digest = ?", [digest])
        return (records[0]["account"], records[0]["key_id"]) if records else None

    def setting(self, name: str) -> str | None:
        records = self._select("SELECT value FROM {settings} WHERE name = ?", [name])
        return str(records[0]["value"]) if records else None

    def record_setting(self, name: str, value: str, *, replace: bool) -> str:
        conflict = "DO UPDATE SET value = excluded.value" if replace else "DO NOTHING"
        with self.locked_transaction() as cursor:
            cursor.execute(
                self.sql(
                    f"INSERT INTO {{settings}} (name, value) VALUES (?, ?) ON CONFLICT (name) {conflict}"
                ),
                [name, value],
            )
            cursor.execute(self.sql("SELECT value FROM {settings} WHERE name = ?"), [name])
            return str(cursor.fetchone()["value"])

    def key_hints(self) -> set[str]:
        hints = {str(r["hint"]) for r in self._select("SELECT hint FROM {keys} WHERE hint IS NOT NULL", [])}
        for record in self._select("SELECT grace FROM {keys} WHERE grace <> '[]'", []):
            hints.update(str(hint) for _, hint, _ in orjson.loads(record["grace"]))
        return hints

    def record_use(self, uses: Iterable[tuple[str, str, datetime]]) -> None:
        params = [[account, key_id, stamp(when)] for account, key_id, when in uses]
        if not params:
            return
        with self.locked_transaction() as cursor:
            cursor.executemany(
                self.sql(
                    "INSERT INTO {last_used} VALUES (?, ?, ?) ON CONFLICT (account, key_id) DO UPDATE "
                    "SET last_used_at = excluded.last_used_at "
                    "WHERE {last_used}.last_used_at < excluded.last_used_at"
                ),
                params,
            )

    def reset(self) -> None:
        with self.locked_transaction() as cursor:
            for name in self.TABLES:
                if name not in ("last_used", "settings"):
                    cursor.execute(self.sql(f"DELETE FROM {{{name}}}"))
            self._delete_tracking(cursor)

    # Rebuilding as a bulk job: keyledger.adapters.driven.sql_rebuild drives it through
    # these, which each dialect completes.

    def rebuild(
        self, read: ReadRecorded, total: int, progress: Callable[[int, int], None] | None, *, page: int
    ) -> tuple[int, ValidKeyIndex]:
        from keyledger.adapters.driven import sql_rebuild  # it builds on this module

        return sql_rebuild.rebuild(self, read, total, progress, page)

    @abstractmethod
    def prepare_rebuild(self) -> None:
        """Drop the tables an earlier rebuild left behind and create the fresh ones."""

    def load_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction on a rebuild's fresh tables; yields a cursor. It need not
        hold the views' lock (nothing else writes those tables)."""
        return self.locked_transaction()

    def insert_fresh(
        self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert ``rows`` into the fresh table of ``table`` (one of :attr:`TABLES`)."""
        marks = ", ".join("?" * len(columns))
        statement = f"INSERT INTO {{{table}}} ({', '.join(columns)}) VALUES ({marks})"
        cursor.executemany(self.sql(statement, FRESH_SUFFIX), rows)

    def index_fresh(self) -> None:
        """Build the fresh tables' indexes, where a dialect builds them after the load."""

    def write_fresh(self, cursor: Any, events: Sequence[Recorded], project: Project) -> None:
        """Apply ``events`` to the fresh tables through the incremental path, in the
        caller's transaction (``cursor``) or in one of their own (``None``)."""
        if cursor is None:
            with self.load_transaction() as own:
                self.write_fresh(own, events, project)
            return
        batch = _Batch(self, cursor, fresh=False, suffix=FRESH_SUFFIX)
        for event in events:
            project(event, batch)
        batch.flush()

    @abstractmethod
    def swap_in(self, cursor: Any, position: int) -> None:
        """In the caller's locked transaction: the fresh tables become the views, at ``position``."""

    def drop_replaced(self) -> None:
        """Drop the tables the swap replaced, if it kept them."""

    def create_statements(self, *, blob: str, position: str, time: str, clustered: str = "") -> list[str]:
        """The statements that create the views' tables and indexes. ``clustered`` ends the
        tables whose rows are looked up only by their primary key (SQLite's ``WITHOUT
        ROWID``: one B-tree instead of a table and its key's index, a page less to write
        for each row a command changes)."""
        t = {name: self.table(name) for name in self.TABLES}
        prefix = "keyledger_"
        return [
            f"CREATE TABLE IF NOT EXISTS {t['valid']} (digest {blob} PRIMARY KEY, account TEXT NOT NULL, "
            f"key_id TEXT NOT NULL, name TEXT NOT NULL, valid_until {time}){clustered}",
            f"CREATE TABLE IF NOT EXISTS {t['secrets']} (digest {blob} PRIMARY KEY, account TEXT NOT NULL, "
            f"key_id TEXT NOT NULL){clustered}",
            f"CREATE TABLE IF NOT EXISTS {t['keys']} (account TEXT NOT NULL, key_id TEXT NOT NULL, "
            "name TEXT NOT NULL, purpose TEXT NOT NULL, application TEXT NOT NULL, created_by TEXT NOT NULL, "
            f"created_at {time} NOT NULL, created_position BIGINT NOT NULL, hint TEXT, "
            f"regenerated_at {time}, "
            f"revoked_at {time}, revoked_reason TEXT, grace TEXT NOT NULL, next_grace_until {time}, "
            "PRIMARY KEY (account, key_id))",
            f"CREATE INDEX IF NOT EXISTS {prefix}keys_created ON {t['keys']} (account, created_position)",
            f"CREATE INDEX IF NOT EXISTS {prefix}keys_grace ON {t['keys']} (next_grace_until) "
            "WHERE next_grace_until IS NOT NULL",
            f"CREATE TABLE IF NOT EXISTS {t['audit']} (position {position} PRIMARY KEY, "
            "account TEXT NOT NULL, version BIGINT NOT NULL, action TEXT NOT NULL, actor TEXT, key_id TEXT, "
            f"key_name TEXT, occurred_at {time} NOT NULL, recorded_at {time} NOT NULL, "
            "details TEXT NOT NULL, previous_position BIGINT NOT NULL, "
            "chain TEXT NOT NULL, previous_chain TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {prefix}audit_account ON {t['audit']} (account, position)",
            f"CREATE INDEX IF NOT EXISTS {prefix}audit_account_time ON {t['audit']} (account, occurred_at)",
            f"CREATE INDEX IF NOT EXISTS {prefix}audit_actor ON {t['audit']} (actor, position)",
            f"CREATE INDEX IF NOT EXISTS {prefix}audit_action ON {t['audit']} (action, position)",
            f"CREATE INDEX IF NOT EXISTS {prefix}audit_time ON {t['audit']} (occurred_at)",
            f"CREATE TABLE IF NOT EXISTS {t['audit_keys']} (key_id TEXT NOT NULL, position BIGINT NOT NULL, "
            f"PRIMARY KEY (key_id, position)){clustered}",
            f"CREATE TABLE IF NOT EXISTS {t['last_used']} (account TEXT NOT NULL, key_id TEXT NOT NULL, "
            f"last_used_at {time} NOT NULL, PRIMARY KEY (account, key_id))",
            f"CREATE TABLE IF NOT EXISTS {t['settings']} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]
