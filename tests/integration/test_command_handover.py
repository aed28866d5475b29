"""What a command hands over in its own process after the commit: the Keyring it decided
on to the repository's cache, and its events to this process's follower, which then
reads nothing it already holds."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from keyledger import Actor, Ledger
from keyledger.adapters.driven.unit_of_work import Committed
from keyledger.domain import Keyring
from keyledger.testing import ManualClock
from tests.integration.conftest import recorded_commits

WAIT = 5.0


class TestTheKeyringCache:
    def test_holds_the_keyring_a_command_decided_on_at_its_new_version(
        self, durable_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        """The next command on the account starts from the cached Keyring, not from its
        own events read back and applied again."""
        with Ledger.open(durable_url, clock=clock, follow=False) as ledger:
            issued = ledger.create_key(alice, name="one")
            ledger.regenerate_key(alice, issued.key_id, mode="grace")

            cache = ledger._connection.app.repository.cache
            assert cache is not None
            cached = cache.get(Keyring.id_for("acme"))
            assert cached.version == 2
            assert issued.key_id in cached.keys

    def test_a_keyring_cached_behind_the_store_is_brought_up_to_date(
        self, durable_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        """Another ledger's command after this one's: the next command here sees it."""
        with (
            Ledger.open(durable_url, clock=clock, follow=False) as ours,
            Ledger.open(durable_url, clock=clock, follow=False) as theirs,
        ):
            key_id = ours.create_key(alice, name="one").key_id
            theirs.revoke_key(alice, key_id)

            second = ours.create_key(alice, name="two")

            assert [k.name for k in ours.keys("acme")] == ["one", "two"]
            assert ours.key("acme", key_id) is not None
            assert ours.audit(account="acme")[-1].version == 3
            assert second.key_id != key_id


class TestTheFollowerTakingACommand:
    def test_reads_nothing_for_events_it_already_holds(
        self, durable_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Events the follower took before the command handed them over (its thread
        woken by the commit) are not read again."""
        with Ledger.open(durable_url, clock=clock, follow=False) as ledger:
            connection = ledger._connection
            handed = recorded_commits(connection.unit_of_work, monkeypatch)
            ledger.create_key(alice, name="one")
            reads: list[int] = []
            read = connection.follower._read

            def counting(after: int, *args: Any) -> Any:
                reads.append(after)
                return read(after, *args)

            monkeypatch.setattr(connection.follower, "_read", counting)

            connection.follower.take(handed[-1])

            assert reads == []
            assert connection.follower.position == handed[-1].notifications[-1].id


@pytest.mark.postgres
def test_a_command_the_follower_missed_is_read_without_waiting_for_the_next_poll(
    postgres_url: str, clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When handing its events over fails, the follower is woken to read them at once
    (its own commit's NOTIFY wakes nothing)."""
    monkeypatch.setattr("keyledger.follower.NOTIFY_FALLBACK_INTERVAL", 60.0)
    with Ledger.open(postgres_url, clock=clock, max_lag=timedelta(hours=1)) as ledger:
        follower = ledger._connection.follower
        ledger.create_key(alice, name="first")
        take = follower.take

        def failing(committed: Committed) -> None:
            raise RuntimeError("handing over failed")

        monkeypatch.setattr(follower, "take", failing)
        issued = ledger.create_key(alice, name="missed")
        monkeypatch.setattr(follower, "take", take)

        secret = issued.secret.get_secret_value()
        deadline = time.monotonic() + WAIT
        while ledger.verify(secret) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.verify(secret) is not None
