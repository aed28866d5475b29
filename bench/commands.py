"""The command mix every command case sends, and the floor's rows of the same size.

The mix is what a key's life looks like: create it, regenerate it with grace, revoke it;
one third each, through the public Ledger API with its validation and durable commits.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from keyledger import Actor, Ledger, Permission

PERMISSIONS = frozenset({Permission.INTEGRATION})


def mix(ledger: Ledger, actor: Actor) -> Iterator[str]:
    """Send the mix forever, yielding the name of each command after it returns."""
    while True:
        issued = ledger.create_key(actor, name="bench key", application="bench")
        yield "create"
        ledger.regenerate_key(actor, issued.key_id, mode="grace")
        yield "regenerate"
        ledger.revoke_key(actor, issued.key_id, reason="bench")
        yield "revoke"


def timed_commands(ledger: Ledger, account: str, count: int, user: str = "bench-user") -> float:
    """Commands per second over ``count`` commands of the mix in ``account``."""
    commands = mix(ledger, Actor(user, account, PERMISSIONS))
    began = time.perf_counter()
    for _ in itertools.islice(commands, count):
        pass
    return count / (time.perf_counter() - began)


def commands_for(ledger: Ledger, account: str, seconds: float, user: str = "bench-user") -> tuple[int, float]:
    """Send the mix for ``seconds`` (finishing the command under way); returns how many
    commands returned and the seconds they took."""
    commands = mix(ledger, Actor(user, account, PERMISSIONS))
    began = time.perf_counter()
    deadline = began + seconds
    done = 0
    for _ in commands:
        done += 1
        if time.perf_counter() >= deadline:
            break
    return done, time.perf_counter() - began


@dataclass(frozen=True)
class RowShape:
    """The topics and state sizes of stored events, for floor rows of the same size."""

    rows: tuple[tuple[str, int], ...]

    def payloads(self) -> Iterator[tuple[str, bytes]]:
        """(topic, random state of the same length), cycling through the shapes."""
        cached = [(topic, os.urandom(size)) for topic, size in self.rows]
        return itertools.cycle(cached)

    @property
    def mean_bytes(self) -> float:
        return sum(size for _, size in self.rows) / len(self.rows)


def new_stream() -> uuid.UUID:
    return uuid.uuid4()
