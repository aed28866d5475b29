"""The errors keyledger raises, one small tree under one root.

::

    KeyLedgerError
    ├── InvalidInput          (also a ValueError) a value was refused; nothing recorded
    ├── PermissionDenied      the actor lacks the permission the command needs
    ├── AccessRevoked         the acting user's access to the account is revoked
    ├── KeyNotFound           (also a LookupError) no such key in the actor's account
    ├── KeyAlreadyRevoked     the key was revoked; it can never be managed again
    ├── UserAccessUnchanged   the user's access is already what the command asks for
    ├── Conflict              concurrent writers kept winning; nothing recorded
    ├── IntegrityViolation    stored history does not match its hash chain
    ├── FrozenLedger          the ledger is a frozen copy of a past; it records nothing
    └── StoreUnavailable      the event store could not be reached or written

No message ever contains a secret: errors name key ids, fields and users, never a
credential or any piece of one.
"""

from __future__ import annotations


class KeyLedgerError(Exception):
    """The root of every error keyledger raises on purpose."""


class InvalidInput(KeyLedgerError, ValueError):
    """A value passed in was refused; the message names the field and why.

    Nothing is recorded when this is raised.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class PermissionDenied(KeyLedgerError):
    """The actor lacks the permission the command needs; nothing is recorded."""


class AccessRevoked(KeyLedgerError):
    """The acting user's access to the account is revoked until an administrator
    restores it; nothing is recorded."""


class KeyNotFound(KeyLedgerError, LookupError):
    """The key id is not a key of the actor's account (malformed, unknown, or
    another account's)."""


class KeyAlreadyRevoked(KeyLedgerError):
    """The key is revoked and can never be regenerated or revoked again."""


class UserAccessUnchanged(KeyLedgerError):
    """Revoking a user whose access is already revoked, or restoring one whose
    access is not revoked; nothing is recorded."""


class Conflict(KeyLedgerError):
    """Other writers changed the same account on every attempt; nothing from this
    command was recorded, and it is safe to try again."""


class IntegrityViolation(KeyLedgerError):
    """Stored history does not match its hash chain (raised where a check cannot
    simply report, such as decoding a tampered event)."""


class FrozenLedger(KeyLedgerError):
    """The ledger is a frozen copy of its history up to an instant (``Ledger.copy`` with
    ``until``): it answers queries but records nothing, since a past must not grow a
    second future."""


class StoreUnavailable(KeyLedgerError):
    """The event store could not be opened, reached or written."""
