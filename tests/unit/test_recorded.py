"""What the projections read: each stored event as its own typed class, built straight
from the stored JSON, upcast first; a stored event that is none of them is a clear error."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import MapperDeserialisationError

from keyledger.adapters.driven.transcoding import OrjsonTranscoder, PydanticMapper
from keyledger.domain import EVENT_CLASSES, Actor, Keyring, NewSecret, Permission
from keyledger.domain.keys import digest, generate_key, hint
from keyledger.projections.recorded import (
    RECORDED,
    RecordedGraceExpired,
    RecordedKeyCreated,
    RecordedKeyRegenerated,
    RecordedKeyRevoked,
    RecordedUserAccessRestored,
    RecordedUserAccessRevoked,
)

ACCOUNT = "acme"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ALICE = Actor(user_id="alice", account=ACCOUNT, permissions={Permission.INTEGRATION})
BOB = Actor(user_id="bob", account=ACCOUNT, permissions={Permission.INTEGRATION})
ADMIN = Actor(user_id="root", account=ACCOUNT, permissions=set(Permission))
KIND_OF = {
    Keyring.KeyCreated: RecordedKeyCreated,
    Keyring.KeyRegenerated: RecordedKeyRegenerated,
    Keyring.GraceExpired: RecordedGraceExpired,
    Keyring.KeyRevoked: RecordedKeyRevoked,
    Keyring.UserAccessRevoked: RecordedUserAccessRevoked,
    Keyring.UserAccessRestored: RecordedUserAccessRestored,
}
WHERE = frozenset({"position", "version", "previous", "stored"})
"""The fields of a recorded event that say where it is stored, not what it says."""


def mapper() -> PydanticMapper:
    return PydanticMapper(transcoder=OrjsonTranscoder())


def secret() -> NewSecret:
    key = generate_key("kl")
    return NewSecret(digest=digest(key).hex(), hint=hint(key))


def minutes(n: int) -> datetime:
    return NOW + timedelta(minutes=n)


def every_kind_of_event() -> list[Keyring.Event]:
    """A history with each kind of event: both modes of regeneration, a grace that
    expires, a revocation, a user's access revoked (removing a key) and restored."""
    keyring = Keyring(Keyring.id_for(ACCOUNT), ACCOUNT, NOW)
    first = keyring.create_key(
        ALICE, name="A", purpose="billing", application="zapier", secret=secret(), now=NOW
    )
    keyring.regenerate_key(ALICE, first, secret=secret(), grace=timedelta(minutes=5), now=minutes(1))
    keyring.expire_grace(minutes(10))
    second = keyring.create_key(BOB, name="B", purpose="", application="", secret=secret(), now=minutes(11))
    keyring.regenerate_key(BOB, second, secret=secret(), grace=None, now=minutes(12))
    keyring.revoke_key(ALICE, first, reason="rotated out", now=minutes(13))
    keyring.revoke_user_access(ADMIN, "bob", now=minutes(14))
    keyring.restore_user_access(ADMIN, "bob", now=minutes(15))
    return keyring.collect_events()


def stored_fields(event: Keyring.Event) -> dict[str, Any]:
    """The event's fields as the store holds them (JSON)."""
    loaded: dict[str, Any] = orjson.loads(mapper().to_stored_event(event).state)
    return loaded


class TestEachKindIsReadFromItsStoredJson:
    """Every stored event becomes the typed class of its kind, field for field."""

    def test_every_kind_is_read_into_its_own_class_with_every_stored_field(self) -> None:
        """Each kind of event is read into its class, every attribute the stored field of its name."""
        events = every_kind_of_event()

        read = [
            mapper().to_recorded(mapper().to_stored_event(event), 100 + n, 99 + n)
            for n, event in enumerate(events)
        ]

        assert {type(event) for event in events} == set(KIND_OF)
        for n, (event, recorded) in enumerate(zip(events, read, strict=True)):
            stored = stored_fields(event)
            assert type(recorded) is KIND_OF[type(event)]
            assert {name: getattr(recorded, name) for name in stored} == stored
            assert (recorded.position, recorded.version, recorded.previous) == (
                100 + n,
                event.originator_version,
                99 + n,
            )
            assert recorded.stored == stored
            assert recorded.action == type(event).__name__

    def test_the_times_read_as_the_events_times(self) -> None:
        """A recorded event's times parse back to the domain event's own."""
        events = every_kind_of_event()

        read = [
            mapper().to_recorded(mapper().to_stored_event(event), n, n - 1) for n, event in enumerate(events)
        ]

        assert [r.recorded_at for r in read] == [e.timestamp for e in events]
        assert [r.occurred_at for r in read] == [e.occurred_at for e in events]
        grace = [r for r in read if isinstance(r, RecordedKeyRegenerated | RecordedGraceExpired)]
        assert [r.grace_deadline for r in grace] == [minutes(6), minutes(6), None]

    def test_each_class_has_exactly_its_domain_events_fields(self) -> None:
        """A field added to or removed from an event and not to its recorded class fails here."""
        for topic, kind in RECORDED.items():
            names = {f.name for f in dataclasses.fields(kind)} - WHERE
            assert names == set(kind.event.model_fields) - {"originator_id", "originator_version"}, topic
            assert topic == kind.event.TOPIC
            assert kind.action == kind.event.__name__
        assert set(RECORDED) == {cls.TOPIC for cls in EVENT_CLASSES}

    def test_a_field_older_events_lack_reads_as_its_default(self) -> None:
        """An event stored before ``ended_digests`` existed reads with none ended."""
        revoked = next(e for e in every_kind_of_event() if isinstance(e, Keyring.KeyRevoked))
        older = stored_fields(revoked)
        del older["ended_digests"]

        recorded = mapper().recorded(orjson.dumps(older), revoked.TOPIC, revoked.originator_version, 7, 6)

        assert isinstance(recorded, RecordedKeyRevoked)
        assert recorded.ended_digests == ()
        assert recorded.reason == "rotated out"


class TestAnUnreadableEventIsAClearError:
    """A stored event the projections cannot read raises the mapper's error for an
    unreadable event, naming its position, never a bare ``KeyError``."""

    def test_an_unknown_topic_is_an_unreadable_event(self) -> None:
        """An event stored under a topic no class has is unreadable, and says which topic."""
        created = every_kind_of_event()[0]
        state = orjson.dumps(stored_fields(created))

        with pytest.raises(
            MapperDeserialisationError, match=r"position 7, topic 'keyledger\.KeyDisabled': no such"
        ):
            mapper().recorded(state, "keyledger.KeyDisabled", 1, 7, 6)

    def test_a_missing_field_is_an_unreadable_event(self) -> None:
        """An event without a field its kind needs is unreadable, and says which field."""
        created = every_kind_of_event()[0]
        state = stored_fields(created)
        del state["digest"]

        with pytest.raises(
            MapperDeserialisationError, match=r"position 7, topic 'keyledger\.KeyCreated': field 'digest'"
        ):
            mapper().recorded(orjson.dumps(state), created.TOPIC, 1, 7, 6)


class TestAnUpcastEventIsReadAsTheCurrentSchema:
    """An event stored by an older version of its class is upcast before it is read."""

    @pytest.fixture
    def revocations_at_version_2(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``KeyRevoked`` at version 2, whose version 1 called the reason ``why``."""

        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = state.pop("why")

        monkeypatch.setattr(Keyring.KeyRevoked, "class_version", 2)
        monkeypatch.setattr(Keyring.KeyRevoked, "upcast_v1_v2", upcast_v1_v2, raising=False)

    @pytest.mark.usefixtures("revocations_at_version_2")
    def test_a_version_1_event_is_upcast_before_it_is_read(self) -> None:
        """A version 1 event (stored without a class version) reads its renamed field."""
        revoked = next(e for e in every_kind_of_event() if isinstance(e, Keyring.KeyRevoked))
        version_1 = stored_fields(revoked)
        version_1.pop("class_version", None)
        version_1["why"] = version_1.pop("reason")

        recorded = mapper().recorded(orjson.dumps(version_1), revoked.TOPIC, revoked.originator_version, 7, 6)

        assert isinstance(recorded, RecordedKeyRevoked)
        assert recorded.reason == "rotated out"
        assert "why" not in recorded.stored

    @pytest.mark.usefixtures("revocations_at_version_2")
    def test_a_current_event_is_read_as_stored_without_its_class_version(self) -> None:
        """An event stored at the current version is read as it is; its class version is
        not one of its fields."""
        revoked = next(e for e in every_kind_of_event() if isinstance(e, Keyring.KeyRevoked))
        current = {**stored_fields(revoked), "class_version": 2}

        recorded = mapper().recorded(orjson.dumps(current), revoked.TOPIC, revoked.originator_version, 7, 6)

        assert isinstance(recorded, RecordedKeyRevoked)
        assert recorded.reason == "rotated out"
        assert "class_version" not in recorded.stored
