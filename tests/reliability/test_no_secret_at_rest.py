"""Issue 6, point 6: thousands of keys created, regenerated, revoked and removed, and not
one of them, nor any 16-character piece of one, is anywhere the ledger writes or says.

The places searched: the SQLite file and its write-ahead log (while open and after
closing), a ``pg_dump`` of the PostgreSQL schema (with its ``bytea`` values decoded),
JSON Lines and CSV audit exports, every log record at DEBUG (keyledger's, eventsourcing's,
the drivers'), the messages and tracebacks of errors raised for inputs that carry a key,
and the ``repr``, ``str`` and JSON of everything the API returns.

The SQLite file lives on a tmpfs where one is mounted at ``/dev/shm`` (skipping the fsync
that dominates a command's cost); what is written to it is the same.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from keyledger import Actor, KeyLedgerError, Ledger, Permission

if TYPE_CHECKING:
    from tests.reliability.conftest import Sizes, Tally

POINT = 6
PIECE = 16
KEYS_PER_ACCOUNT = 100
_RUN = re.compile(rb"[0-9A-Za-z_]{%d,}" % PIECE)
_BYTEA = re.compile(rb"\\\\x([0-9a-f]{2,})")


def pieces_of(secret: str) -> set[bytes]:
    """Every 16-character piece of a key."""
    raw = secret.encode("ascii")
    return {raw[i : i + PIECE] for i in range(len(raw) - PIECE + 1)}


@dataclass
class Exposure:
    """Every secret issued, and everything the ledger wrote or said meanwhile."""

    secrets: list[str] = field(default_factory=list)
    pieces: dict[bytes, int] = field(default_factory=dict)
    """Each piece -> the index of the secret it comes from."""
    sinks: dict[str, list[bytes]] = field(default_factory=dict)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, secret: str) -> None:
        with self.lock:
            for piece in pieces_of(secret):
                self.pieces[piece] = len(self.secrets)
            self.secrets.append(secret)

    def add(self, sink: str, data: bytes | str) -> None:
        raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
        with self.lock:
            self.sinks.setdefault(sink, []).append(raw)

    def leaked(self, sink: str) -> set[int]:
        """The secrets with a piece in ``sink`` (hex ``bytea`` decoded as well)."""
        found: set[int] = set()
        for data in self.sinks[sink]:
            for blob in [data, *(bytes.fromhex(m.group(1).decode()) for m in _BYTEA.finditer(data))]:
                for run in _RUN.finditer(blob):
                    text = run.group()
                    for i in range(len(text) - PIECE + 1):
                        index = self.pieces.get(text[i : i + PIECE])
                        if index is not None:
                            found.add(index)
        return found


class Capture(logging.Handler):
    """Every log record, formatted with its traceback, at DEBUG from every logger."""

    def __init__(self, exposure: Exposure) -> None:
        super().__init__(logging.DEBUG)
        self.exposure = exposure
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.exposure.add("logs", self.format(record))


@dataclass(frozen=True)
class Accounts:
    """The actors of one account."""

    account: str

    def user(self, user_id: str) -> Actor:
        return Actor(user_id=user_id, account=self.account, permissions={Permission.INTEGRATION})

    @property
    def admin(self) -> Actor:
        return Actor(user_id="root", account=self.account, permissions=set(Permission))


def lifecycle(ledger: Ledger, exposure: Exposure, accounts: Accounts, count: int) -> None:
    """Create ``count`` keys in one account, regenerate each (grace and immediate in
    turn), revoke every tenth, and remove one creator's access."""
    created = []
    for i in range(count):
        issued = ledger.create_key(accounts.user("alice" if i % 3 else "bob"), name=f"key {i}", purpose="p")
        exposure.issue(issued.secret.get_secret_value())
        exposure.add("returned values", repr(issued) + str(issued) + issued.model_dump_json())
        created.append(issued.key_id)
    for i, key_id in enumerate(created):
        again = ledger.regenerate_key(
            accounts.user("alice"), key_id, mode="grace" if i % 2 == 0 else "immediate"
        )
        exposure.issue(again.secret.get_secret_value())
        exposure.add("returned values", repr(again) + str(again.secret) + again.model_dump_json())
    for key_id in created[::10]:
        ledger.revoke_key(accounts.user("alice"), key_id, reason="rotated")
    ledger.revoke_user_access(accounts.admin, "bob")


def provoke(ledger: Ledger, exposure: Exposure, account: str) -> int:
    """Pass secrets where ids, labels and notes belong; keep every message and traceback.
    Returns how many calls were refused."""
    secret = exposure.secrets[0]
    user = Accounts(account).user("alice")
    key_id = next(key.key_id for key in ledger.keys(account) if key.status == "active")
    calls: list[Callable[[], object]] = [
        lambda: ledger.regenerate_key(user, secret, mode="grace"),
        lambda: ledger.revoke_key(user, secret),
        lambda: ledger.create_key(user, name=secret),
        lambda: ledger.create_key(user, name="x", purpose=f"the key is {secret}"),
        lambda: ledger.create_key(user, name="x", application=secret),
        lambda: ledger.revoke_key(user, key_id, reason=f"leaked: {secret}"),
        lambda: ledger.revoke_user_access(Accounts(account).admin, secret),
        lambda: ledger.keys(secret),
        lambda: ledger.audit(account=account, key_id=secret, actor=secret),
        lambda: Ledger.open(secret),
        lambda: ledger.verify(secret + "x"),
    ]
    refused = 0
    for call in calls:
        try:
            result = call()
        except KeyLedgerError as error:
            refused += 1
            exposure.add("errors", "".join(traceback.format_exception(error)) + repr(error))
        else:
            exposure.add("errors", repr(result))
    return refused


@pytest.fixture(scope="class")
def exposure(quick_url: str, sizes: Sizes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposure]:
    """Run the lifecycle on thousands of keys with every logger at DEBUG, then collect
    what the store, the exports, the logs, the errors and the returned values hold."""
    exposure = Exposure()
    postgres = quick_url.startswith("postgresql")
    count = sizes.secret_keys_postgres if postgres else sizes.secret_keys
    accounts = [Accounts(f"tenant{i}") for i in range(max(1, count // KEYS_PER_ACCOUNT))]
    exports = tmp_path_factory.mktemp("exports")
    capture = Capture(exposure)
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with Ledger.open(quick_url) as ledger:
            each = count // len(accounts)
            with ThreadPoolExecutor(4 if postgres else 1) as pool:
                list(pool.map(lambda a: lifecycle(ledger, exposure, a, each), accounts))
            exposure.refused = provoke(ledger, exposure, accounts[0].account)
            ledger.check_integrity()
            for entry in ledger.audit(limit=100):
                exposure.add("returned values", repr(entry) + entry.model_dump_json())
            for key in ledger.keys(accounts[0].account):
                exposure.add("returned values", repr(key) + key.model_dump_json())
            principal = ledger.verify(exposure.secrets[-1])
            exposure.add("returned values", repr(principal) + repr(ledger) + repr(ledger.report("tenant0")))
            for fmt in ("jsonl", "csv"):
                ledger.export_audit(exports / f"audit.{fmt}", fmt)
                exposure.add("audit exports", (exports / f"audit.{fmt}").read_bytes())
            if not postgres:
                for path in files_of(quick_url):
                    exposure.add("SQLite files while open", path.read_bytes())
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    if postgres:
        exposure.add("pg_dump of the schema", pg_dump(quick_url))
    else:
        for path in files_of(quick_url):
            exposure.add("SQLite files after closing", path.read_bytes())
    return exposure


def files_of(url: str) -> list[Path]:
    """The SQLite database and whichever of its WAL and shared-memory files exist."""
    path = Path(url.removeprefix("sqlite:///"))
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def pg_dump(url: str) -> bytes:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    done = subprocess.run(
        [
            "pg_dump",
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
            "-n",
            schema,
            parts.path.lstrip("/"),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return done.stdout


STORED = ["SQLite files while open", "SQLite files after closing", "pg_dump of the schema", "audit exports"]


class TestNoSecretAtRest:
    """No key, nor a 16-character piece of one, is stored, exported, logged, raised or shown."""

    def test_the_detector_finds_a_planted_piece(self, exposure: Exposure) -> None:
        """A piece of a secret planted among stored bytes is found, so a clean result means something."""
        secret = exposure.secrets[len(exposure.secrets) // 2]
        exposure.add("planted", b"\x00" * 100 + secret[10:26].encode() + b"\x00")

        found = exposure.leaked("planted")

        assert found == {len(exposure.secrets) // 2}

    def check(self, exposure: Exposure, url: str, sinks: list[str], tally: Tally) -> dict[str, set[int]]:
        store = "postgresql" if url.startswith("postgresql") else "sqlite"
        leaks = {sink: exposure.leaked(sink) for sink in sinks if sink in exposure.sinks}
        for sink, leaked in leaks.items():
            tally(
                POINT,
                f"no piece of a key in: {sink}",
                store,
                len(exposure.secrets),
                len(exposure.secrets) - len(leaked),
            )
        assert leaks
        assert all(sum(map(len, exposure.sinks[sink])) > 0 for sink in leaks)
        return leaks

    def test_the_store_holds_no_piece_of_any_key(
        self, exposure: Exposure, quick_url: str, tally: Tally
    ) -> None:
        """The SQLite file and WAL (open and closed), or a pg_dump of the schema, hold no piece of a key."""
        sinks = ["SQLite files while open", "SQLite files after closing", "pg_dump of the schema"]

        leaks = self.check(exposure, quick_url, sinks, tally)

        assert leaks == {key: set() for key in leaks}

    @pytest.mark.parametrize("sink", ["audit exports", "logs", "errors", "returned values"])
    def test_what_the_ledger_says_holds_no_piece_of_any_key(
        self, exposure: Exposure, quick_url: str, sink: str, tally: Tally
    ) -> None:
        """Audit exports, DEBUG logs, error messages and tracebacks, and reprs hold no piece of a key."""
        leaks = self.check(exposure, quick_url, [sink], tally)

        assert leaks == {sink: set()}

    def test_the_store_and_exports_hold_the_history_by_digest(
        self, exposure: Exposure, quick_url: str
    ) -> None:
        """What was searched is the real history: it holds each secret's SHA-256 digest."""
        stored = [sink for sink in STORED if sink in exposure.sinks]
        last = hashlib.sha256(exposure.secrets[-1].encode()).hexdigest().encode()

        holding = [
            sink
            for sink in stored
            if any(last in data or last in decoded(data) for data in exposure.sinks[sink])
        ]

        assert holding == stored
        assert exposure.refused >= 8


def decoded(data: bytes) -> bytes:
    """The ``bytea`` values of a dump, decoded."""
    return b"".join(bytes.fromhex(m.group(1).decode()) for m in _BYTEA.finditer(data))


class TestAKeyGivenAsTheActor:
    """A key passed as the acting user's id or account (a host service's mix-up) is
    refused like a key pasted into any other field: never stored, logged or echoed."""

    @pytest.mark.parametrize("field", ["user_id", "account"])
    def test_is_refused_and_leaves_no_piece_behind(
        self, sqlite_url: str, field: str, caplog: pytest.LogCaptureFixture, tally: Tally
    ) -> None:
        """Creating a key as an actor whose user id or account is a key raises InvalidInput,
        and neither the store nor the logs nor the message hold any piece of that key."""
        exposure = Exposure()
        caplog.set_level(logging.DEBUG)
        with Ledger.open(sqlite_url) as ledger:
            secret = ledger.create_key(Accounts("acme").user("alice"), name="real").secret.get_secret_value()
            exposure.issue(secret)
            names = {"user_id": "alice", "account": "acme", field: secret}
            actor = Actor(user_id=names["user_id"], account=names["account"], permissions=["integration"])

            refusal: KeyLedgerError | None = None
            try:
                ledger.create_key(actor, name="by a key")
            except KeyLedgerError as error:
                refusal = error

            exposure.add("errors", "".join(traceback.format_exception(refusal)) if refusal else "")
            exposure.add("logs", caplog.text)
            for path in files_of(sqlite_url):
                exposure.add("store", path.read_bytes())
        leaks = {sink: exposure.leaked(sink) for sink in exposure.sinks}
        refused = type(refusal).__name__ == "InvalidInput"
        tally(
            POINT,
            f"a key given as the actor's {field} is refused, kept nowhere",
            "sqlite",
            1,
            int(refused and not any(leaks.values())),
        )
        assert refused, f"{refusal!r} raised, InvalidInput expected"
        assert leaks == {"errors": set(), "logs": set(), "store": set()}
