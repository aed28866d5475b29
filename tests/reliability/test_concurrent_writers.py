"""Issue 6, point 1: writers in several processes on three shared accounts lose,
duplicate and interleave nothing, and no key of a revoked creator works at any moment.

Each writer is a process (``worker.py writer``) acting as its own user; it creates,
regenerates and revokes its keys and, as the administrator ``root``, revokes and
restores the other writers' access, on three accounts picked at random, printing an
acknowledgement for each command that returned. Meanwhile a watcher in the test process
follows the ledger and, at each position it reaches, checks that no secret of a key
whose creator is revoked verifies, and that the compliance report counts none.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from keyledger import AuditEntry, Ledger

if TYPE_CHECKING:
    import subprocess

    from tests.reliability.conftest import Children, Signatures, Sizes, StoredEvent, Tally

ACCOUNTS = ["acme", "globex", "initech"]
POINT = 1
Record = dict[str, Any]


class Writer:
    """One writer process and what it printed, read by a thread as it arrives."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.records: list[Record] = []
        self.report: Record | None = None
        self.ready, self.done, self.finished = threading.Event(), threading.Event(), threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            record = json.loads(line)
            if "ready" in record:
                self.ready.set()
            elif "done" in record:
                self.done.set()
            elif "verified" in record:
                self.report = record
            else:
                self.records.append(record)
        self.finished.set()

    def wait(self, event: threading.Event, what: str, timeout: float) -> None:
        if not event.wait(timeout):
            self.process.kill()
            _, errors = self.process.communicate(timeout=30)
            pytest.fail(f"a writer did not get {what} within {timeout} s:\n{errors[-3000:]}")

    @property
    def acks(self) -> list[Record]:
        return [record for record in list(self.records) if "op" in record]


@dataclass
class Watch:
    """What the watcher checked while the writers ran."""

    secrets_checked: int = 0
    secrets_refused: int = 0
    reports: int = 0
    reports_clean: int = 0
    positions: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Watcher(threading.Thread):
    """Follows the ledger and checks the invariant at every position it reaches."""

    def __init__(self, url: str, writers: list[Writer]) -> None:
        super().__init__(daemon=True)
        self.url, self.writers = url, writers
        self.watch = Watch()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Ledger.open(self.url, follow=False) as ledger:
                while not self.stopping.wait(0.01):
                    self.check(ledger)
                self.check(ledger)
        except BaseException as error:
            self.error = error

    def check(self, ledger: Ledger) -> None:
        ledger.sync()
        position = ledger.position
        self.watch.positions.append(position)
        revoked: set[tuple[str, str]] = set()
        for entry in ledger.audit(action=("UserAccessRevoked", "UserAccessRestored"), limit=10_000):
            if entry.position <= position:
                user = (entry.account, entry.details["user_id"])
                (revoked.add if entry.action == "UserAccessRevoked" else revoked.discard)(user)
        acks = [ack for writer in self.writers for ack in writer.acks]
        creators = {(a["account"], a["key_id"]): a["by"] for a in acks if a["op"] == "create"}
        for ack in acks:
            creator = creators.get((ack["account"], ack.get("key_id", "")))
            if ack["op"] in ("create", "regenerate") and (ack["account"], creator) in revoked:
                self.watch.secrets_checked += 1
                if ledger.verify(ack["secret"]) is None:
                    self.watch.secrets_refused += 1
                else:
                    self.watch.problems.append(f"at {position}: a secret of revoked {creator!r} verified")
        for account in ACCOUNTS:
            self.watch.reports += 1
            count = ledger.report(account).working_keys_of_revoked_creators
            if count == 0:
                self.watch.reports_clean += 1
            else:
                self.watch.problems.append(f"at {position}: the report of {account} counts {count}")


@dataclass
class Race:
    """Everything the writers and the watcher left for the tests to check."""

    url: str
    store: str
    writers: list[Writer]
    watch: Watch
    secrets: list[str]
    before_rebuild: dict[str, Any]
    after_rebuild: dict[str, Any]
    entries: list[AuditEntry]
    integrity_ok: bool
    events_checked: int

    @property
    def acks(self) -> list[Record]:
        return [ack for writer in self.writers for ack in writer.acks]

    def outcomes(self, kind: str) -> list[Record]:
        return [r for writer in self.writers for r in writer.records if kind in r]


@pytest.fixture(scope="class")
def race(
    shared_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    sizes: Sizes,
    class_children: Children,
    views: Callable[[Ledger, list[str], list[str]], dict[str, Any]],
    all_entries: Callable[[Ledger], list[AuditEntry]],
) -> Race:
    """Run the writers and the watcher once per store; the tests read what they left."""
    Ledger.open(shared_url).close()
    users = [f"w{i}" for i in range(sizes.writer_processes)]
    cwd = tmp_path_factory.mktemp("writers")
    writers = [
        Writer(
            class_children.start(
                "writer",
                json.dumps(
                    {
                        "url": shared_url,
                        "seed": index,
                        "creators": [user],
                        "users": users,
                        "accounts": ACCOUNTS,
                        "commands": sizes.writer_commands,
                    }
                ),
                cwd=cwd,
            )
        )
        for index, user in enumerate(users)
    ]
    for writer in writers:
        writer.wait(writer.ready, "ready", 60)
    watcher = Watcher(shared_url, writers)
    watcher.start()
    start = time.time() + 0.5
    for writer in writers:
        assert writer.process.stdin is not None
        writer.process.stdin.write(f"{start}\n")
        writer.process.stdin.flush()
    for writer in writers:
        writer.wait(writer.done, "through its commands", 60 + sizes.writer_commands * 2)
    watcher.stopping.set()
    watcher.join(60)
    assert watcher.error is None, repr(watcher.error)
    secrets = [ack["secret"] for writer in writers for ack in writer.acks if "secret" in ack]
    for writer in writers:
        assert writer.process.stdin is not None
        writer.process.stdin.write(json.dumps(secrets) + "\n")
        writer.process.stdin.flush()
    for writer in writers:
        writer.wait(writer.finished, "its report", 120)
        assert writer.process.wait(30) == 0
    with Ledger.open(shared_url) as ledger:
        before = views(ledger, ACCOUNTS, secrets)
        ledger.rebuild_projections()
        after = views(ledger, ACCOUNTS, secrets)
        entries = all_entries(ledger)
        report = ledger.check_integrity()
    store = "sqlite" if shared_url.startswith("sqlite") else "postgresql"
    return Race(
        shared_url,
        store,
        writers,
        watcher.watch,
        secrets,
        before,
        after,
        entries,
        report.ok,
        report.events_checked,
    )


class TestConcurrentWriters:
    """Writers racing on three accounts leave exactly what they were told they did."""

    def test_every_acknowledged_command_is_recorded_exactly_once(
        self, race: Race, signatures: type[Signatures], tally: Tally
    ) -> None:
        """Each acknowledgement matches one recorded event, and no event lacks one."""
        expected = Counter(signatures.of_ack(ack) for ack in race.acks)

        recorded = Counter(signatures.of_event(entry) for entry in race.entries)

        matched = sum((expected & recorded).values())
        tally(POINT, "acknowledged commands recorded exactly once", race.store, len(race.acks), matched)
        assert len(race.acks) >= len(race.writers) * 10
        assert recorded == expected

    def test_refused_and_conflicting_commands_record_nothing(self, race: Race, tally: Tally) -> None:
        """Commands that were refused or gave up with Conflict left no event, and none failed
        for want of the store: the log holds the acknowledged commands and nothing else."""
        failed = race.outcomes("refused") + race.outcomes("conflict")

        extra = len(race.entries) - len(race.acks)

        tally(
            POINT,
            "refused or conflicting commands record nothing",
            race.store,
            len(failed),
            len(failed) - max(extra, 0),
        )
        assert race.outcomes("refused")
        assert race.outcomes("unavailable") == []
        assert extra == 0

    def test_no_two_events_share_a_stream_version(
        self, race: Race, events_of: Callable[[str], list[StoredEvent]], tally: Tally
    ) -> None:
        """Each account's stored versions run 1, 2, ... n in position order, and the chain holds."""
        events = events_of(race.url)

        streams: dict[str, list[int]] = {}
        for event in events:
            streams.setdefault(event.originator_id, []).append(event.version)

        gapless = [versions == list(range(1, len(versions) + 1)) for versions in streams.values()]
        tally(POINT, "streams without version gaps or duplicates", race.store, len(streams), sum(gapless))
        assert len(streams) == len(ACCOUNTS)
        assert all(gapless)
        assert race.integrity_ok
        assert race.events_checked == len(events) == len(race.acks)

    def test_each_process_views_equal_a_rebuild(self, race: Race, tally: Tally) -> None:
        """Every writer's verification index, and the durable views, answer as a rebuild from zero."""
        answers = [writer.report["verified"] if writer.report else None for writer in race.writers]

        agreeing = [answer == race.after_rebuild["verified"] for answer in answers]
        agreeing.append(race.before_rebuild == race.after_rebuild)

        tally(POINT, "each process's views equal a rebuild", race.store, len(agreeing), sum(agreeing))
        assert race.after_rebuild["verified"].count(None) < len(race.secrets)
        assert all(agreeing)

    def test_no_working_key_of_a_revoked_creator_at_any_moment(
        self, race: Race, violations: Callable[[list[AuditEntry]], list[str]], tally: Tally
    ) -> None:
        """At every position the watcher reached no secret of a revoked creator verified, and
        after every event in the log no such key works; each removal removed exactly the
        creator's working keys."""
        replayed = violations(race.entries)

        watch = race.watch
        tally(
            POINT,
            "watcher: secrets of revoked creators refused",
            race.store,
            watch.secrets_checked,
            watch.secrets_refused,
        )
        tally(
            POINT,
            "replay: lifecycle holds after every event",
            race.store,
            len(race.entries),
            len(race.entries) - len(replayed),
        )
        assert any(ack["op"] == "revoke_user" and ack["removed"] for ack in race.acks)
        assert len(set(watch.positions)) > 1
        assert watch.secrets_checked > 0
        assert replayed == []
        assert watch.secrets_refused == watch.secrets_checked, watch.problems

    def test_the_compliance_report_never_counts_a_working_key_of_a_revoked_creator(
        self, race: Race, tally: Tally
    ) -> None:
        """Each compliance report the watcher asked for while writers raced says 0 working
        keys of revoked creators, as the invariant guarantees."""
        watch = race.watch

        counted = [problem for problem in watch.problems if "report" in problem]

        tally(
            POINT,
            "watcher: compliance report counts no such key",
            race.store,
            watch.reports,
            watch.reports_clean,
        )
        assert watch.reports > 0
        assert counted == []
