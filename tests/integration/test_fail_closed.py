"""A verifier that cannot show it is current refuses: a stuck follower, a closed ledger,
a forked process, and a ledger left open at exit."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from keyledger import Actor, IntegrityViolation, Ledger, StoreUnavailable
from keyledger.testing import ManualClock

LAG = timedelta(milliseconds=300)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keyledger.db"


@pytest.fixture
def ledgers(path: Path, clock: ManualClock) -> Iterator[Callable[..., Ledger]]:
    opened: list[Ledger] = []

    def _open(**options: object) -> Ledger:
        ledger = Ledger.open(f"sqlite:///{path}", clock=clock, **options)  # type: ignore[arg-type]
        opened.append(ledger)
        return ledger

    yield _open
    for ledger in opened:
        ledger.close()


def mangle_new_revocations(path: Path) -> None:
    """From now on, every stored KeyRevoked is unreadable (a byte before its JSON)."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TRIGGER mangle AFTER INSERT ON stored_events WHEN NEW.topic = 'keyledger.KeyRevoked' "
            "BEGIN UPDATE stored_events SET state = CAST(x'ff' || state AS BLOB) WHERE rowid = NEW.rowid; END"
        )


def repair_revocations(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER mangle")
        conn.execute(
            "UPDATE stored_events SET state = substr(state, 2) WHERE topic = 'keyledger.KeyRevoked' "
            "AND substr(state, 1, 1) = x'ff'"
        )


class TestAStuckFollower:
    """A follower that cannot read an event stops before it, keeps trying, and its
    process refuses every credential once ``max_lag`` has passed."""

    def test_refuses_a_key_revoked_elsewhere_and_says_why(
        self, ledgers: Callable[..., Ledger], path: Path, alice: Actor, caplog: pytest.LogCaptureFixture
    ) -> None:
        writer = ledgers(follow=False)
        verifier = ledgers(max_lag=LAG)
        revoked = writer.create_key(alice, name="revoked")
        kept = writer.create_key(alice, name="kept")
        assert wait_for(lambda: verifier.verify(kept.secret.get_secret_value()) is not None)
        mangle_new_revocations(path)

        writer.revoke_key(alice, revoked.key_id)

        bad = writer.position
        assert wait_for(lambda: verifier.verify(revoked.secret.get_secret_value()) is None)
        assert verifier.verify(kept.secret.get_secret_value()) is None
        health = verifier.health()
        assert not health.ok
        assert health.position == bad - 1
        assert health.head == bad
        assert health.behind_for > LAG
        assert health.reason is not None
        assert f"position {bad}" in health.reason
        assert "MapperDeserialisationError" in health.reason
        stuck = [r for r in caplog.records if r.levelname == "ERROR" and "stuck" in r.getMessage()]
        assert len(stuck) == 1, "each distinct cause is logged once"
        assert any(t.name == "keyledger-follow" and t.is_alive() for t in threading.enumerate())

    def test_takes_the_event_it_was_stuck_on_once_it_can_be_read(
        self, ledgers: Callable[..., Ledger], path: Path, alice: Actor
    ) -> None:
        writer = ledgers(follow=False)
        verifier = ledgers(max_lag=LAG)
        revoked = writer.create_key(alice, name="revoked")
        kept = writer.create_key(alice, name="kept")
        mangle_new_revocations(path)
        writer.revoke_key(alice, revoked.key_id)
        assert wait_for(lambda: not verifier.health().ok)

        repair_revocations(path)

        assert wait_for(lambda: verifier.verify(kept.secret.get_secret_value()) is not None)
        assert verifier.verify(revoked.secret.get_secret_value()) is None
        health = verifier.health()
        assert health.ok
        assert health.reason is None
        assert health.position == health.head == writer.position

    def test_an_unreadable_event_at_open_leaves_the_ledger_open_and_refusing(
        self, ledgers: Callable[..., Ledger], path: Path, alice: Actor
    ) -> None:
        writer = ledgers(follow=False)
        issued = writer.create_key(alice, name="one")
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM tracking")  # the views start over, reading every event
            conn.execute("UPDATE stored_events SET state = CAST(x'ff' || state AS BLOB)")

        reader = ledgers(max_lag=LAG)

        assert reader.verify(issued.secret.get_secret_value()) is None
        health = reader.health()
        assert not health.ok
        assert health.reason is not None
        assert "position 1" in health.reason


class TestALedgerWithNothingNew:
    def test_is_not_stuck(self, ledgers: Callable[..., Ledger], alice: Actor) -> None:
        """Quiet for several times ``max_lag``, a following ledger still answers."""
        ledger = ledgers(max_lag=LAG)
        issued = ledger.create_key(alice, name="quiet")

        time.sleep(3 * LAG.total_seconds())

        assert ledger.verify(issued.secret.get_secret_value()) is not None
        assert ledger.health().ok

    def test_that_does_not_follow_catches_up_when_asked_after_max_lag(
        self, ledgers: Callable[..., Ledger], alice: Actor
    ) -> None:
        """A ledger opened with ``follow=False`` reads the log itself once its last read
        is older than ``max_lag``, so it refuses a key revoked elsewhere."""
        writer = ledgers(follow=False)
        reader = ledgers(follow=False, max_lag=LAG)
        issued = writer.create_key(alice, name="elsewhere")
        time.sleep(LAG.total_seconds() * 1.5)
        assert reader.verify(issued.secret.get_secret_value()) is not None

        writer.revoke_key(alice, issued.key_id)
        time.sleep(LAG.total_seconds() * 1.5)

        assert reader.verify(issued.secret.get_secret_value()) is None


class TestMaxLag:
    @pytest.mark.parametrize("value", [timedelta(milliseconds=99), timedelta(days=2), 5, None])
    def test_out_of_range_is_refused(self, path: Path, value: object) -> None:
        from keyledger import InvalidInput

        with pytest.raises(InvalidInput, match="max_lag"):
            Ledger.open(f"sqlite:///{path}", max_lag=value)  # type: ignore[arg-type]


class TestAClosedLedger:
    def test_verifies_nothing_and_refuses_every_other_call(
        self, ledgers: Callable[..., Ledger], alice: Actor, clock: ManualClock
    ) -> None:
        ledger = ledgers()
        issued = ledger.create_key(alice, name="one")
        secret = issued.secret.get_secret_value()

        ledger.close()

        assert ledger.verify(secret) is None
        assert ledger.verify(secret, strict=True) is None
        assert ledger.verify(secret, at=clock()) is None
        health = ledger.health()
        assert not health.ok
        assert health.reason == "the ledger is closed"
        calls: list[Callable[[], object]] = [
            lambda: ledger.create_key(alice, name="two"),
            lambda: ledger.revoke_key(alice, issued.key_id),
            lambda: ledger.keys("acme"),
            lambda: ledger.key("acme", issued.key_id),
            lambda: ledger.audit(),
            lambda: ledger.report("acme"),
            lambda: ledger.check_integrity(),
            lambda: ledger.expire_grace(),
            lambda: ledger.sync(),
            lambda: ledger.start_sweeper(1),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable, match="the ledger is closed"):
                call()

    def test_in_memory_too(self, open_ledger: Callable[..., Ledger], alice: Actor) -> None:
        ledger = open_ledger()
        secret = ledger.create_key(alice, name="one").secret.get_secret_value()

        ledger.close()

        assert ledger.verify(secret) is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
class TestAForkedProcess:
    """A child forked after ``open()`` reconnects before it answers, and never touches
    the parent's connections."""

    def run_in_child(self, body: Callable[[], bool]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                code = 0 if body() else 1
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    @pytest.mark.parametrize("durable", ["sqlite", "postgresql"])
    def test_reconnects_and_follows(
        self,
        durable: str,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        clock: ManualClock,
        alice: Actor,
    ) -> None:
        url = (
            f"sqlite:///{tmp_path / 'fork.db'}"
            if durable == "sqlite"
            else request.getfixturevalue("postgres_url")
        )
        with Ledger.open(url, clock=clock, max_lag=LAG) as parent:
            before = parent.create_key(alice, name="before the fork")
            secret = before.secret.get_secret_value()

            def child() -> bool:
                known = parent.verify(secret) is not None
                made = parent.create_key(alice, name="made by the child")
                parent.revoke_key(alice, before.key_id)
                return known and parent.verify(made.secret.get_secret_value()) is not None

            code = self.run_in_child(child)

            assert code == 0
            assert wait_for(lambda: parent.verify(secret) is None), "the child's revocation is followed"
            after = parent.create_key(alice, name="after the fork")
            assert parent.verify(after.secret.get_secret_value()) is not None
            assert [k.name for k in parent.keys("acme")] == [
                "before the fork",
                "made by the child",
                "after the fork",
            ]
            assert parent.health().ok

    def test_a_ledger_closed_in_the_child_stays_open_in_the_parent(
        self, ledgers: Callable[..., Ledger], alice: Actor
    ) -> None:
        parent = ledgers()
        secret = parent.create_key(alice, name="one").secret.get_secret_value()

        def child() -> bool:
            parent.close()
            return parent.verify(secret) is None

        assert self.run_in_child(child) == 0
        assert parent.verify(secret) is not None
        assert parent.create_key(alice, name="two").key_id


class TestALedgerLeftOpen:
    def test_stops_its_threads_when_collected(self, path: Path, alice: Actor) -> None:
        ledger = Ledger.open(f"sqlite:///{path}")
        ledger.create_key(alice, name="one")
        ledger.start_sweeper(0.01)
        names = {"keyledger-follow", "keyledger-sweeper"}
        assert names <= {t.name for t in threading.enumerate()}

        del ledger
        gc.collect()

        assert wait_for(lambda: not names & {t.name for t in threading.enumerate() if t.is_alive()})

    def test_does_not_break_the_process_at_exit(self, tmp_path: Path) -> None:
        """A test that fails before ``close()``, then another: pytest ends as usual, with
        no thread touching the store while the interpreter shuts down."""
        tests = tmp_path / "test_left_open.py"
        tests.write_text(
            textwrap.dedent(
                f"""
                from keyledger import Actor, Ledger, Permission

                def test_fails_before_closing():
                    ledger = Ledger.open("sqlite:///{tmp_path / "left.db"}")
                    actor = Actor(user_id="a", account="acme", permissions={{Permission.INTEGRATION}})
                    ledger.create_key(actor, name="one")
                    assert False

                def test_another():
                    assert True
                """
            )
        )

        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tests)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )

        output = run.stdout + run.stderr
        assert run.returncode == 1, output
        assert "1 failed, 1 passed" in output
        assert "Exception in thread" not in output
        assert "Traceback" not in run.stderr


class TestAnUnreadableEvent:
    def test_is_an_integrity_violation_wherever_it_is_read(
        self, ledgers: Callable[..., Ledger], path: Path, alice: Actor, clock: ManualClock
    ) -> None:
        """Decoding errors never leave a public method raw: each is an IntegrityViolation."""
        writer = ledgers(follow=False)
        writer.create_key(alice, name="one")
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("UPDATE stored_events SET state = CAST(x'ff' || state AS BLOB)")
        reader = ledgers(follow=False)

        for call in (
            lambda: reader.rebuild_projections(),
            lambda: reader.report("acme"),
            lambda: reader.create_key(alice, name="two"),
            lambda: reader.keys("acme", at=clock()),
        ):
            with pytest.raises(IntegrityViolation):
                call()
