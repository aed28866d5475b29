"""The reliability suite: faults, races, bad input and tampering, at two sizes.

``KEYLEDGER_STRESS=1`` (what ``make stress`` sets) selects the full sizes of issue 6;
otherwise every test runs a bounded size that fits in ``make test``. Each test records
what it tried and what held with the ``tally`` fixture; the table is printed at the
end of the session.

Tests that stop the shared PostgreSQL server (marker ``pg_outage``) run in CI
(``KEYLEDGER_REQUIRE_POSTGRES=1``), in the stress run, or with ``KEYLEDGER_PG_OUTAGES=1``;
elsewhere they skip, so a developer's ``make test`` never takes the server away from
colleagues. Each outage is a few seconds, and the server is always started again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from keyledger import AuditEntry, Ledger
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES, postgres_admin

STRESS = os.environ.get("KEYLEDGER_STRESS") == "1"
PG_OUTAGES = STRESS or REQUIRE_POSTGRES or os.environ.get("KEYLEDGER_PG_OUTAGES") == "1"
WORKER = Path(__file__).with_name("worker.py")
PROCESS_TIMEOUT = 600 if STRESS else 120
"""The longest any child process may run before the test kills it and fails."""


@dataclass(frozen=True)
class Sizes:
    """How much each test tries; one set for ``make test``, one for ``make stress``."""

    writer_processes: int
    writer_commands: int
    sqlite_kills: int
    postgres_kills: int
    postgres_stops: int
    follower_kills: int
    model_examples: int
    hostile_examples: int
    middleware_examples: int
    cli_examples: int
    secret_keys: int
    secret_keys_postgres: int
    tamper_events: int
    tamper_edits: int
    tamper_deletions: int
    tamper_swaps: int
    tamper_truncations: int
    full_disk_rounds: int


BOUNDED = Sizes(
    writer_processes=4,
    writer_commands=40,
    sqlite_kills=30,
    postgres_kills=10,
    postgres_stops=1,
    follower_kills=10,
    model_examples=200,
    hostile_examples=300,
    middleware_examples=150,
    cli_examples=25,
    secret_keys=1000,
    secret_keys_postgres=300,
    tamper_events=500,
    tamper_edits=500,
    tamper_deletions=500,
    tamper_swaps=200,
    tamper_truncations=20,
    full_disk_rounds=2,
)
FULL = Sizes(
    writer_processes=8,
    writer_commands=250,
    sqlite_kills=1000,
    postgres_kills=1000,
    postgres_stops=2,
    follower_kills=200,
    model_examples=5000,
    hostile_examples=10_000,
    middleware_examples=3000,
    cli_examples=300,
    secret_keys=10_000,
    secret_keys_postgres=10_000,
    tamper_events=10_000,
    tamper_edits=10_000,
    tamper_deletions=1000,
    tamper_swaps=1000,
    tamper_truncations=50,
    full_disk_rounds=10,
)
SIZES = FULL if STRESS else BOUNDED


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pg_outage: stops the shared PostgreSQL server for a few seconds (opt-in outside CI)"
    )


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    """The sizes of this run (bounded, or full with ``KEYLEDGER_STRESS=1``)."""
    return SIZES


# The summary table.


@dataclass(frozen=True)
class Row:
    point: int
    check: str
    store: str
    tried: int
    held: int
    nodeid: str


ROWS: list[Row] = []
OUTCOMES: dict[str, str] = {}
STARTED = time.monotonic()


class Tally:
    """Records what one test tried and how much of it held, for the summary table."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __call__(self, point: int, check: str, store: str, tried: int, held: int) -> None:
        ROWS.append(Row(point, check, store, tried, held, self.nodeid))


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    """``tally(point, check, store, tried, held)`` adds a row to the summary table."""
    return Tally(request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/reliability/" not in report.nodeid:
        return
    if report.failed:
        OUTCOMES[report.nodeid] = "FAILED"
    elif report.skipped:
        OUTCOMES.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        OUTCOMES.setdefault(report.nodeid, "passed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    size = "full sizes (KEYLEDGER_STRESS=1)" if STRESS else "bounded sizes"
    terminalreporter.write_sep("=", f"keyledger reliability: what was tried and what held ({size})")
    header = f"{'#':>2}  {'check':<58} {'store':<10} {'tried':>8} {'held':>8}  result"
    terminalreporter.write_line(header)
    terminalreporter.write_line("-" * len(header))
    for row in sorted(ROWS, key=lambda r: (r.point, r.nodeid)):
        outcome = OUTCOMES.get(row.nodeid, "?")
        mark = "" if row.held == row.tried else "  <- not all held"
        terminalreporter.write_line(
            f"{row.point:>2}  {row.check[:58]:<58} {row.store:<10} {row.tried:>8} {row.held:>8}  "
            f"{outcome}{mark}"
        )
    failed = sorted(nodeid for nodeid, outcome in OUTCOMES.items() if outcome == "FAILED")
    terminalreporter.write_line(
        f"{len(OUTCOMES)} reliability tests, {len(failed)} failed, "
        f"{time.monotonic() - STARTED:.0f} s since the suite was loaded"
    )


# Stores.


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new PostgreSQL schema, dropped afterwards (skips without a server)."""
    schema = f"kl_rel_{uuid.uuid4().hex[:12]}"
    with postgres_admin() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        with postgres_admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty SQLite file, then a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keyledger.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new store of each durable kind, shared by the tests of one class (for runs too
    slow to repeat per test: the tests only read it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('shared') / 'keyledger.db'}"
        return
    with postgres_schema() as url:
        yield url


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def postgres_conninfo(url: str) -> tuple[str, str]:
    """The connection string without ``schema``, and the schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = dict(query)["schema"]
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


@dataclass(frozen=True)
class StoredEvent:
    """One stored event, as its table holds it."""

    position: int
    originator_id: str
    version: int
    topic: str
    state: bytes


def stored_events(url: str) -> list[StoredEvent]:
    """Every stored event behind ``url``, in position order, read past the ledger."""
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(sqlite_path(url), timeout=30)) as conn:
            rows = conn.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                "ORDER BY rowid"
            ).fetchall()
    else:
        conninfo, schema = postgres_conninfo(url)
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state "  # type: ignore[arg-type]
                f"FROM {schema}.keyledger_events ORDER BY notification_id"
            ).fetchall()
    return [StoredEvent(int(p), str(o), int(v), str(t), bytes(s)) for p, o, v, t, s in rows]


# The PostgreSQL server.


class PostgresServer:
    """Stops and starts the local cluster; ``stopped()`` always starts it again."""

    version = sorted(os.listdir("/etc/postgresql"))[0] if os.path.isdir("/etc/postgresql") else "15"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def ready(self) -> bool:
        done = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False, timeout=10)
        return done.returncode == 0

    def start(self) -> None:
        """Start the server (if it is down) and wait until it accepts connections."""
        if not self.ready():
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", "start"],
                check=False,
                capture_output=True,
                timeout=60,
            )
        deadline = time.monotonic() + 60
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not come back within 60 s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server as by a crash (``-m immediate``); call :meth:`start` in a ``finally``."""
        self._ctl("stop", "-m", "immediate")

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server stopped as by a crash (``-m immediate``) for the body of the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture
def pg_server() -> PostgresServer:
    """The local PostgreSQL cluster, for tests marked ``pg_outage``."""
    if not PG_OUTAGES:
        pytest.skip(
            "stops the shared PostgreSQL server: runs in CI (KEYLEDGER_REQUIRE_POSTGRES=1), in "
            "make stress, or with KEYLEDGER_PG_OUTAGES=1"
        )
    postgres_admin().close()
    return PostgresServer()


# Child processes.


@dataclass
class Children:
    """Child processes of one test, each killed at the end if still running."""

    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, mode: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                process.communicate(timeout=30)


@pytest.fixture
def children() -> Iterator[Children]:
    """Start ``worker.py`` processes; any still running when the test ends is killed."""
    yield from _children()


def _children() -> Iterator[Children]:
    started = Children()
    try:
        yield started
    finally:
        started.stop_all()


# What the views say.


def every_entry(ledger: Ledger) -> list[AuditEntry]:
    """The whole audit trail, page by page."""
    entries: list[AuditEntry] = []
    while page := ledger.audit(limit=10_000, after=entries[-1].position if entries else None):
        entries.extend(page)
    return entries


def views_of(ledger: Ledger, accounts: list[str], secrets: list[str]) -> dict[str, Any]:
    """What a ledger's views answer: each account's keys, the audit trail, and the
    principal of every secret (last-used times left out: they are a side table)."""
    return {
        "keys": {
            account: [k.model_dump(mode="json", exclude={"last_used_at"}) for k in ledger.keys(account)]
            for account in accounts
        },
        "audit": [entry.model_dump(mode="json") for entry in every_entry(ledger)],
        "verified": [_principal(ledger, secret) for secret in secrets],
    }


def _principal(ledger: Ledger, secret: str) -> list[str] | None:
    principal = ledger.verify(secret)
    return None if principal is None else [principal.key_id, str(principal.grace_until)]


def lifecycle_violations(entries: list[AuditEntry]) -> list[str]:
    """Replay the audit trail event by event and name every moment the lifecycle broke:
    a key created or regenerated by a revoked user, a user removal that did not remove
    exactly the keys the user could still use (those they created, and those with a
    secret issued to them that works: current, or in grace before its deadline), or a
    working key left to a revoked user."""
    problems: list[str] = []
    creators: dict[tuple[str, str], str] = {}
    held: dict[tuple[str, str], dict[str, tuple[str | None, datetime | None]]] = {}
    """Each active key's secrets not ended: digest -> (recipient, grace deadline or None)."""
    revoked: set[tuple[str, str]] = set()

    def usable_by(account: str, users: set[str], now: datetime) -> set[str]:
        return {
            key_id
            for (a, key_id), secrets in held.items()
            if a == account
            and (
                creators[(a, key_id)] in users
                or any(r in users and (until is None or now < until) for r, until in secrets.values())
            )
        }

    for entry in entries:
        account, details, now = entry.account, entry.details, entry.recorded_at
        key = (account, str(entry.key_id))
        if entry.action == "KeyCreated":
            if (account, details["created_by"]) in revoked:
                problems.append(f"position {entry.position}: key created by a revoked user")
            creators[key] = details["created_by"]
            held[key] = {details["digest"]: (details["created_by"], None)}
        elif entry.action == "KeyRegenerated":
            if (account, entry.actor) in revoked:
                problems.append(f"position {entry.position}: key regenerated by a revoked user")
            secrets = held[key]
            recipient, _ = secrets.pop(details["retired_digest"])
            if details["mode"] == "grace":
                secrets[details["retired_digest"]] = (
                    recipient,
                    datetime.fromisoformat(details["grace_until"]),
                )
            else:
                secrets.clear()
            secrets[details["digest"]] = (entry.actor, None)
        elif entry.action == "GraceExpired":
            held[key].pop(details["retired_digest"], None)
        elif entry.action == "KeyRevoked":
            held.pop(key, None)
        elif entry.action == "UserAccessRevoked":
            user = details["user_id"]
            if set(details["removed_key_ids"]) != usable_by(account, {user}, now):
                problems.append(f"position {entry.position}: removal of {user!r} missed or added keys")
            for key_id in details["removed_key_ids"]:
                held.pop((account, key_id), None)
            revoked.add((account, user))
        elif entry.action == "UserAccessRestored":
            revoked.discard((account, details["user_id"]))
        users = {user for (a, user) in revoked if a == account}
        working = usable_by(account, users, now) if users else set()
        if working:
            problems.append(f"position {entry.position}: {len(working)} working keys of revoked users")
    return problems


@pytest.fixture(scope="session")
def views() -> Callable[[Ledger, list[str], list[str]], dict[str, Any]]:
    """``views(ledger, accounts, secrets)``: what the ledger's views answer."""
    return views_of


@pytest.fixture(scope="session")
def violations() -> Callable[[list[AuditEntry]], list[str]]:
    """``violations(entries)``: where a replay of the audit trail breaks the lifecycle."""
    return lifecycle_violations


@pytest.fixture(scope="session")
def events_of() -> Callable[[str], list[StoredEvent]]:
    """``events_of(url)``: every stored event, read from the tables directly."""
    return stored_events


@pytest.fixture(scope="session")
def all_entries() -> Callable[[Ledger], list[AuditEntry]]:
    """``all_entries(ledger)``: the whole audit trail."""
    return every_entry


@pytest.fixture(scope="class")
def class_children() -> Iterator[Children]:
    """Children for a run shared by a class of tests, killed when the class ends."""
    yield from _children()


class Zygote:
    """A ``worker.py zygote`` process: forks children from an interpreter that has
    already imported keyledger, so a test can start and kill hundreds of them."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.pids: list[int] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._answers.put(json.loads(line))

    def spawn(self, **order: Any) -> int:
        """Fork a child running ``order["task"]``; returns its pid."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"spawn": order}) + "\n")
        self.process.stdin.flush()
        try:
            pid = int(self._answers.get(timeout=30)["pid"])
        except queue.Empty:
            pytest.fail("the zygote did not fork a child within 30 s")
        self.pids.append(pid)
        return pid

    def kill(self, pid: int) -> None:
        """``kill -9`` the child and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid):
            if time.monotonic() > deadline:
                pytest.fail(f"child {pid} survived kill -9 for 10 s")
            time.sleep(0.002)

    def close(self) -> None:
        for pid in self.pids:
            if alive(pid):
                self.kill(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records a child appended to its log (none if it never wrote one)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def zygote(children: Children, tmp_path: Path) -> Iterator[Zygote]:
    """A zygote for this test; every child it forked is killed at the end."""
    forker = Zygote(children.start("zygote", cwd=tmp_path))
    try:
        yield forker
    finally:
        forker.close()


@pytest.fixture(scope="session")
def child_log() -> Callable[[Path], list[dict[str, Any]]]:
    """``child_log(path)``: the records a zygote's child appended to its log."""
    return read_log


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new PostgreSQL schema, dropped afterwards over a new connection (so it survives a
    server restart during the test)."""
    with postgres_schema() as url:
        yield url


class Signatures:
    """What identifies an acknowledged command among the recorded events, both ways."""

    @staticmethod
    def of_ack(record: dict[str, Any]) -> tuple[Any, ...]:
        op, account = record["op"], record["account"]
        if op == "create":
            return ("KeyCreated", account, record["key_id"], digest(record["secret"]), record["by"])
        if op == "regenerate":
            return ("KeyRegenerated", account, record["key_id"], digest(record["secret"]), record["mode"])
        if op == "revoke":
            return ("KeyRevoked", account, record["key_id"])
        if op == "revoke_user":
            return ("UserAccessRevoked", account, record["user"], tuple(record["removed"]))
        return ("UserAccessRestored", account, record["user"])

    @staticmethod
    def of_event(entry: AuditEntry) -> tuple[Any, ...]:
        details, account = entry.details, entry.account
        if entry.action == "KeyCreated":
            return ("KeyCreated", account, entry.key_id, details["digest"], details["created_by"])
        if entry.action == "KeyRegenerated":
            return ("KeyRegenerated", account, entry.key_id, details["digest"], details["mode"])
        if entry.action == "KeyRevoked":
            return ("KeyRevoked", account, entry.key_id)
        if entry.action == "UserAccessRevoked":
            removed = tuple(sorted(details["removed_key_ids"]))
            return ("UserAccessRevoked", account, details["user_id"], removed)
        return (entry.action, account, details.get("user_id"))

    @staticmethod
    def unique(signature: tuple[Any, ...]) -> bool:
        """Whether at most one event can ever carry this signature (a digest or a revoked key)."""
        return signature[0] in ("KeyCreated", "KeyRegenerated", "KeyRevoked")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@pytest.fixture(scope="session")
def signatures() -> type[Signatures]:
    """Match acknowledgements (worker records) with recorded events."""
    return Signatures


@contextmanager
def tmpfs_sqlite_url(fallback: Path) -> Iterator[str]:
    """A SQLite URL on tmpfs (``/dev/shm``) where there is one, else under ``fallback``."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield f"sqlite:///{fallback / 'keyledger.db'}"
        return
    directory = Path(tempfile.mkdtemp(prefix="keyledger-", dir=shm))
    try:
        yield f"sqlite:///{directory / 'keyledger.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def quick_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new store of each durable kind for tests of what is written, not of durability:
    the SQLite file is on tmpfs where there is one, so commits skip the fsync."""
    if request.param == "postgresql":
        with postgres_schema() as url:
            yield url
        return
    with tmpfs_sqlite_url(tmp_path_factory.mktemp("quick")) as url:
        yield url


@pytest.fixture(scope="class")
def quick_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new SQLite file on tmpfs where there is one, shared by a class of tests."""
    with tmpfs_sqlite_url(tmp_path_factory.mktemp("quick")) as url:
        yield url
