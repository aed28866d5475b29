"""A page of an account's keys, newest first, with the counts of them all: what a list
too long to read whole (the console's API credentials page) reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyledger import Actor, InvalidInput, Ledger
from keyledger.testing import ManualClock


@pytest.fixture
def ledger(store_url: str, clock: ManualClock, alice: Actor) -> Iterator[Ledger]:
    with Ledger.open(store_url, clock=clock) as opened:
        for number in range(5):
            opened.create_key(alice, name=f"key {number}")
        opened.revoke_key(alice, opened.keys("acme")[1].key_id)
        yield opened


def test_pages_cut_the_newest_first_list_of_every_key(ledger: Ledger) -> None:
    newest_first = [key.key_id for key in reversed(ledger.keys("acme"))]

    pages = [ledger.keys_page("acme", offset=offset, limit=2) for offset in (0, 2, 4, 6)]

    assert [[key.key_id for key in page.keys] for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert {(page.total, page.active) for page in pages} == {(5, 4)}


def test_a_page_shows_each_key_as_the_whole_list_does(ledger: Ledger) -> None:
    whole = {key.key_id: key for key in ledger.keys("acme")}

    page = ledger.keys_page("acme", limit=5)

    assert [key == whole[key.key_id] for key in page.keys] == [True] * 5


def test_an_account_without_keys_has_an_empty_page(ledger: Ledger) -> None:
    page = ledger.keys_page("nobody")

    assert (page.keys, page.total, page.active) == ([], 0, 0)


@pytest.mark.parametrize(
    ("offset", "limit", "field"),
    [(-1, 10, "offset"), (0, 0, "limit"), (0, 1001, "limit"), (True, 10, "offset")],
)
def test_a_bad_offset_or_limit_is_refused_naming_it(
    ledger: Ledger, offset: int, limit: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        ledger.keys_page("acme", offset=offset, limit=limit)

    assert refused.value.field == field
