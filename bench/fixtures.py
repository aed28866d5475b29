"""Stores to measure: SQLite files and PostgreSQL schemas holding many keys, built fast.

A store of N keys is written the way the ledger writes one, only in larger transactions:
the real Keyring aggregate decides each command (rules, events, hash chain), and
``app.save`` stores the events of many accounts at once (up to 100 commands per account
per save) through the real pydantic mapper. Interval snapshots are off while writing (see
:class:`BulkApplication`); chosen accounts get one snapshot at the end. Opening a Ledger
on the file afterwards brings the durable views up to date (the same catch-up a restarted
service does). Keys are random base62 with a valid checksum, from a seeded generator: not
secret, but the same shape.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg

from keyledger import Actor, Ledger, Permission
from keyledger.adapters.driven.stores import parse_url
from keyledger.application import KeyringApplication
from keyledger.domain import Keyring, NewSecret
from keyledger.domain import keys as keyformat

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
"""The generated history spreads over two years, so month queries have months to pick."""
EVERY = 20
"""One account in ``EVERY`` steps also regenerates a key (immediately) and creates and
revokes an extra key, so the log holds every common command, not only creations."""
PERMISSIONS = frozenset({Permission.INTEGRATION, Permission.USER_MANAGEMENT})


def fake_key(rng: random.Random, prefix: str = keyformat.DEFAULT_PREFIX) -> str:
    """A key of the ledger's format (checksum included) from a seeded generator."""
    head = f"{prefix}_{''.join(rng.choices(keyformat.BASE62, k=keyformat.RANDOM_LENGTH))}"
    return head + keyformat.checksum(head)


def described(secret: str) -> NewSecret:
    """What the Keyring records of a secret, as the Ledger computes it."""
    return NewSecret(digest=keyformat.digest(secret).hex(), hint=keyformat.hint(secret))


@dataclass
class Population:
    """What a generated store holds, for choosing realistic query arguments."""

    secrets: list[str] = field(default_factory=list)
    """The secret of every valid key (current secrets only)."""
    key_ids: list[tuple[str, str]] = field(default_factory=list)
    """(account, key id) of every key ever created."""
    accounts: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    events: int = 0
    first: datetime = EPOCH
    last: datetime = EPOCH
    seconds: float = 0.0
    """How long writing the events took (views not included)."""


def actors_of(account: str, users: int) -> list[Actor]:
    return [Actor(f"{account}-u{n}", account, PERMISSIONS) for n in range(users)]


def populate(
    app: KeyringApplication,
    accounts: list[str],
    keys_per_account: int,
    *,
    users_per_account: int = 5,
    group: int = 50,
    steps_per_save: int = 100,
    seed: int = 7,
    span: timedelta = SPAN,
    start: datetime = EPOCH,
) -> Population:
    """Write ``keys_per_account`` valid keys to each account, accounts interleaved in
    groups so that time advances across the whole log; returns what was written."""
    rng = random.Random(seed)
    population = Population(accounts=list(accounts))
    per_event = span / max(1, int(len(accounts) * keys_per_account * (1 + 3 / EVERY)))
    now = start
    began = time.perf_counter()
    for first in range(0, len(accounts), group):
        names = accounts[first : first + group]
        rings = {name: Keyring(Keyring.id_for(name), name, now) for name in names}
        actors = {name: actors_of(name, users_per_account) for name in names}
        secret_at: dict[str, dict[str, int]] = {name: {} for name in names}
        for name in names:
            population.users.extend(actor.user_id for actor in actors[name])
        for step in range(keys_per_account):
            for name, ring in rings.items():
                actor = actors[name][step % users_per_account]
                secret = fake_key(rng)
                key_id = ring.create_key(
                    actor, name=f"key {step}", purpose="", application="bench",
                    secret=described(secret), now=now,
                )  # fmt: skip
                population.key_ids.append((name, key_id))
                secret_at[name][key_id] = len(population.secrets)
                population.secrets.append(secret)
                now += per_event
                if step % EVERY == EVERY - 1:
                    now = _churn(ring, actor, rng, secret_at[name], population, now, per_event)
            if step % steps_per_save == steps_per_save - 1 or step == keys_per_account - 1:
                population.events += sum(len(ring.pending_events) for ring in rings.values())
                app.save(*rings.values())
    population.first, population.last = start, now
    population.seconds = time.perf_counter() - began
    return population


def _churn(
    ring: Keyring,
    actor: Actor,
    rng: random.Random,
    secret_at: dict[str, int],
    population: Population,
    now: datetime,
    step: timedelta,
) -> datetime:
    """Regenerate one earlier key immediately; create a key and revoke it."""
    key_id = rng.choice(list(secret_at))
    secret = fake_key(rng)
    ring.regenerate_key(actor, key_id, secret=described(secret), grace=None, now=now)
    population.secrets[secret_at[key_id]] = secret
    now += step
    extra = ring.create_key(
        actor, name="short-lived", purpose="", application="bench", secret=described(fake_key(rng)), now=now
    )
    population.key_ids.append((ring.account, extra))
    now += step
    ring.revoke_key(actor, extra, reason="rotated out", now=now)
    return now + step


class BulkApplication(KeyringApplication):
    """The ledger's application without interval snapshots, for writing stores in bulk
    (a snapshot every 100 events of a 1,000-key account would dominate the writing);
    :func:`sqlite_store` takes one snapshot per chosen account at the end instead."""

    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {}


def sqlite_store(
    path: str,
    accounts: list[str],
    keys_per_account: int,
    *,
    snapshot: Sequence[str] = (),
    **options: Any,
) -> tuple[str, Population, float]:
    """Write a SQLite file holding those keys, snapshot the ``snapshot`` accounts, and
    bring the views up to date; returns the URL, the population and the seconds the
    views' catch-up took (as a service opening the file for the first time would)."""
    url = f"sqlite:///{path}"
    app = BulkApplication(env=parse_url(url).env)
    try:
        population = populate(app, accounts, keys_per_account, **options)
        for account in snapshot:
            app.take_snapshot(Keyring.id_for(account))
    finally:
        app.close()
    began = time.perf_counter()
    Ledger.open(url, follow=False).close()
    return url, population, time.perf_counter() - began


def account_names(count: int, prefix: str = "acct") -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


def wait_for_postgres(seconds: float = 30.0) -> None:
    """Return once the server accepts connections (it may be restarting briefly, as the
    reliability suite makes it); raise its error after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@contextmanager
def postgres_schema(name: str) -> Iterator[str]:
    """A fresh schema for one run, dropped afterwards; yields the ledger URL."""
    wait_for_postgres()
    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_URL}?schema={name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
