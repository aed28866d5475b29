"""Cursor pagination of the audit trail: pages by ``after=position`` never skip or repeat,
even while other threads keep appending.

A reviewer pages with ``audit(limit=7, after=cursor)``, passing the last position of each
page as the next cursor. While a writer creates keys (through the same ledger on
``memory://``, through a second ledger on the same SQLite file or PostgreSQL schema), the
positions read are strictly increasing, and every position that existed past the
cursor when a page was read is read exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from keyledger import Actor, AuditEntry, Ledger

PAGE = 7
BEFORE = 5
WRITES = 60
DEADLINE = 60.0
"""Seconds the reader pages for at most before the test gives up."""


def positions(entries: list[AuditEntry]) -> list[int]:
    return [entry.position for entry in entries]


class TestPagingUnderConcurrentAppends:
    """Paging while keys are created sees every entry once, in order."""

    def test_pages_never_skip_or_repeat_while_keys_are_created(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Each page starts at the first entry past the cursor, and together they hold every entry once."""
        reader = open_ledger(store_url)
        writer = reader if store_url == "memory://" else open_ledger(store_url)
        for turn in range(BEFORE):
            writer.create_key(alice, name=f"Before {turn}")
        finished = threading.Event()
        read_again = threading.Event()
        failures: list[BaseException] = []

        def create_keys() -> None:
            try:
                for turn in range(WRITES):
                    writer.create_key(alice, name=f"During {turn}")
                    if turn % PAGE == PAGE - 1:
                        # Let the reader page while writes go on, however fast they are.
                        read_again.clear()
                        read_again.wait(timeout=1.0)
            except BaseException as error:
                failures.append(error)
            finally:
                finished.set()

        thread = threading.Thread(target=create_keys, name="test-writer", daemon=True)
        seen: list[int] = []
        promised: set[int] = set()
        starts: list[tuple[list[int], list[int]]] = []
        cursor: int | None = None
        pages_while_writing = 0
        deadline = time.monotonic() + DEADLINE

        thread.start()
        try:
            while time.monotonic() < deadline:
                writer_done = finished.is_set()
                existing = positions(reader.audit(limit=10_000, after=cursor))
                page = positions(reader.audit(limit=PAGE, after=cursor))
                promised.update(existing)
                starts.append((existing[:PAGE], page[: len(existing[:PAGE])]))
                seen.extend(page)
                if page:
                    cursor = page[-1]
                    pages_while_writing += not writer_done
                elif writer_done:
                    break
                else:
                    time.sleep(0.001)
                read_again.set()
        finally:
            thread.join(timeout=DEADLINE)

        everything = positions(reader.audit(limit=10_000))
        assert failures == []
        assert not thread.is_alive()
        assert seen == sorted(set(seen))
        assert seen == everything
        assert len(everything) == BEFORE + WRITES
        assert promised <= set(seen)
        assert all(expected == got for expected, got in starts), [s for s in starts if s[0] != s[1]]
        assert pages_while_writing >= 2

    def test_a_filtered_page_sequence_sees_every_match_once(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor, bob: Actor
    ) -> None:
        """Paging by actor while two users create keys reads each of that actor's entries once."""
        reader = open_ledger(store_url)
        writer = reader if store_url == "memory://" else open_ledger(store_url)
        finished = threading.Event()

        def create_keys() -> None:
            try:
                for turn in range(WRITES // 2):
                    writer.create_key(alice if turn % 2 else bob, name=f"Key {turn}")
            finally:
                finished.set()

        thread = threading.Thread(target=create_keys, name="test-writer", daemon=True)
        seen: list[int] = []
        cursor: int | None = None
        deadline = time.monotonic() + DEADLINE

        thread.start()
        try:
            while time.monotonic() < deadline:
                writer_done = finished.is_set()
                page = reader.audit(actor="alice", limit=PAGE, after=cursor)
                seen.extend(positions(page))
                if page:
                    cursor = page[-1].position
                elif writer_done:
                    break
                else:
                    time.sleep(0.001)
        finally:
            thread.join(timeout=DEADLINE)

        alices = positions(reader.audit(actor="alice", limit=10_000))
        assert seen == alices
        assert len(alices) == WRITES // 4
        assert seen == sorted(set(seen))


class TestPagingAFinishedTrail:
    """Pages of a trail that no longer changes tile it exactly."""

    def test_pages_tile_the_trail(
        self, store_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Twenty-five entries read seven at a time come in pages of 7, 7, 7 and 4, then none."""
        ledger = open_ledger(store_url)
        for turn in range(25):
            ledger.create_key(alice, name=f"Key {turn}")
        pages: list[list[int]] = []
        cursor = None

        while page := positions(ledger.audit(limit=PAGE, after=cursor)):
            pages.append(page)
            cursor = page[-1]

        assert [len(page) for page in pages] == [7, 7, 7, 4]
        assert [p for page in pages for p in page] == list(range(1, 26))
        assert ledger.audit(after=cursor) == []
