"""Issue 6, point 8: when the store fails under a command, the command fails with
``StoreUnavailable``, no secret is handed out unless its event committed, the store is
intact afterwards, and work resumes once the fault clears; strict verification refuses
while the store cannot be reached.

Faults: a SQLite file locked by another connection past the ledger's lock timeout
(10 s), a SQLite file on a read-only mount, a SQLite file on a full disk (a 2 MB tmpfs),
PostgreSQL connections killed mid-command, and the PostgreSQL server stopped
mid-command (marker ``pg_outage``). Mounting needs root; without it those tests skip
and say so. (A ``chmod`` does not stop root from writing, so a read-only mount stands
in for a read-only file.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from keyledger import Actor, KeyLedgerError, Ledger, Permission, StoreUnavailable
from tests.conftest import POSTGRES_URL, postgres_admin

if TYPE_CHECKING:
    from tests.reliability.conftest import PostgresServer, Sizes, Tally

POINT = 8
PAD = "x" * 500
"""A long purpose, so that each key takes room on the small disk."""
ALICE = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})


def mount(*args: str) -> None:
    """Run ``mount``; skip the test, saying why, where it is not allowed."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(args)}): {done.stderr.strip() or done.returncode}")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def attempt(command: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run ``command``; its result, or the exception it raised."""
    try:
        return command(), None
    except Exception as error:
        return None, error


def recovered(url: str, secrets: list[str], names: list[str]) -> tuple[bool, list[str]]:
    """Reopen the ledger: whether its integrity holds and every returned secret verifies;
    and the names of the keys it holds."""
    with Ledger.open(url) as ledger:
        report = ledger.check_integrity()
        verified = all(ledger.verify(secret) is not None for secret in secrets)
        held = [key.name for key in ledger.keys("acme")]
    return report.ok and verified, [name for name in held if name in names]


class TestSQLiteLockedPastItsTimeout:
    """A command on a SQLite file another connection holds locked fails, then works again."""

    def test_the_command_fails_cleanly_and_work_resumes(self, sqlite_url: str, tally: Tally) -> None:
        """With ``BEGIN EXCLUSIVE`` held on the file past the lock timeout, a create raises
        StoreUnavailable and records nothing; once released, creates work and the file is intact."""
        path = sqlite_url.removeprefix("sqlite:///")
        with Ledger.open(sqlite_url) as ledger:
            first = ledger.create_key(ALICE, name="before").secret.get_secret_value()
            with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as blocker:
                blocker.execute("BEGIN EXCLUSIVE")
                try:
                    issued, error = attempt(lambda: ledger.create_key(ALICE, name="while locked"))
                    answered = ledger.verify(first)
                finally:
                    blocker.execute("ROLLBACK")
            after = ledger.create_key(ALICE, name="after").secret.get_secret_value()

        intact, names = recovered(sqlite_url, [first, after], ["before", "while locked", "after"])

        held = (
            isinstance(error, StoreUnavailable) and issued is None and intact and names == ["before", "after"]
        )
        tally(POINT, "SQLite locked past its timeout: clean failure, resumes", "sqlite", 1, int(held))
        assert isinstance(error, StoreUnavailable), repr(error)
        assert issued is None
        assert answered is not None
        assert intact
        assert names == ["before", "after"]


class TestSQLiteOnAReadOnlyMount:
    """A ledger whose file sits on a read-only mount refuses commands cleanly."""

    @pytest.fixture
    def read_only(self, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
        """A ledger with one key written in a directory, the same directory mounted read-only
        elsewhere; yields (writable URL, read-only URL, the key's secret)."""
        writable, frozen = tmp_path / "rw", tmp_path / "ro"
        writable.mkdir()
        frozen.mkdir()
        url = f"sqlite:///{writable / 'keyledger.db'}"
        with Ledger.open(url) as ledger:
            secret = ledger.create_key(ALICE, name="before").secret.get_secret_value()
        mount("--bind", str(writable), str(frozen))
        try:
            mount("-o", "remount,bind,ro", str(frozen))
            yield url, f"sqlite:///{frozen / 'keyledger.db'}", secret
        finally:
            unmount(frozen)

    def test_commands_fail_cleanly_and_work_resumes_when_writable(
        self, read_only: tuple[str, str, str], tally: Tally
    ) -> None:
        """Opening, or creating a key through, the read-only path raises StoreUnavailable and
        hands out no secret; the file is intact and writable through its own path."""
        url, frozen_url, secret = read_only

        opened, error = attempt(lambda: Ledger.open(frozen_url))
        issued = None
        if opened is not None:
            with opened:
                issued, error = attempt(lambda: opened.create_key(ALICE, name="while read-only"))
        after = Ledger.open(url)
        with after:
            again = after.create_key(ALICE, name="after").secret.get_secret_value()

        intact, names = recovered(url, [secret, again], ["before", "while read-only", "after"])
        held = (
            isinstance(error, StoreUnavailable) and issued is None and intact and names == ["before", "after"]
        )
        tally(POINT, "SQLite on a read-only mount: clean failure, resumes", "sqlite", 1, int(held))
        assert isinstance(error, StoreUnavailable), repr(error)
        assert issued is None
        assert intact
        assert names == ["before", "after"]


class TestSQLiteOnAFullDisk:
    """On a full disk, commands fail cleanly, hand out only committed secrets, and resume."""

    def test_commands_fail_cleanly_and_resume_when_space_returns(
        self, tmp_path: Path, sizes: Sizes, tally: Tally
    ) -> None:
        """Filling a 4 MB tmpfs makes a create raise StoreUnavailable; once space is freed
        the next create succeeds; every secret handed out verifies after reopening."""
        disk = tmp_path / "disk"
        disk.mkdir()
        mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk))
        try:
            url = f"sqlite:///{disk / 'keyledger.db'}"
            rounds = self.fill_and_fail(url, disk, sizes.full_disk_rounds)
            returned = [secret for r in rounds for secret in r.returned]
            intact, recorded = recovered(url, returned, [r.failed for r in rounds])
        finally:
            unmount(disk)

        clean = [isinstance(r.error, StoreUnavailable) for r in rounds]
        resumed = [r.resumed is None for r in rounds]
        tally(
            POINT, "full disk: the failing create raises StoreUnavailable", "sqlite", len(clean), sum(clean)
        )
        tally(POINT, "full disk: creates resume once space is freed", "sqlite", len(resumed), sum(resumed))
        tally(
            POINT,
            "full disk: secrets handed out verify afterwards",
            "sqlite",
            len(returned),
            len(returned) if intact else 0,
        )
        assert all(clean), [repr(r.error) for r in rounds]
        assert all(resumed), [repr(r.resumed) for r in rounds]
        assert intact
        assert len(returned) > sizes.full_disk_rounds
        assert len(recorded) <= len(rounds)

    def fill_and_fail(self, url: str, disk: Path, rounds: int) -> list[FullDiskRound]:
        """Each round: fill the disk (leaving a little room, a different amount each round,
        so it fills up at a different point of a command), create keys until one fails, free
        the space, and create one more."""
        done: list[FullDiskRound] = []
        with Ledger.open(url) as ledger:
            for number in range(rounds):
                filler = disk / "filler"
                with open(filler, "wb", buffering=0) as stream, contextlib.suppress(OSError):
                    while stream.write(b"\0" * 4096):
                        pass
                os.truncate(filler, max(0, filler.stat().st_size - (number % 4) * 200_000))
                this = FullDiskRound(failed=f"round {number} failed")
                for turn in range(2000):
                    name = f"round {number} key {turn}"
                    issued, this.error = attempt(lambda n=name: ledger.create_key(ALICE, name=n, purpose=PAD))
                    if this.error is not None:
                        this.failed = name
                        break
                    this.returned.append(issued.secret.get_secret_value())
                filler.unlink()
                issued, this.resumed = attempt(
                    lambda n=number: ledger.create_key(ALICE, name=f"round {n} after")
                )
                if issued is not None:
                    this.returned.append(issued.secret.get_secret_value())
                done.append(this)
        return done


@dataclass
class FullDiskRound:
    """One round of filling the disk: the secrets handed out, the name of the create that
    failed, its error, and the error of the create after freeing space (if any)."""

    failed: str
    returned: list[str] = field(default_factory=list)
    error: BaseException | None = None
    resumed: BaseException | None = None


def terminate_backend(url: str, pid: int) -> None:
    """Kill one PostgreSQL connection, as an administrator or a network fault would."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "schema"])
    with psycopg.connect(
        urlunsplit(parts._replace(query=query)), autocommit=True, connect_timeout=10
    ) as conn:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


class TestPostgreSQLConnectionsKilledMidCommand:
    """A command whose PostgreSQL connection is killed inside its append either succeeds
    once (the append is retried on a new connection) or fails cleanly, recording nothing."""

    def kill_inside_appends(self, monkeypatch: pytest.MonkeyPatch, url: str, times: int) -> list[int]:
        """Terminate the connection inside each of the next ``times`` appends (the unit of
        work's, in a command's transaction); returns the backends killed."""
        from keyledger.adapters.driven.postgres_views import PostgresTransaction

        append = PostgresTransaction.append
        killed: list[int] = []

        def killing_append(transaction: Any, *args: Any, **kwargs: Any) -> Any:
            if len(killed) < times:
                killed.append(transaction.cursor.connection.info.backend_pid)
                terminate_backend(url, killed[-1])
            return append(transaction, *args, **kwargs)

        monkeypatch.setattr(PostgresTransaction, "append", killing_append)
        return killed

    def test_a_connection_killed_once_is_retried_and_the_command_succeeds_once(
        self, pg_url: str, tally: Tally, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The command tries again on a new connection: the create succeeds, recorded
        exactly once."""
        with Ledger.open(pg_url) as ledger:
            killed = self.kill_inside_appends(monkeypatch, pg_url, 1)

            issued, error = attempt(lambda: ledger.create_key(ALICE, name="killed once"))

        intact, names = recovered(
            pg_url, [issued.secret.get_secret_value()] if issued else [], ["killed once"]
        )
        held = error is None and intact and names == ["killed once"]
        tally(POINT, "PostgreSQL connection killed once: one success", "postgresql", 1, int(held))
        assert len(killed) == 1
        assert error is None, repr(error)
        assert intact
        assert names == ["killed once"]

    def test_connections_killed_every_time_fail_cleanly_and_work_resumes(
        self, pg_url: str, tally: Tally, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killed on every retry, the create raises StoreUnavailable, records nothing, and the
        next create works."""
        with Ledger.open(pg_url) as ledger:
            killed = self.kill_inside_appends(monkeypatch, pg_url, 1000)
            issued, error = attempt(lambda: ledger.create_key(ALICE, name="always killed"))
            monkeypatch.undo()
            after = ledger.create_key(ALICE, name="after").secret.get_secret_value()

        intact, names = recovered(pg_url, [after], ["always killed", "after"])
        held = isinstance(error, StoreUnavailable) and issued is None and intact and names == ["after"]
        tally(POINT, "PostgreSQL connection always killed: clean failure", "postgresql", 1, int(held))
        assert len(killed) > 1
        assert isinstance(error, StoreUnavailable), repr(error)
        assert issued is None
        assert intact
        assert names == ["after"]


@pytest.fixture
def own_database() -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A PostgreSQL database of this test's own, and ``reachable(False/True)``, which
    refuses new connections to it and kills its open ones (or allows them again): the
    server as this ledger sees it when it is down, without taking it from anyone else."""
    base = POSTGRES_URL
    name = f"kl_rel_{uuid.uuid4().hex[:12]}"
    admin = postgres_admin()

    def reachable(allowed: bool) -> None:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(allowed).lower()}")  # type: ignore[arg-type]
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s", [name]
            )

    with admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        try:
            yield urlunsplit(urlsplit(base)._replace(path=f"/{name}")), reachable
        finally:
            reachable(True)
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s", [name]
            )
            admin.execute(f"DROP DATABASE IF EXISTS {name}")  # type: ignore[arg-type]


class TestPostgreSQLUnreachable:
    """While its database cannot be reached, a ledger fails commands cleanly and strict
    verification refuses; once it can, the same ledger works again."""

    def test_commands_fail_verification_fails_closed_and_work_resumes(
        self, own_database: tuple[str, Callable[[bool], None]], tally: Tally
    ) -> None:
        """A create raises StoreUnavailable and records nothing, a strict verify answers None,
        and once the store has been unreachable for longer than max_lag a plain one does too
        (health says why); afterwards the same ledger verifies and creates again."""
        url, reachable = own_database
        with Ledger.open(url, max_lag=timedelta(seconds=1)) as ledger:
            secret = ledger.create_key(ALICE, name="before").secret.get_secret_value()
            reachable(False)
            try:
                with ThreadPoolExecutor(2) as pool:
                    creating = pool.submit(
                        attempt, lambda: ledger.create_key(ALICE, name="while unreachable")
                    )
                    strict = pool.submit(ledger.verify, secret, strict=True)
                    (issued, error), refused = creating.result(), strict.result()
                deadline = time.monotonic() + 10
                while ledger.verify(secret) is not None and time.monotonic() < deadline:
                    time.sleep(0.05)
                from_memory = ledger.verify(secret)
                health = ledger.health()
            finally:
                reachable(True)
            resumed = resume(ledger, "after")
            deadline = time.monotonic() + 10
            while ledger.verify(secret) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            again = ledger.verify(secret)

        intact, names = recovered(url, [secret, *resumed], ["before", "while unreachable", "after"])
        held = (
            isinstance(error, StoreUnavailable)
            and issued is None
            and refused is None
            and from_memory is None
            and again is not None
            and intact
        )
        tally(
            POINT,
            "PostgreSQL unreachable: clean failure, verification fails closed, resumes",
            "postgresql",
            1,
            int(held),
        )
        assert isinstance(error, StoreUnavailable), repr(error)
        assert issued is None
        assert refused is None, "strict verification answered without reaching the store"
        assert from_memory is None, "verification answered from an index it could not show current"
        assert not health.ok
        assert health.reason is not None
        # Either a read has failed by now, or the follower is still waiting on one.
        assert "not current for longer than max_lag" in health.reason
        assert again is not None
        assert intact
        assert names == ["before", "after"]


def resume(ledger: Ledger, name: str) -> list[str]:
    """Create a key on the same ledger once the store is back (its pool reconnects)."""
    for _ in range(20):
        issued, error = attempt(lambda: ledger.create_key(ALICE, name=name))
        if issued is not None:
            return [issued.secret.get_secret_value()]
        assert isinstance(error, KeyLedgerError), repr(error)
    pytest.fail("the ledger did not resume within 20 attempts")


class TestPostgreSQLStoppedMidCommand:
    """The server crashes between a command's load and its append, and is back two seconds
    later: the command either fails cleanly or succeeds once, and work goes on."""

    @pytest.mark.pg_outage
    def test_the_command_fails_cleanly_or_lands_once_and_work_resumes(
        self, pg_url: str, pg_server: PostgresServer, sizes: Sizes, tally: Tally
    ) -> None:
        """Each command hit by the crash raises StoreUnavailable and is not recorded, or
        returns a secret whose key is recorded once; the store is intact afterwards."""
        outcomes: list[tuple[str, Any, BaseException | None]] = []
        with Ledger.open(pg_url) as ledger:
            secret = ledger.create_key(ALICE, name="before").secret.get_secret_value()
            app: Any = ledger._connection.app
            save = app.save

            def crashing_save(*args: Any, **kwargs: Any) -> Any:
                pg_server.stop()  # after the command loaded its keyring, before its append
                threading.Timer(2.0, pg_server.start).start()
                return save(*args, **kwargs)

            for stop in range(sizes.postgres_stops):
                app.save = crashing_save
                try:
                    issued, error = attempt(lambda s=stop: ledger.create_key(ALICE, name=f"crash {s}"))
                finally:
                    del app.save
                    pg_server.start()
                outcomes.append((f"crash {stop}", issued, error))
            resumed = resume(ledger, "after")

        returned = [issued.secret.get_secret_value() for _, issued, _ in outcomes if issued is not None]
        crashed = [name for name, _, _ in outcomes]
        intact, names = recovered(pg_url, [secret, *returned, *resumed], ["before", *crashed, "after"])
        landed = [name for name, issued, _ in outcomes if issued is not None]
        clean = [issued is not None or isinstance(error, StoreUnavailable) for _, issued, error in outcomes]
        tally(
            POINT,
            "PostgreSQL crash mid-command: clean failure or one success",
            "postgresql",
            len(clean),
            sum(clean) if intact else 0,
        )
        assert all(clean), outcomes
        assert intact
        assert names == ["before", *landed, "after"]
