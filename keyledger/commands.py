"""The command path: load the account's Keyring, let it decide, append its events and
the views in one transaction, retry a lost race.

Each command loads the Keyring (cached, and brought up to date with the events since),
decides on a copy, and appends its events through the unit of work (events and views in
one transaction) at the version it read; when another writer appended to
the same account first, it reloads and decides again, up to ``max_attempts`` times, then
raises :class:`Conflict`. Nothing is recorded twice: each attempt appends at the version
it read, and a commit whose answer was lost is recognised by its events' chains.

Once a command's events are committed it returns its result: nothing after the commit
raises, so a new secret is never lost. If bringing this process's views up fails there,
that is logged and verification refuses until the follower has caught up.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TypeVar, cast

from eventsourcing.application import AggregateNotFoundError, project_aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError

from keyledger.connection import Connection
from keyledger.domain import Conflict, FrozenLedger, Keyring, StoreUnavailable

T = TypeVar("T")
logger = logging.getLogger("keyledger")

DEFAULT_MAX_ATTEMPTS = 10
TRANSIENT_PAUSE = 0.2
"""Seconds before trying again after the store's connection failed (eventsourcing's own wait)."""


class Commands:
    """Runs decisions on one account's Keyring against the store."""

    def __init__(self, connection: Connection, now: Callable[[], datetime], max_attempts: int) -> None:
        self._connection = connection
        self._now = now
        self._max_attempts = max_attempts

    def run(self, account: str, decide: Callable[[Keyring, datetime], T]) -> T:
        """Load ``account``'s Keyring, let ``decide(keyring, now)`` trigger its events and
        append them; returns what ``decide`` returned."""
        # The cached Keyring is never changed by a command: each attempt decides on a copy,
        # so losing a race leaves nothing to undo, and the retry only fast-forwards. One
        # thread at a time per account in this process (they would only conflict), and
        # one process at a time per account through the store's account locks.
        connection = self._connection
        connection.ready()
        if connection.frozen_until is not None:
            raise FrozenLedger(
                f"this ledger is a frozen copy of the history before {connection.frozen_until.isoformat()}: "
                "it records nothing"
            )
        app, unit_of_work = connection.app, connection.unit_of_work
        with connection.lock_for(account), connection.locks.hold(account):
            for attempt in range(self._max_attempts):
                now = self._now()
                keyring = connection.guard(partial(self.load, account, now)).copy()
                result = decide(keyring, now)
                events = keyring.collect_events()
                if not events:
                    return result
                try:
                    committed = unit_of_work.commit([app.mapper.to_stored_event(event) for event in events])
                except IntegrityError:
                    if self._landed(events):
                        return result
                    logger.debug("account %r changed concurrently; attempt %d", account, attempt + 1)
                    # Full jitter, doubling up to 100 ms: losers spread out, not collide again.
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))  # noqa: S311 - jitter
                    continue
                except unit_of_work.retried as error:
                    # The connection failed (PostgreSQL restarting, a network cut): if the
                    # attempt did not land, decide again after a pause, as eventsourcing's
                    # own recorder retries its insert. (SQLite's "locked" has already
                    # waited out its busy timeout: that is a failure of the store.)
                    if self._landed(events):
                        return result
                    if attempt + 1 == self._max_attempts:
                        raise StoreUnavailable(
                            f"store {connection.name} failed: {type(error).__name__}"
                        ) from None
                    time.sleep(TRANSIENT_PAUSE)
                    continue
                except PersistenceError as error:
                    if self._landed(events):
                        return result
                    raise StoreUnavailable(
                        f"store {connection.name} failed: {type(error).__name__}"
                    ) from None
                # Committed: from here on nothing raises.
                try:
                    connection.follower.take(committed)
                except Exception as error:
                    connection.follower.missed()
                    logger.error(
                        "a command's events are recorded, but this process's views did not take "
                        "them (%s); verification refuses until the follower has caught up",
                        type(error).__name__,
                    )
                app.saved(keyring, events)
                return result
        raise Conflict(
            f"account {account!r} kept changing under {self._max_attempts} attempts; nothing was "
            "recorded, try again"
        )

    def load(self, account: str, now: datetime) -> Keyring:
        """The account's Keyring as stored (a new one, created at ``now``, if it has no
        events); a Keyring from a snapshot written before secrets recorded their
        recipients is rebuilt from its events."""
        keyring_id = Keyring.id_for(account)
        repository = self._connection.app.repository
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

    def _landed(self, events: Sequence[Keyring.Event]) -> bool:
        """Whether ``events`` are stored after all, at their versions: a commit whose
        answer was lost (the connection dropped during ``COMMIT``, and the recorder's
        retry then met the first attempt's rows) must be taken as done, never decided
        again. Each event's chain covers its content, time and predecessor, so an equal
        chain at the same version is this very event. Brings the views up to them."""
        connection = self._connection
        first, last = events[0], events[-1]
        try:
            stored = connection.app.recorder.select_events(
                first.originator_id, gt=first.originator_version - 1, lte=last.originator_version
            )
            chains = [getattr(connection.mapper.to_domain_event(event), "chain", None) for event in stored]
        except Exception as error:
            logger.warning("cannot tell whether a failed append landed: %s", type(error).__name__)
            return False
        if chains != [event.chain for event in events]:
            return False
        logger.warning("an append whose commit was not acknowledged had landed; taken as done")
        try:
            connection.follower.catch_up()
        except Exception as error:
            connection.follower.missed()
            logger.error("the views did not take a landed append (%s)", type(error).__name__)
        return True
