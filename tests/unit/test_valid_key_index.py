"""The verification index: built from (digest, Principal) pairs with the garbage
collector paused, and the collector left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from keyledger.projections.valid_keys import Principal, ValidKeyIndex


def entries(count: int, seen: list[bool]) -> Iterator[tuple[bytes, Principal]]:
    for n in range(count):
        seen.append(gc.isenabled())
        yield n.to_bytes(32, "big"), Principal("acme", f"key_{n:016d}", f"key {n}", None)


@pytest.fixture
def collector_as_found() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_as_found")
def test_the_collector_is_paused_while_filling_and_resumed_after() -> None:
    gc.enable()
    seen: list[bool] = []

    index = ValidKeyIndex(entries(1000, seen))

    assert seen == [False] * 1000
    assert gc.isenabled()
    assert len(index) == 1000
    assert index.get((7).to_bytes(32, "big")) == Principal("acme", "key_0000000000000007", "key 7", None)


@pytest.mark.usefixtures("collector_as_found")
def test_a_collector_the_host_disabled_stays_disabled() -> None:
    gc.disable()

    ValidKeyIndex(entries(10, []))

    assert not gc.isenabled()


@pytest.mark.usefixtures("collector_as_found")
def test_the_collector_is_resumed_when_filling_fails() -> None:
    gc.enable()

    def failing() -> Iterator[tuple[bytes, Principal]]:
        yield from entries(3, [])
        raise OSError("disk I/O error")

    with pytest.raises(OSError, match="disk I/O error"):
        ValidKeyIndex(failing())

    assert gc.isenabled()
