"""Issue 6, point 2: a writer killed with ``kill -9`` at any point of a command loses no
acknowledged command and leaves nothing half applied.

Each round forks a writer (``worker.py`` ``kill_writer``, from a zygote so that a round
costs milliseconds, not an interpreter start), lets it run commands for a random time
and kills it: before it opens the ledger, while it appends, between its append and its
views, or between two commands. The writer appends each acknowledgement to its log
with one ``write`` before it goes on, so every line there is a command that returned.
After each kill a checker catches up and finds every acknowledged command recorded, and
every user removal complete; every few kills, and at the end, a reopened ledger must
pass the integrity check and answer exactly as after rebuilding its views from zero.

What makes this hold on SQLite is the store's durability: the file runs in WAL mode
with ``synchronous=FULL`` (SQLite's default, which the ledger keeps), so a commit that
returned is in the WAL on disk before the command can acknowledge it, and a transaction
cut short by a kill is rolled back when the next connection opens the file. On
PostgreSQL, ``synchronous_commit=on`` (the server default) gives the same guarantee; the
server itself is also crashed (``pg_ctlcluster stop -m immediate``) under a writer.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keyledger import Actor, AuditEntry, Ledger

if TYPE_CHECKING:
    from tests.reliability.conftest import PostgresServer, Signatures, Sizes, Tally, Zygote

POINT = 2
ACCOUNTS = ["acme", "globex", "initech"]
USERS = ["u0", "u1", "u2"]
Views = Callable[[Ledger, list[str], list[str]], dict[str, Any]]
Log = Callable[[Path], list[dict[str, Any]]]


@dataclass
class Survey:
    """What the kills tried and what held."""

    kills: int = 0
    kills_held: int = 0
    acks: int = 0
    acks_held: int = 0
    cascades: int = 0
    cascades_held: int = 0
    full_checks: int = 0
    full_checks_held: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Killer:
    """Forks writers, kills them, and checks the ledger after each kill."""

    url: str
    zygote: Zygote
    logs: Path
    log: Log
    views: Views
    violations: Callable[[list[AuditEntry]], list[str]]
    all_entries: Callable[[Ledger], list[AuditEntry]]
    signatures: type[Signatures]
    rng: random.Random
    longest: float
    """The longest a writer runs before it is killed, in seconds."""
    survey: Survey = field(default_factory=Survey)
    recorded: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    acked: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    seen: int = 0

    def spawn(self, round_: int, lifetime: float = 60) -> tuple[int, Path]:
        log = self.logs / f"writer-{round_}.jsonl"
        pid = self.zygote.spawn(
            task="kill_writer",
            url=self.url,
            log=str(log),
            seed=round_,
            accounts=ACCOUNTS,
            users=USERS,
            lifetime=lifetime,
        )
        return pid, log

    def wait_for(
        self, log: Path, found: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout
        while not found(self.log(log)):
            if time.monotonic() > deadline:
                pytest.fail(f"the writer did not get {what} within {timeout} s: {self.log(log)[-3:]}")
            time.sleep(0.005)

    def round(self, checker: Ledger, round_: int) -> None:
        """Fork a writer, kill it at a random point, and check what it left."""
        pid, log = self.spawn(round_)
        if self.rng.random() < 0.8:  # else: kill it while it opens the ledger
            self.wait_for(log, lambda records: bool(records), "the ledger open")
        time.sleep(self.rng.uniform(0, self.longest))
        self.zygote.kill(pid)
        self.check_after_kill(checker, self.log(log))

    def check_after_kill(self, checker: Ledger, records: list[dict[str, Any]]) -> None:
        crashed = [record for record in records if "crashed" in record]
        acks = [record for record in records if "op" in record]
        checker.sync()
        new = self.all_entries_after(checker)
        self.recorded.update(self.signatures.of_event(entry) for entry in new)
        for ack in acks:
            if "secret" in ack:
                self.secrets.setdefault(ack["key_id"], []).append(ack["secret"])
            self.acked[self.signatures.of_ack(ack)] += 1
        present = [self.present(self.signatures.of_ack(ack)) for ack in acks]
        cascades = [self.complete(checker, entry) for entry in new if entry.action == "UserAccessRevoked"]
        survey = self.survey
        survey.kills += 1
        survey.kills_held += all(present) and all(cascades) and not crashed
        survey.acks += len(acks)
        survey.acks_held += sum(present)
        survey.cascades += len(cascades)
        survey.cascades_held += sum(cascades)
        if crashed:
            survey.problems.append(f"a writer crashed: {crashed}")

    def all_entries_after(self, checker: Ledger) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        while page := checker.audit(limit=10_000, after=entries[-1].position if entries else self.seen):
            entries.extend(page)
        if entries:
            self.seen = entries[-1].position
        return entries

    def present(self, signature: tuple[Any, ...]) -> bool:
        """An acknowledged command is recorded: exactly once where it can only be once."""
        count = self.recorded[signature]
        held = count == 1 if self.signatures.unique(signature) else count >= self.acked[signature]
        if not held:
            self.survey.problems.append(f"acknowledged {signature[:3]} recorded {count} times")
        return held

    def complete(self, checker: Ledger, entry: AuditEntry) -> bool:
        """A user removal ended every key it names, and every secret of them."""
        removed = entry.details["removed_key_ids"]
        keys = [checker.key(entry.account, key_id) for key_id in removed]
        working = [s for key_id in removed for s in self.secrets.get(key_id, []) if checker.verify(s)]
        held = all(key is not None and key.status == "revoked" for key in keys) and not working
        if not held:
            self.survey.problems.append(f"removal at {entry.position} half applied")
        return held

    def full_check(self) -> None:
        """Reopen: integrity holds, the views equal a rebuild, the lifecycle holds."""
        secrets = [secret for found in self.secrets.values() for secret in found]
        with Ledger.open(self.url) as fresh:
            before = self.views(fresh, ACCOUNTS, secrets)
            fresh.rebuild_projections()
            after = self.views(fresh, ACCOUNTS, secrets)
            report = fresh.check_integrity()
            broken = self.violations(self.all_entries(fresh))
        held = report.ok and before == after and not broken
        self.survey.full_checks += 1
        self.survey.full_checks_held += held
        if not held:
            self.survey.problems.append(f"full check: {report}, views equal: {before == after}, {broken[:3]}")

    def tally(self, tally: Tally, store: str) -> None:
        s = self.survey
        tally(POINT, "kill -9: rounds after which everything held", store, s.kills, s.kills_held)
        tally(POINT, "kill -9: acknowledged commands present", store, s.acks, s.acks_held)
        tally(POINT, "kill -9: user removals all-or-nothing", store, s.cascades, s.cascades_held)
        tally(POINT, "kill -9: reopen = rebuild, integrity ok", store, s.full_checks, s.full_checks_held)


@pytest.fixture
def killer(
    zygote: Zygote,
    tmp_path: Path,
    child_log: Log,
    views: Views,
    violations: Callable[[list[AuditEntry]], list[str]],
    all_entries: Callable[[Ledger], list[AuditEntry]],
    signatures: type[Signatures],
) -> Callable[[str], Killer]:
    """``killer(url)``: kills writers of the ledger at ``url``."""

    def make(url: str) -> Killer:
        Ledger.open(url).close()
        longest = 0.12 if url.startswith("sqlite") else 0.25  # PostgreSQL commands take longer
        return Killer(
            url,
            zygote,
            tmp_path,
            child_log,
            views,
            violations,
            all_entries,
            signatures,
            random.Random(6),
            longest,
        )

    return make


def run_kills(killer: Killer, kills: int) -> None:
    with Ledger.open(killer.url, follow=False) as checker:
        for round_ in range(kills):
            killer.round(checker, round_)
            if (round_ + 1) % max(1, kills // 5) == 0:
                killer.full_check()
    if kills % max(1, kills // 5):
        killer.full_check()


class TestKillingAWriterOnSQLite:
    """A writer of a SQLite file killed at random points loses and half-applies nothing."""

    def test_every_acknowledged_command_survives_and_nothing_is_half_applied(
        self, killer: Callable[[str], Killer], sqlite_url: str, sizes: Sizes, tally: Tally
    ) -> None:
        """After each of the kills every acknowledged command is present, each removal is
        whole, and the reopened ledger passes its integrity check and equals a rebuild."""
        killing = killer(sqlite_url)

        run_kills(killing, sizes.sqlite_kills)

        killing.tally(tally, "sqlite")
        survey = killing.survey
        assert survey.acks > sizes.sqlite_kills
        assert survey.cascades > 0
        assert survey.problems == []
        assert survey.kills_held == survey.kills == sizes.sqlite_kills
        assert survey.full_checks_held == survey.full_checks > 0

    def test_the_file_runs_in_wal_mode_with_full_synchronous_commits(self, sqlite_url: str) -> None:
        """The ledger's own connection reports journal_mode WAL and synchronous FULL (2)."""
        with Ledger.open(sqlite_url) as ledger:
            datastore = ledger._connection.app.recorder.datastore  # type: ignore[attr-defined]

            with datastore.transaction(commit=False) as cursor:
                cursor.execute("PRAGMA journal_mode")
                mode = cursor.fetchone()[0]
                cursor.execute("PRAGMA synchronous")
                synchronous = cursor.fetchone()[0]

        assert (mode, synchronous) == ("wal", 2)


class TestKillingAWriterOnPostgreSQL:
    """A writer of a PostgreSQL schema killed at random points loses and half-applies nothing."""

    def test_every_acknowledged_command_survives_and_nothing_is_half_applied(
        self, killer: Callable[[str], Killer], pg_url: str, sizes: Sizes, tally: Tally
    ) -> None:
        """After each kill every acknowledged command is present, each removal is whole,
        and the reopened ledger passes its integrity check and equals a rebuild."""
        killing = killer(pg_url)

        run_kills(killing, sizes.postgres_kills)

        killing.tally(tally, "postgresql")
        survey = killing.survey
        assert survey.acks > sizes.postgres_kills
        assert survey.problems == []
        assert survey.kills_held == survey.kills == sizes.postgres_kills
        assert survey.full_checks_held == survey.full_checks > 0

    @pytest.mark.pg_outage
    def test_a_server_crash_under_a_writer_loses_no_acknowledged_command(
        self,
        killer: Callable[[str], Killer],
        pg_url: str,
        pg_server: PostgresServer,
        sizes: Sizes,
        tally: Tally,
    ) -> None:
        """The server stopped with ``-m immediate`` while a writer runs, then started: every
        command acknowledged before, during and after is present, and the writer resumes."""
        killing = killer(pg_url)
        resumed = 0

        with Ledger.open(pg_url, follow=False) as checker:
            for stop in range(sizes.postgres_stops):
                pid, log = killing.spawn(1000 + stop)
                killing.wait_for(log, lambda records: len(records) > 5, "a few commands done")
                with pg_server.stopped():
                    time.sleep(1.0)
                before = len(killing.log(log))
                killing.wait_for(
                    log, lambda records, n=before: any("op" in r for r in records[n:]), "a command after", 120
                )
                resumed += 1
                killing.zygote.kill(pid)
                killing.check_after_kill(checker, killing.log(log))
        killing.full_check()

        killing.tally(tally, "postgresql")
        tally(POINT, "server crash: writer resumes afterwards", "postgresql", sizes.postgres_stops, resumed)
        survey = killing.survey
        assert survey.problems == []
        assert survey.kills_held == survey.kills == sizes.postgres_stops
        assert survey.full_checks_held == survey.full_checks == 1


class TestAWriterDeadBetweenItsAppendAndItsViews:
    """A writer that dies after its events commit but before its views are written (the
    window a kill can hit) leaves other processes' answers right."""

    @pytest.fixture
    def lagging(self, durable_url: str, alice: Actor, admin: Actor) -> Iterator[tuple[Ledger, list[str]]]:
        """A reader opened before a writer that created two keys of alice and removed her
        access, then died before writing its views; the reader's views are behind."""
        with Ledger.open(durable_url) as writer:
            secrets = [
                writer.create_key(alice, name=f"Alice {i}").secret.get_secret_value() for i in range(2)
            ]
        with Ledger.open(durable_url, follow=False) as reader:
            with Ledger.open(durable_url, follow=False) as dying:
                dying._commands._follow = lambda recordings: None  # type: ignore[method-assign]
                dying.revoke_user_access(admin, "alice")
            yield reader, secrets

    def test_a_reader_that_catches_up_refuses_the_removed_keys(
        self, lagging: tuple[Ledger, list[str]]
    ) -> None:
        """Once it catches up, the reader refuses every secret the removal ended."""
        reader, secrets = lagging

        reader.sync()

        assert [reader.verify(secret) for secret in secrets] == [None, None]

    def test_the_compliance_report_counts_no_working_key_of_a_revoked_creator(
        self, lagging: tuple[Ledger, list[str]], tally: Tally
    ) -> None:
        """The reader's compliance report, asked before it catches up, still counts 0
        working keys of revoked creators: it never mixes a newer revocation with older keys."""
        reader, _ = lagging

        report = reader.report("acme")

        store = "sqlite" if reader.store.startswith("sqlite") else "postgresql"
        tally(
            POINT,
            "report while views lag counts no revoked creator's key",
            store,
            1,
            int(report.working_keys_of_revoked_creators == 0),
        )
        assert report.working_keys_of_revoked_creators == 0
