"""The domain model: the Keyring aggregate and its events, the key format, actors and
permissions, and the error tree. Imports only the standard library, pydantic and
``eventsourcing.domain``."""

from __future__ import annotations

from keyledger.domain.actors import DEFAULT_ACCOUNT, Actor, Permission
from keyledger.domain.errors import (
    AccessRevoked,
    Conflict,
    FrozenLedger,
    IntegrityViolation,
    InvalidInput,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    PermissionDenied,
    StoreUnavailable,
    UserAccessUnchanged,
)
from keyledger.domain.keyring import Keyring, NewSecret
from keyledger.domain.state import KeyRecord, KeyringSnapshot, SecretRecord

EVENT_CLASSES: tuple[type[Keyring.Event], ...] = (
    Keyring.KeyCreated,
    Keyring.KeyRegenerated,
    Keyring.GraceExpired,
    Keyring.KeyRevoked,
    Keyring.UserAccessRevoked,
    Keyring.UserAccessRestored,
)
"""Every event class of the Keyring, in the order the design lists them."""

__all__ = [
    "DEFAULT_ACCOUNT",
    "EVENT_CLASSES",
    "AccessRevoked",
    "Actor",
    "Conflict",
    "FrozenLedger",
    "IntegrityViolation",
    "InvalidInput",
    "KeyAlreadyRevoked",
    "KeyLedgerError",
    "KeyNotFound",
    "KeyRecord",
    "Keyring",
    "KeyringSnapshot",
    "NewSecret",
    "Permission",
    "PermissionDenied",
    "SecretRecord",
    "StoreUnavailable",
    "UserAccessUnchanged",
]
