"""An event as the projections read it: one slotted dataclass per event kind.

Each class mirrors one of the Keyring's events (:mod:`keyledger.domain.keyring`) field
for field, plus where the event sits in the store, so the views read typed attributes
that mypy checks, and a change to an event's schema is made in the event and here
(a unit test fails while the two differ). They are built straight from the stored JSON
(:func:`read_recorded`), not through the pydantic events: rebuilding the views and
following the log build one per event, and validation is the command path's job (and
the chain's, for what is stored). Times stay as stored, ISO 8601 text, because the SQL
views write them as text; the ``..._at`` properties parse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from sys import intern
from typing import Any, ClassVar, Literal, TypeVar, dataclass_transform

from keyledger.domain.keyring import Keyring

TOPIC_PREFIX = "keyledger."
"""What every stored topic starts with (``keyledger.KeyCreated``: the action after it)."""
_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen_for_mypy(cls: type[_T]) -> type[_T]:
    """A slotted dataclass that mypy holds frozen (assigning an attribute is an error)
    and that is not frozen at run time: a frozen dataclass's ``__init__`` sets every
    field through ``object.__setattr__``, which costs as much as the rest of reading
    an event, and rebuilding or following the views builds one per event."""
    return dataclass(slots=True)(cls)


@frozen_for_mypy
class Recorded:
    """What every recorded event has: where it is in the store, its account and actor,
    when it was recorded, its chain, and the stored fields it was read from. Signatures
    take this base; projections dispatch on the kind (``match``/``isinstance``)."""

    event: ClassVar[type[Keyring.Event]]
    """The domain event this is the record of (its topic, its upcasters)."""
    action: ClassVar[str]
    """The event's name: ``KeyCreated``, ``KeyRegenerated``, ..."""

    position: int
    """Its position in the store's global order (for a replay of one account, its version)."""
    version: int
    """Its version in its account's stream (1, 2, ...)."""
    previous: int
    """The position of the event before this one in the store (0 for the first).
    Positions may have gaps, so this is what shows that none is missing."""
    stored: Mapping[str, Any] = field(repr=False, compare=False)
    """The stored fields as decoded (JSON types, upcast), kept by reference, not copied,
    for the one reader that wants the event as stored rather than typed: the audit
    entry's ``details``. Projections read the typed attributes. (The integrity check
    recomputes the chain over the fields it decoded itself, before building this.)"""
    account: str
    actor: str | None
    """Who ran the command; ``None`` for ``GraceExpired`` (recorded by the ledger)."""
    timestamp: str
    """When it was recorded, as stored (ISO 8601 text)."""
    chain: str

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        """This kind of event built from its stored fields ``s`` (already upcast).

        Fields are read, not checked: one missing raises ``KeyError``, a value of the
        wrong JSON type goes through (validation is the command path's job, and the
        chain, which the integrity check recomputes, vouches for what is stored). Each
        kind calls its class positionally, in its fields' order (faster than keywords on
        a path that runs once per event; a unit test compares every attribute with the
        stored field of its name, so an argument out of place fails it). A field an older
        event may lack (``ended_digests`` came later) reads as the domain event's default.
        """
        raise NotImplementedError(f"{cls.__name__} is not one kind of event")

    @property
    def recorded_at(self) -> datetime:
        """When it was recorded."""
        return datetime.fromisoformat(self.timestamp)

    @property
    def occurred_text(self) -> str:
        """When it took effect, as stored (ISO 8601 text): when it was recorded, unless
        the event says otherwise (a grace deadline for ``GraceExpired``)."""
        return self.timestamp

    @property
    def occurred_at(self) -> datetime:
        """When it took effect (a grace deadline for ``GraceExpired``)."""
        return datetime.fromisoformat(self.occurred_text)


@frozen_for_mypy
class RecordedKeyEvent(Recorded):
    """An event about one key."""

    key_id: str


@frozen_for_mypy
class RecordedKeyCreated(RecordedKeyEvent):
    """A key was created (see :class:`Keyring.KeyCreated`)."""

    event = Keyring.KeyCreated
    action = "KeyCreated"
    name: str
    purpose: str
    application: str
    created_by: str
    digest: str
    hint: str

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["key_id"], s["name"], s["purpose"], s["application"], s["created_by"], s["digest"], s["hint"],
        )  # fmt: skip


@frozen_for_mypy
class RecordedKeyRegenerated(RecordedKeyEvent):
    """A key got a new secret (see :class:`Keyring.KeyRegenerated`)."""

    event = Keyring.KeyRegenerated
    action = "KeyRegenerated"
    mode: Literal["immediate", "grace"]
    digest: str
    hint: str
    retired_digest: str
    grace_until: str | None
    """The retired secret's deadline in grace mode, as stored (ISO 8601 text)."""
    ended_digests: Sequence[str]

    @property
    def grace_deadline(self) -> datetime | None:
        """:attr:`grace_until` as a time."""
        return None if self.grace_until is None else datetime.fromisoformat(self.grace_until)

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["key_id"], s["mode"], s["digest"], s["hint"], s["retired_digest"], s["grace_until"],
            s.get("ended_digests", ()),
        )  # fmt: skip


@frozen_for_mypy
class RecordedGraceExpired(RecordedKeyEvent):
    """A retired secret's grace deadline passed (see :class:`Keyring.GraceExpired`)."""

    event = Keyring.GraceExpired
    action = "GraceExpired"
    retired_digest: str
    grace_until: str
    """The deadline, when the event took effect, as stored (ISO 8601 text)."""

    @property
    def occurred_text(self) -> str:
        return self.grace_until

    @property
    def grace_deadline(self) -> datetime:
        """:attr:`grace_until` as a time."""
        return datetime.fromisoformat(self.grace_until)

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["key_id"], s["retired_digest"], s["grace_until"],
        )  # fmt: skip


@frozen_for_mypy
class RecordedKeyRevoked(RecordedKeyEvent):
    """A key was revoked (see :class:`Keyring.KeyRevoked`)."""

    event = Keyring.KeyRevoked
    action = "KeyRevoked"
    reason: str | None
    ended_digests: Sequence[str]

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["key_id"], s["reason"], s.get("ended_digests", ()),
        )  # fmt: skip


@frozen_for_mypy
class RecordedUserAccessRevoked(Recorded):
    """A user's access was revoked, with the keys it removed (see
    :class:`Keyring.UserAccessRevoked`)."""

    event = Keyring.UserAccessRevoked
    action = "UserAccessRevoked"
    user_id: str
    removed_key_ids: Sequence[str]
    ended_digests: Sequence[str]

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["user_id"], s["removed_key_ids"], s.get("ended_digests", ()),
        )  # fmt: skip


@frozen_for_mypy
class RecordedUserAccessRestored(Recorded):
    """A user's access was restored (see :class:`Keyring.UserAccessRestored`)."""

    event = Keyring.UserAccessRestored
    action = "UserAccessRestored"
    user_id: str

    @classmethod
    def read(cls, s: Mapping[str, Any], position: int, version: int, previous: int) -> Recorded:
        return cls(
            position, version, previous, s, intern(s["account"]), s["actor"], s["timestamp"], s["chain"],
            s["user_id"],
        )  # fmt: skip


RECORDED: dict[str, type[Recorded]] = {
    kind.event.TOPIC: kind
    for kind in (
        RecordedKeyCreated,
        RecordedKeyRegenerated,
        RecordedGraceExpired,
        RecordedKeyRevoked,
        RecordedUserAccessRevoked,
        RecordedUserAccessRestored,
    )
}
"""The kind of recorded event stored under each topic."""


def read_recorded(
    stored: Mapping[str, Any], topic: str, position: int, version: int, previous: int
) -> Recorded:
    """The event stored under ``topic`` with these fields (already upcast: see
    ``PydanticMapper.recorded_from``), as the projections read it; ``KeyError`` for an
    unknown topic or a missing field."""
    return RECORDED[topic].read(stored, position, version, previous)
