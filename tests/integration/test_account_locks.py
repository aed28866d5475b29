"""Commands on one account take turns across processes (``keyledger.adapters.driven.account_locks``).

On SQLite the turn is a byte-range lock of ``<database>.lock``; on PostgreSQL a session
advisory lock. These tests hold a turn the way another process would (a child process
for the file lock, another session for PostgreSQL) and show that a command on that
account waits for it, a command on another account does not, and a turn whose holder
dies is given back.
"""

from __future__ import annotations

import errno
import fcntl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from keyledger import Actor, Ledger, Permission, StoreUnavailable
from keyledger.adapters.driven import account_locks as locks_module
from keyledger.adapters.driven.account_locks import LOCK_NAMESPACE, PostgresAccountLocks
from tests.integration.conftest import POSTGRES_URL

HOLD_FILE_TURN = r"""
import fcntl, os, sys, time, zlib
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
offset = zlib.crc32(sys.argv[2].encode()) % (1 << 20)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""
WAIT = 0.5


@pytest.fixture
def gina() -> Actor:
    return Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})


def in_thread(action: Callable[[], object]) -> tuple[threading.Thread, list[float]]:
    """Run ``action`` in a thread; the list gets the monotonic time it returned."""
    finished: list[float] = []

    def run() -> None:
        action()
        finished.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, finished


@contextmanager
def postgres_turn_held(url: str, account: str) -> Iterator[psycopg.Connection[object]]:
    """Another session holding ``account``'s turn, as another process's command would."""
    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    conninfo = urlunsplit(parts._replace(query=urlencode([])))
    key = PostgresAccountLocks(lambda: None, schema, "").key(account)
    connection = psycopg.connect(conninfo, autocommit=True)
    connection.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
    try:
        yield connection
    finally:
        connection.close()


class TestPostgresTurns:
    def test_a_command_waits_for_its_accounts_turn_and_not_for_another(
        self, postgres_url: str, open_ledger: Callable[..., Ledger], alice: Actor, gina: Actor
    ) -> None:
        ledger = open_ledger(postgres_url)
        with postgres_turn_held(postgres_url, "acme"):
            ledger.create_key(gina, name="other account")  # not blocked
            thread, finished = in_thread(lambda: ledger.create_key(alice, name="waits"))
            time.sleep(WAIT)
            assert finished == []
            released = time.monotonic()
        thread.join(timeout=10)
        assert finished
        assert finished[0] >= released
        assert [k.name for k in ledger.keys("acme")] == ["waits"]

    def test_a_turn_whose_session_dies_is_given_back(
        self, postgres_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        ledger = open_ledger(postgres_url)
        with postgres_turn_held(postgres_url, "acme") as holder:
            thread, finished = in_thread(lambda: ledger.create_key(alice, name="after the holder died"))
            time.sleep(WAIT)
            assert finished == []
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (holder.info.backend_pid,))
        thread.join(timeout=10)
        assert finished
        assert [k.name for k in ledger.keys("acme")] == ["after the holder died"]

    def test_a_turn_not_given_within_the_timeout_fails_cleanly(
        self,
        postgres_url: str,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(locks_module, "LOCK_TIMEOUT", "200ms")
        ledger = open_ledger(postgres_url)
        with postgres_turn_held(postgres_url, "acme"), pytest.raises(StoreUnavailable) as raised:
            ledger.create_key(alice, name="never")
        assert "cannot lock account 'acme'" in str(raised.value)
        assert ledger.keys("acme") == []
        assert ledger.create_key(alice, name="later").key_id

    def test_a_closed_ledger_gives_back_its_turn_connections(self, postgres_url: str, alice: Actor) -> None:
        ledger = Ledger.open(postgres_url)
        for n in range(3):
            ledger.create_key(alice, name=f"key {n}")
        turns = ledger._connection.locks
        assert isinstance(turns, PostgresAccountLocks)
        idle = list(turns._idle)
        ledger.close()
        assert idle
        assert all(connection.closed for connection in idle)


class TestSQLiteTurns:
    def test_a_command_waits_for_another_processs_turn_on_its_account(
        self, tmp_path: Path, open_ledger: Callable[..., Ledger], alice: Actor, gina: Actor
    ) -> None:
        path = tmp_path / "turns.db"
        ledger = open_ledger(f"sqlite:///{path}")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_FILE_TURN, f"{path}.lock", "acme", "30"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            ledger.create_key(gina, name="other account")
            thread, finished = in_thread(lambda: ledger.create_key(alice, name="waits"))
            time.sleep(WAIT)
            assert finished == []
            holder.kill()  # kill -9: the kernel gives the turn back
            holder.wait(timeout=10)
            thread.join(timeout=10)
            assert finished
        finally:
            holder.kill()
            holder.wait(timeout=10)
            if holder.stdout is not None:
                holder.stdout.close()
        assert [k.name for k in ledger.keys("acme")] == ["waits"]


class TestTurnFaults:
    @pytest.fixture
    def ledger(self, tmp_path: Path, open_ledger: Callable[..., Ledger]) -> Ledger:
        return open_ledger(f"sqlite:///{tmp_path / 'turns.db'}")

    def test_a_false_deadlock_report_is_asked_again(
        self, ledger: Ledger, alice: Actor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The kernel's EDEADLK for record locks can name a cycle through two threads of
        one process that is not one: the turn is asked for again, not failed."""
        real = fcntl.lockf
        refused: list[int] = []

        def lockf(fd: int, command: int, *args: int) -> None:
            if command == fcntl.LOCK_EX and len(refused) < 2:
                refused.append(command)
                raise OSError(errno.EDEADLK, "Resource deadlock avoided")
            real(fd, command, *args)

        monkeypatch.setattr(fcntl, "lockf", lockf)
        issued = ledger.create_key(alice, name="after two refusals")
        assert len(refused) == 2
        assert ledger.verify(issued.secret.get_secret_value()) is not None

    def test_another_lock_error_fails_cleanly(
        self, ledger: Ledger, alice: Actor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def lockf(fd: int, command: int, *args: int) -> None:
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(fcntl, "lockf", lockf)
        with pytest.raises(StoreUnavailable, match="cannot lock account 'acme'"):
            ledger.create_key(alice, name="never")
        monkeypatch.undo()
        assert ledger.keys("acme") == []

    def test_a_kept_postgres_connection_that_died_is_replaced(
        self, postgres_url: str, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A turn connection kept between commands may die (a restart, an idle timeout):
        the next command takes a new one instead of failing."""
        ledger = open_ledger(postgres_url)
        ledger.create_key(alice, name="first")
        turns = ledger._connection.locks
        assert isinstance(turns, PostgresAccountLocks)
        [kept] = turns._idle
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (kept.info.backend_pid,))

        ledger.create_key(alice, name="second")

        assert [k.name for k in ledger.keys("acme")] == ["first", "second"]
        assert kept.closed
