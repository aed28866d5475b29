"""The Ledger: the facade a host service holds, to command, query and verify.

A thin facade over four parts, each one idea: :mod:`keyledger.bootstrap` opens the store
a URL names; :mod:`keyledger.commands` is the command path (load the account's Keyring,
decide, append its events and views in one transaction, retry); :mod:`keyledger.verifier`
answers verification from this process's index and fails closed;
:mod:`keyledger.queries` is the read side. :mod:`keyledger.connection` is this process's
hold on the store that they share, which the Ledger closes (and a forked child reopens).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from pydantic import SecretStr

from keyledger import bootstrap, copying, prefixes
from keyledger.adapters.driven.account_locks import AccountLocks
from keyledger.adapters.driven.stores import parse_url, resolve_url
from keyledger.application import KeyringApplication
from keyledger.bootstrap import Clock, Connect, system_clock
from keyledger.commands import DEFAULT_MAX_ATTEMPTS, Commands
from keyledger.connection import Connection
from keyledger.domain import (
    DEFAULT_ACCOUNT,
    Actor,
    InvalidInput,
    KeyLedgerError,
    NewSecret,
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
from keyledger.export import ExportCheckpoint, Format
from keyledger.projections.audit import DEFAULT_LIMIT, AuditEntry, AuditQuery
from keyledger.projections.catalogue import KeyView
from keyledger.queries import Progress, Queries, text
from keyledger.report import DEFAULT_STALE_AFTER, DEFAULT_UNUSED_AFTER, ComplianceReport
from keyledger.results import (
    AccountSummary,
    Checkpoint,
    Health,
    IntegrityReport,
    IssuedKey,
    KeyPage,
    Principal,
)
from keyledger.subscribers import Subscriptions, SubscriptionStatus
from keyledger.subscriptions import Handler, Subscription
from keyledger.verifier import ALWAYS_CURRENT, Verifier, past
from keyledger.webhooks import Webhook, WebhookDelivery, Webhooks

__all__ = ["Ledger", "system_clock"]

logger = logging.getLogger("keyledger")

RegenerationMode = Literal["grace", "immediate"]
"""How :meth:`Ledger.regenerate_key` retires the old secret: after the grace period, or now."""
REGENERATION_MODES = ("grace", "immediate")

DEFAULT_MAX_LAG = timedelta(seconds=5)
MIN_MAX_LAG = timedelta(milliseconds=100)
MAX_MAX_LAG = timedelta(days=1)


class Ledger:
    """An event-sourced ledger of API keys; open one with :meth:`Ledger.open`."""

    def __init__(
        self,
        app: KeyringApplication,
        *,
        store: str,
        grace_period: timedelta = bootstrap.DEFAULT_GRACE_PERIOD,
        key_prefix: str | None = None,
        clock: Clock = system_clock,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        strict: bool = False,
        follow: bool = True,
        locks: AccountLocks | None = None,
        max_lag: timedelta = DEFAULT_MAX_LAG,
        reopen: Connect | None = None,
    ) -> None:
        self.grace_period = bootstrap.grace_period(grace_period)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("max_attempts", "must be a positive integer")
        if not isinstance(max_lag, timedelta) or not MIN_MAX_LAG <= max_lag <= MAX_MAX_LAG:
            raise InvalidInput("max_lag", "must be a timedelta from 100 milliseconds to 1 day")
        self.store = store
        """The store this ledger writes to, without any password."""
        wanted, source = bootstrap.key_prefix(key_prefix)
        self.max_lag = max_lag
        """How long verification may go without confirming it holds every event of the
        log before it refuses every credential (ledgers other processes write to)."""
        self._clock = clock
        # The parts get the clock as a function of their own, not a method of this Ledger:
        # a Ledger left open is then freed as soon as nothing refers to it (no cycle).
        self._now = partial(_now, clock)
        self._now()  # a clock that returns naive datetimes is refused here, not on the hot path
        self._connection = Connection(
            app,
            locks or AccountLocks(),
            name=store,
            clock=clock,
            follow=follow and app.is_shared,
            lag=max_lag.total_seconds() if app.is_shared else ALWAYS_CURRENT,
            reconnect=reopen,
        )
        try:
            views = self._connection.views
            self._prefixes = self._connection.guard(partial(prefixes.recorded, views, wanted, source))
            self._connection.frozen_until = self._connection.guard(partial(copying.frozen_until, views))
        except BaseException:
            self._connection.close()
            raise
        self._commands = Commands(self._connection, self._now, max_attempts)
        self._queries = Queries(self._connection, self._now, self._commands)
        self._verifier = Verifier(
            self._connection, key_prefixes=self._prefixes.accepted, clock=clock, strict=strict
        )
        # The hot path answers without a second call: Verifier.verify, bound.
        self.verify = self._verifier.verify  # type: ignore[method-assign]
        if self._connection.frozen_until is not None:
            self.verify = partial(_verify_in_the_past, self._verifier.verify)  # type: ignore[method-assign]
        self._sweeper: threading.Thread | None = None
        self._sweep_interval: float | None = None
        self._connection.on_reconnect(self._after_reconnect)
        self._subscriptions = Subscriptions(self._connection)
        self._webhooks = Webhooks(self._connection, self._subscriptions, self._now)

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
        (default ``KEYLEDGER_KEY_PREFIX``) must be the prefix the ledger recorded when it
        was first opened (a new ledger records it; ``kl`` if none is given), else
        :class:`InvalidInput`: without one, a process takes the ledger's (see
        :meth:`change_key_prefix`);
        ``clock`` returns the current time (timezone-aware), for tests and demos. With
        ``strict``, every verification first checks the log head (read-your-writes across
        processes). ``follow`` starts the thread that applies other processes' events
        (SQLite and PostgreSQL only); without it, the views catch up at the next command,
        and a verification more than ``max_lag`` after the last catch-up catches up first.
        ``max_lag`` (100 ms to 1 day, default 5 s): once this process has gone longer
        than that without confirming it holds every event of the log (its follower
        stuck, the store unreachable), :meth:`verify` refuses every credential until it
        has caught up again, and :meth:`health` says why.
        """
        settings = parse_url(resolve_url(url))
        bootstrap.key_prefix(key_prefix)  # a bad value is refused before the store is opened
        grace = bootstrap.grace_period(grace_period)
        reopen = partial(bootstrap.connect, settings)
        app, locks = reopen()
        try:
            return cls(
                app,
                store=settings.describe(),
                grace_period=grace,
                key_prefix=key_prefix,
                clock=clock,
                max_attempts=max_attempts,
                strict=strict,
                follow=follow,
                locks=locks,
                max_lag=max_lag,
                reopen=reopen,
            )
        except BaseException:
            locks.close()
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
        key_id = self._commands.run(
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

    def regenerate_key(self, actor: Actor, key_id: str, *, mode: RegenerationMode) -> IssuedKey:
        """Issue a new secret for a key. ``mode`` is required, a choice every time: with
        ``"grace"`` the old secret works for the grace period more (its own deadline,
        never extended); with ``"immediate"`` it stops at once, and so does every older
        secret still in grace."""
        actor = self._acting(actor)
        key_id = text("key_id", key_id)
        if not isinstance(mode, str) or mode not in REGENERATION_MODES:
            raise InvalidInput("mode", "must be 'grace' or 'immediate'")
        grace = mode == "grace"
        secret = self._new_secret()
        period = self.grace_period if grace else None
        until = self._commands.run(
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
        key_id = text("key_id", key_id)
        if reason is not None:
            reason = self._no_key("reason", check_notes("reason", reason, maximum=REASON_MAX))
        self._commands.run(
            actor.account, lambda keyring, now: keyring.revoke_key(actor, key_id, reason=reason, now=now)
        )
        logger.info("key %s revoked by %r", key_id, actor.user_id)

    def revoke_user_access(self, actor: Actor, user_id: str) -> list[str]:
        """Revoke a user's access to the actor's account, and every key they created, in
        one atomic append; returns the key ids removed."""
        actor = self._acting(actor)
        user_id = self._no_key("user_id", check_identifier("user_id", user_id))
        removed = self._commands.run(
            actor.account, lambda keyring, now: keyring.revoke_user_access(actor, user_id, now=now)
        )
        logger.info("access of %r revoked by %r; %d keys removed", user_id, actor.user_id, len(removed))
        return removed

    def preview_revoke_user_access(self, actor: Actor, user_id: str) -> list[str]:
        """A dry run of :meth:`revoke_user_access`: the key ids it would remove now, or the
        error it would raise. Decides on a copy of the account's Keyring and saves nothing."""
        actor = self._acting(actor)
        user_id = self._no_key("user_id", check_identifier("user_id", user_id))
        now = self._now()
        keyring = self._connection.guard(partial(self._commands.load, actor.account, now)).copy()
        return keyring.revoke_user_access(actor, user_id, now=now)

    def restore_user_access(self, actor: Actor, user_id: str) -> None:
        """Let a revoked user manage keys again (their removed keys stay removed)."""
        actor = self._acting(actor)
        user_id = self._no_key("user_id", check_identifier("user_id", user_id))
        self._commands.run(
            actor.account, lambda keyring, now: keyring.restore_user_access(actor, user_id, now=now)
        )
        logger.info("access of %r restored by %r", user_id, actor.user_id)

    def expire_grace(self) -> int:
        """Record ``GraceExpired`` for every grace deadline that has passed; returns how
        many. Validity never waits for this: a secret in grace stops working at its
        deadline whether or not the event is recorded."""
        due = self._queries.accounts_with_grace_due()
        return sum(
            self._commands.run(account, lambda keyring, now: keyring.expire_grace(now)) for account in due
        )

    def start_sweeper(self, interval: float = 60.0) -> None:
        """Run :meth:`expire_grace` every ``interval`` seconds in a daemon thread that
        stops when the ledger closes, so a service records ``GraceExpired`` without cron.
        A failed sweep is logged and retried at the next interval."""
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise InvalidInput("interval", "must be a positive number of seconds")
        if self._sweeper is not None:
            raise InvalidInput("interval", "a sweeper is already running for this ledger")
        self._connection.ready()
        self._sweep_interval = float(interval)
        self._start_sweeper()

    def _start_sweeper(self) -> None:
        interval = self._sweep_interval
        assert interval is not None
        stopping = self._connection.stopping
        ledger = weakref.ref(self)

        def sweep() -> None:
            # Holds the ledger weakly, so an unclosed ledger is still collected (and its
            # threads stopped); a failed sweep never ends the thread.
            while not stopping.wait(interval):
                found = ledger()
                if found is None or found._connection.closed:
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

    def _after_reconnect(self) -> None:
        """In a forked process: the parent's sweeper thread did not come along."""
        if self._sweep_interval is not None:
            self._start_sweeper()

    # Verification

    def verify(
        self, credential: object, *, at: datetime | None = None, strict: bool | None = None
    ) -> Principal | None:
        """The principal of a key that works now (or at the past instant ``at``), else ``None``.

        Takes a raw key or an ``Authorization`` value (``Basic``, with the key as user
        name and an empty password, or ``Bearer``). Never raises on malformed input.
        An ``at`` later than the ledger's clock is :class:`InvalidInput`: the ledger
        answers for the past, not for revocations and deadlines still to come.
        With ``strict`` (default: the ledger's), the log head is checked first; if the
        store cannot be reached, the answer is ``None`` (fail closed).
        """
        return self._verifier.verify(credential, at=at, strict=strict)

    @property
    def strict(self) -> bool:
        """Whether :meth:`verify` checks the log head before every answer."""
        return self._verifier.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise InvalidInput("strict", "must be True or False")
        self._verifier.strict = value

    def health(self) -> Health:
        """Whether :meth:`verify` can answer now, or refuses every credential and why
        (closed, forked and not reconnected, or not current for longer than ``max_lag``:
        the reason names the position, and the error once a read has failed). Reads
        nothing from the store (a ledger that does not follow may catch up first); never
        raises."""
        return self._verifier.health(self.max_lag)

    # Queries

    def keys(self, account: str = DEFAULT_ACCOUNT, *, at: datetime | None = None) -> list[KeyView]:
        """The account's keys in creation order: labels, creator, status, hint, the
        secrets in grace and when last used; as they were at the past instant ``at``, if
        given (a future one is :class:`InvalidInput`). Never a secret."""
        return self._queries.keys(account, at)

    def keys_page(self, account: str = DEFAULT_ACCOUNT, *, offset: int = 0, limit: int = 50) -> KeyPage:
        """A page of the account's keys as they are now, newest first: ``limit`` keys (1 to
        1,000) after skipping ``offset``, with how many keys the account has and how many
        are active; reads only the page, for lists too long to read whole."""
        return self._queries.keys_page(account, offset, limit)

    def valid_keys(self, account: str = DEFAULT_ACCOUNT, *, at: datetime | None = None) -> list[KeyView]:
        """The account's keys that had a working secret now (or at ``at``)."""
        return [view for view in self.keys(account, at=at) if view.status == "active"]

    def key(self, account: str, key_id: str) -> KeyView | None:
        """One key of the account, or ``None``."""
        return self._queries.key(account, key_id)

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
        return self._queries.audit(query)

    def history(self, account: str, key_id: str) -> list[AuditEntry]:
        """Every audit entry that touched the key, the user removal that ended it included."""
        return self._queries.history(account, key_id)

    def export_audit(
        self, path: str | Path | IO[str], format: Format = "jsonl", **filters: Any
    ) -> ExportCheckpoint:
        """Stream the audit entries matching ``filters`` (those of :meth:`audit`, without
        ``limit``) to ``path`` (or an open text stream) as JSON Lines or CSV; returns the
        export's checkpoint, to keep apart from the file for :func:`keyledger.verify_export`."""
        return self._queries.export_audit(path, format, filters)

    def rebuild_projections(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every view from zero, calling ``progress(done, total)`` as it goes
        (positions); returns the last position applied. The last-used side table stays."""
        return self._queries.rebuild(progress)

    def copy(self, to_url: str, *, until: datetime | None = None, progress: Progress | None = None) -> int:
        """Copy every event recorded before ``until`` (every event, without) into the empty
        store at ``to_url``, keeping every stream's versions and chains, and build its
        views; returns the number of events copied. With ``until`` the copy is a frozen
        history: it answers queries, ``verify(..., at=)``, exports and
        :meth:`check_integrity`, and every command on it raises :class:`FrozenLedger`.
        Without, it is a migration (``sqlite:///`` to ``postgresql://``, say), writable.
        ``progress(done, total)`` is called as the source's log is read (positions), then
        as the copy's views are built. A copy cut short is refused when opened."""
        if not isinstance(to_url, str) or not to_url.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise InvalidInput("to_url", "must name a durable store: sqlite:///... or postgresql://...")
        instant = None if until is None else past("until", until, self._now())
        source = self._connection
        with Ledger.open(
            to_url,
            key_prefix=self.key_prefix,
            grace_period=self.grace_period,
            clock=self._clock,
            follow=False,
        ) as target:
            copy = target._connection
            copy.guard(partial(copying.start, copy.views, copy.app.recorder, self.store, instant))
            copy.guard(partial(prefixes.adopt, copy.views, self._prefixes))

            def copy_events() -> int:
                copied = 0
                for page in copying.events_before(source.app.recorder, source.mapper, instant, progress):
                    copy.app.recorder.insert_events(page)
                    copied += len(page)
                return copied

            copied = source.guard(copy_events)
            target.rebuild_projections(progress)
            copy.guard(partial(copying.finish, copy.views, instant))
        logger.info("copied %d events to %s", copied, target.store)
        return copied

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
        return self._queries.report(account, now, stale_after, unused_after)

    def check_integrity(
        self, progress: Callable[[int, int], None] | None = None, *, checkpoint: Checkpoint | None = None
    ) -> IntegrityReport:
        """Check every stored event against its account's hash chain, and the valid-key
        table and audit trail against those events, all as of one moment: what other
        processes commit meanwhile is left to the next check, never a false alarm. With
        ``checkpoint`` (from :meth:`checkpoint`, kept outside the database), also fail if
        any account's history up to it was cut short or rewritten. Calls
        ``progress(position, head)`` after each page."""
        return self._queries.check_integrity(progress, checkpoint)

    def checkpoint(self) -> Checkpoint:
        """Each account's stream version and chain at the log head, and the time: keep it
        outside the database (as CloudTrail keeps digest files) and pass it to
        :meth:`check_integrity` later, which then catches what the chain alone cannot (an
        account's newest events cut off, or history rewritten with every chain
        recomputed). It records the history as it stands: check first, then take it."""
        return self._queries.checkpoint()

    def accounts(self) -> list[AccountSummary]:
        """Every account that has events, by name, with its counts of events, keys and
        active keys: a typo in an account name (which silently starts a new account)
        shows as an account of its own. Reads the log once, as :meth:`checkpoint` does."""
        return self._queries.accounts()

    def has_account(self, account: str) -> bool:
        """Whether ``account`` has any events yet (one indexed read); a command on an
        account without any starts it."""
        return self._queries.has_events(account)

    def sync(self) -> None:
        """Apply every event recorded so far (by any process) to this process's views,
        and write the last-use times noted so far."""
        self._queries.sync()

    @property
    def position(self) -> int:
        """The position (global notification id) this process's views have reached."""
        return self._connection.follower.position

    # Subscribers and webhooks (keyledger.subscriptions, keyledger.webhooks)

    def subscribe(self, handler: Handler, *, name: str, batch: int = 100) -> Subscription:
        """Call ``handler(entry)`` with each audit entry after the position saved under
        ``name`` (a new name starts at the first entry), in position order, in a
        background thread; the position moves on once the handler returns. A failing
        handler is retried with backoff, never skipped; delivery is at least once (a
        crash between the handler and the save repeats that entry) and one thread or
        process at a time delivers under a name (the others stand by). ``batch``: entries
        read at a time (1 to 10,000). See :mod:`keyledger.subscriptions`."""
        return self._subscriptions.subscribe(handler, name, batch)

    def subscriptions(self) -> list[SubscriptionStatus]:
        """Every subscription name (webhooks' ``webhook:<id>`` too) with its position,
        lag, failed attempts and last error, by name."""
        return self._subscriptions.statuses()

    def add_webhook(self, url: str, secret: str, actions: Sequence[str] | None = None) -> Webhook:
        """Configure a webhook: each audit entry from now on (of ``actions`` only, if
        given) is POSTed to ``url`` as JSON, signed with ``secret`` (24 to 512
        characters; receivers check it with :func:`keyledger.verify_webhook`). The
        secret is stored only sealed under the host's ``KEYLEDGER_WEBHOOK_KEY``
        (required). Delivery runs where :meth:`start_webhooks` is called. See
        :mod:`keyledger.webhooks`."""
        return self._webhooks.add(url, secret, actions, self.key_prefixes)

    def webhooks(self) -> list[Webhook]:
        """Every webhook with its delivery state (never its secret), oldest first."""
        return self._webhooks.list()

    def remove_webhook(self, webhook_id: str) -> bool:
        """Remove a webhook and its delivery state; ``False`` if there is none."""
        return self._webhooks.remove(webhook_id)

    def start_webhooks(self) -> WebhookDelivery:
        """Deliver every webhook from this process (and those added later) until
        ``stop()`` or :meth:`close`; needs ``KEYLEDGER_WEBHOOK_KEY`` (the key the
        secrets were sealed under)."""
        return self._webhooks.start()

    # Lifecycle

    def close(self) -> None:
        """Stop this ledger's threads and release the store's connections. Idempotent.
        Afterwards :meth:`verify` returns ``None`` and every other call raises
        :class:`StoreUnavailable`."""
        connection = self._connection
        if connection.closed:
            return
        connection.stopping.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join()
        self._subscriptions.close()
        connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.store!r}, position={self.position})"

    # Internals

    def _acting(self, actor: Actor) -> Actor:
        """The actor, if it is one and names no key (a key given as a user id or account
        would be recorded in the ledger)."""
        if not isinstance(actor, Actor):
            raise InvalidInput("actor", "must be an Actor")
        self._no_key("user_id", actor.user_id)
        self._no_key("account", actor.account)
        return actor

    @property
    def key_prefix(self) -> str:
        """The prefix of the keys this ledger issues, as recorded in the ledger."""
        return self._prefixes.current

    @property
    def key_prefixes(self) -> tuple[str, ...]:
        """Every prefix whose keys verify: the current one first, then those the ledger
        issued keys under before."""
        return self._prefixes.accepted

    def change_key_prefix(self, prefix: str) -> None:
        """Record ``prefix`` as the one the keys this ledger issues from now on start
        with. Keys under the earlier prefixes keep working; processes opened before the
        change keep the prefixes they read at open until reopened (restart them). An
        operator's action on the whole ledger, as :meth:`rebuild` is."""
        self._prefixes = self._connection.guard(partial(prefixes.change, self._connection.views, prefix))
        self._verifier.accept(self._prefixes.accepted)

    def _no_key(self, field: str, value: str) -> str:
        if any(keyformat.contains_key(value, prefix) for prefix in self._prefixes.accepted):
            raise InvalidInput(field, "contains what looks like an API key; keys are never stored")
        return value

    def _new_secret(self) -> str:
        return keyformat.generate_key(self.key_prefix)


def _verify_in_the_past(
    verify: Callable[..., Principal | None],
    credential: object,
    *,
    at: datetime | None = None,
    strict: bool | None = None,
) -> Principal | None:
    """:meth:`Ledger.verify` on a frozen copy: answers for a past instant only (``None``
    without ``at``: a copy of a past authenticates no live request)."""
    if at is None:
        return None
    return verify(credential, at=at, strict=strict)


def _now(clock: Clock) -> datetime:
    """The clock's time in UTC; a clock that returns naive datetimes is refused."""
    now = clock()
    if now.tzinfo is None:
        raise InvalidInput("clock", "must return timezone-aware datetimes")
    return now.astimezone(UTC)


def _described(secret: str) -> NewSecret:
    return NewSecret(digest=keyformat.digest(secret).hex(), hint=keyformat.hint(secret))
