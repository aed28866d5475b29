"""Opening a ledger: a store URL and the environment turned into what a Ledger runs on.

The composition root (cosmicpython's bootstrap), with :mod:`keyledger.application`,
which wires eventsourcing to keyledger's mapper, transcoder and views: the settings a
URL names become an eventsourcing application and the account locks of that store; the
key prefix and grace period come from the caller, else the environment, else defaults.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventsourcing.persistence import PersistenceError

from keyledger.adapters.driven.account_locks import AccountLocks, account_locks_for
from keyledger.adapters.driven.stores import StoreSettings
from keyledger.application import KeyringApplication, creating_tables
from keyledger.domain import InvalidInput, StoreUnavailable
from keyledger.domain import keys as keyformat

Clock = Callable[[], datetime]
Connect = Callable[[], tuple[KeyringApplication, AccountLocks]]
"""Opens the store again: the application and the account locks (a forked child's)."""

DEFAULT_GRACE_PERIOD = timedelta(hours=12)
MIN_GRACE_PERIOD = timedelta(minutes=1)
MAX_GRACE_PERIOD = timedelta(days=7)
PREFIX_VARIABLE = "KEYLEDGER_KEY_PREFIX"
GRACE_VARIABLE = "KEYLEDGER_GRACE_SECONDS"


def system_clock() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def key_prefix(given: str | None) -> tuple[str | None, str]:
    """The key prefix this process asks for (``given``, else ``KEYLEDGER_KEY_PREFIX``, else
    none: the ledger's own) and where it came from, for errors. A bad value is refused
    naming where it came from (the argument, or the variable)."""
    if given is not None:
        return keyformat.check_prefix(given), "key_prefix"
    from_environment = os.environ.get(PREFIX_VARIABLE)
    if not from_environment:
        return None, PREFIX_VARIABLE
    try:
        return keyformat.check_prefix(from_environment), PREFIX_VARIABLE
    except InvalidInput as error:
        raise InvalidInput(PREFIX_VARIABLE, error.reason) from None


def grace_period(given: timedelta | None) -> timedelta:
    """How long a secret retired with grace keeps working: ``given``, else
    ``KEYLEDGER_GRACE_SECONDS``, else 12 hours (checked against the limits)."""
    if given is None:
        text = os.environ.get(GRACE_VARIABLE)
        if not text:
            return DEFAULT_GRACE_PERIOD
        lowest, highest = int(MIN_GRACE_PERIOD.total_seconds()), int(MAX_GRACE_PERIOD.total_seconds())
        within = f"must be a number of seconds from {lowest} to {highest} (1 minute to 7 days)"
        try:
            from_environment = timedelta(seconds=float(text))
        except (ValueError, OverflowError):
            raise InvalidInput(GRACE_VARIABLE, within) from None
        if not MIN_GRACE_PERIOD <= from_environment <= MAX_GRACE_PERIOD:
            raise InvalidInput(GRACE_VARIABLE, within)
        return from_environment
    if not isinstance(given, timedelta) or not MIN_GRACE_PERIOD <= given <= MAX_GRACE_PERIOD:
        raise InvalidInput("grace_period", "must be a timedelta from 1 minute to 7 days")
    return given


def connect(settings: StoreSettings) -> tuple[KeyringApplication, AccountLocks]:
    """The eventsourcing application and the account locks of the store ``settings``
    name, with their tables created if missing. A SQLite file in a directory that does
    not exist is bad input (the URL), not an unavailable store: retrying cannot help."""
    if settings.kind == "sqlite":
        directory = Path(settings.env["SQLITE_DBNAME"]).parent
        if not directory.is_dir():
            raise InvalidInput(
                "url", f"the directory {str(directory)!r} does not exist: create it, or give another path"
            )
    try:
        app = creating_tables(lambda: KeyringApplication(env=settings.env))
    except PersistenceError as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {type(error).__name__}") from None
    except sqlite3.Error as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {type(error).__name__}") from None
    except OSError as error:
        raise StoreUnavailable(f"cannot open {settings.describe()}: {error.strerror}") from None
    try:
        locks = account_locks_for(settings)
    except OSError as error:
        app.close()
        raise StoreUnavailable(f"cannot open {settings.describe()}: {error.strerror}") from None
    return app, locks
