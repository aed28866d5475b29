"""The valid-key index: secret digest -> (account, key id, valid until).

This is what verification reads, once per request: a dict keyed by the 32-byte
SHA-256 digest, so lookup time does not depend on how much of a secret matched.
``valid_until`` is ``None`` for a key's current secret and the grace deadline for a
retired one; validity is ``now < valid_until`` whether or not ``GraceExpired`` has been
recorded yet.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import NamedTuple

from keyledger.projections.facts import Fact, parse_time


class IndexEntry(NamedTuple):
    """Where a digest leads: the key it belongs to and how long it works."""

    account: str
    key_id: str
    valid_until: datetime | None


class ValidKeyIndex:
    """Digests of every secret that works now or until a grace deadline."""

    def __init__(self) -> None:
        self._entries: dict[bytes, IndexEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, digest: bytes) -> IndexEntry | None:
        """The entry for ``digest``, if that secret has not been ended."""
        return self._entries.get(digest)

    def apply(self, fact: Fact) -> None:
        """Follow one recorded event."""
        data = fact.data
        action = fact.action
        entries = self._entries
        for ended in data.get("ended_digests", ()):
            entries.pop(bytes.fromhex(ended), None)
        if action == "KeyCreated":
            entries[bytes.fromhex(data["digest"])] = IndexEntry(
                fact.account, sys.intern(data["key_id"]), None
            )
        elif action == "KeyRegenerated":
            account, key_id = fact.account, sys.intern(data["key_id"])
            retired = bytes.fromhex(data["retired_digest"])
            if data["mode"] == "grace":
                entries[retired] = IndexEntry(account, key_id, parse_time(data["grace_until"]))
            else:
                entries.pop(retired, None)
            entries[bytes.fromhex(data["digest"])] = IndexEntry(account, key_id, None)
        elif action == "GraceExpired":
            entries.pop(bytes.fromhex(data["retired_digest"]), None)

    def entries(self) -> list[tuple[bytes, IndexEntry]]:
        """Every (digest, entry) pair, for comparing views."""
        return sorted(self._entries.items())
