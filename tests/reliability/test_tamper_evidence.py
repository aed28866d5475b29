"""Issue 6, point 7: on a ledger of many events, every tampering with the stored events is
reported, at the first position that stops being provable.

The ledger (a SQLite file) records a random lifecycle over ten accounts: keys created,
regenerated both ways, revoked, a user removed and restored, grace swept. Its audit
trail is exported with a checkpoint, kept apart. Then, one at a time and undone after
each: a single byte of an event's stored state changed (whether the JSON still reads or
not), an event deleted, two events swapped, the newest events cut off. The edits,
deletions and swaps run in two processes (``worker.py tamper``), each on a copy.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from keyledger import Actor, Checkpoint, Ledger, Permission, UserAccessUnchanged, verify_export
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.reliability.conftest import Children, Sizes, StoredEvent, Tally

POINT = 7
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACCOUNTS = [f"tenant{i}" for i in range(10)]
WORKERS = 2
Job = list[object]
RESTORE = (
    "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
    "VALUES (?, ?, ?, ?, ?)"
)


@dataclass
class History:
    """A closed ledger of events, its stored rows and its exported checkpoint."""

    url: str
    path: Path
    events: list[StoredEvent]
    export: Path
    checkpoint: Checkpoint

    def next_in_account(self, index: int) -> int | None:
        """The position of the next event of the same account as the event at ``index``."""
        event = self.events[index]
        later = (e.position for e in self.events[index + 1 :] if e.originator_id == event.originator_id)
        return next(later, None)


def record_history(url: str, events: int) -> None:
    """Drive a random lifecycle over ten accounts until about ``events`` are recorded."""
    rng = random.Random(7)
    clock = ManualClock(START)
    keys: dict[str, list[str]] = {account: [] for account in ACCOUNTS}
    with Ledger.open(url, clock=clock) as ledger:
        while ledger.position < events:
            clock.advance(seconds=rng.randint(1, 3600))
            account, roll = rng.choice(ACCOUNTS), rng.random()
            user = Actor(user_id=rng.choice(["alice", "bob"]), account=account, permissions=set(Permission))
            admin = Actor(user_id="root", account=account, permissions=set(Permission))
            try:
                if roll < 0.4 or not keys[account]:
                    keys[account].append(ledger.create_key(user, name=f"key {ledger.position}").key_id)
                elif roll < 0.75:
                    ledger.regenerate_key(
                        user, rng.choice(keys[account]), mode="grace" if roll < 0.65 else "immediate"
                    )
                elif roll < 0.85:
                    ledger.revoke_key(user, keys[account].pop(rng.randrange(len(keys[account]))))
                elif roll < 0.9:
                    ledger.revoke_user_access(admin, "bob")
                elif roll < 0.95:
                    ledger.restore_user_access(admin, "bob")
                else:
                    ledger.expire_grace()
            except (UserAccessUnchanged, KeyError) as error:
                del error
            except Exception as error:
                if type(error).__name__ not in ("AccessRevoked", "KeyAlreadyRevoked"):
                    raise


@pytest.fixture(scope="class")
def history(
    quick_sqlite_url: str,
    sizes: Sizes,
    tmp_path_factory: pytest.TempPathFactory,
    events_of: Callable[[str], list[StoredEvent]],
) -> History:
    """A ledger of about ``tamper_events`` events, exported with a checkpoint, closed."""
    record_history(quick_sqlite_url, sizes.tamper_events)
    export = tmp_path_factory.mktemp("export") / "audit.jsonl"
    with Ledger.open(quick_sqlite_url, follow=False) as ledger:
        checkpoint = ledger.export_audit(export)
    path = Path(quick_sqlite_url.removeprefix("sqlite:///"))
    return History(quick_sqlite_url, path, events_of(quick_sqlite_url), export, checkpoint)


def run_jobs(
    history: History, jobs: list[Job], children: Children, work: Path
) -> list[tuple[bool, int | None]]:
    """Run tampering jobs in ``WORKERS`` processes, each on its own copy of the ledger."""
    chunks = [jobs[i::WORKERS] for i in range(WORKERS)]
    processes = []
    for number, chunk in enumerate(chunks):
        copy = history.path.with_name(f"copy-{number}.db")  # on tmpfs with the original
        for stale in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            stale.unlink(missing_ok=True)
        shutil.copyfile(history.path, copy)
        config = work / f"jobs-{number}.json"
        config.write_text(json.dumps({"db": str(copy), "jobs": chunk}), encoding="utf-8")
        processes.append(children.start("tamper", str(config), cwd=work))
    answers: list[list[tuple[bool, int | None]]] = []
    for process in processes:
        output, errors = process.communicate(timeout=3600)
        assert process.returncode == 0, errors[-3000:]
        answers.append([tuple(answer) for answer in json.loads(output)])  # type: ignore[misc]
    results: list[tuple[bool, int | None]] = [(True, None)] * len(jobs)
    for number, chunk_answers in enumerate(answers):
        for offset, answer in enumerate(chunk_answers):
            results[number + offset * WORKERS] = answer
    return results


def readable(state: bytes) -> bool:
    try:
        return isinstance(orjson.loads(state), dict)
    except orjson.JSONDecodeError:
        return False


def against_checkpoint(ledger: Ledger, history: History, work: Path) -> tuple[bool, int | None]:
    """Rebuild the views from the (tampered) events, export them again and verify that
    export against the checkpoint taken before: (ok, the original position of the first bad line)."""
    ledger.rebuild_projections()
    again = work / "again.jsonl"
    ledger.export_audit(again)
    report = verify_export(again, history.checkpoint)
    if report.ok or report.first_bad_line is None:
        return report.ok, None
    line = report.first_bad_line
    return False, history.events[line - 1].position if line <= len(history.events) else None


class TestTamperEvidence:
    """Edited, deleted, swapped and truncated events are reported at the first bad position."""

    def test_the_untouched_ledger_and_its_export_pass(self, history: History, sizes: Sizes) -> None:
        """Before tampering, the integrity check and the export's verification both pass."""
        with Ledger.open(history.url, follow=False) as ledger:
            report = ledger.check_integrity()

        exported = verify_export(history.export, history.checkpoint)

        assert len(history.events) >= sizes.tamper_events
        actions = {e.topic.removeprefix("keyledger.") for e in history.events}
        assert actions == {
            "KeyCreated",
            "KeyRegenerated",
            "KeyRevoked",
            "GraceExpired",
            "UserAccessRevoked",
            "UserAccessRestored",
        }
        assert report.ok
        assert report.events_checked == len(history.events)
        assert exported.ok
        assert exported.lines_checked == len(history.events)

    def test_every_single_byte_edit_is_reported_at_its_event(
        self, history: History, children: Children, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """A byte changed anywhere in an event's stored state is reported at that event,
        whether the JSON still reads (a changed meaning) or not."""
        rng = random.Random(71)
        jobs: list[Job] = []
        kinds: list[bool] = []
        for _ in range(sizes.tamper_edits):
            event = rng.choice(history.events)
            offset = rng.randrange(len(event.state))
            value = rng.choice([b for b in range(256) if b != event.state[offset]])
            jobs.append(["edit", event.position, offset, value])
            kinds.append(readable(event.state[:offset] + bytes([value]) + event.state[offset + 1 :]))

        results = run_jobs(history, jobs, children, tmp_path)

        right = [not ok and bad == job[1] for job, (ok, bad) in zip(jobs, results, strict=True)]
        for still_json in (True, False):
            mine = [r for r, k in zip(right, kinds, strict=True) if k == still_json]
            what = "still valid JSON" if still_json else "unreadable"
            tally(POINT, f"byte edits ({what}) reported at the event", "sqlite", len(mine), sum(mine))
        assert any(kinds)
        assert not all(kinds)
        assert all(right), [
            (job, result) for job, result, r in zip(jobs, results, right, strict=True) if not r
        ][:5]

    def test_a_deleted_event_is_reported_where_its_account_continues(
        self, history: History, children: Children, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """Deleting an event that its account later continues from is reported at its own
        place (the audit trail still holds it), wherever the check's pages begin."""
        rng = random.Random(72)
        followed = [i for i in range(len(history.events)) if history.next_in_account(i) is not None]
        chosen = (
            followed
            if len(followed) <= sizes.tamper_deletions
            else rng.sample(followed, sizes.tamper_deletions)
        )
        jobs: list[Job] = [["delete", history.events[i].position] for i in chosen]

        results = run_jobs(history, jobs, children, tmp_path)

        right = [
            not ok and bad is not None and bad == history.events[i].position
            for i, (ok, bad) in zip(chosen, results, strict=True)
        ]
        tally(POINT, "deleted events (account continues) reported", "sqlite", len(right), sum(right))
        assert all(right)

    def test_a_deleted_newest_event_of_an_account_is_reported_at_its_place(
        self, history: History, tmp_path: Path, tally: Tally
    ) -> None:
        """Deleting an account's newest event, while other accounts go on, is reported (by the
        integrity check, or against the exported checkpoint) at the deleted event's place."""
        newest = [i for i in range(len(history.events) - 1) if history.next_in_account(i) is None]
        outcomes = []

        with Ledger.open(history.url, follow=False) as ledger, closing(sqlite3.connect(history.path)) as conn:
            for i in newest:
                position = history.events[i].position
                row = conn.execute("SELECT * FROM stored_events WHERE rowid = ?", [position]).fetchone()
                conn.execute("DELETE FROM stored_events WHERE rowid = ?", [position])
                conn.commit()
                try:
                    report = ledger.check_integrity()
                    found = (report.ok, report.first_bad_position)
                    if report.ok:
                        found = against_checkpoint(ledger, history, tmp_path)
                finally:
                    conn.execute(RESTORE, [position, *row])
                    conn.commit()
                outcomes.append((position, found))
            ledger.rebuild_projections()

        right = [
            not ok and bad is not None and position <= bad <= position + 1 for position, (ok, bad) in outcomes
        ]
        tally(
            POINT,
            "deleted newest event of an account reported at its place",
            "sqlite",
            len(right),
            sum(right),
        )
        assert newest
        assert all(right), outcomes

    def test_a_swap_that_reorders_an_account_is_reported_at_the_first_event_out_of_order(
        self, history: History, children: Children, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """Swapping two events so that an account's events are out of order is reported at
        the first of the two places (the earliest where the store differs from the audit
        trail), never later than the first event that no longer follows its account's
        previous one."""
        rng = random.Random(73)
        pairs: list[tuple[int, int, int]] = []
        while len(pairs) < sizes.tamper_swaps:
            i = rng.randrange(len(history.events) - 1)
            j = i + 1 if rng.random() < 0.3 else rng.randrange(i + 1, len(history.events))
            expected = first_out_of_order(history.events, i, j)
            if expected is not None:
                pairs.append((i, j, expected))
        jobs: list[Job] = [
            ["swap", history.events[i].position, history.events[j].position] for i, j, _ in pairs
        ]

        results = run_jobs(history, jobs, children, tmp_path)

        right = [
            not ok and bad == history.events[i].position <= expected
            for (i, _, expected), (ok, bad) in zip(pairs, results, strict=True)
        ]
        tally(POINT, "swaps reordering an account reported", "sqlite", len(right), sum(right))
        assert all(right)

    def test_a_swap_of_two_accounts_neighbouring_events_is_reported(
        self, history: History, children: Children, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """Swapping neighbouring events of two accounts (each account's order intact, the
        ledger's order changed) is reported at the first of the two."""
        rng = random.Random(74)
        neighbours = [
            i
            for i in range(len(history.events) - 1)
            if history.events[i].originator_id != history.events[i + 1].originator_id
        ]
        chosen = rng.sample(neighbours, min(len(neighbours), max(10, sizes.tamper_swaps // 4)))
        jobs: list[Job] = [
            ["swap", history.events[i].position, history.events[i + 1].position] for i in chosen
        ]

        results = run_jobs(history, jobs, children, tmp_path)

        right = [
            not ok and bad == history.events[i].position for i, (ok, bad) in zip(chosen, results, strict=True)
        ]
        tally(
            POINT, "swaps across accounts (order kept per account) reported", "sqlite", len(right), sum(right)
        )
        assert all(right)

    def test_truncation_is_reported_against_the_exported_checkpoint(
        self, history: History, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """Cutting off the newest events leaves valid, shorter chains; a new export verified
        against the checkpoint taken before reports the first missing event."""
        rng = random.Random(75)
        cuts = sorted(rng.sample(range(1, len(history.events)), sizes.tamper_truncations))
        outcomes = []

        with Ledger.open(history.url, follow=False) as ledger, closing(sqlite3.connect(history.path)) as conn:
            for cut in cuts:
                first_gone = history.events[-cut].position
                rows = conn.execute(
                    "SELECT rowid, * FROM stored_events WHERE rowid >= ?", [first_gone]
                ).fetchall()
                conn.execute("DELETE FROM stored_events WHERE rowid >= ?", [first_gone])
                conn.commit()
                try:
                    outcomes.append((first_gone, against_checkpoint(ledger, history, tmp_path)))
                finally:
                    conn.executemany(RESTORE, rows)
                    conn.commit()
            ledger.rebuild_projections()

        right = [not ok and bad == first_gone for first_gone, (ok, bad) in outcomes]
        tally(POINT, "truncations reported against the checkpoint", "sqlite", len(right), sum(right))
        assert all(right), outcomes


def first_out_of_order(events: list[StoredEvent], i: int, j: int) -> int | None:
    """Where an integrity check must first fail once events ``i`` and ``j`` swap places:
    the first position whose event is not its account's next version (``None`` if every
    account's events stay in order)."""
    order = list(events)
    order[i], order[j] = order[j], order[i]
    versions: dict[str, int] = {}
    for place, event in enumerate(order):
        if event.version != versions.get(event.originator_id, 0) + 1:
            return events[place].position
        versions[event.originator_id] = event.version
    return None
