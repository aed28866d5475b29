"""No secret is in what a ledger records of its keys, nor in what it says about them.

The Keyring aggregate never receives a secret: the Ledger draws each key and hands the
Keyring only its digest and hint (``NewSecret``), so a test of the Keyring alone cannot
see a secret leak into an event. These tests drive a real Ledger, on ``memory://`` and
on a SQLite file, through every command that issues or ends a secret (create,
regenerate with grace and at once, revoke, remove a user, expire grace) past the first
snapshot, then look for each secret issued in every stored event's state and every
stored snapshot (read from the SQLite file's tables with :mod:`sqlite3`), the JSON of
the audit entries, the key listings, the Keyring (its ``repr`` and a snapshot of it) and
the log records at DEBUG. A secret is found whole, as its 32-character random body, or
as any 16 characters of that body. Each test also shows its search looks where a leak
would land: what the ledger does record of each secret (its digest or hint) is found
there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from keyledger import Actor, IssuedKey, KeyView, Ledger
from keyledger.application import SNAPSHOT_INTERVAL
from keyledger.domain import Keyring, KeyringSnapshot
from keyledger.domain.keys import RANDOM_LENGTH, digest, hint
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoreTables

KEYS = 50
"""Keys created: with their regenerations, revocations and the removal, the account's
events pass :data:`SNAPSHOT_INTERVAL`, so a snapshot is stored too."""
PIECE = 16
PREFIX = "kl"


def body(secret: str) -> str:
    """The 32 random characters of a key, between ``kl_`` and its checksum."""
    start = len(PREFIX) + 1
    return secret[start : start + RANDOM_LENGTH]


def forms(secret: str) -> list[str]:
    """What would betray ``secret``: the whole key, its random body, and every
    16-character piece of that body (the hint, ``kl_...`` and 4 characters, is none)."""
    random = body(secret)
    return [secret, random, *(random[i : i + PIECE] for i in range(RANDOM_LENGTH - PIECE + 1))]


def leaked(haystack: str | bytes, secrets: Iterable[str]) -> list[str]:
    """The hints of the secrets found in ``haystack`` in any of their :func:`forms`."""
    text = haystack.decode("utf-8", "backslashreplace") if isinstance(haystack, bytes) else haystack
    return [hint(secret) for secret in secrets if any(form in text for form in forms(secret))]


def hex_digest(secret: str) -> str:
    return digest(secret).hex()


@dataclass
class Exposure:
    """Every secret a ledger issued, and everything it recorded and said meanwhile."""

    secrets: list[str] = field(default_factory=list)
    issued: list[IssuedKey] = field(default_factory=list)
    event_states: list[bytes] = field(default_factory=list)
    snapshot_states: list[bytes] = field(default_factory=list)
    position: int = 0
    audit_json: list[str] = field(default_factory=list)
    listings: list[KeyView] = field(default_factory=list)
    """The account's keys listed after the regenerations (secrets in grace) and at the end."""
    keyring_texts: list[str] = field(default_factory=list)
    keyring: Keyring | None = None
    log_records: list[logging.LogRecord] = field(default_factory=list)

    def working_digests(self) -> set[str]:
        assert self.keyring is not None
        return {d for record in self.keyring.keys.values() for d in record.digests()}


def run_every_command(ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor) -> Exposure:
    """Create :data:`KEYS` keys (every third Bob's), regenerate each with grace (every
    other one by Bob), every fifth again at once, revoke every eighth, remove Bob, and
    let the grace period pass and expire."""
    seen = Exposure()

    def issue(key: IssuedKey) -> IssuedKey:
        seen.issued.append(key)
        seen.secrets.append(key.secret.get_secret_value())
        return key

    created = [
        issue(ledger.create_key(bob if n % 3 == 0 else alice, name=f"Key {n}", purpose="shipping labels"))
        for n in range(KEYS)
    ]
    clock.advance(minutes=1)
    for n, key in enumerate(created):
        issue(ledger.regenerate_key(bob if n % 2 else alice, key.key_id, mode="grace"))
        if n % 5 == 0:
            issue(ledger.regenerate_key(alice, key.key_id, mode="immediate"))
    seen.listings += ledger.keys("acme")
    for key in created[1::8]:
        ledger.revoke_key(alice, key.key_id, reason="rotated out")
    ledger.revoke_user_access(admin, "bob")
    clock.advance(ledger.grace_period + timedelta(minutes=1))
    ledger.expire_grace()
    seen.listings += ledger.keys("acme")
    seen.audit_json = [entry.model_dump_json() for entry in ledger.audit(limit=10_000)]
    seen.position = ledger.position

    keyring: Keyring = ledger._connection.app.repository.get(Keyring.id_for("acme"))
    seen.keyring = keyring
    seen.keyring_texts = [repr(keyring), repr(vars(keyring)), KeyringSnapshot.take(keyring).model_dump_json()]
    return seen


def stored_in_memory(ledger: Ledger, seen: Exposure) -> None:
    """The states of the events and snapshots a ``memory://`` ledger stored."""
    app = ledger._connection.app
    seen.event_states = [n.state for n in app.recorder.select_notifications(start=1, limit=10_000)]
    assert app.snapshots is not None
    seen.snapshot_states = [s.state for s in app.snapshots.recorder.select_events(Keyring.id_for("acme"))]


def log_texts(records: list[logging.LogRecord]) -> str:
    """Each record as a handler would print it, and every attribute it carries (its
    message template and arguments included)."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(f"{formatter.format(record)}\n{vars(record)!r}" for record in records)


@pytest.fixture(params=["memory", "sqlite"])
def exposure(
    request: pytest.FixtureRequest,
    open_ledger: Callable[..., Ledger],
    store_tables: type[StoreTables],
    clock: ManualClock,
    alice: Actor,
    bob: Actor,
    admin: Actor,
    caplog: pytest.LogCaptureFixture,
) -> Exposure:
    """Every command run on a ledger of each store, with all it left and logged at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="keyledger")
    url = "memory://" if request.param == "memory" else request.getfixturevalue("sqlite_url")
    ledger = open_ledger(url)

    seen = run_every_command(ledger, clock, alice, bob, admin)

    if request.param == "memory":
        stored_in_memory(ledger, seen)
    else:
        tables = store_tables(url)
        seen.event_states = [row.state for row in tables.rows()]
        seen.snapshot_states = tables.snapshot_states()
    seen.log_records = list(caplog.records)
    return seen


class TestTheSearch:
    """The search these tests rely on finds a secret in each form, and no hint."""

    def test_finds_a_secret_whole_as_its_body_or_a_piece(self) -> None:
        """The whole key, its random body and any 16 characters of the body are found;
        its hint, digest and a piece shorter than 16 characters are not."""
        secret = "kl_" + "0123456789ABCDEFGHIJKLMNOPQRSTUV" + "abcdef"

        found = [
            leaked(text, [secret])
            for text in (
                f'{{"hint":"{secret}"}}',
                b"x0123456789ABCDEFGHIJKLMNOPQRSTUVx",
                "note: 6789ABCDEFGHIJKL",
                f'{{"hint":"kl_...cdef","digest":"{hex_digest(secret)}","n":"6789ABCDEFGHIJK"}}',
            )
        ]

        assert found == [["kl_...cdef"], ["kl_...cdef"], ["kl_...cdef"], []]


class TestNoSecretInWhatIsStored:
    """The events and snapshots a ledger stores hold digests and hints, never a secret."""

    def test_no_stored_event_holds_a_secret(self, exposure: Exposure) -> None:
        """No stored event's state holds a secret, while every secret's digest is in one."""
        states = b"\n".join(exposure.event_states)

        found = leaked(states, exposure.secrets)

        assert len(exposure.event_states) == exposure.position > SNAPSHOT_INTERVAL
        assert [s for s in exposure.secrets if hex_digest(s).encode() not in states] == []
        assert found == []

    def test_no_stored_snapshot_holds_a_secret(self, exposure: Exposure) -> None:
        """No stored snapshot holds a secret, while the digests of the secrets working at
        the snapshot are in it."""
        states = b"\n".join(exposure.snapshot_states)

        found = leaked(states, exposure.secrets)

        assert len(exposure.snapshot_states) >= 1
        recorded = [s for s in exposure.secrets if hex_digest(s).encode() in states]
        assert len(recorded) >= KEYS // 2
        assert found == []


class TestNoSecretInWhatIsShown:
    """What a ledger answers and logs about keys names them by digest or hint only."""

    def test_the_audit_trail_holds_no_secret(self, exposure: Exposure) -> None:
        """The JSON of every audit entry holds no secret, while every secret's digest is in it."""
        text = "\n".join(exposure.audit_json)

        found = leaked(text, exposure.secrets)

        assert len(exposure.audit_json) == exposure.position
        assert [s for s in exposure.secrets if hex_digest(s) not in text] == []
        assert found == []

    def test_the_key_listings_hold_no_secret(self, exposure: Exposure) -> None:
        """The key listings (with secrets in grace, and after the revocations) hold no
        secret in their JSON or ``repr``, while each active key shows its current hint."""
        text = "\n".join(f"{view.model_dump_json()}\n{view!r}" for view in exposure.listings)
        current = {key.key_id: key.hint for key in exposure.issued}

        found = leaked(text, exposure.secrets)

        assert found == []
        assert len(exposure.listings) == 2 * KEYS
        assert sum(len(view.grace) for view in exposure.listings) >= KEYS // 2
        active = [view for view in exposure.listings if view.status == "active"]
        assert [view for view in active if view.hint != current[view.key_id]] == []

    def test_the_keyring_holds_no_secret(self, exposure: Exposure) -> None:
        """The Keyring's ``repr``, its attributes and a snapshot of it hold no secret,
        while the snapshot holds the digest of every secret still working."""
        text = "\n".join(exposure.keyring_texts)

        found = leaked(text, exposure.secrets)

        assert exposure.keyring is not None
        assert len(exposure.keyring.keys) == KEYS
        working = exposure.working_digests()
        assert len(working) > 0
        assert [d for d in working if d not in exposure.keyring_texts[-1]] == []
        assert found == []

    def test_the_log_holds_no_secret(self, exposure: Exposure) -> None:
        """No log record, down to DEBUG, holds a secret in its message or its attributes,
        while a record names every key a secret was issued for."""
        text = log_texts(exposure.log_records)

        found = leaked(text, exposure.secrets)

        assert [key.key_id for key in exposure.issued if key.key_id not in text] == []
        assert found == []
