"""The Ledger: the application service that commands, queries and verifies.

A Ledger is the only caller of the repository and of ``save``: each command loads the
account's Keyring, lets it check its rules and trigger events, and appends them in one
transaction. When another writer appended to the same account first, the command reloads
and decides again, up to ``max_attempts`` times, then raises :class:`Conflict`; nothing
is recorded twice, because each attempt appends at the version it read.

After a command returns, this process's views already include its events, so
verification refuses an ended secret the instant the command returns. Once a command's
events are committed, it returns its result: a failure after the commit (bringing the
views up) is logged, and this process refuses every credential until its follower has
caught up.

Verification fails closed: a ledger that cannot show its index is current (no
confirmation for longer than ``max_lag``, closed, or forked and not yet reconnected)
refuses every credential, and :meth:`Ledger.health` says why.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, project_aggregate
from eventsourcing.persistence import IntegrityError, MapperDeserialisationError, PersistenceError, Recording
from pydantic import SecretStr

from keyledger.adapters.sql_views import ViewsWithin
from keyledger.adapters.stores import StoreSettings, parse_url, resolve_url
from keyledger.adapters.transcoding import PydanticMapper
from keyledger.adapters.turns import AccountTurns, turns_for
from keyledger.application import KeyringApplication, creating_tables
from keyledger.domain import (
    DEFAULT_ACCOUNT,
    Actor,
    Conflict,
    IntegrityViolation,
    InvalidInput,
    KeyLedgerError,
    Keyring,
    NewSecret,
    StoreUnavailable,
)
from keyledger.domain import keys as keyformat
from keyledger.domain.inputs import (
    APPLICATION_MAX,
    NAME_MAX,
    PURPOSE_MAX,
    REASON_MAX,
    check_identifier,
    check_label,
    check_notes,
)
from keyledger.export import ExportCheckpoint, Format, Scope, write_export
from keyledger.history import keys_at, replay
from keyledger.integrity import check_integrity, take_checkpoint
from keyledger.projections.audit import DEFAULT_LIMIT, MAX_LIMIT, AuditEntry, AuditQuery
from keyledger.projections.catalogue import KeyView
from keyledger.projections.valid_keys import ValidKeyIndex
from keyledger.report import DEFAULT_STALE_AFTER, DEFAULT_UNUSED_AFTER, ComplianceReport, build_report
from keyledger.results import Checkpoint, Health, IntegrityReport, IssuedKey, Principal
from keyledger.usage import UsageRecorder
from keyledger.views import EventUnreadable, Follower

T = TypeVar("T")
Clock = Callable[[], datetime]
logger = logging.getLogger("keyledger")

DEFAULT_GRACE_PERIOD = timedelta(hours=12)
MIN_GRACE_PERIOD = timedelta(minutes=1)
MAX_GRACE_PERIOD = timedelta(days=7)
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_MAX_LAG = timedelta(seconds=5)
MIN_MAX_LAG = timedelta(milliseconds=100)
MAX_MAX_LAG = timedelta(days=1)
ALWAYS_CURRENT = 1e18
"""The lag allowed a ledger no other process writes to (``memory://``): its index is
current by construction."""
_monotonic = time.monotonic
RETRY_PAUSE = 0.05
"""Seconds a ledger that does not follow waits after a failed catch-up before a
verification tries again (each refused meanwhile)."""
EXPORT_FILTERS = frozenset({"account", "key_id", "actor", "action", "since", "until"})
LOCK_STRIPES = 64
"""Commands on accounts whose names hash alike wait for each other, in one process."""
PREFIX_VARIABLE = "KEYLEDGER_KEY_PREFIX"
GRACE_VARIABLE = "KEYLEDGER_GRACE_SECONDS"


def system_clock() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Ledger:
    """An event-sourced ledger of API keys; open one with :meth:`Ledger.open`."""

    def __init__(
        self,
        app: KeyringApplication,
        *,
        store: str,
        grace_period: timedelta = DEFAULT_GRACE_PERIOD,
        key_prefix: str = keyformat.DEFAULT_PREFIX,
        clock: Clock = system_clock,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        strict: bool = False,
        follow: bool = True,
        turns: AccountTurns | None = None,
        max_lag: timedelta = DEFAULT_MAX_LAG,
        reopen: Callable[[], tuple[KeyringApplication, AccountTurns]] | None = None,
    ) -> None:
        if (
            not isinstance(grace_period, timedelta)
            or not MIN_GRACE_PERIOD <= grace_period <= MAX_GRACE_PERIOD
        ):
            raise InvalidInput("grace_period", "must be a timedelta from 1 minute to 7 days")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("max_attempts", "must be a positive integer")
        if not isinstance(max_lag, timedelta) or not MIN_MAX_LAG <= max_lag <= MAX_MAX_LAG:
            raise InvalidInput("max_lag", "must be a timedelta from 100 milliseconds to 1 day")
        self._app = app
        self.store = store
        """The store this ledger writes to, without any password."""
        self.grace_period = grace_period
        self.key_prefix = keyformat.check_prefix(key_prefix)
        self._clock = clock
        self._parser = keyformat.parser_for(self.key_prefix)
        self._digest = self._parser.digest
        self._max_attempts = max_attempts
        self.strict = strict
        """Whether :meth:`verify` checks the log head before every answer."""
        self.max_lag = max_lag
        """How long verification may go without confirming it holds every event of the
        log before it refuses every credential (ledgers other processes write to)."""
        self._lag = max_lag.total_seconds() if app.is_shared else ALWAYS_CURRENT
        self._follow_others = follow and app.is_shared
        self._reopen = reopen
        self._closed = False
        self._forked = False
        self._fork_consistent = True
        self._reopening = threading.Lock()
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._sweep_interval: float | None = None
        self._account_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._threads: list[Follower | UsageRecorder] = []
        # Stops this ledger's threads when it is closed, garbage-collected, or left open
        # at exit (before the interpreter finalizes, when a thread touching the store can
        # crash it).
        self._finalizer = weakref.finalize(self, _stop_threads, self._stopping, self._threads)
        self._attach(app, turns or AccountTurns(), None)
        self._now()  # a clock that returns naive datetimes is refused here, not on the hot path
        _OPEN_LEDGERS.add(self)

    def _attach(
        self, app: KeyringApplication, turns: AccountTurns, start: tuple[ValidKeyIndex, int] | None
    ) -> None:
        """Take ``app``'s store for the views, this process's follower and usage
        recorder; start following other processes if this ledger does."""
        mapper = app.mapper
        assert isinstance(mapper, PydanticMapper)
        self._app = app
        self._mapper = mapper
        self._turns = turns
        self._store = self._translate(app.construct_views)
        self._follower = self._translate(lambda: Follower(app.recorder, mapper, self._store, start))
        if isinstance(app.recorder, ViewsWithin):
            app.recorder.within = self._follower.within
        self._usage = UsageRecorder(self._store, self._clock)
        self._uses = self._usage.pending
        self._threads[:] = [self._follower, self._usage]
        if self._follow_others:
            self._follower.follow(subscribe=app.can_subscribe, confirm_every=self._lag / 4)

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        grace_period: timedelta | None = None,
        key_prefix: str | None = None,
        clock: Clock = system_clock,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        strict: bool = False,
        follow: bool = True,
        max_lag: timedelta = DEFAULT_MAX_LAG,
    ) -> Ledger:
        """Open the ledger stored at ``url`` (else ``KEYLEDGER_URL``, else ``./keyledger.db``).

        ``grace_period`` is how long a secret retired with grace keeps working (1 minute
        to 7 days; default ``KEYLEDGER_GRACE_SECONDS``, else 12 hours); ``key_prefix``
        starts every key this ledger issues (default ``KEYLEDGER_KEY_PREFIX``, else
        ``kl``): services and the CLI that share a ledger should share these settings; ``clock`` returns
        the current time (timezone-aware), for tests and demos. With ``strict``, every
        verification first checks the log head (read-your-writes across processes).
        ``follow`` starts the thread that applies other processes' events (SQLite and
        PostgreSQL only); without it, the views catch up at the next command, and a
        verification more than ``max_lag`` after the last catch-up catches up first.
        ``max_lag`` (100 ms to 1 day, default 5 s): once this process has gone longer
        than that without confirming it holds every event of the log (its follower
        stuck, the store unreachable), :meth:`verify` refuses every credential until it
        has caught up again, and :meth:`health` says why.
        """
        settings = parse_url(resolve_url(url))
        key_prefix = keyformat.check_prefix(
            key_prefix
            if key_prefix is not None
            else os.environ.get(PREFIX_VARIABLE) or keyformat.DEFAULT_PREFIX
        )
        grace_period = grace_period if grace_period is not None else _grace_from_environment()
        reopen = partial(_connect, settings)
        app, turns = reopen()
        try:
            return cls(
                app,
                store=settings.describe(),
                grace_period=grace_period,
                key_prefix=key_prefix,
                clock=clock,
                max_attempts=max_attempts,
                strict=strict,
                follow=follow,
                turns=turns,
                max_lag=max_lag,
                reopen=reopen,
            )
        except BaseException:
            turns.close()
            app.close()
            raise

    # Commands

    def create_key(self, actor: Actor, *, name: str, purpose: str = "", application: str = "") -> IssuedKey:
        """Create a key in the actor's account; its secret is returned this once."""
        actor = self._acting(actor)
        name = self._no_key("name", check_label("name", name, maximum=NAME_MAX, required=True))
        purpose = self._no_key("purpose", check_notes("purpose", purpose, maximum=PURPOSE_MAX))
        application = self._no_key(
            "application", check_label("application", application, maximum=APPLICATION_MAX, required=False)
        )
        secret = self._new_secret()
        key_id = self._command(
            actor.account,
            lambda keyring, now: keyring.create_key(
                actor,
                name=name,
                purpose=purpose,
                application=application,
                secret=_described(secret),
                now=now,
            ),
        )
        logger.info("key %s created in account %r by %r", key_id, actor.account, actor.user_id)
        return IssuedKey(
            account=actor.account, key_id=key_id, secret=SecretStr(secret), hint=keyformat.hint(secret)
        )

    def regenerate_key(self, actor: Actor, key_id: str, *, grace: bool = True) -> IssuedKey:
        """Issue a new secret for a key. With ``grace`` the old one works for the grace
        period more (its own deadline, never extended); without, it stops at once, and
        so does every older secret still in grace."""
        actor = self._acting(actor)
        key_id = _text("key_id", key_id)
        if not isinstance(grace, bool):
            raise InvalidInput("grace", "must be True or False")
        secret = self._new_secret()
        period = self.grace_period if grace else None
        until = self._command(
            actor.account,
            lambda keyring, now: keyring.regenerate_key(
                actor, key_id, secret=_described(secret), grace=period, now=now
            ),
        )
        logger.info("key %s regenerated (%s) by %r", key_id, "grace" if grace else "immediate", actor.user_id)
        return IssuedKey(
            account=actor.account,
            key_id=key_id,
            secret=SecretStr(secret),
            hint=keyformat.hint(secret),
            previous_valid_until=until,
        )

    def revoke_key(self, actor: Actor, key_id: str, *, reason: str | None = None) -> None:
        """Revoke a key: none of its secrets works again."""
        actor = self._acting(actor)
        key_id = _text("key_id", key_id)
        if reason is not None:
            reason = self._no_key("reason", check_notes("reason", reason, maximum=REASON_MAX))
        self._command(
            actor.account, lambda keyring, now: keyring.revoke_key(actor, key_id, reason=reason, now=now)
        )
        logger.info("key %s revoked by %r", key_id, actor.user_id)

    def revoke_user_access(self, actor: Actor, user_id: str) -> list[str]:
        """Revoke a user's access to the actor's account, and every key they created, in
        one atomic append; returns the key ids removed."""
        actor = self._acting(actor)
        user_id = self._no_key("user_id", check_identifier("user_id", user_id))
        removed = self._command(
            actor.account, lambda keyring, now: keyring.revoke_user_access(actor, user_id, now=now)
        )
        logger.info("access of %r revoked by %r; %d keys removed", user_id, actor.user_id, len(removed))
        return removed

    def restore_user_access(self, actor: Actor, user_id: str) -> None:
        """Let a revoked user manage keys again (their removed keys stay removed)."""
        actor = self._acting(actor)
        user_id = self._no_key("user_id", check_identifier("user_id", user_id))
        self._command(
            actor.account, lambda keyring, now: keyring.restore_user_access(actor, user_id, now=now)
        )
        logger.info("access of %r restored by %r", user_id, actor.user_id)

    def expire_grace(self) -> int:
        """Record ``GraceExpired`` for every grace deadline that has passed; returns how
        many. Validity never waits for this: a secret in grace stops working at its
        deadline whether or not the event is recorded."""
        self._sync()
        due = self._guard(lambda: self._store.accounts_with_grace_due(self._now()))
        return sum(self._command(account, lambda keyring, now: keyring.expire_grace(now)) for account in due)

    def start_sweeper(self, interval: float = 60.0) -> None:
        """Run :meth:`expire_grace` every ``interval`` seconds in a daemon thread that
        stops when the ledger closes, so a service records ``GraceExpired`` without cron.
        A failed sweep is logged and retried at the next interval."""
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise InvalidInput("interval", "must be a positive number of seconds")
        if self._sweeper is not None:
            raise InvalidInput("interval", "a sweeper is already running for this ledger")
        self._guard(lambda: None)  # a closed ledger refuses
        self._sweep_interval = float(interval)
        self._start_sweeper()

    def _start_sweeper(self) -> None:
        interval = self._sweep_interval
        assert interval is not None
        stopping = self._stopping
        ledger = weakref.ref(self)

        def sweep() -> None:
            # Holds the ledger weakly, so an unclosed ledger is still collected (and its
            # threads stopped); a failed sweep never ends the thread.
            while not stopping.wait(interval):
                found = ledger()
                if found is None or found._closed:
                    return
                try:
                    found.expire_grace()
                except KeyLedgerError as error:
                    logger.warning("grace sweep failed: %s", error)
                except Exception as error:
                    logger.error("grace sweep failed: %s", type(error).__name__)
                del found

        self._sweeper = threading.Thread(target=sweep, name="keyledger-sweeper", daemon=True)
        self._sweeper.start()

    # Queries

    def verify(
        self, credential: object, *, at: datetime | None = None, strict: bool | None = None
    ) -> Principal | None:
        """The principal of a key that works now (or at the instant ``at``), else ``None``.

        Takes a raw key or an ``Authorization`` value (``Basic``, with the key as user
        name and an empty password, or ``Bearer``). Never raises on malformed input.
        With ``strict`` (default: the ledger's), the log head is checked first; if the
        store cannot be reached, the answer is ``None`` (fail closed).
        """
        if at is not None or (self.strict if strict is None else strict):
            if strict is not None and not isinstance(strict, bool):
                raise InvalidInput("strict", "must be True, False or None")
            return self._verify_checked(credential, None if at is None else _aware("at", at))
        digest = self._digest(credential)
        if digest is None:
            return None
        principal = self._follower.index.get(digest)
        if _monotonic() - self._follower.confirmed > self._lag:
            if not self._current():
                return None
            principal = self._follower.index.get(digest)
        if principal is None:
            return None
        if principal.grace_until is not None and self._clock() >= principal.grace_until:
            return None
        if digest not in self._uses:
            self._usage.note(digest, principal)
        return principal

    def _verify_checked(self, credential: object, at: datetime | None) -> Principal | None:
        """Verification at a past instant, or after checking the log head (strict)."""
        if self._closed or (self._forked and not self._current()):
            return None
        key = self._parser.key(credential)
        if key is None:
            return None
        if at is not None:
            return self._verify_at(keyformat.digest(key), at)
        if not self._at_head():
            return None
        return self.verify(key, strict=False)

    def _at_head(self) -> bool:
        """Catch up with the log head; ``False`` if the store cannot be reached or an
        event cannot be read."""
        try:
            behind = self._follower.head() > self._follower.position
        except Exception as error:
            logger.warning("strict verification refused: store unreachable (%s)", type(error).__name__)
            return False
        return not behind or self._follower.try_catch_up()

    def _current(self) -> bool:
        """Whether this process can show that its index holds every event of the log as
        of at most ``max_lag`` ago (the hot path's own check said it might not).

        A closed ledger cannot; a forked one reconnects first. A ledger whose threads do
        not follow the log (``follow=False``, ``memory://``) catches up here; one whose
        threads do leaves it to them: a stuck follower is not unstuck by more reads."""
        if self._closed:
            return False
        if self._forked:
            try:
                self._reconnect()
            except KeyLedgerError:
                return False
        follower = self._follower
        if not follower.following and _monotonic() - follower.failed_at >= RETRY_PAUSE:
            follower.try_catch_up()
        return _monotonic() - follower.confirmed <= self._lag

    def health(self) -> Health:
        """Whether :meth:`verify` can answer now, or refuses every credential and why
        (closed, forked and not reconnected, or not current for longer than ``max_lag``:
        the reason names the position and the error). Reads nothing from the store (a
        ledger that does not follow may catch up first); never raises."""
        ok = self._current()
        follower = self._follower
        behind = 0.0 if self._lag == ALWAYS_CURRENT and ok else _monotonic() - follower.confirmed
        reason: str | None = None
        if self._closed:
            reason = "the ledger is closed"
        elif self._forked:
            reason = "this process was forked and cannot reach the store again"
        elif not ok:
            reason = (
                f"{follower.problem or f'no confirmation that position {follower.position} is the head'}; "
                f"not current for longer than max_lag ({self.max_lag.total_seconds():g} s)"
            )
        return Health(
            ok=ok,
            position=follower.position,
            head=max(follower.seen_head, follower.position),
            behind_for=timedelta.max if behind == float("inf") else timedelta(seconds=max(0.0, behind)),
            reason=reason,
        )

    def _verify_at(self, digest: bytes, at: datetime) -> Principal | None:
        owner = self._guard(lambda: self._store.secret_owner(digest))
        if owner is None:
            return None
        views = self._guard(lambda: replay(self._app.recorder, self._mapper, owner[0], at))
        principal = views.index.get(digest)
        if principal is None or (principal.grace_until is not None and at >= principal.grace_until):
            return None
        return principal

    def keys(self, account: str = DEFAULT_ACCOUNT, *, at: datetime | None = None) -> list[KeyView]:
        """The account's keys in creation order: labels, creator, status, hint, the
        secrets in grace and when last used; as they were at ``at``, if given. Never a
        secret."""
        account = check_identifier("account", account)
        now = self._now()
        current = self._guard(lambda: self._store.keys(account, now))
        if at is None:
            return current
        at = _aware("at", at)
        views = self._guard(lambda: replay(self._app.recorder, self._mapper, account, at))
        return keys_at(views, account, at, {k.key_id: k.created_position for k in current})

    def valid_keys(self, account: str = DEFAULT_ACCOUNT, *, at: datetime | None = None) -> list[KeyView]:
        """The account's keys that had a working secret now (or at ``at``)."""
        return [view for view in self.keys(account, at=at) if view.status == "active"]

    def key(self, account: str, key_id: str) -> KeyView | None:
        """One key of the account, or ``None``."""
        account = check_identifier("account", account)
        key_id = _text("key_id", key_id)
        return self._guard(lambda: self._store.key(account, key_id, self._now()))

    def audit(
        self,
        account: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        action: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
        after: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries, oldest first: by account, key (including the user removal
        that ended it), actor, action (a name or names), and ``occurred_at`` in
        ``[since, until)``; at most ``limit`` (1 to 10,000) after position ``after``.
        Page by passing the last entry's position as ``after``."""
        query = AuditQuery.build(
            account=account,
            key_id=key_id,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=limit,
            after=after,
        )
        return self._guard(lambda: self._store.audit(query))

    def history(self, account: str, key_id: str) -> list[AuditEntry]:
        """Every audit entry that touched the key, the user removal that ended it included."""
        account, key_id = check_identifier("account", account), _text("key_id", key_id)
        return list(self._pages(AuditQuery.build(account=account, key_id=key_id, limit=MAX_LIMIT)))

    def _pages(self, query: AuditQuery) -> Iterator[AuditEntry]:
        while page := self._guard(partial(self._store.audit, query)):
            yield from page
            query = query.model_copy(update={"after": page[-1].position})

    def export_audit(
        self, path: str | Path | IO[str], format: Format = "jsonl", **filters: Any
    ) -> ExportCheckpoint:
        """Stream the audit entries matching ``filters`` (those of :meth:`audit`, without
        ``limit``) to ``path`` (or an open text stream) as JSON Lines or CSV; returns the
        export's checkpoint, to keep apart from the file for :func:`keyledger.verify_export`."""
        if "limit" in filters or "after" in filters:
            raise InvalidInput("filters", "an export takes every matching entry: no limit or after")
        unknown = sorted(set(filters) - EXPORT_FILTERS)
        if unknown:
            raise InvalidInput(
                "filters", f"unknown filter {unknown[0]!r}; use {', '.join(sorted(EXPORT_FILTERS))}"
            )
        query = AuditQuery.build(limit=MAX_LIMIT, **filters)
        chosen = {name for name, value in filters.items() if value is not None}
        scope: Scope = "full" if not chosen else ("account" if chosen == {"account"} else "filtered")
        shown = query.model_dump(mode="json", exclude={"limit", "after"}, exclude_none=True)
        return write_export(self._pages(query), path, format, scope, shown)

    def rebuild_projections(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every view from zero, calling ``progress(done, total)`` as it goes
        (positions); returns the last position applied. The last-used side table stays."""
        _callback("progress", progress)
        return self._guard(lambda: self._follower.rebuild(progress))

    def report(
        self,
        account: str = DEFAULT_ACCOUNT,
        now: datetime | None = None,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        unused_after: timedelta = DEFAULT_UNUSED_AFTER,
    ) -> ComplianceReport:
        """The account's compliance report: stale and unused keys, secrets in grace, keys
        per creator, and working keys of revoked users (always 0)."""
        moment = self._now() if now is None else _aware("now", now)
        account = check_identifier("account", account)
        for field, period in (("stale_after", stale_after), ("unused_after", unused_after)):
            if not isinstance(period, timedelta) or period <= timedelta(0):
                raise InvalidInput(field, "must be a positive timedelta")
        # The count of working keys of revoked users (created by or issued to them) comes
        # from the Keyring alone (the consistency boundary): the views may be a moment
        # older or newer than it.
        with self._lock_for(account):
            keyring = self._guard(lambda: self._load(account, moment))
            orphans = len(keyring.working_keys_of_revoked_users(moment))
        keys = self._guard(lambda: self._store.keys(account, moment))
        return build_report(account, keys, orphans, moment, stale_after, unused_after)

    def check_integrity(
        self, progress: Callable[[int, int], None] | None = None, *, checkpoint: Checkpoint | None = None
    ) -> IntegrityReport:
        """Check every stored event against its account's hash chain, and the valid-key
        table and audit trail against those events, all as of one moment: what other
        processes commit meanwhile is left to the next check, never a false alarm. With
        ``checkpoint`` (from :meth:`checkpoint`, kept outside the database), also fail if
        any account's history up to it was cut short or rewritten. Calls
        ``progress(position, head)`` after each page."""
        _callback("progress", progress)
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise InvalidInput("checkpoint", "must be a Checkpoint (Checkpoint.model_validate_json reads it)")
        return self._guard(
            lambda: check_integrity(self._app.recorder, self._mapper, progress, self._store, checkpoint)
        )

    def checkpoint(self) -> Checkpoint:
        """Each account's stream version and chain at the log head, and the time: keep it
        outside the database (as CloudTrail keeps digest files) and pass it to
        :meth:`check_integrity` later, which then catches what the chain alone cannot (an
        account's newest events cut off, or history rewritten with every chain
        recomputed). It records the history as it stands: check first, then take it."""
        now = self._now()
        return self._guard(lambda: take_checkpoint(self._app.recorder, self._mapper, now))

    def sync(self) -> None:
        """Apply every event recorded so far (by any process) to this process's views,
        and write the last-use times noted so far."""
        self._usage.flush()
        self._sync()

    @property
    def position(self) -> int:
        """The position (global notification id) this process's views have reached."""
        return self._follower.position

    # Lifecycle

    def close(self) -> None:
        """Stop this ledger's threads and release the store's connections. Idempotent.
        Afterwards :meth:`verify` returns ``None`` and every other call raises
        :class:`StoreUnavailable`."""
        if not self._closed:
            self._closed = True
            self._follower.confirmed = float("-inf")
            _OPEN_LEDGERS.discard(self)
            self._stopping.set()
            if self._sweeper is not None and self._sweeper is not threading.current_thread():
                self._sweeper.join()
            self._finalizer()
            if self._forked:
                return  # what the parent opened is the parent's to close
            self._turns.close()
            self._store.close()
            self._app.close()

    # Forking: a child process gets none of the parent's threads, and must not use its
    # connections (nor close them: that would end them for the parent).

    def _before_fork(self) -> None:
        # Hold the follower's lock across the fork, so the child's copy of the index is
        # never caught half way through applying a page.
        self._fork_consistent = self._follower.lock.acquire(timeout=1.0)

    def _after_fork_in_parent(self) -> None:
        if self._fork_consistent:
            self._follower.lock.release()

    def _after_fork_in_child(self) -> None:
        self._forked = True
        self._follower.confirmed = float("-inf")
        self._reopening = threading.Lock()
        self._account_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._follower.lock = threading.RLock()
        self._stopping = threading.Event()
        self._sweeper = None
        # The parent's follower and usage recorder are not this process's to stop or flush.
        self._finalizer.detach()
        self._threads = []
        self._finalizer = weakref.finalize(self, _stop_threads, self._stopping, self._threads)

    def _reconnect(self) -> None:
        """In a forked process, before anything else: new connections, and the index
        inherited from the parent (reloaded if the fork may have caught it mid-update)
        brought up to the head, with threads of this process's own."""
        with self._reopening:
            if not self._forked:
                return
            if self._reopen is None:
                raise StoreUnavailable(
                    "this ledger was opened before the process forked; open it again in this process"
                )
            old = self._follower
            _INHERITED.append((self._app, self._turns, self._store, old, self._usage))
            app, turns = self._reopen()
            start = (old.index, old.position) if self._fork_consistent else None
            try:
                self._attach(app, turns, start)
            except BaseException:
                turns.close()
                app.close()
                raise
            self._forked = False
            _OPEN_LEDGERS.add(self)
            if self._sweep_interval is not None:
                self._start_sweeper()
            logger.info("reconnected to %s after a fork, at position %d", self.store, self.position)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.store!r}, position={self.position})"

    # Internals

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise InvalidInput("clock", "must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _acting(self, actor: Actor) -> Actor:
        """The actor, if it is one and names no key (a key given as a user id or account
        would be recorded in the ledger)."""
        if not isinstance(actor, Actor):
            raise InvalidInput("actor", "must be an Actor")
        self._no_key("user_id", actor.user_id)
        self._no_key("account", actor.account)
        return actor

    def _no_key(self, field: str, text: str) -> str:
        if keyformat.contains_key(text, self.key_prefix):
            raise InvalidInput(field, "contains what looks like an API key; keys are never stored")
        return text

    def _new_secret(self) -> str:
        return keyformat.generate_key(self.key_prefix)

    def _ready(self) -> None:
        """Refuse on a closed ledger; in a forked process, reconnect first."""
        if self._closed:
            raise StoreUnavailable("the ledger is closed")
        if self._forked:
            self._reconnect()

    def _guard(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` on the store, once this ledger is open in this process."""
        self._ready()
        return self._translate(operation)

    def _translate(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; the store's errors become keyledger's."""
        try:
            return operation()
        except PersistenceError as error:
            raise StoreUnavailable(f"store {self.store} failed: {type(error).__name__}") from None
        except EventUnreadable as error:
            raise IntegrityViolation(f"{error}; check the ledger's integrity") from None
        except MapperDeserialisationError as error:
            raise IntegrityViolation(f"{error}; check the ledger's integrity") from None

    def _load(self, account: str, now: datetime) -> Keyring:
        keyring_id = Keyring.id_for(account)
        repository = self._app.repository
        try:
            keyring: Keyring = repository.get(keyring_id)
        except AggregateNotFoundError:
            return Keyring(keyring_id, account, now)
        if not keyring.recipients_known:
            # Loaded from a snapshot written before secrets recorded whom they were issued
            # to: rebuild it from its events alone, once; the cache keeps the result.
            keyring = cast(Keyring, project_aggregate(None, repository.event_store.get(keyring_id)))
            if repository.cache is not None:
                repository.cache.put(keyring_id, keyring)
        return keyring

    def _lock_for(self, account: str) -> threading.Lock:
        return self._account_locks[hash(account) % LOCK_STRIPES]

    def _command(self, account: str, decide: Callable[[Keyring, datetime], T]) -> T:
        # The cached Keyring is brought up to date with the events since it was cached and
        # never changed by a command: each attempt decides on a copy, so losing a race
        # leaves nothing to undo, and the retry only fast-forwards. One thread at a time
        # per account, in one process (they would only conflict).
        self._ready()
        with self._lock_for(account), self._turns.turn(account):
            for attempt in range(self._max_attempts):
                now = self._now()
                keyring = self._guard(partial(self._load, account, now)).copy()
                result = decide(keyring, now)
                events = keyring.pending_events
                if not events:
                    return result
                try:
                    recordings = self._app.save(keyring)
                except IntegrityError:
                    self._follower.forget()
                    if self._landed(events):
                        return result
                    logger.debug("account %r changed concurrently; attempt %d", account, attempt + 1)
                    # Full jitter, doubling up to 100 ms: losers spread out, not collide again.
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))  # noqa: S311 - jitter
                    continue
                except PersistenceError as error:
                    self._follower.forget()
                    if self._landed(events):
                        return result
                    raise StoreUnavailable(f"store {self.store} failed: {type(error).__name__}") from None
                except BaseException:
                    self._follower.forget()
                    raise
                # Committed: from here on nothing raises, so the caller always gets the
                # result (a new secret is never lost).
                try:
                    self._follow(recordings)
                except Exception as error:
                    self._follower.missed()
                    logger.error(
                        "a command's events are recorded, but this process's views did not take "
                        "them (%s); verification refuses until the follower has caught up",
                        type(error).__name__,
                    )
                return result
        raise Conflict(
            f"account {account!r} kept changing under {self._max_attempts} attempts; nothing was "
            "recorded, try again"
        )

    def _landed(self, events: Sequence[Keyring.Event]) -> bool:
        """Whether ``events`` are stored after all, at their versions: a commit whose
        answer was lost (the connection dropped during ``COMMIT``, and the recorder's
        retry then met the first attempt's rows) must be taken as done, never decided
        again. Each event's chain covers its content, time and predecessor, so an equal
        chain at the same version is this very event. Brings the views up to them."""
        first, last = events[0], events[-1]
        try:
            stored = self._app.recorder.select_events(
                first.originator_id, gt=first.originator_version - 1, lte=last.originator_version
            )
            chains = [getattr(self._mapper.to_domain_event(event), "chain", None) for event in stored]
        except Exception as error:
            logger.warning("cannot tell whether a failed append landed: %s", type(error).__name__)
            return False
        if chains != [event.chain for event in events]:
            return False
        logger.warning("an append whose commit was not acknowledged had landed; taken as done")
        try:
            self._follower.catch_up()
        except Exception as error:
            self._follower.missed()
            logger.error("the views did not take a landed append (%s)", type(error).__name__)
        return True

    def _follow(self, recordings: list[Recording[UUID]]) -> None:
        """Bring this process's views up to the command's events: the durable views took
        them in the command's own transaction (SQLite), or take them now."""
        if not self._translate(self._follower.adopt):
            self._translate(lambda: self._follower.catch_up([r.notification for r in recordings]))

    def _sync(self) -> None:
        self._guard(self._follower.catch_up)


def _connect(settings: StoreSettings) -> tuple[KeyringApplication, AccountTurns]:
    """The eventsourcing application and the account turns of the store ``settings``
    name, with their tables created if missing."""
    try:
        app = creating_tables(lambda: KeyringApplication(env=settings.env))
    except PersistenceError as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {type(error).__name__}") from None
    except sqlite3.Error as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {type(error).__name__}") from None
    except OSError as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {error.strerror}") from None
    try:
        turns = turns_for(settings)
    except OSError as error:
        app.close()
        raise StoreUnavailable(f"cannot open {settings.describe()}: {error.strerror}") from None
    return app, turns


def _stop_threads(stopping: threading.Event, parts: list[Follower | UsageRecorder]) -> None:
    """Stop a ledger's threads (its sweeper sees ``stopping``); idempotent."""
    stopping.set()
    for part in parts:
        part.stop()


_OPEN_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()
"""Every ledger of this process not yet closed, for the fork handlers."""
_INHERITED: list[object] = []
"""What a forked process inherited from ledgers opened before the fork: kept, never
closed or collected, since closing a connection shared with the parent would end it
for the parent too."""


def _before_fork() -> None:
    for ledger in list(_OPEN_LEDGERS):
        ledger._before_fork()


def _after_fork_in_parent() -> None:
    for ledger in list(_OPEN_LEDGERS):
        ledger._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for ledger in list(_OPEN_LEDGERS):
        ledger._after_fork_in_child()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _grace_from_environment() -> timedelta:
    text = os.environ.get(GRACE_VARIABLE)
    if not text:
        return DEFAULT_GRACE_PERIOD
    try:
        return timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        raise InvalidInput(GRACE_VARIABLE, "must be a number of seconds") from None


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    return value


def _callback(field: str, value: object) -> None:
    if value is not None and not callable(value):
        raise InvalidInput(field, "must be a function or None")


def _aware(field: str, moment: object) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInput(field, "must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def _described(secret: str) -> NewSecret:
    return NewSecret(digest=keyformat.digest(secret).hex(), hint=keyformat.hint(secret))
