"""The Keyring aggregate: given prior events, when one command, then the new events or the error."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import OriginatorVersionError

from keyledger.domain import (
    AccessRevoked,
    Actor,
    IntegrityViolation,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    Keyring,
    KeyringSnapshot,
    NewSecret,
    Permission,
    PermissionDenied,
    SecretRecord,
    UserAccessUnchanged,
)
from keyledger.domain.chain import GENESIS, link
from keyledger.domain.keys import digest, generate_key, hint

ACCOUNT = "acme"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=12)

ALICE = Actor(user_id="alice", account=ACCOUNT, permissions={Permission.INTEGRATION})
BOB = Actor(user_id="bob", account=ACCOUNT, permissions={Permission.INTEGRATION})
ADMIN = Actor(
    user_id="root", account=ACCOUNT, permissions={Permission.INTEGRATION, Permission.USER_MANAGEMENT}
)
NOBODY = Actor(user_id="carol", account=ACCOUNT)
OUTSIDER = Actor(user_id="eve", account="other", permissions={Permission.INTEGRATION})


def minutes(n: float) -> datetime:
    """``n`` minutes after the start of every test."""
    return NOW + timedelta(minutes=n)


def new_secret() -> tuple[str, NewSecret]:
    """A fresh key and what the Keyring learns of it."""
    key = generate_key("kl")
    return key, NewSecret(digest=digest(key).hex(), hint=hint(key))


def secret() -> NewSecret:
    """What the Keyring learns of a fresh key."""
    return new_secret()[1]


def empty_keyring() -> Keyring:
    """A Keyring with no history, as the Ledger makes for a new account."""
    return Keyring(Keyring.id_for(ACCOUNT), ACCOUNT, NOW)


def saved(keyring: Keyring) -> Keyring:
    """The Keyring with its pending events handed over, as after a save."""
    keyring.collect_events()
    return keyring


def create(keyring: Keyring, actor: Actor = ALICE, at: datetime = NOW, name: str = "Shipping") -> str:
    """Create a key and return its id."""
    return keyring.create_key(actor, name=name, purpose="", application="", secret=secret(), now=at)


def state_of(keyring: Keyring) -> dict[str, Any]:
    """Everything a Keyring knows, in comparable form."""
    return {
        "id": keyring.id,
        "account": keyring.account,
        "version": keyring.version,
        "chain": keyring.chain,
        "created_on": keyring.created_on,
        "modified_on": keyring.modified_on,
        "keys": {key_id: record.model_dump() for key_id, record in keyring.keys.items()},
        "revoked_users": set(keyring.revoked_users),
    }


class TestCreateKey:
    def test_creating_a_key_triggers_one_key_created(self) -> None:
        """Creating a key triggers exactly one KeyCreated with the key's labels, creator, digest and hint."""
        keyring = empty_keyring()
        key, described = new_secret()

        key_id = keyring.create_key(
            ALICE, name="Shipping", purpose="labels", application="ShipStation", secret=described, now=NOW
        )

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.KeyCreated)
        assert event.key_id == key_id
        assert (event.name, event.purpose, event.application) == ("Shipping", "labels", "ShipStation")
        assert (event.created_by, event.actor, event.account) == ("alice", "alice", ACCOUNT)
        assert event.digest == digest(key).hex()
        assert event.hint == "kl_..." + key[-4:]
        assert event.timestamp == NOW
        assert (event.originator_id, event.originator_version) == (keyring.id, 1)
        assert keyring.version == 1

    def test_the_new_key_is_active_with_its_secret_current(self) -> None:
        """The created key is active, created now by its actor, with the new secret current."""
        keyring = empty_keyring()
        _, described = new_secret()

        key_id = keyring.create_key(BOB, name="CI", purpose="", application="", secret=described, now=NOW)

        record = keyring.keys[key_id]
        assert record.status == "active"
        assert (record.created_by, record.created_at) == ("bob", NOW)
        assert record.current == SecretRecord(digest=described.digest, hint=described.hint, issued_to="bob")
        assert record.grace == []

    def test_each_key_gets_its_own_id(self) -> None:
        """Two keys created in one Keyring get two ids of the public shape."""
        keyring = empty_keyring()

        first, second = create(keyring), create(keyring)

        assert first != second
        assert first.startswith("key_")
        assert len(first) == 20


class TestChain:
    def test_a_triggered_event_stores_exactly_its_fields(self) -> None:
        """The state kept from computing the chain is the event's fields as a fresh dump
        gives them (chain included), and a copy: changing it changes nothing stored."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=timedelta(hours=12), now=minutes(1))

        for event in keyring.pending_events:
            fresh = event.model_dump(mode="json", exclude={"originator_id", "originator_version"})
            stored = event.stored_state()
            assert stored == fresh
            stored["chain"] = "tampered"
            assert event.stored_state() == fresh

    def test_the_first_event_links_from_genesis(self) -> None:
        """The first event's chain hashes the genesis value and the event's content."""
        keyring = empty_keyring()

        create(keyring)

        [event] = keyring.pending_events
        expected = link(GENESIS, str(keyring.id), 1, Keyring.KeyCreated.TOPIC, event.stored_state())
        assert event.chain == expected
        assert keyring.chain == expected

    def test_each_event_links_from_the_one_before(self) -> None:
        """Every later event's chain hashes the previous event's chain and its own content."""
        keyring = empty_keyring()
        key_id = create(keyring, at=minutes(0))
        create(keyring, actor=BOB, at=minutes(1))

        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(2))
        keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))
        keyring.expire_grace(minutes(2) + GRACE)
        keyring.revoke_key(ALICE, key_id, reason="done", now=minutes(24 * 60))
        keyring.restore_user_access(ADMIN, "bob", now=minutes(24 * 60 + 1))

        events = keyring.pending_events
        assert len(events) == 7
        previous = GENESIS
        for version, event in enumerate(events, start=1):
            assert event.originator_version == version
            assert event.chain == link(previous, str(keyring.id), version, event.TOPIC, event.stored_state())
            previous = event.chain
        assert keyring.chain == previous

    def test_a_changed_field_no_longer_matches_the_chain(self) -> None:
        """An event whose content changed no longer hashes to its chain."""
        keyring = empty_keyring()
        create(keyring)
        [event] = keyring.pending_events

        tampered = {**event.stored_state(), "name": "Shipping!"}

        assert link(GENESIS, str(keyring.id), 1, event.TOPIC, tampered) != event.chain

    def test_the_same_content_at_another_version_links_differently(self) -> None:
        """The chain covers the version, so a reordered event would not match."""
        keyring = empty_keyring()
        create(keyring)
        [event] = keyring.pending_events

        moved = link(GENESIS, str(keyring.id), 2, event.TOPIC, event.stored_state())

        assert moved != event.chain


class TestRegenerateWithGrace:
    def test_regenerating_with_grace_triggers_a_grace_regeneration(self) -> None:
        """Regenerating with grace retires the current secret until now plus the grace period."""
        keyring = empty_keyring()
        key_id = create(keyring)
        old = keyring.keys[key_id].current
        assert old is not None
        saved(keyring)
        _, described = new_secret()

        until = keyring.regenerate_key(ALICE, key_id, secret=described, grace=GRACE, now=minutes(5))

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.KeyRegenerated)
        assert event.mode == "grace"
        assert until == event.grace_until == minutes(5) + GRACE
        assert event.retired_digest == old.digest
        assert (event.digest, event.hint) == (described.digest, described.hint)
        assert event.ended_digests == ()
        assert (event.actor, event.originator_version) == ("alice", 2)

    def test_the_retired_secret_is_kept_in_grace(self) -> None:
        """After a grace regeneration the retired secret is in grace, still issued to whom it was,
        and the new one is current, issued to the regenerating actor."""
        keyring = empty_keyring()
        key_id = create(keyring)
        old = keyring.keys[key_id].current
        assert old is not None
        _, described = new_secret()

        keyring.regenerate_key(BOB, key_id, secret=described, grace=GRACE, now=minutes(5))

        record = keyring.keys[key_id]
        assert record.grace == [
            SecretRecord(digest=old.digest, hint=old.hint, grace_until=minutes(5) + GRACE, issued_to="alice")
        ]
        assert record.current == SecretRecord(digest=described.digest, hint=described.hint, issued_to="bob")
        assert record.regenerated_at == minutes(5)

    def test_a_later_regeneration_never_extends_an_earlier_deadline(self) -> None:
        """Each secret in grace keeps its own deadline when the key is regenerated again."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))

        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=GRACE, now=minutes(30))

        deadlines = [s.grace_until for s in keyring.keys[key_id].grace]
        assert deadlines == [minutes(1) + GRACE, minutes(30) + GRACE]
        event = keyring.pending_events[-1]
        assert isinstance(event, Keyring.KeyRegenerated)
        assert event.ended_digests == ()


class TestRegenerateImmediately:
    def test_an_immediate_regeneration_ends_every_secret_in_grace(self) -> None:
        """Regenerating immediately lists the secrets in grace as ended and has no deadline."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(2))
        in_grace = tuple(s.digest for s in keyring.keys[key_id].grace)
        current = keyring.keys[key_id].current
        assert current is not None
        saved(keyring)

        until = keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=None, now=minutes(3))

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.KeyRegenerated)
        assert event.mode == "immediate"
        assert until is None
        assert event.grace_until is None
        assert len(in_grace) == 2
        assert event.ended_digests == in_grace
        assert event.retired_digest == current.digest

    def test_an_immediate_regeneration_empties_the_grace(self) -> None:
        """After an immediate regeneration no secret of the key is in grace."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        _, described = new_secret()

        keyring.regenerate_key(ALICE, key_id, secret=described, grace=None, now=minutes(2))

        record = keyring.keys[key_id]
        assert record.grace == []
        assert record.digests() == [described.digest]

    def test_an_immediate_regeneration_without_grace_secrets_ends_nothing_else(self) -> None:
        """Regenerating immediately a key with no secret in grace retires only its current secret."""
        keyring = empty_keyring()
        key_id = create(keyring)
        current = keyring.keys[key_id].current
        assert current is not None
        saved(keyring)

        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=None, now=minutes(1))

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.KeyRegenerated)
        assert event.ended_digests == ()
        assert event.retired_digest == current.digest


class TestRevokeKey:
    def test_revoking_ends_the_current_and_every_grace_secret(self) -> None:
        """Revoking triggers KeyRevoked listing the current and every grace digest as ended."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(2))
        record = keyring.keys[key_id]
        assert record.current is not None
        working = (record.current.digest, *(s.digest for s in record.grace))
        saved(keyring)

        keyring.revoke_key(BOB, key_id, reason="compromised", now=minutes(3))

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.KeyRevoked)
        assert (event.key_id, event.reason, event.actor) == (key_id, "compromised", "bob")
        assert len(working) == 3
        assert event.ended_digests == working

    def test_a_revoked_key_has_no_working_secret(self) -> None:
        """A revoked key keeps no current secret and none in grace."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))

        keyring.revoke_key(ALICE, key_id, reason=None, now=minutes(2))

        record = keyring.keys[key_id]
        assert record.status == "revoked"
        assert (record.revoked_at, record.revoked_reason) == (minutes(2), None)
        assert record.current is None
        assert record.digests() == []


class TestRevokeUserAccess:
    def test_revoking_a_user_removes_exactly_the_working_keys_they_created(self) -> None:
        """Revoking a user removes the active keys they created, with every secret of each,
        and leaves the keys of others they never received a secret of."""
        keyring = empty_keyring()
        alices = create(keyring, ALICE, minutes(0), "Alice's")
        bobs_first = create(keyring, BOB, minutes(1), "Bob's first")
        bobs_second = create(keyring, BOB, minutes(2), "Bob's second")
        bobs_revoked = create(keyring, BOB, minutes(3), "Bob's revoked")
        keyring.revoke_key(BOB, bobs_revoked, reason=None, now=minutes(4))
        keyring.regenerate_key(ALICE, alices, secret=secret(), grace=GRACE, now=minutes(5))
        keyring.regenerate_key(ALICE, bobs_second, secret=secret(), grace=GRACE, now=minutes(6))
        ended = (*keyring.keys[bobs_first].digests(), *keyring.keys[bobs_second].digests())
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(7))

        assert removed == [bobs_first, bobs_second]
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert (event.user_id, event.actor) == ("bob", "root")
        assert event.removed_key_ids == (bobs_first, bobs_second)
        assert len(ended) == 3
        assert event.ended_digests == ended
        assert keyring.keys[alices].status == "active"

    def test_the_removed_keys_are_revoked_and_the_others_stay(self) -> None:
        """After the removal the user's keys are revoked, the user is revoked, other keys work."""
        keyring = empty_keyring()
        alices = create(keyring, ALICE, minutes(0))
        bobs = create(keyring, BOB, minutes(1))
        keyring.regenerate_key(ALICE, alices, secret=secret(), grace=GRACE, now=minutes(2))

        keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))

        assert keyring.keys[bobs].status == "revoked"
        assert keyring.keys[bobs].revoked_at == minutes(3)
        assert keyring.keys[bobs].digests() == []
        assert keyring.keys[alices].status == "active"
        assert len(keyring.keys[alices].digests()) == 2
        assert keyring.revoked_users == {"bob"}

    def test_revoking_a_user_without_keys_removes_nothing(self) -> None:
        """Revoking a user who created no key records the revocation with no key removed."""
        keyring = empty_keyring()
        create(keyring, ALICE)
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(1))

        assert removed == []
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert event.removed_key_ids == ()
        assert keyring.revoked_users == {"bob"}

    def test_restoring_a_user_leaves_their_removed_keys_removed(self) -> None:
        """Restoring a user triggers UserAccessRestored; the keys removed before stay revoked."""
        keyring = empty_keyring()
        bobs = create(keyring, BOB)
        keyring.revoke_user_access(ADMIN, "bob", now=minutes(1))
        saved(keyring)

        keyring.restore_user_access(ADMIN, "bob", now=minutes(2))

        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRestored)
        assert (event.user_id, event.actor) == ("bob", "root")
        assert keyring.revoked_users == set()
        assert keyring.keys[bobs].status == "revoked"

    def test_a_restored_user_can_create_keys_again(self) -> None:
        """A restored user's key-management commands are accepted again."""
        keyring = empty_keyring()
        keyring.revoke_user_access(ADMIN, "bob", now=minutes(1))
        keyring.restore_user_access(ADMIN, "bob", now=minutes(2))

        key_id = create(keyring, BOB, minutes(3))

        assert keyring.keys[key_id].status == "active"


def recorded_removal(keyring: Keyring, user_id: str, removed_key_ids: tuple[str, ...], at: datetime) -> None:
    """Apply a UserAccessRevoked as an earlier release recorded it, listing ``removed_key_ids``."""
    event = Keyring.UserAccessRevoked(
        originator_id=keyring.id,
        originator_version=keyring.version + 1,
        timestamp=at,
        account=ACCOUNT,
        actor="root",
        chain=GENESIS,
        user_id=user_id,
        removed_key_ids=removed_key_ids,
        ended_digests=tuple(d for key_id in removed_key_ids for d in keyring.keys[key_id].digests()),
    )
    event.mutate(keyring)


def bobs_secret_in_grace() -> tuple[Keyring, str, datetime]:
    """Alice's key that Bob regenerated with grace at minute 1 and Alice again at minute 2,
    so the secret Bob received is in grace until minute 2 plus the grace period (returned,
    after the deadline of Alice's first secret); all saved."""
    keyring = empty_keyring()
    key_id = create(keyring, ALICE, minutes(0))
    keyring.regenerate_key(BOB, key_id, secret=secret(), grace=GRACE, now=minutes(1))
    bobs_until = keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(2))
    assert bobs_until == minutes(2) + GRACE
    return saved(keyring), key_id, bobs_until


class TestRevokeUserAccessRemovesWhatTheUserReceived:
    def test_a_key_whose_current_secret_was_issued_to_the_user_is_removed(self) -> None:
        """A key another user created is removed whole when the leaving user holds its current secret."""
        keyring = empty_keyring()
        received = create(keyring, ALICE, minutes(0), "Alice's, regenerated by Bob")
        untouched = create(keyring, ALICE, minutes(1), "Alice's own")
        keyring.regenerate_key(BOB, received, secret=secret(), grace=None, now=minutes(2))
        ended = tuple(keyring.keys[received].digests())
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))

        assert removed == [received]
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert event.removed_key_ids == (received,)
        assert event.ended_digests == ended
        assert keyring.keys[received].status == "revoked"
        assert keyring.keys[untouched].status == "active"

    def test_a_key_whose_grace_secret_was_issued_to_the_user_is_removed_whole(self) -> None:
        """A key with another user's current secret and a secret in grace the leaving user
        received is removed with every secret."""
        keyring, key_id, _ = bobs_secret_in_grace()
        record = keyring.keys[key_id]
        assert record.current is not None
        assert record.current.issued_to == "alice"
        assert [s.issued_to for s in record.grace] == ["alice", "bob"]
        every_secret = tuple(record.digests())

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))

        assert removed == [key_id]
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert event.removed_key_ids == (key_id,)
        assert len(every_secret) == 3
        assert event.ended_digests == every_secret
        assert keyring.keys[key_id].digests() == []

    def test_a_grace_secret_whose_deadline_is_now_no_longer_counts(self) -> None:
        """A secret in grace the user received keeps no key at its deadline, GraceExpired recorded or not."""
        keyring, key_id, bobs_until = bobs_secret_in_grace()

        removed = keyring.revoke_user_access(ADMIN, "bob", now=bobs_until)

        assert removed == []
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert (event.removed_key_ids, event.ended_digests) == ((), ())
        assert keyring.keys[key_id].status == "active"

    def test_a_grace_secret_one_microsecond_before_its_deadline_still_counts(self) -> None:
        """One microsecond before its deadline, a secret in grace the user received still removes the key."""
        keyring, key_id, bobs_until = bobs_secret_in_grace()

        removed = keyring.revoke_user_access(ADMIN, "bob", now=bobs_until - timedelta(microseconds=1))

        assert removed == [key_id]
        assert keyring.keys[key_id].status == "revoked"

    def test_a_secret_the_user_received_then_replaced_immediately_keeps_no_key(self) -> None:
        """A key the user regenerated immediately, then someone else regenerated immediately, stays."""
        keyring = empty_keyring()
        key_id = create(keyring, ALICE, minutes(0))
        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=None, now=minutes(1))
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=None, now=minutes(2))
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))

        assert removed == []
        assert keyring.keys[key_id].status == "active"

    def test_a_grace_secret_of_the_user_ended_by_an_immediate_regeneration_keeps_no_key(self) -> None:
        """A secret the user received, in grace, then ended by an immediate regeneration, keeps no key."""
        keyring, key_id, _ = bobs_secret_in_grace()
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=None, now=minutes(3))
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(4))

        assert removed == []
        assert keyring.keys[key_id].status == "active"

    def test_created_and_received_keys_are_removed_once_each_in_creation_order(self) -> None:
        """Keys the user created or received a secret of are listed once each, in creation order."""
        keyring = empty_keyring()
        received = create(keyring, ALICE, minutes(0))
        created_and_regenerated = create(keyring, BOB, minutes(1))
        created = create(keyring, BOB, minutes(2))
        keyring.regenerate_key(BOB, created_and_regenerated, secret=secret(), grace=GRACE, now=minutes(3))
        keyring.regenerate_key(BOB, received, secret=secret(), grace=GRACE, now=minutes(4))
        ids = (received, created_and_regenerated, created)
        ended = tuple(d for key_id in ids for d in keyring.keys[key_id].digests())
        saved(keyring)

        removed = keyring.revoke_user_access(ADMIN, "bob", now=minutes(5))

        assert removed == [received, created_and_regenerated, created]
        [event] = keyring.pending_events
        assert isinstance(event, Keyring.UserAccessRevoked)
        assert event.removed_key_ids == (received, created_and_regenerated, created)
        assert len(ended) == 5
        assert event.ended_digests == ended

    def test_a_recorded_removal_replays_as_recorded(self) -> None:
        """A removal recorded before this rule ends exactly the keys it lists, none the rule adds now."""
        keyring = empty_keyring()
        received = create(keyring, ALICE, minutes(0))
        created = create(keyring, BOB, minutes(1))
        keyring.regenerate_key(BOB, received, secret=secret(), grace=None, now=minutes(2))

        recorded_removal(keyring, "bob", (created,), minutes(3))

        assert keyring.keys[created].status == "revoked"
        assert keyring.keys[received].status == "active"
        assert keyring.revoked_users == {"bob"}


class TestWorkingKeysOfRevokedUsers:
    def test_none_after_the_cascade(self) -> None:
        """After a user's removal no key they created or received a working secret of is left."""
        keyring, key_id, _ = bobs_secret_in_grace()
        create(keyring, BOB, minutes(3))
        assert keyring.working_keys_of_revoked_users(minutes(4)) == []

        keyring.revoke_user_access(ADMIN, "bob", now=minutes(4))

        assert keyring.working_keys_of_revoked_users(minutes(4)) == []
        assert keyring.keys[key_id].status == "revoked"

    def test_history_recorded_before_the_rule_shows_what_a_revoked_user_still_holds(self) -> None:
        """Keys a revoked user created or holds a working secret of are listed, until its deadline."""
        keyring, received, bobs_until = bobs_secret_in_grace()
        created = create(keyring, BOB, minutes(3))
        other = create(keyring, ALICE, minutes(3))
        recorded_removal(keyring, "bob", (), minutes(4))

        just_before = keyring.working_keys_of_revoked_users(bobs_until - timedelta(microseconds=1))
        at_the_deadline = keyring.working_keys_of_revoked_users(bobs_until)

        assert just_before == [received, created]
        assert at_the_deadline == [created]
        assert other not in just_before

    def test_a_restored_user_is_not_counted(self) -> None:
        """Keys of a user whose access was restored are not counted."""
        keyring = empty_keyring()
        key_id = create(keyring, ALICE, minutes(0))
        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=None, now=minutes(1))
        recorded_removal(keyring, "bob", (), minutes(2))
        assert keyring.working_keys_of_revoked_users(minutes(2)) == [key_id]

        keyring.restore_user_access(ADMIN, "bob", now=minutes(3))

        assert keyring.working_keys_of_revoked_users(minutes(3)) == []


def _given_history() -> tuple[Keyring, dict[str, str]]:
    """Alice's working key, a revoked key, and Bob with his access revoked; all saved."""
    keyring = empty_keyring()
    ids = {
        "working": create(keyring, ALICE, minutes(0)),
        "revoked": create(keyring, ALICE, minutes(1)),
    }
    keyring.revoke_key(ALICE, ids["revoked"], reason=None, now=minutes(2))
    keyring.revoke_user_access(ADMIN, "bob", now=minutes(3))
    return saved(keyring), ids


Command = Callable[[Keyring, dict[str, str]], object]
LATER = minutes(10)

REFUSALS: list[tuple[str, Command, type[KeyLedgerError]]] = [
    (
        "create without integration",
        lambda k, ids: k.create_key(NOBODY, name="x", purpose="", application="", secret=secret(), now=LATER),
        PermissionDenied,
    ),
    (
        "create in another account",
        lambda k, ids: k.create_key(
            OUTSIDER, name="x", purpose="", application="", secret=secret(), now=LATER
        ),
        PermissionDenied,
    ),
    (
        "regenerate without integration",
        lambda k, ids: k.regenerate_key(NOBODY, ids["working"], secret=secret(), grace=GRACE, now=LATER),
        PermissionDenied,
    ),
    (
        "revoke without integration",
        lambda k, ids: k.revoke_key(NOBODY, ids["working"], reason=None, now=LATER),
        PermissionDenied,
    ),
    (
        "revoke from another account",
        lambda k, ids: k.revoke_key(OUTSIDER, ids["working"], reason=None, now=LATER),
        PermissionDenied,
    ),
    (
        "revoke a user without user_management",
        lambda k, ids: k.revoke_user_access(ALICE, "carol", now=LATER),
        PermissionDenied,
    ),
    (
        "restore a user without user_management",
        lambda k, ids: k.restore_user_access(ALICE, "bob", now=LATER),
        PermissionDenied,
    ),
    (
        "revoke one's own access",
        lambda k, ids: k.revoke_user_access(ADMIN, "root", now=LATER),
        PermissionDenied,
    ),
    (
        "permission before a missing key",
        lambda k, ids: k.regenerate_key(
            NOBODY, "key_0000000000000000", secret=secret(), grace=None, now=LATER
        ),
        PermissionDenied,
    ),
    (
        "create by a revoked user",
        lambda k, ids: k.create_key(BOB, name="x", purpose="", application="", secret=secret(), now=LATER),
        AccessRevoked,
    ),
    (
        "regenerate by a revoked user",
        lambda k, ids: k.regenerate_key(BOB, ids["working"], secret=secret(), grace=GRACE, now=LATER),
        AccessRevoked,
    ),
    (
        "revoke by a revoked user",
        lambda k, ids: k.revoke_key(BOB, ids["working"], reason=None, now=LATER),
        AccessRevoked,
    ),
    (
        "a revoked user before a missing key",
        lambda k, ids: k.revoke_key(BOB, "key_0000000000000000", reason=None, now=LATER),
        AccessRevoked,
    ),
    (
        "regenerate an unknown key",
        lambda k, ids: k.regenerate_key(
            ALICE, "key_0000000000000000", secret=secret(), grace=GRACE, now=LATER
        ),
        KeyNotFound,
    ),
    (
        "revoke an unknown key",
        lambda k, ids: k.revoke_key(ALICE, "nonsense", reason=None, now=LATER),
        KeyNotFound,
    ),
    (
        "revoke a key id that is not a string",
        lambda k, ids: k.revoke_key(ALICE, 42, reason=None, now=LATER),  # type: ignore[arg-type]
        KeyNotFound,
    ),
    (
        "regenerate a key id that is not a string",
        lambda k, ids: k.regenerate_key(ALICE, None, secret=secret(), grace=None, now=LATER),  # type: ignore[arg-type]
        KeyNotFound,
    ),
    (
        "regenerate an unhashable key id",
        lambda k, ids: k.regenerate_key(ALICE, [ids["working"]], secret=secret(), grace=None, now=LATER),  # type: ignore[arg-type]
        KeyNotFound,
    ),
    (
        "regenerate a revoked key",
        lambda k, ids: k.regenerate_key(ALICE, ids["revoked"], secret=secret(), grace=GRACE, now=LATER),
        KeyAlreadyRevoked,
    ),
    (
        "revoke a revoked key",
        lambda k, ids: k.revoke_key(ALICE, ids["revoked"], reason=None, now=LATER),
        KeyAlreadyRevoked,
    ),
    (
        "revoke a revoked user",
        lambda k, ids: k.revoke_user_access(ADMIN, "bob", now=LATER),
        UserAccessUnchanged,
    ),
    (
        "restore a user who is not revoked",
        lambda k, ids: k.restore_user_access(ADMIN, "alice", now=LATER),
        UserAccessUnchanged,
    ),
]


class TestRefusedCommands:
    @pytest.mark.parametrize(
        ("command", "error"),
        [(command, error) for _, command, error in REFUSALS],
        ids=[description for description, _, _ in REFUSALS],
    )
    def test_a_refused_command_raises_and_triggers_nothing(
        self, command: Command, error: type[KeyLedgerError]
    ) -> None:
        """A refused command raises its error and leaves no pending event and the state as it was."""
        keyring, ids = _given_history()
        before = state_of(keyring)

        with pytest.raises(error):
            command(keyring, ids)

        assert keyring.pending_events == []
        assert keyring.version == before["version"] == 4
        assert state_of(keyring) == before

    def test_a_refusal_names_no_secret(self) -> None:
        """The message of a refusal names the user and account, never a secret."""
        keyring = empty_keyring()
        key, described = new_secret()
        keyring.create_key(ALICE, name="Shipping", purpose="", application="", secret=described, now=NOW)

        with pytest.raises(PermissionDenied) as raised:
            keyring.create_key(NOBODY, name="x", purpose="", application="", secret=described, now=NOW)

        assert "carol" in str(raised.value)
        assert key[3:35] not in str(raised.value)
        assert described.digest not in str(raised.value)


class TestExpireGrace:
    def test_a_passed_deadline_triggers_grace_expired_at_that_deadline(self) -> None:
        """A deadline at or before now triggers GraceExpired whose effective time is the deadline."""
        keyring = empty_keyring()
        key_id = create(keyring)
        until = keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        retired = keyring.keys[key_id].grace[0].digest
        saved(keyring)
        sweep = minutes(1) + GRACE + timedelta(hours=3)

        count = keyring.expire_grace(sweep)

        [event] = keyring.pending_events
        assert count == 1
        assert isinstance(event, Keyring.GraceExpired)
        assert (event.key_id, event.retired_digest) == (key_id, retired)
        assert event.grace_until == until
        assert event.occurred_at == until
        assert event.timestamp == sweep
        assert event.actor is None
        assert keyring.keys[key_id].grace == []

    def test_a_deadline_exactly_now_has_passed(self) -> None:
        """A deadline equal to now counts as passed."""
        keyring = empty_keyring()
        key_id = create(keyring)
        until = keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        assert until is not None
        saved(keyring)

        count = keyring.expire_grace(until)

        assert count == 1
        assert [e.occurred_at for e in keyring.pending_events] == [until]

    def test_a_deadline_one_microsecond_away_has_not_passed(self) -> None:
        """A deadline after now triggers nothing and changes nothing."""
        keyring = empty_keyring()
        key_id = create(keyring)
        until = keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        assert until is not None
        saved(keyring)
        before = state_of(keyring)

        count = keyring.expire_grace(until - timedelta(microseconds=1))

        assert count == 0
        assert keyring.pending_events == []
        assert state_of(keyring) == before

    def test_only_passed_deadlines_expire(self) -> None:
        """Of several secrets in grace, only those whose deadline passed expire, in deadline order."""
        keyring = empty_keyring()
        first = create(keyring, at=minutes(0))
        second = create(keyring, at=minutes(0))
        keyring.regenerate_key(ALICE, second, secret=secret(), grace=GRACE, now=minutes(1))
        keyring.regenerate_key(ALICE, first, secret=secret(), grace=GRACE, now=minutes(2))
        keyring.regenerate_key(ALICE, first, secret=secret(), grace=GRACE, now=minutes(60))
        saved(keyring)

        count = keyring.expire_grace(minutes(30) + GRACE)

        assert count == 2
        events = keyring.pending_events
        assert all(isinstance(e, Keyring.GraceExpired) for e in events)
        expired = [(getattr(e, "key_id", None), e.occurred_at) for e in events]
        assert expired == [(second, minutes(1) + GRACE), (first, minutes(2) + GRACE)]
        assert [s.grace_until for s in keyring.keys[first].grace] == [minutes(60) + GRACE]
        assert keyring.keys[second].grace == []

    def test_a_second_sweep_records_nothing(self) -> None:
        """Sweeping again at the same time finds nothing left to expire."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        keyring.expire_grace(minutes(1) + GRACE)
        saved(keyring)

        count = keyring.expire_grace(minutes(1) + GRACE)

        assert count == 0
        assert keyring.pending_events == []

    def test_a_revoked_keys_grace_never_expires_later(self) -> None:
        """A secret ended by revocation triggers no GraceExpired at its old deadline."""
        keyring = empty_keyring()
        key_id = create(keyring)
        keyring.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        keyring.revoke_key(ALICE, key_id, reason=None, now=minutes(2))
        saved(keyring)

        count = keyring.expire_grace(minutes(1) + GRACE)

        assert count == 0
        assert keyring.pending_events == []


def _rich_history() -> Keyring:
    """A Keyring that went through every kind of event."""
    keyring = empty_keyring()
    alices = create(keyring, ALICE, minutes(0), "Alice's")
    bobs = create(keyring, BOB, minutes(1), "Bob's")
    keyring.regenerate_key(ALICE, alices, secret=secret(), grace=GRACE, now=minutes(2))
    keyring.regenerate_key(BOB, bobs, secret=secret(), grace=GRACE, now=minutes(3))
    keyring.regenerate_key(ALICE, alices, secret=secret(), grace=GRACE, now=minutes(4))
    keyring.expire_grace(minutes(2) + GRACE)
    keyring.revoke_user_access(ADMIN, "bob", now=minutes(2) + GRACE + timedelta(seconds=1))
    keyring.restore_user_access(ADMIN, "bob", now=minutes(2) + GRACE + timedelta(seconds=2))
    third = create(keyring, BOB, minutes(2) + GRACE + timedelta(seconds=3), "Bob's again")
    keyring.revoke_key(ALICE, third, reason="typo", now=minutes(2) + GRACE + timedelta(seconds=4))
    keyring.revoke_user_access(ADMIN, "alice", now=minutes(2) + GRACE + timedelta(seconds=5))
    return keyring


class TestReplay:
    def test_replaying_the_events_rebuilds_the_same_keyring(self) -> None:
        """Applying a Keyring's events in order to nothing rebuilds an equal Keyring."""
        original = _rich_history()
        events = original.collect_events()
        assert len(events) == 11

        rebuilt: Keyring | None = None
        for event in events:
            rebuilt = event.mutate(rebuilt)

        assert rebuilt is not None
        assert state_of(rebuilt) == state_of(original)
        assert rebuilt.pending_events == []

    def test_an_event_out_of_order_is_refused(self) -> None:
        """Applying an event that does not follow the Keyring's version raises."""
        original = _rich_history()
        events = original.collect_events()
        rebuilt = events[0].mutate(None)

        with pytest.raises(OriginatorVersionError):
            events[2].mutate(rebuilt)

        assert rebuilt.version == 1


def written_before_recipients(snapshot: KeyringSnapshot) -> KeyringSnapshot:
    """``snapshot`` as stored before secrets recorded their recipient (no ``issued_to``)."""
    stored = json.loads(snapshot.model_dump_json())
    for key in stored["state"]["keys"]:
        for kept in (key["current"], *key["grace"]):
            if kept is not None:
                del kept["issued_to"]
    return KeyringSnapshot.model_validate_json(json.dumps(stored))


class TestSnapshot:
    def test_a_snapshot_rebuilds_an_equal_keyring(self) -> None:
        """A Keyring rebuilt from its snapshot equals the original: keys, revoked users, chain, version."""
        original = saved(_rich_history())

        rebuilt = KeyringSnapshot.take(original).mutate(None)

        assert state_of(rebuilt) == state_of(original)
        assert rebuilt.version == 11
        assert rebuilt.revoked_users == {"alice"}

    def test_a_snapshot_survives_a_json_round_trip(self) -> None:
        """A snapshot stored as JSON and read back rebuilds an equal Keyring."""
        original = saved(_rich_history())
        stored = KeyringSnapshot.take(original).model_dump_json()

        rebuilt = KeyringSnapshot.model_validate_json(stored).mutate(None)

        assert state_of(rebuilt) == state_of(original)

    def test_a_snapshot_does_not_follow_later_changes(self) -> None:
        """Commands after a snapshot is taken do not change the snapshot."""
        original = empty_keyring()
        key_id = create(original)
        original.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        snapshot = KeyringSnapshot.take(original)
        before = snapshot.model_dump()

        original.regenerate_key(ALICE, key_id, secret=secret(), grace=GRACE, now=minutes(2))
        original.revoke_key(BOB, key_id, reason=None, now=minutes(3))
        create(original, BOB, minutes(4))

        assert snapshot.model_dump() == before
        assert len(snapshot.state.keys) == 1
        assert len(snapshot.state.keys[0].grace) == 1

    def test_a_snapshot_keeps_who_received_each_secret(self) -> None:
        """A snapshot stored as JSON keeps the recipient of the current secret and of each secret in grace."""
        keyring, key_id, _ = bobs_secret_in_grace()
        stored = KeyringSnapshot.take(keyring).model_dump_json()

        rebuilt = KeyringSnapshot.model_validate_json(stored).mutate(None)

        record = rebuilt.keys[key_id]
        assert record.current is not None
        assert record.current.issued_to == "alice"
        assert [s.issued_to for s in record.grace] == ["alice", "bob"]
        assert rebuilt.recipients_known

    def test_a_snapshot_from_before_recipients_knows_the_creator_of_a_key_never_regenerated(self) -> None:
        """A snapshot from before recipients loads; a key never regenerated holds its creator's secret."""
        keyring = empty_keyring()
        bobs = create(keyring, BOB, minutes(0))
        alices = create(keyring, ALICE, minutes(1))
        keyring.regenerate_key(BOB, alices, secret=secret(), grace=None, now=minutes(2))
        keyring.revoke_key(ALICE, alices, reason=None, now=minutes(3))
        old = written_before_recipients(KeyringSnapshot.take(saved(keyring)))

        rebuilt = old.mutate(None)

        current = rebuilt.keys[bobs].current
        assert current is not None
        assert current.issued_to == "bob"
        assert rebuilt.recipients_known
        assert rebuilt.revoke_user_access(ADMIN, "bob", now=minutes(4)) == [bobs]

    def test_a_snapshot_from_before_recipients_does_not_guess_who_received_a_secret(self) -> None:
        """A Keyring loaded from a snapshot that lacks a regenerated secret's recipient says so,
        and refuses a removal that depends on it."""
        keyring = empty_keyring()
        key_id = create(keyring, ALICE, minutes(0))
        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=None, now=minutes(1))
        rebuilt = written_before_recipients(KeyringSnapshot.take(saved(keyring))).mutate(None)
        before = state_of(rebuilt)

        with pytest.raises(IntegrityViolation, match="load it from its events"):
            rebuilt.revoke_user_access(ADMIN, "bob", now=minutes(2))

        assert not rebuilt.recipients_known
        assert rebuilt.pending_events == []
        assert state_of(rebuilt) == before

    def test_a_snapshot_from_before_recipients_still_removes_the_creators_keys(self) -> None:
        """Removing the creator of a key whose later secret has no known recipient removes it."""
        keyring = empty_keyring()
        key_id = create(keyring, ALICE, minutes(0))
        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=GRACE, now=minutes(1))
        rebuilt = written_before_recipients(KeyringSnapshot.take(saved(keyring))).mutate(None)

        removed = rebuilt.revoke_user_access(ADMIN, "alice", now=minutes(2))

        assert removed == [key_id]

    def test_the_events_know_every_recipient_a_snapshot_from_before_lacks(self) -> None:
        """Replaying the events, as the loader does for a snapshot without recipients, decides the removal."""
        keyring = empty_keyring()
        key_id = create(keyring, ALICE, minutes(0))
        keyring.regenerate_key(BOB, key_id, secret=secret(), grace=None, now=minutes(1))
        events = keyring.collect_events()

        replayed: Keyring | None = None
        for event in events:
            replayed = event.mutate(replayed)

        assert replayed is not None
        assert replayed.recipients_known
        assert replayed.revoke_user_access(ADMIN, "bob", now=minutes(2)) == [key_id]

    def test_a_rebuilt_keyring_continues_the_chain(self) -> None:
        """The next event of a Keyring rebuilt from a snapshot links from the snapshot's chain."""
        original = saved(_rich_history())
        snapshot = KeyringSnapshot.take(original)
        rebuilt = snapshot.mutate(None)

        create(rebuilt, BOB, minutes(24 * 60))

        [event] = rebuilt.pending_events
        assert event.originator_version == 12
        assert event.chain == link(
            snapshot.state.chain, str(rebuilt.id), 12, Keyring.KeyCreated.TOPIC, event.stored_state()
        )
