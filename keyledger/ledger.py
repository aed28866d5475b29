"""The Ledger: the application service that commands, queries and verifies.

A Ledger is the only caller of the repository and of ``save``: each command loads the
account's Keyring, lets it check its rules and trigger events, and appends them in one
transaction. When another writer appended to the same account first, the command reloads
and decides again, up to ``max_attempts`` times, then raises :class:`Conflict`; nothing
is recorded twice, because each attempt appends at the version it read.

After a command returns, this process's views already include its events, so
verification refuses an ended secret the instant the command returns.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, PersistenceError, Recording
from pydantic import SecretStr

from keyledger.adapters.sql_views import ViewsWithin
from keyledger.adapters.stores import parse_url, resolve_url
from keyledger.adapters.transcoding import PydanticMapper
from keyledger.adapters.turns import AccountTurns, turns_for
from keyledger.application import KeyringApplication, creating_tables
from keyledger.domain import (
    DEFAULT_ACCOUNT,
    Actor,
    Conflict,
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
from keyledger.export import Checkpoint, Format, Scope, write_export
from keyledger.history import keys_at, replay
from keyledger.integrity import check_integrity
from keyledger.projections.audit import DEFAULT_LIMIT, MAX_LIMIT, AuditEntry, AuditQuery
from keyledger.projections.catalogue import KeyView
from keyledger.report import DEFAULT_STALE_AFTER, DEFAULT_UNUSED_AFTER, ComplianceReport, build_report
from keyledger.results import IntegrityReport, IssuedKey, Principal
from keyledger.usage import UsageRecorder
from keyledger.views import Follower

T = TypeVar("T")
Clock = Callable[[], datetime]
logger = logging.getLogger("keyledger")

DEFAULT_GRACE_PERIOD = timedelta(hours=12)
MIN_GRACE_PERIOD = timedelta(minutes=1)
MAX_GRACE_PERIOD = timedelta(days=7)
DEFAULT_MAX_ATTEMPTS = 10
_sha256 = hashlib.sha256
_a2b_base64 = binascii.a2b_base64
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
    ) -> None:
        if (
            not isinstance(grace_period, timedelta)
            or not MIN_GRACE_PERIOD <= grace_period <= MAX_GRACE_PERIOD
        ):
            raise InvalidInput("grace_period", "must be a timedelta from 1 minute to 7 days")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("max_attempts", "must be a positive integer")
        self._app = app
        self.store = store
        """The store this ledger writes to, without any password."""
        self.grace_period = grace_period
        self.key_prefix = keyformat.check_prefix(key_prefix)
        self._clock = clock
        self._key_head = self.key_prefix + "_"
        self._key_length = len(self._key_head) + keyformat.BODY_LENGTH
        self._key_head_bytes = self._key_head.encode()
        self._basic_length = len("Basic ") + 4 * -(-(self._key_length + 1) // 3)
        self._max_attempts = max_attempts
        self.strict = strict
        """Whether :meth:`verify` checks the log head before every answer."""
        mapper = app.mapper
        assert isinstance(mapper, PydanticMapper)
        self._mapper = mapper
        self._closed = False
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._account_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._turns = turns or AccountTurns()
        self._store = self._guard(app.construct_views)
        self._follower = self._guard(lambda: Follower(app.recorder, mapper, self._store))
        if isinstance(app.recorder, ViewsWithin):
            app.recorder.within = self._follower.within
        self._usage = UsageRecorder(self._store, clock)
        self._uses = self._usage.pending
        self._now()  # a clock that returns naive datetimes is refused here, not on the hot path
        if follow and app.is_shared:
            self._follower.follow(subscribe=app.can_subscribe)

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
    ) -> Ledger:
        """Open the ledger stored at ``url`` (else ``KEYLEDGER_URL``, else ``./keyledger.db``).

        ``grace_period`` is how long a secret retired with grace keeps working (1 minute
        to 7 days; default ``KEYLEDGER_GRACE_SECONDS``, else 12 hours); ``key_prefix``
        starts every key this ledger issues (default ``KEYLEDGER_KEY_PREFIX``, else
        ``kl``): services and the CLI that share a ledger should share these settings; ``clock`` returns
        the current time (timezone-aware), for tests and demos. With ``strict``, every
        verification first checks the log head (read-your-writes across processes).
        ``follow`` starts the thread that applies other processes' events (SQLite and
        PostgreSQL only); without it, the views catch up at the next command.
        """
        settings = parse_url(resolve_url(url))
        key_prefix = keyformat.check_prefix(
            key_prefix
            if key_prefix is not None
            else os.environ.get(PREFIX_VARIABLE) or keyformat.DEFAULT_PREFIX
        )
        grace_period = grace_period if grace_period is not None else _grace_from_environment()
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

        def sweep() -> None:
            while not self._stopping.wait(interval):
                try:
                    self.expire_grace()
                except KeyLedgerError as error:
                    logger.warning("grace sweep failed: %s", error)

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
            return self._verify_checked(credential, at)
        # The hot path: a raw key of the right shape goes straight to its digest; anything
        # else is parsed (Basic, Bearer, whitespace) or refused. The checksum and the base62
        # alphabet are not checked here: a digest hit implies both.
        if (
            type(credential) is str
            and len(credential) == self._key_length
            and credential.startswith(self._key_head)
            and credential.isascii()
        ):
            digest = _sha256(credential.encode()).digest()
        elif (
            type(credential) is str
            and len(credential) == self._basic_length
            and credential.startswith("Basic ")
            and credential.isascii()
        ):
            # HTTP Basic with the key as user name and an empty password: hash the decoded
            # bytes as they are, once they have a key's prefix and are ASCII (malformed
            # input is refused before any lookup).
            try:
                user = _a2b_base64(credential[6:], strict_mode=True)
            except binascii.Error:
                return None
            if user[-1:] != b":" or not user.startswith(self._key_head_bytes) or not user.isascii():
                return None
            digest = _sha256(user[:-1]).digest()
        else:
            key = keyformat.extract_key(credential, self.key_prefix)
            if key is None:
                return None
            digest = _sha256(key.encode()).digest()
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
        key = keyformat.extract_key(credential, self.key_prefix)
        if key is None:
            return None
        if at is not None:
            return self._verify_at(keyformat.digest(key), _aware("at", at))
        if not self._at_head():
            return None
        return self.verify(key, strict=False)

    def _at_head(self) -> bool:
        """Catch up with the log head; ``False`` if the store cannot be reached."""
        try:
            if self._follower.head() > self._follower.position:
                self._follower.catch_up()
        except (PersistenceError, KeyLedgerError) as error:
            logger.warning("strict verification refused: store unreachable (%s)", type(error).__name__)
            return False
        return True

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
        return list(self._pages(AuditQuery.build(account=account, key_id=key_id, limit=MAX_LIMIT)))

    def _pages(self, query: AuditQuery) -> Iterator[AuditEntry]:
        while page := self._guard(partial(self._store.audit, query)):
            yield from page
            query = query.model_copy(update={"after": page[-1].position})

    def export_audit(
        self, path: str | Path | IO[str], format: Format = "jsonl", **filters: Any
    ) -> Checkpoint:
        """Stream the audit entries matching ``filters`` (those of :meth:`audit`, without
        ``limit``) to ``path`` (or an open text stream) as JSON Lines or CSV; returns the
        export's checkpoint, to keep apart from the file for :func:`keyledger.verify_export`."""
        if "limit" in filters or "after" in filters:
            raise InvalidInput("filters", "an export takes every matching entry: no limit or after")
        query = AuditQuery.build(limit=MAX_LIMIT, **filters)
        chosen = {name for name, value in filters.items() if value is not None}
        scope: Scope = "full" if not chosen else ("account" if chosen == {"account"} else "filtered")
        shown = query.model_dump(mode="json", exclude={"limit", "after"}, exclude_none=True)
        return write_export(self._pages(query), path, format, scope, shown)

    def rebuild_projections(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every view from zero, calling ``progress(done, total)`` as it goes
        (positions); returns the last position applied. The last-used side table stays."""
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
        per creator, and working keys of revoked creators (always 0)."""
        moment = self._now() if now is None else _aware("now", now)
        account = check_identifier("account", account)
        # The count of working keys of revoked creators comes from the Keyring alone (the
        # consistency boundary): the views may be a moment older or newer than it.
        with self._lock_for(account):
            keyring = self._guard(lambda: self._load(account, moment))
            orphans = sum(
                1
                for r in keyring.keys.values()
                if r.revoked_at is None and r.created_by in keyring.revoked_users
            )
        keys = self._guard(lambda: self._store.keys(account, moment))
        return build_report(account, keys, orphans, moment, stale_after, unused_after)

    def check_integrity(self, progress: Callable[[int, int], None] | None = None) -> IntegrityReport:
        """Check every stored event against its account's hash chain, and the valid-key
        table that verification loads against those events; calls ``progress(position,
        head)`` after each page."""
        return self._guard(
            lambda: check_integrity(
                self._app.recorder, self._mapper, progress, self._store.valid_entries, self._audit_chains
            )
        )

    def _audit_chains(self, after: int, upto: int) -> tuple[int, dict[int, str]]:
        """How far the views have reached (at most ``upto``), and the audit trail's chain at
        each position after ``after`` up to there."""
        reached = min(upto, self._store.position())
        return reached, self._store.audit_chains(after, reached)

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
        """Release the store's connections. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stopping.set()
            if self._sweeper is not None and self._sweeper is not threading.current_thread():
                self._sweeper.join()
            self._follower.stop()
            self._usage.stop()
            self._turns.close()
            self._store.close()
            self._app.close()

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

    def _guard(self, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except PersistenceError as error:
            raise StoreUnavailable(f"store {self.store} failed: {type(error).__name__}") from None

    def _load(self, account: str, now: datetime) -> Keyring:
        keyring_id = Keyring.id_for(account)
        try:
            keyring: Keyring = self._app.repository.get(keyring_id)
        except AggregateNotFoundError:
            return Keyring(keyring_id, account, now)
        return keyring

    def _lock_for(self, account: str) -> threading.Lock:
        return self._account_locks[hash(account) % LOCK_STRIPES]

    def _command(self, account: str, decide: Callable[[Keyring, datetime], T]) -> T:
        # The cached Keyring is brought up to date with the events since it was cached and
        # never changed by a command: each attempt decides on a copy, so losing a race
        # leaves nothing to undo, and the retry only fast-forwards. One thread at a time
        # per account, in one process (they would only conflict).
        with self._lock_for(account), self._turns.turn(account):
            for attempt in range(self._max_attempts):
                now = self._now()
                keyring = self._guard(partial(self._load, account, now)).copy()
                result = decide(keyring, now)
                if not keyring.pending_events:
                    return result
                try:
                    recordings = self._app.save(keyring)
                except IntegrityError:
                    self._follower.forget()
                    logger.debug("account %r changed concurrently; attempt %d", account, attempt + 1)
                    # Full jitter, doubling up to 100 ms: losers spread out, not collide again.
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))  # noqa: S311 - jitter
                    continue
                except PersistenceError as error:
                    self._follower.forget()
                    raise StoreUnavailable(f"store {self.store} failed: {type(error).__name__}") from None
                except BaseException:
                    self._follower.forget()
                    raise
                self._follow(recordings)
                return result
        raise Conflict(
            f"account {account!r} kept changing under {self._max_attempts} attempts; nothing was "
            "recorded, try again"
        )

    def _follow(self, recordings: list[Recording[UUID]]) -> None:
        """Bring this process's views up to the command's events: the durable views took
        them in the command's own transaction (SQLite), or take them now."""
        if not self._guard(self._follower.adopt):
            self._guard(lambda: self._follower.catch_up([r.notification for r in recordings]))

    def _sync(self) -> None:
        self._guard(self._follower.catch_up)


def _grace_from_environment() -> timedelta:
    text = os.environ.get(GRACE_VARIABLE)
    if not text:
        return DEFAULT_GRACE_PERIOD
    try:
        return timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        raise InvalidInput(GRACE_VARIABLE, "must be a number of seconds") from None


def _aware(field: str, moment: object) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInput(field, "must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def _described(secret: str) -> NewSecret:
    return NewSecret(digest=keyformat.digest(secret).hex(), hint=keyformat.hint(secret))
