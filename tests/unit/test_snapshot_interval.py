"""Large Keyrings are snapshotted further apart: a snapshot costs in proportion to the
keys it holds, so the interval grows with them (keyledger.application.snapshot_interval)."""

from __future__ import annotations

import pytest

from keyledger import Actor, Ledger
from keyledger.application import SNAPSHOT_INTERVAL, snapshot_interval
from keyledger.domain import Keyring, KeyringSnapshot
from keyledger.testing import ManualClock


@pytest.mark.parametrize(
    ("keys", "interval"),
    [(0, 100), (999, 100), (1999, 100), (2000, 200), (2999, 200), (10_000, 1000), (25_500, 2500)],
)
def test_the_interval_grows_by_the_base_per_thousand_keys(keys: int, interval: int) -> None:
    assert snapshot_interval(SNAPSHOT_INTERVAL, keys) == interval


def snapshot_versions(ledger: Ledger, account: str) -> list[int]:
    snapshots = ledger._connection.app.snapshots
    assert snapshots is not None
    stored = snapshots.recorder.select_events(Keyring.id_for(account))
    return [event.originator_version for event in stored]


def test_an_account_of_two_thousand_keys_is_snapshotted_every_two_hundred_events(
    clock: ManualClock, alice: Actor
) -> None:
    with Ledger.open("memory://", clock=clock) as ledger:
        first = ledger.create_key(alice, name="key 0")
        for n in range(1, 2000):
            ledger.create_key(alice, name=f"key {n}")
        assert snapshot_versions(ledger, "acme") == list(range(100, 2001, 100))
        for _ in range(400):  # versions 2001..2400, at 2,000 keys
            ledger.regenerate_key(alice, first.key_id, mode="immediate")

        assert snapshot_versions(ledger, "acme")[-3:] == [2000, 2200, 2400]
        snapshots = ledger._connection.app.snapshots
        assert snapshots is not None
        [latest] = list(snapshots.get(Keyring.id_for("acme"), desc=True, limit=1))
        assert isinstance(latest, KeyringSnapshot)
        assert latest.originator_version == 2400
        assert len(latest.state.keys) == 2000


def test_reloading_a_large_keyring_replays_only_the_events_after_its_snapshot(
    clock: ManualClock, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the snapshot at version 2,000 (2,000 keys), a fresh load reads the events
    after it, never the history before."""
    with Ledger.open("memory://", clock=clock) as ledger:
        first = ledger.create_key(alice, name="key 0")
        for n in range(1, 2000):
            ledger.create_key(alice, name=f"key {n}")
        for _ in range(150):
            ledger.regenerate_key(alice, first.key_id, mode="immediate")
        app = ledger._connection.app
        assert app.repository.cache is not None
        app.repository.cache.get(Keyring.id_for("acme"), evict=True)  # forget the cached Keyring
        recorder = app.events.recorder
        select = recorder.select_events
        asked: list[int | None] = []

        def recorded_select(originator_id: object, **kwargs: object) -> object:
            asked.append(kwargs.get("gt"))  # type: ignore[arg-type]
            return select(originator_id, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(recorder, "select_events", recorded_select)
        keyring = app.repository.get(Keyring.id_for("acme"))

        assert asked == [2000]
        assert keyring.version == 2150
        assert len(keyring.keys) == 2000
