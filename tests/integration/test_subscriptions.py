"""Durable subscribers: every audit entry, in order, at least once, resumed where left off.

Each test runs on every store a subscription's guarantee applies to (``memory://`` has
no restart to survive). The handlers here collect what they were given; the tests never
assert how fast (the bound is the benchmark's), only that delivery converges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from keyledger import Actor, AuditEntry, InvalidInput, Ledger, Subscription, SubscriptionStatus
from keyledger import subscriptions as subscriptions_module

DEADLINE = 10.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE} s: {what}")
        time.sleep(0.005)


class Collector:
    """A handler that records the positions it was given, in the order given."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, entry: AuditEntry) -> None:
        with self.lock:
            self.positions.append(entry.position)

    def until(self, count: int) -> list[int]:
        wait_for(lambda: len(self.positions) >= count, f"{count} entries delivered")
        return list(self.positions)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions_module, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(subscriptions_module, "MAX_RETRY", 0.05)


def create(ledger: Ledger, actor: Actor, count: int) -> list[int]:
    """Create ``count`` keys; the positions of their entries."""
    before = ledger.position
    for n in range(count):
        ledger.create_key(actor, name=f"key {n}")
    return [entry.position for entry in ledger.audit(after=before, limit=1000)]


class TestDelivery:
    def test_a_new_name_receives_every_entry_in_position_order(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A new subscription starts at the first entry and receives each in position order."""
        ledger = open_ledger(store_url)
        earlier = create(ledger, alice, 3)
        handler = Collector()

        subscription = ledger.subscribe(handler, name="siem")
        later = create(ledger, alice, 3)

        assert handler.until(6) == earlier + later
        wait_for(lambda: subscription.position == later[-1], "the position saved")
        subscription.stop()

    def test_a_failing_handler_is_retried_and_nothing_after_it_is_delivered_first(
        self,
        store_url: str,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An exception in the handler is logged (its class, never its message) and the
        same entry is retried until it succeeds; no later entry overtakes it."""
        ledger = open_ledger(store_url)
        positions = create(ledger, alice, 3)
        seen: list[int] = []
        failures = {"left": 3}

        def flaky(entry: AuditEntry) -> None:
            seen.append(entry.position)
            if entry.position == positions[1] and failures["left"]:
                failures["left"] -= 1
                raise RuntimeError(f"canary {entry.key_name}")

        with caplog.at_level(logging.WARNING, logger="keyledger"):
            subscription = ledger.subscribe(flaky, name="flaky")
            wait_for(lambda: len(seen) >= 6, "every entry delivered")
            subscription.stop()

        assert seen == [positions[0], *[positions[1]] * 4, positions[2]]
        assert "RuntimeError" in caplog.text
        assert "canary" not in caplog.text
        assert "key 1" not in caplog.text

    def test_the_listing_shows_attempts_and_the_error_class_while_failing(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """While an entry fails, ``subscriptions()`` shows the attempts, the exception's
        class (not its message) and the lag."""
        ledger = open_ledger(store_url)
        create(ledger, alice, 2)

        def broken(entry: AuditEntry) -> None:
            raise ValueError(f"canary {entry.key_name}")

        subscription = ledger.subscribe(broken, name="broken")
        wait_for(lambda: _status(ledger, "broken").attempts >= 2, "attempts recorded")
        subscription.stop()

        status = _status(ledger, "broken")
        assert status.position == 0
        assert status.lag >= 2
        assert status.last_error == "ValueError"

    def test_a_clean_stop_repeats_nothing(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """After ``stop()``, the same name resumes after the last entry delivered."""
        ledger = open_ledger(store_url)
        first = create(ledger, alice, 3)
        handler = Collector()
        subscription = ledger.subscribe(handler, name="audit-sink")
        handler.until(3)
        subscription.stop()
        later = create(ledger, alice, 2)
        again = Collector()

        resumed = ledger.subscribe(again, name="audit-sink")

        assert again.until(2) == later
        time.sleep(0.1)
        assert again.positions == later
        assert handler.positions == first
        resumed.stop()

    def test_stop_from_inside_the_handler_saves_that_entry(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A handler may stop its own subscription; the entry it was given counts as delivered."""
        ledger = open_ledger(store_url)
        positions = create(ledger, alice, 3)
        holder: list[Subscription] = []
        subscribed = threading.Event()

        def once(entry: AuditEntry) -> None:
            subscribed.wait(DEADLINE)
            holder[0].stop()

        subscription = ledger.subscribe(once, name="once")
        holder.append(subscription)
        subscribed.set()
        wait_for(lambda: not subscription.running, "the subscription stopped")

        assert _status(ledger, "once").position == positions[0]

    def test_names_are_checked(self, open_ledger: Callable[..., Ledger]) -> None:
        """A name is letters, digits, '.', '_' and '-'; a handler must be callable."""
        ledger = open_ledger()

        with pytest.raises(InvalidInput, match="name"):
            ledger.subscribe(print, name="webhook:wh_1")
        with pytest.raises(InvalidInput, match="handler"):
            ledger.subscribe("print", name="ok")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="batch"):
            ledger.subscribe(print, name="ok", batch=0)


class TestRestart:
    def test_a_reopened_ledger_resumes_after_the_saved_position(
        self, durable_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """The position is kept in the ledger's database: a new process (here a new
        Ledger) resumes after it."""
        ledger = open_ledger(durable_url)
        create(ledger, alice, 2)
        handler = Collector()
        ledger.subscribe(handler, name="restartable")
        handler.until(2)
        ledger.close()
        writer = open_ledger(durable_url)
        later = create(writer, alice, 2)
        again = Collector()

        reopened = open_ledger(durable_url)
        reopened.subscribe(again, name="restartable")

        assert again.until(2) == later
        statuses = {status.name: status for status in reopened.subscriptions()}
        wait_for(lambda: _status(reopened, "restartable").position == later[-1], "the position saved")
        assert statuses["restartable"].name == "restartable"


class TestOneDelivererPerName:
    def test_a_second_subscription_under_the_same_name_stands_by_and_takes_over(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Two subscriptions under one name: one delivers, the other stands by, and takes
        over after the first stops, without repeating what the first delivered."""
        ledger = open_ledger(store_url)
        first = create(ledger, alice, 2)
        one, two = Collector(), Collector()
        active = ledger.subscribe(one, name="shared")
        one.until(2)
        standby = ledger.subscribe(two, name="shared")
        time.sleep(0.3)
        assert not standby.active
        assert two.positions == []

        active.stop()
        later = create(ledger, alice, 2)

        assert two.until(2) == later
        assert one.positions == first
        standby.stop()


def _status(ledger: Ledger, name: str) -> SubscriptionStatus:
    return next(status for status in ledger.subscriptions() if status.name == name)


class TestTheThreadNeverDies:
    def test_a_lease_that_cannot_be_taken_is_tried_again_and_delivery_follows(
        self,
        sqlite_url: str,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The store refusing the lease (here, its lock file) is logged and tried again;
        the subscription's thread goes on and delivers once it can."""
        from keyledger.adapters.driven.delivery_lease import FileLease

        take = FileLease.try_acquire
        refusals: list[int] = []

        def refused_twice(lease: FileLease) -> bool:
            if len(refusals) < 2:
                refusals.append(1)
                raise OSError("no lock file")
            return take(lease)

        monkeypatch.setattr(FileLease, "try_acquire", refused_twice)
        ledger = open_ledger(sqlite_url)
        positions = create(ledger, alice, 2)
        handler = Collector()

        subscription = ledger.subscribe(handler, name="siem")

        assert handler.until(2) == positions
        assert refusals == [1, 1]
        assert subscription.running
        subscription.stop()
