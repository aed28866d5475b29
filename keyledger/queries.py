"""The read side: keys, the audit trail, exports, reports, integrity and checkpoints.

Each reads the durable views (or, for a past instant, replays the account's events)
through the :class:`~keyledger.connection.Connection`; none changes the ledger. The
arguments are checked here and refused as :class:`InvalidInput` naming the argument.
See :class:`keyledger.Ledger` for what each answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from keyledger.commands import Commands
from keyledger.connection import Connection
from keyledger.domain import InvalidInput, Keyring
from keyledger.domain.inputs import check_identifier
from keyledger.export import ExportCheckpoint, Format, Scope, write_export
from keyledger.history import keys_at, replay
from keyledger.integrity import check_integrity, take_checkpoint
from keyledger.projections.audit import MAX_LIMIT, AuditEntry, AuditQuery
from keyledger.projections.catalogue import KeyView
from keyledger.report import ComplianceReport, build_report
from keyledger.results import AccountSummary, Checkpoint, IntegrityReport, KeyPage
from keyledger.verifier import aware, past

MAX_PAGE = 1000
"""The most keys one page holds."""

EXPORT_FILTERS = frozenset({"account", "key_id", "actor", "action", "since", "until"})
Progress = Callable[[int, int], None]


class Queries:
    """What a Ledger answers from its views and events."""

    def __init__(self, connection: Connection, now: Callable[[], datetime], commands: Commands) -> None:
        self._connection = connection
        self._now = now
        self._commands = commands

    def keys(self, account: str, at: datetime | None) -> list[KeyView]:
        connection = self._connection
        account = check_identifier("account", account)
        now = self._now()
        current = connection.guard(lambda: connection.views.keys(account, now))
        if at is None:
            return current
        moment = past("at", at, now)
        views = connection.guard(lambda: replay(connection.app.recorder, connection.mapper, account, moment))
        return keys_at(views, account, moment, {k.key_id: k.created_position for k in current})

    def keys_page(self, account: str, offset: int, limit: int) -> KeyPage:
        connection = self._connection
        account = check_identifier("account", account)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput("offset", "must be a whole number, 0 or more")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_PAGE}")
        now = self._now()
        views = connection.views

        def read() -> KeyPage:
            keys = views.keys_page(account, now, offset=offset, limit=limit)
            total, active = views.key_counts(account)
            return KeyPage(keys=keys, total=total, active=active)

        return connection.guard(read)

    def key(self, account: str, key_id: str) -> KeyView | None:
        connection = self._connection
        account, key_id = check_identifier("account", account), text("key_id", key_id)
        return connection.guard(lambda: connection.views.key(account, key_id, self._now()))

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        connection = self._connection
        return connection.guard(lambda: connection.views.audit(query))

    def history(self, account: str, key_id: str) -> list[AuditEntry]:
        account, key_id = check_identifier("account", account), text("key_id", key_id)
        return list(self.pages(AuditQuery.build(account=account, key_id=key_id, limit=MAX_LIMIT)))

    def pages(self, query: AuditQuery) -> Iterator[AuditEntry]:
        """Every entry ``query`` matches, a page at a time."""
        connection = self._connection
        while page := connection.guard(partial(connection.views.audit, query)):
            yield from page
            query = query.model_copy(update={"after": page[-1].position})

    def export_audit(
        self, path: str | Path | IO[str], format: Format, filters: dict[str, Any]
    ) -> ExportCheckpoint:
        if "limit" in filters or "after" in filters:
            raise InvalidInput("filters", "an export takes every matching entry: no limit or after")
        unknown = sorted(set(filters) - EXPORT_FILTERS)
        if unknown:
            known = ", ".join(sorted(EXPORT_FILTERS))
            raise InvalidInput("filters", f"unknown filter {unknown[0]!r}; the filters are {known}")
        query = AuditQuery.build(limit=MAX_LIMIT, **filters)
        chosen = {name for name, value in filters.items() if value is not None}
        scope: Scope = "full" if not chosen else ("account" if chosen == {"account"} else "filtered")
        shown = query.model_dump(mode="json", exclude={"limit", "after"}, exclude_none=True)
        return write_export(self.pages(query), path, format, scope, shown)

    def rebuild(self, progress: Progress | None) -> int:
        callback("progress", progress)
        connection = self._connection
        return connection.guard(lambda: connection.follower.rebuild(progress))

    def report(
        self, account: str, now: datetime | None, stale_after: timedelta, unused_after: timedelta
    ) -> ComplianceReport:
        moment = self._now() if now is None else aware("now", now)
        account = check_identifier("account", account)
        for field, period in (("stale_after", stale_after), ("unused_after", unused_after)):
            if not isinstance(period, timedelta) or period <= timedelta(0):
                raise InvalidInput(field, "must be a positive timedelta")
        connection = self._connection
        # The count of working keys of revoked users (created by or issued to them) comes
        # from the Keyring alone (the consistency boundary): the views may be a moment
        # older or newer than it.
        with connection.lock_for(account):
            keyring = connection.guard(lambda: self._commands.load(account, moment))
            orphans = len(keyring.working_keys_of_revoked_users(moment))
        keys = connection.guard(lambda: connection.views.keys(account, moment))
        return build_report(account, keys, orphans, moment, stale_after, unused_after)

    def check_integrity(self, progress: Progress | None, checkpoint: Checkpoint | None) -> IntegrityReport:
        callback("progress", progress)
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise InvalidInput("checkpoint", "must be a Checkpoint (Checkpoint.model_validate_json reads it)")
        connection = self._connection
        return connection.guard(
            lambda: check_integrity(
                connection.app.recorder, connection.mapper, progress, connection.views, checkpoint
            )
        )

    def checkpoint(self) -> Checkpoint:
        connection = self._connection
        now = self._now()
        return connection.guard(lambda: take_checkpoint(connection.app.recorder, connection.mapper, now))

    def sync(self) -> None:
        connection = self._connection
        connection.ready()
        connection.usage.flush()
        connection.guard(connection.follower.catch_up)

    def accounts(self) -> list[AccountSummary]:
        """Every account with events, by name: its events, keys and active keys. Reads
        each stream's head from the log (as :meth:`checkpoint` does), then each
        account's keys from the catalogue."""
        connection = self._connection
        now = self._now()
        heads = connection.guard(lambda: take_checkpoint(connection.app.recorder, connection.mapper, now))
        summaries = []
        for account, head in heads.accounts.items():
            keys = connection.guard(partial(connection.views.keys, account, now))
            active = sum(1 for key in keys if key.status == "active")
            summaries.append(
                AccountSummary(account=account, events=head.version, keys=len(keys), active_keys=active)
            )
        return summaries

    def has_events(self, account: str) -> bool:
        """Whether the account has any event (one indexed read of its stream)."""
        account = check_identifier("account", account)
        connection = self._connection
        stream = Keyring.id_for(account)
        return bool(connection.guard(lambda: connection.app.recorder.select_events(stream, limit=1)))

    def accounts_with_grace_due(self) -> Sequence[str]:
        """The accounts with a grace deadline at or before now (after a catch-up)."""
        connection = self._connection
        connection.guard(connection.follower.catch_up)
        return connection.guard(lambda: connection.views.accounts_with_grace_due(self._now()))


def text(field: str, value: object) -> str:
    """``value`` if it is a string, else :class:`InvalidInput` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    return value


def callback(field: str, value: object) -> None:
    """Refuse ``value`` unless it is a function or ``None``."""
    if value is not None and not callable(value):
        raise InvalidInput(field, "must be a function or None")
