"""The Keyring aggregate: one per account, holding every key of that account.

The Keyring is the consistency boundary: each command loads it, checks its rules in
``check_*`` methods (raising before anything changes), then triggers exactly the events
the rule allows; saving them is one atomic append at the next version, so a concurrent
writer of the same account loses with a version conflict instead of interleaving.
That is what makes the user-access cascade race-free: a key can only be created, or
given a new secret, by a user whose access is not revoked at the version the event is
appended on, and revoking a user's access removes, in the same append, every key that
user could still use (see :meth:`Keyring.revoke_user_access`).

Recorded time never goes back within an account: each command records its events at
the clock's time, or at the time of the account's previous event if the clock reads
earlier (:meth:`Keyring.recording_time`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar
from uuid import UUID, uuid5

from eventsourcing.domain import OriginatorIDError, OriginatorVersionError
from pydantic import AwareDatetime, BaseModel, ConfigDict, PrivateAttr

from keyledger.domain.actors import Actor, Permission
from keyledger.domain.chain import GENESIS, link
from keyledger.domain.errors import (
    AccessRevoked,
    IntegrityViolation,
    KeyAlreadyRevoked,
    KeyNotFound,
    PermissionDenied,
    UserAccessUnchanged,
)
from keyledger.domain.keys import is_key_id, new_key_id
from keyledger.domain.state import KeyRecord, KeyringSnapshot, SecretRecord

KEYRING_NAMESPACE = UUID("6f1c8a52-3d1e-5b7a-9c2f-4e8d0b6a1f37")
USER_REMOVED_REASON = "creator's access revoked"
"""The reason shown for a key removed with a user's access. Derived on replay, never
stored: it keeps its first-release text, which the catalogue of recorded history shows,
also for keys removed because the user received one of their secrets."""
_E = TypeVar("_E", bound="Keyring.Event")


class NewSecret(NamedTuple):
    """What the Keyring learns of a new secret: its digest (hex) and display hint."""

    digest: str
    hint: str


class Keyring:
    """All keys of one account, and which of its users have had their access revoked.

    ``recipients_known`` is ``False`` only for a Keyring loaded from a snapshot written
    before secrets recorded who received them (see :meth:`from_snapshot`): its loader
    rebuilds it from its events instead.
    """

    TOPIC: ClassVar[str] = "keyledger.Keyring"

    class Event(BaseModel):
        """Base of the Keyring's events: frozen, strict about fields, hash-chained."""

        model_config = ConfigDict(frozen=True, extra="forbid")
        TOPIC: ClassVar[str]
        class_version: ClassVar[int] = 1

        originator_id: UUID
        originator_version: int
        timestamp: AwareDatetime
        account: str
        actor: str | None
        chain: str
        _stored: dict[str, Any] | None = PrivateAttr(default=None)
        """The stored fields, when the event was triggered here (its chain computed them)."""

        @property
        def occurred_at(self) -> datetime:
            """When the event took effect (its recording time, unless it says otherwise)."""
            return self.timestamp

        def stored_state(self) -> dict[str, Any]:
            """The fields as stored: JSON types, without the aggregate id and version."""
            if self._stored is not None:
                return dict(self._stored)
            state = self.model_dump(mode="json", exclude={"originator_id", "originator_version"})
            if self.class_version > 1:
                state["class_version"] = self.class_version
            return state

        def mutate(self, aggregate: Keyring | None) -> Keyring:
            """Apply this event to ``aggregate`` (a new, empty Keyring if ``None``)."""
            if aggregate is None:
                aggregate = Keyring(self.originator_id, self.account, self.timestamp)
            if self.originator_id != aggregate.id:
                raise OriginatorIDError(self.originator_id, aggregate.id)
            if self.originator_version != aggregate.version + 1:
                raise OriginatorVersionError(self.originator_version, aggregate.version + 1)
            self.apply(aggregate)
            aggregate.version = self.originator_version
            aggregate.modified_on = self.timestamp
            aggregate.chain = self.chain
            return aggregate

        def apply(self, keyring: Keyring) -> None:
            """Change the Keyring's state as this event says."""

    class KeyCreated(Event):
        """A key was created; only its digest and hint are recorded."""

        TOPIC: ClassVar[str] = "keyledger.KeyCreated"
        key_id: str
        name: str
        purpose: str
        application: str
        created_by: str
        digest: str
        hint: str

        def apply(self, keyring: Keyring) -> None:
            keyring.keys[self.key_id] = KeyRecord(
                key_id=self.key_id,
                name=self.name,
                purpose=self.purpose,
                application=self.application,
                created_by=self.created_by,
                created_at=self.timestamp,
                current=SecretRecord(digest=self.digest, hint=self.hint, issued_to=self.created_by),
            )

    class KeyRegenerated(Event):
        """A key got a new secret, issued to the ``actor``; the retired one works until
        ``grace_until`` (grace) or stops at once (immediate, which also ends
        ``ended_digests``, the secrets in grace)."""

        TOPIC: ClassVar[str] = "keyledger.KeyRegenerated"
        key_id: str
        mode: Literal["immediate", "grace"]
        digest: str
        hint: str
        retired_digest: str
        grace_until: AwareDatetime | None
        ended_digests: tuple[str, ...] = ()

        def apply(self, keyring: Keyring) -> None:
            record = keyring.changing(self.key_id)
            retired = record.current
            if self.mode == "grace" and retired is not None:
                record.grace.append(retired.model_copy(update={"grace_until": self.grace_until}))
            else:
                record.grace = []
            record.current = SecretRecord(digest=self.digest, hint=self.hint, issued_to=self.actor)
            record.regenerated_at = self.timestamp

    class GraceExpired(Event):
        """A retired secret's grace deadline passed; ``grace_until`` is when it took effect."""

        TOPIC: ClassVar[str] = "keyledger.GraceExpired"
        key_id: str
        retired_digest: str
        grace_until: AwareDatetime

        @property
        def occurred_at(self) -> datetime:
            return self.grace_until

        def apply(self, keyring: Keyring) -> None:
            record = keyring.changing(self.key_id)
            record.grace = [s for s in record.grace if s.digest != self.retired_digest]

    class KeyRevoked(Event):
        """A key was revoked: every secret of it (``ended_digests``) stopped working."""

        TOPIC: ClassVar[str] = "keyledger.KeyRevoked"
        key_id: str
        reason: str | None
        ended_digests: tuple[str, ...] = ()

        def apply(self, keyring: Keyring) -> None:
            keyring.changing(self.key_id).end(self.timestamp, self.reason)

    class UserAccessRevoked(Event):
        """A user's access was revoked, and with it the keys ``removed_key_ids`` (every
        key they could still use, as decided when recorded; replay never recomputes it)."""

        TOPIC: ClassVar[str] = "keyledger.UserAccessRevoked"
        user_id: str
        removed_key_ids: tuple[str, ...]
        ended_digests: tuple[str, ...] = ()

        def apply(self, keyring: Keyring) -> None:
            keyring.revoked_users.add(self.user_id)
            for key_id in self.removed_key_ids:
                keyring.changing(key_id).end(self.timestamp, USER_REMOVED_REASON)

    class UserAccessRestored(Event):
        """A user's access was restored (new keys only: removed keys stay removed)."""

        TOPIC: ClassVar[str] = "keyledger.UserAccessRestored"
        user_id: str

        def apply(self, keyring: Keyring) -> None:
            keyring.revoked_users.discard(self.user_id)

    def __init__(self, id: UUID, account: str, created_on: datetime) -> None:
        self._id = id
        self._version = 0
        self._created_on = created_on
        self._modified_on = created_on
        self._pending_events: list[Keyring.Event] = []
        self.account = account
        self.keys: dict[str, KeyRecord] = {}
        self.revoked_users: set[str] = set()
        self.chain = GENESIS
        self.recipients_known = True

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def id_for(account: str) -> UUID:
        """The Keyring id of an account (a ``uuid5``, kept for the accounts used lately)."""
        return uuid5(KEYRING_NAMESPACE, account)

    @classmethod
    def from_snapshot(cls, snapshot: KeyringSnapshot) -> Keyring:
        """The Keyring a snapshot was taken of.

        A snapshot written before secrets recorded their recipient (``issued_to``) cannot
        say who received a secret issued by a regeneration; only the events can (the
        regeneration's actor). Snapshots are a cache, so nothing is guessed: the current
        secret of a key never regenerated was issued to its creator, which is exact and
        filled in; any other secret of an active key without a recipient leaves
        ``recipients_known`` ``False``, for the loader to rebuild the Keyring from its
        events, and makes :meth:`revoke_user_access` and
        :meth:`working_keys_of_revoked_users` raise rather than decide on a guess.
        """
        state = snapshot.state
        keyring = cls(snapshot.originator_id, state.account, state.created_on)
        keyring._version = snapshot.originator_version
        keyring._modified_on = state.modified_on
        keyring.chain = state.chain
        keyring.keys = {}
        for record in state.keys:
            current = record.current
            if current is not None and current.issued_to is None and record.regenerated_at is None:
                current = current.model_copy(update={"issued_to": record.created_by})
                record = record.model_copy(update={"current": current})
            if record.revoked_at is None and any(
                s is not None and s.issued_to is None for s in (current, *record.grace)
            ):
                keyring.recipients_known = False
            keyring.keys[record.key_id] = record
        keyring.revoked_users = set(state.revoked_users)
        return keyring

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value

    @property
    def created_on(self) -> datetime:
        return self._created_on

    @property
    def modified_on(self) -> datetime:
        return self._modified_on

    @modified_on.setter
    def modified_on(self, value: datetime) -> None:
        self._modified_on = value

    def changing(self, key_id: str) -> KeyRecord:
        """The key's record, replaced by a copy of it first: events never change a shared
        record in place, so a :meth:`copy` (and a snapshot) shares records with its
        original safely. The copy is shallow but for its own list of secrets in grace:
        secrets themselves are never changed, only replaced."""
        record = self.keys[key_id]
        record = self.keys[key_id] = record.model_copy(update={"grace": list(record.grace)})
        return record

    def copy(self) -> Keyring:
        """A copy for one command to change: its own dict of records and set of users
        (records are shared until an event replaces them); the original stays as it was."""
        clone = object.__new__(Keyring)
        clone.__dict__.update(self.__dict__)
        clone.keys = dict(self.keys)
        clone.revoked_users = set(self.revoked_users)
        clone._pending_events = []
        return clone

    @property
    def pending_events(self) -> list[Keyring.Event]:
        """Events triggered since the last save."""
        return self._pending_events

    def collect_events(self) -> list[Keyring.Event]:
        """Hand over the events triggered since the last save."""
        collected, self._pending_events = self._pending_events, []
        return collected

    def recording_time(self, now: datetime) -> datetime:
        """The time a command at ``now`` records its events at: ``now``, or the time of
        this account's previous event if ``now`` is earlier (a clock stepped back, or
        two machines whose clocks differ). The command then runs at that time throughout:
        a grace deadline is the recorded regeneration time plus the grace period, so
        ``grace_until - timestamp`` is always exactly the period, and recorded time never
        goes back within an account. Costs nothing: the Keyring knows its last time."""
        return now if now >= self._modified_on else self._modified_on

    # Rules: each raises before anything changes.

    def check_actor(self, actor: Actor, permission: Permission) -> None:
        """The actor acts in this account, holds ``permission`` and is not revoked."""
        if actor.account != self.account:
            raise PermissionDenied(f"user {actor.user_id!r} does not act in account {self.account!r}")
        if not actor.can(permission):
            raise PermissionDenied(
                f"user {actor.user_id!r} lacks the {permission.value!r} permission "
                f"in account {self.account!r}"
            )
        if actor.user_id in self.revoked_users:
            raise AccessRevoked(
                f"user {actor.user_id!r} has had their access to account {self.account!r} "
                "revoked; an administrator can restore it"
            )

    def check_key(self, key_id: object) -> KeyRecord:
        """The key exists in this account and is not revoked."""
        record = self.keys.get(key_id) if isinstance(key_id, str) else None
        if record is None:
            # Echo only what has a key id's shape: a caller may pass a secret here.
            shown = repr(key_id) if is_key_id(key_id) else "with the id given (not a key id)"
            raise KeyNotFound(f"no key {shown} in account {self.account!r}")
        if record.revoked_at is not None:
            raise KeyAlreadyRevoked(f"key {key_id!r} was revoked and cannot be changed")
        return record

    # Commands: check, then trigger.

    def create_key(
        self, actor: Actor, *, name: str, purpose: str, application: str, secret: NewSecret, now: datetime
    ) -> str:
        """Create a key for ``secret``; returns its new key id."""
        now = self.recording_time(now)
        self.check_actor(actor, Permission.INTEGRATION)
        key_id = new_key_id()
        while key_id in self.keys:
            key_id = new_key_id()  # pragma: no cover - 95 random bits
        self._trigger(
            Keyring.KeyCreated,
            now,
            actor.user_id,
            key_id=key_id,
            name=name,
            purpose=purpose,
            application=application,
            created_by=actor.user_id,
            digest=secret.digest,
            hint=secret.hint,
        )
        return key_id

    def regenerate_key(
        self, actor: Actor, key_id: str, *, secret: NewSecret, grace: timedelta | None, now: datetime
    ) -> datetime | None:
        """Give the key ``secret``; the old one works for ``grace`` more, or stops now.

        Returns the old secret's deadline (``None`` when it stopped at once).
        """
        now = self.recording_time(now)
        self.check_actor(actor, Permission.INTEGRATION)
        record = self.check_key(key_id)
        assert record.current is not None
        grace_until = now + grace if grace is not None else None
        self._trigger(
            Keyring.KeyRegenerated,
            now,
            actor.user_id,
            key_id=key_id,
            mode="grace" if grace is not None else "immediate",
            digest=secret.digest,
            hint=secret.hint,
            retired_digest=record.current.digest,
            grace_until=grace_until,
            ended_digests=() if grace is not None else tuple(s.digest for s in record.grace),
        )
        return grace_until

    def revoke_key(self, actor: Actor, key_id: str, *, reason: str | None, now: datetime) -> None:
        """Revoke the key: none of its secrets works again."""
        now = self.recording_time(now)
        self.check_actor(actor, Permission.INTEGRATION)
        record = self.check_key(key_id)
        self._trigger(
            Keyring.KeyRevoked,
            now,
            actor.user_id,
            key_id=key_id,
            reason=reason,
            ended_digests=tuple(record.digests()),
        )

    def revoke_user_access(self, actor: Actor, user_id: str, *, now: datetime) -> list[str]:
        """Revoke a user's access and remove (revoke whole) every key they could still use:
        each active key they created, and each active key with a secret that works at
        ``now`` (current, or in grace before its deadline) issued to them by a
        regeneration. Returns the removed key ids, in creation order."""
        now = self.recording_time(now)
        self.check_actor(actor, Permission.USER_MANAGEMENT)
        if user_id == actor.user_id:
            raise PermissionDenied(f"user {user_id!r} cannot revoke their own access")
        if user_id in self.revoked_users:
            raise UserAccessUnchanged(f"user {user_id!r} already has their access revoked")
        removed = self.keys_usable_by({user_id}, now)
        self._trigger(
            Keyring.UserAccessRevoked,
            now,
            actor.user_id,
            user_id=user_id,
            removed_key_ids=tuple(r.key_id for r in removed),
            ended_digests=tuple(d for r in removed for d in r.digests()),
        )
        return [r.key_id for r in removed]

    def keys_usable_by(self, users: Collection[str], now: datetime) -> list[KeyRecord]:
        """The active keys any of ``users`` could use at ``now``, in creation order: those
        they created, and those with a working secret issued to one of them.

        Raises :class:`IntegrityViolation` if the answer depends on a secret whose
        recipient this Keyring does not know (loaded from a snapshot older than
        recipients; see :meth:`from_snapshot`), rather than guess."""
        found: list[KeyRecord] = []
        for record in self.keys.values():
            if record.revoked_at is not None:
                continue
            if record.created_by in users:
                found.append(record)
                continue
            recipients = {secret.issued_to for secret in record.working(now)}
            if not recipients.isdisjoint(users):
                found.append(record)
            elif None in recipients:
                raise IntegrityViolation(
                    f"the Keyring of account {self.account!r} was loaded from a snapshot "
                    "written before recipients were recorded and cannot tell who holds key "
                    f"{record.key_id!r}; load it from its events"
                )
        return found

    def working_keys_of_revoked_users(self, now: datetime) -> list[str]:
        """The ids of active keys that a user whose access is revoked created, or holds a
        working secret of at ``now``: always empty, by the cascade's invariant."""
        if not self.revoked_users:
            return []
        return [record.key_id for record in self.keys_usable_by(self.revoked_users, now)]

    def restore_user_access(self, actor: Actor, user_id: str, *, now: datetime) -> None:
        """Let a revoked user manage keys again (their removed keys stay removed)."""
        now = self.recording_time(now)
        self.check_actor(actor, Permission.USER_MANAGEMENT)
        if user_id not in self.revoked_users:
            raise UserAccessUnchanged(f"user {user_id!r} does not have their access revoked")
        self._trigger(Keyring.UserAccessRestored, now, actor.user_id, user_id=user_id)

    def expire_grace(self, now: datetime) -> int:
        """Record ``GraceExpired`` for each secret whose deadline is at or before ``now``."""
        now = self.recording_time(now)
        passed = [
            (secret.grace_until, record.key_id, secret.digest)
            for record in self.keys.values()
            for secret in record.grace
            if secret.grace_until is not None and secret.grace_until <= now
        ]
        for grace_until, key_id, digest in sorted(passed):
            self._trigger(
                Keyring.GraceExpired, now, None, key_id=key_id, retired_digest=digest, grace_until=grace_until
            )
        return len(passed)

    def _trigger(self, event_class: type[_E], now: datetime, actor: str | None, **fields: Any) -> _E:
        version = self._version + 1
        draft = event_class(
            originator_id=self._id,
            originator_version=version,
            timestamp=now,
            account=self.account,
            actor=actor,
            chain="",
            **fields,
        )
        state = draft.stored_state()
        chain = link(self.chain, str(self._id), version, event_class.TOPIC, state)
        event = draft.model_copy(update={"chain": chain})
        state["chain"] = chain
        event._stored = state  # what the mapper stores: dumped once, for the chain
        event.mutate(self)
        self._pending_events.append(event)
        return event
