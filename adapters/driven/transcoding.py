"""How events are stored: an orjson transcoder and a pydantic-aware mapper.

The mapper stores each event's ``stored_state()`` (pydantic's JSON mode, so freezegun's
datetimes and timezone-aware values serialise plainly) and rebuilds events by calling
their class, so pydantic validates what it reads; for the projections it builds each
event's :class:`~keyledger.projections.recorded.Recorded` straight from the stored JSON
instead (no validation: one is built per event when the views are rebuilt or followed).
Cipher, compression and upcasting
(``class_version`` with ``upcast_vN_vN+1`` class methods) work as in eventsourcing's own
mapper. Stored topics are the classes' stable ``TOPIC`` names, registered here, never a
module path, so moving a class never orphans history.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from eventsourcing.utils import TopicError, register_topic, resolve_topic
from pydantic import BaseModel, ValidationError

from keyledger.domain import EVENT_CLASSES, IntegrityViolation, Keyring, KeyringSnapshot
from keyledger.domain.chain import canonical
from keyledger.projections.recorded import RECORDED, Recorded

STORED_CLASSES: tuple[type[Any], ...] = (Keyring, KeyringSnapshot, *EVENT_CLASSES)
"""Every class whose topic is stored, each under its stable ``TOPIC`` name."""

for _cls in STORED_CLASSES:
    register_topic(_cls.TOPIC, _cls)


class OrjsonTranscoder(Transcoder):
    """JSON through orjson; values arrive already in JSON types (pydantic JSON mode)."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class PydanticMapper(Mapper[UUID]):
    """Maps pydantic events and snapshots to stored events and back."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        model = cast(BaseModel, domain_event)
        stored = getattr(model, "stored_state", None)
        if stored is not None:
            state = stored()
        else:
            state = model.model_dump(mode="json", exclude={"originator_id", "originator_version"})
        data = self.transcoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=type(domain_event).TOPIC,  # type: ignore[attr-defined]
            state=data,
        )

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The stored fields of an event, decrypted, decompressed and parsed (not upcast)."""
        return self.decode_bytes(
            stored_event.state, f"{stored_event.originator_id} v{stored_event.originator_version}"
        )

    def decode_bytes(self, data: bytes, where: str | int) -> dict[str, Any]:
        """:meth:`decode_state` of a stored state as bytes; ``where`` names the event in
        errors: its position, or a description (the text is made only for an error)."""
        try:
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            return cast(dict[str, Any], self.transcoder.decode(data))
        except Exception as error:
            what = f"at position {where}" if isinstance(where, int) else where
            raise MapperDeserialisationError(
                f"cannot read stored event {what}: {type(error).__name__}"
            ) from error

    def to_recorded(self, stored_event: StoredEvent, position: int, previous: int) -> Recorded:
        """A stored event as the projections read it: typed, built from its fields as JSON
        types, upcast, no pydantic validation (the rebuild path does no more work than
        the views need). Raises :class:`MapperDeserialisationError` if it cannot be read."""
        return self.recorded(
            stored_event.state, stored_event.topic, stored_event.originator_version, position, previous
        )

    def recorded(self, state: bytes, topic: str, version: int, position: int, previous: int) -> Recorded:
        """:meth:`to_recorded` of a stored event given as its parts (a row of the events table)."""
        return self.recorded_from(self.decode_bytes(state, position), topic, version, position, previous)

    def recorded_from(
        self, fields: dict[str, Any], topic: str, version: int, position: int, previous: int
    ) -> Recorded:
        """:meth:`to_recorded` of a stored event's decoded fields (upcast here, in place)."""
        kind = RECORDED.get(topic)
        try:
            if kind is None:
                raise TopicError(topic)
            if "class_version" in fields or kind.event.class_version > 1:
                upcast(kind.event, fields)
            return kind.read(fields, position, version, previous)
        except (KeyError, TypeError, TopicError) as error:
            if kind is None:
                problem = "no such event"
            elif isinstance(error, KeyError):
                problem = f"field {error} missing"
            else:
                problem = f"its fields do not fit it ({type(error).__name__})"
            raise MapperDeserialisationError(
                f"cannot read stored event at position {position}, topic {topic!r}: {problem}"
            ) from error

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls = resolve_topic(stored_event.topic)
        state = self.decode_state(stored_event)
        upcast(cls, state)
        try:
            return cast(
                DomainEventProtocol[UUID],
                cls(
                    originator_id=stored_event.originator_id,
                    originator_version=stored_event.originator_version,
                    **state,
                ),
            )
        except ValidationError as error:
            raise IntegrityViolation(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version} "
                f"({stored_event.topic}) does not match its schema: {error.error_count()} error(s)"
            ) from None


def upcast(cls: type[Any], state: dict[str, Any]) -> None:
    """Bring stored fields written by an older ``class_version`` of ``cls`` up to date."""
    target = getattr(cls, "class_version", 1)
    version = state.pop("class_version", 1)
    while version < target:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1


def canonical_json(content: Any) -> bytes:
    """:func:`keyledger.domain.chain.canonical` written by orjson: the same bytes (compact,
    sorted keys, UTF-8, nothing escaped that the standard library leaves) for everything an
    event holds (a unit test compares them on every code point and on generated values),
    in a tenth of the time; the standard library answers where orjson cannot (an integer
    beyond 64 bits)."""
    try:
        return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return canonical(content)
