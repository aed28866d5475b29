"""Verification: a presented credential to the principal of a working key, or ``None``.

The hot path is a digest lookup in this process's index (see
:class:`~keyledger.follower.Follower`), after :class:`~keyledger.domain.keys.CredentialParser`
has read the credential. It fails closed: a verifier that cannot show its index is
current (no confirmation of the log head for longer than ``max_lag``, the ledger closed,
or a forked process not yet reconnected) refuses every credential, and :meth:`health`
says why. Verification at a past instant replays the account's events.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from keyledger.bootstrap import Clock
from keyledger.connection import Connection
from keyledger.domain import InvalidInput, KeyLedgerError
from keyledger.domain import keys as keyformat
from keyledger.history import replay
from keyledger.results import Health, Principal

logger = logging.getLogger("keyledger")

ALWAYS_CURRENT = 1e18
"""The lag allowed a ledger no other process writes to (``memory://``): its index is
current by construction."""
RETRY_PAUSE = 0.05
"""Seconds a ledger that does not follow waits after a failed catch-up before a
verification tries again (each refused meanwhile)."""
_monotonic = time.monotonic


class Verifier:
    """Answers :meth:`verify` and :meth:`health` for one open ledger."""

    def __init__(
        self, connection: Connection, *, key_prefixes: tuple[str, ...], clock: Clock, strict: bool
    ) -> None:
        self._connection = connection
        self.accept(key_prefixes)
        self._clock = clock
        self.strict = strict
        self._lag = connection.lag
        self._bind()
        connection.on_reconnect(self._bind)

    def accept(self, key_prefixes: tuple[str, ...]) -> None:
        """Verify the keys of ``key_prefixes`` (one prefix: its parser's own digest)."""
        self._digest = keyformat.digester(key_prefixes)
        self._parsers = [keyformat.parser_for(prefix) for prefix in key_prefixes]

    def _bind(self) -> None:
        """Hold this process's follower and usage recorder (again, after a fork)."""
        self._follower = self._connection.follower
        self._usage = self._connection.usage
        self._uses = self._usage.pending

    def verify(
        self, credential: object, *, at: datetime | None = None, strict: bool | None = None
    ) -> Principal | None:
        """See :meth:`keyledger.Ledger.verify`."""
        if at is not None or (self.strict if strict is None else strict):
            if strict is not None and not isinstance(strict, bool):
                raise InvalidInput("strict", "must be True, False or None")
            return self._verify_checked(credential, None if at is None else past("at", at, self._clock()))
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
        connection = self._connection
        if connection.closed or (connection.forked and not self._current()):
            return None
        key = next((k for parser in self._parsers if (k := parser.key(credential)) is not None), None)
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
        follower = self._follower
        try:
            behind = follower.head() > follower.position
        except Exception as error:
            logger.warning("strict verification refused: store unreachable (%s)", type(error).__name__)
            return False
        return not behind or follower.try_catch_up()

    def _verify_at(self, digest: bytes, at: datetime) -> Principal | None:
        connection = self._connection
        owner = connection.guard(lambda: connection.views.secret_owner(digest))
        if owner is None:
            return None
        views = connection.guard(lambda: replay(connection.app.recorder, connection.mapper, owner[0], at))
        principal = views.index.get(digest)
        if principal is None or (principal.grace_until is not None and at >= principal.grace_until):
            return None
        return principal

    def _current(self) -> bool:
        """Whether this process can show that its index holds every event of the log as
        of at most ``max_lag`` ago (the hot path's own check said it might not).

        A closed ledger cannot; a forked one reconnects first. A ledger whose threads do
        not follow the log (``follow=False``, ``memory://``) catches up here; one whose
        threads do leaves it to them: a stuck follower is not unstuck by more reads."""
        connection = self._connection
        if connection.closed:
            return False
        if connection.forked:
            try:
                connection.reconnect()
            except KeyLedgerError:
                return False
        follower = self._follower
        if not follower.following and _monotonic() - follower.failed_at >= RETRY_PAUSE:
            follower.try_catch_up()
        return _monotonic() - follower.confirmed <= self._lag

    def health(self, max_lag: timedelta) -> Health:
        """See :meth:`keyledger.Ledger.health`."""
        ok = self._current()
        connection, follower = self._connection, self._follower
        behind = 0.0 if self._lag == ALWAYS_CURRENT and ok else _monotonic() - follower.confirmed
        reason: str | None = None
        if connection.closed:
            reason = "the ledger is closed"
        elif connection.forked:
            reason = "this process was forked and cannot reach the store again"
        elif not ok:
            reason = (
                f"{follower.problem or f'no confirmation that position {follower.position} is the head'}; "
                f"not current for longer than max_lag ({max_lag.total_seconds():g} s)"
            )
        return Health(
            ok=ok,
            position=follower.position,
            head=max(follower.seen_head, follower.position),
            behind_for=timedelta.max if behind == float("inf") else timedelta(seconds=max(0.0, behind)),
            reason=reason,
        )


def aware(field: str, moment: object) -> datetime:
    """``moment`` in UTC, if it is a timezone-aware datetime, else :class:`InvalidInput`."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInput(field, "must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def past(field: str, moment: object, now: datetime) -> datetime:
    """``moment`` in UTC if it is a timezone-aware instant no later than ``now``, else
    :class:`InvalidInput`. The ledger answers for the past; for a future instant, today's
    state would claim that no revocation or deadline still to come takes effect."""
    instant = aware(field, moment)
    if instant > now:
        raise InvalidInput(
            field, f"{instant.isoformat()} is in the future (the ledger's clock reads {now.isoformat()})"
        )
    return instant
