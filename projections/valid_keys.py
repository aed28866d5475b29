"""The valid-key index: secret digest -> Principal (account, key id, name, grace until).

This is what verification reads, once per request: a dict keyed by the 32-byte
SHA-256 digest, so lookup time does not depend on how much of a secret matched.
``grace_until`` is ``None`` for a key's current secret and the grace deadline for a
retired one; validity is ``now < valid_until`` whether or not ``GraceExpired`` has been
recorded yet.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, ItemsView, Iterable
from datetime import datetime
from sys import intern
from typing import NamedTuple

from keyledger.projections.recorded import (
    Recorded,
    RecordedGraceExpired,
    RecordedKeyCreated,
    RecordedKeyRegenerated,
    RecordedKeyRevoked,
    RecordedUserAccessRevoked,
)


class Principal(NamedTuple):
    """Who a verified credential authenticates: one key of one account.

    The index holds these immutable tuples themselves, so verification returns one
    without building anything.
    """

    account: str
    key_id: str
    name: str
    grace_until: datetime | None
    """``None`` for a key's current secret; the deadline of a secret in grace."""


Changes = tuple[list[bytes], list[tuple[bytes, Principal]]]


def index_changes(event: Recorded, entry_of: Callable[[bytes], Principal | None]) -> Changes:
    """The digests one event ends and the entries it adds, in that order.

    ``entry_of`` looks up a digest's current entry (a regenerated key keeps its name).
    """
    drops: list[bytes] = []
    puts: list[tuple[bytes, Principal]] = []
    match event:
        case RecordedKeyCreated():
            entry = Principal(event.account, intern(event.key_id), event.name, None)
            puts.append((bytes.fromhex(event.digest), entry))
        case RecordedKeyRegenerated():
            drops.extend(bytes.fromhex(digest) for digest in event.ended_digests)
            retired = bytes.fromhex(event.retired_digest)
            old = entry_of(retired)
            account, key_id, name = event.account, intern(event.key_id), old.name if old else ""
            if event.mode == "grace":
                puts.append((retired, Principal(account, key_id, name, event.grace_deadline)))
            else:
                drops.append(retired)
            puts.append((bytes.fromhex(event.digest), Principal(account, key_id, name, None)))
        case RecordedGraceExpired():
            drops.append(bytes.fromhex(event.retired_digest))
        case RecordedKeyRevoked() | RecordedUserAccessRevoked():
            drops.extend(bytes.fromhex(digest) for digest in event.ended_digests)
    return drops, puts


class ValidKeyIndex:
    """Digests of every secret that works now or until a grace deadline."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]] = ()) -> None:
        # Filled with the cyclic garbage collector paused (and resumed as it was): a
        # Principal, a tuple subclass, stays tracked by the collector, and a large index
        # would bring on full collections while it fills. It holds no reference cycles.
        paused = gc.isenabled()
        gc.disable()
        try:
            self._entries: dict[bytes, Principal] = dict(entries)
        finally:
            if paused:
                gc.enable()
        self.get = self._entries.get
        """The principal of a digest, or ``None`` (the dict's own ``get``: the hot path)."""

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, digest: bytes) -> Principal | None:
        """The entry for ``digest``, if that secret has not been ended."""
        return self._entries.get(digest)

    def apply(self, event: Recorded) -> None:
        """Follow one recorded event."""
        drops, puts = index_changes(event, self._entries.get)
        self.change(drops, puts)

    def change(self, drops: Iterable[bytes], puts: Iterable[tuple[bytes, Principal]]) -> None:
        """Remove ``drops``, then add ``puts``."""
        entries = self._entries
        for digest in drops:
            entries.pop(digest, None)
        entries.update(puts)

    def as_dict(self) -> dict[bytes, Principal]:
        """Every entry by digest (a copy)."""
        return dict(self._entries)

    def items(self) -> ItemsView[bytes, Principal]:
        """Every (digest, entry) pair, unsorted and not copied (for writing them all out)."""
        return self._entries.items()

    def entries(self) -> list[tuple[bytes, Principal]]:
        """Every (digest, entry) pair, sorted by digest, for comparing views."""
        return sorted(self._entries.items())
