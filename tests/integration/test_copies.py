"""A ledger copied into an empty store: a frozen history up to an instant that records
nothing, or a writable migration; every stream's versions and chains kept; a copy cut
short never taken for a whole one."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyledger import Actor, FrozenLedger, InvalidInput, Ledger, StoreUnavailable
from keyledger.adapters.cli import app
from keyledger.testing import ManualClock


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The empty store to copy into: a SQLite file of its own, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'copy.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def source(tmp_path: Path, clock: ManualClock, alice: Actor) -> Iterator[Ledger]:
    """Two accounts' histories on a SQLite file, one hour apart at each step."""
    with Ledger.open(f"sqlite:///{tmp_path / 'source.db'}", clock=clock, key_prefix="acme") as ledger:
        kept = ledger.create_key(alice, name="kept")
        clock.advance(hours=1)
        ledger.regenerate_key(alice, kept.key_id, mode="grace")
        clock.advance(hours=1)
        ledger.create_key(Actor(user_id="bo", account="beta", permissions=alice.permissions), name="beta's")
        clock.advance(hours=1)
        ledger.revoke_key(alice, kept.key_id)
        clock.advance(hours=1)
        yield ledger


def events(ledger: Ledger) -> list[tuple[str, int, str, str]]:
    return sorted(
        (e.account, e.version, e.action, e.chain) for e in ledger.audit("acme") + ledger.audit("beta")
    )


class TestAMigration:
    def test_every_event_is_copied_with_its_version_and_chain_and_the_copy_is_writable(
        self, source: Ledger, durable_url: str, alice: Actor, clock: ManualClock
    ) -> None:
        copied = source.copy(durable_url)

        with Ledger.open(durable_url, clock=clock) as copy:
            assert copied == 4
            assert events(copy) == events(source)
            assert copy.check_integrity().ok
            assert copy.key_prefix == "acme"
            assert [k.status for k in copy.keys("acme")] == [k.status for k in source.keys("acme")]
            new = copy.create_key(alice, name="after the move")
            assert copy.verify(new.secret.get_secret_value()) is not None

    def test_a_store_that_holds_events_is_refused_and_left_as_it_was(
        self, source: Ledger, tmp_path: Path, alice: Actor, clock: ManualClock
    ) -> None:
        url = f"sqlite:///{tmp_path / 'other.db'}"
        with Ledger.open(url, clock=clock, key_prefix="acme") as other:
            other.create_key(alice, name="theirs")

        with pytest.raises(InvalidInput) as refused:
            source.copy(url)

        assert refused.value.field == "to_url"
        with Ledger.open(url, clock=clock) as other:
            assert [k.name for k in other.keys("acme")] == ["theirs"]

    def test_memory_is_refused_as_a_destination(self, source: Ledger) -> None:
        with pytest.raises(InvalidInput):
            source.copy("memory://")


class TestAFrozenHistory:
    def test_only_the_events_recorded_before_the_instant_are_copied(
        self, source: Ledger, durable_url: str, clock: ManualClock
    ) -> None:
        """Up to before the revocation: the key was regenerated with grace, beta has a key."""
        until = clock.now - timedelta(hours=1, microseconds=1)

        copied = source.copy(durable_url, until=until)

        with Ledger.open(durable_url, clock=clock) as copy:
            assert copied == 3
            assert [e.action for e in copy.audit("acme")] == ["KeyCreated", "KeyRegenerated"]
            assert [k.status for k in copy.keys("acme")] == ["active"]
            assert copy.check_integrity().ok

    def test_every_command_on_a_frozen_copy_raises_and_records_nothing(
        self, source: Ledger, durable_url: str, alice: Actor, admin: Actor, clock: ManualClock
    ) -> None:
        source.copy(durable_url, until=clock.now)

        with Ledger.open(durable_url, clock=clock) as copy:
            key_id = copy.keys("acme")[0].key_id
            commands = [
                lambda: copy.create_key(alice, name="new"),
                lambda: copy.regenerate_key(alice, key_id, mode="immediate"),
                lambda: copy.revoke_key(alice, key_id),
                lambda: copy.revoke_user_access(admin, "alice"),
            ]
            for command in commands:
                with pytest.raises(FrozenLedger):
                    command()
            assert len(copy.audit("acme")) == 3

    def test_a_frozen_copy_answers_for_the_past_and_refuses_live_verification(
        self, tmp_path: Path, clock: ManualClock, alice: Actor
    ) -> None:
        with Ledger.open(f"sqlite:///{tmp_path / 'source.db'}", clock=clock) as ledger:
            issued = ledger.create_key(alice, name="k")
            created = clock.now
            clock.advance(hours=1)
            ledger.revoke_key(alice, issued.key_id)
            clock.advance(hours=1)
            url = f"sqlite:///{tmp_path / 'frozen.db'}"
            ledger.copy(url, until=clock.now)
        secret = issued.secret.get_secret_value()

        with Ledger.open(url, clock=clock) as copy:
            assert copy.verify(secret, at=created) is not None
            assert copy.verify(secret, at=clock.now) is None
            assert copy.verify(secret) is None

    def test_a_future_instant_is_refused(self, source: Ledger, durable_url: str, clock: ManualClock) -> None:
        with pytest.raises(InvalidInput):
            source.copy(durable_url, until=clock.now + timedelta(seconds=1))


class TestACopyCutShort:
    def test_a_copy_killed_half_way_is_refused_when_opened(self, tmp_path: Path) -> None:
        """kill -9 while the copy writes its events: the store says it is not a whole ledger."""
        source_url = f"sqlite:///{tmp_path / 'source.db'}"
        target = tmp_path / "copy.db"
        script = textwrap.dedent(
            f"""
            import sys
            from keyledger import Actor, Ledger, Permission
            actor = Actor(user_id="alice", account="acme", permissions={{Permission.INTEGRATION}})
            with Ledger.open({source_url!r}, follow=False) as ledger:
                for number in range(3000):
                    ledger.create_key(actor, name=f"k{{number}}")
                def progress(done, total):
                    if done >= 1000:
                        print("copying", flush=True)
                        import time; time.sleep(60)
                ledger.copy({f"sqlite:///{target}"!r}, progress=progress)
            """
        )
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as process:
            try:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == "copying"
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(30)

        with pytest.raises(StoreUnavailable, match="cut short"):
            Ledger.open(f"sqlite:///{target}")
        with sqlite3.connect(target) as connection:
            assert connection.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] >= 1000


class TestTheCommand:
    def test_copy_until_makes_a_frozen_copy(self, source: Ledger, tmp_path: Path, clock: ManualClock) -> None:
        target = f"sqlite:///{tmp_path / 'quarter.db'}"
        until = (clock.now - timedelta(hours=1, microseconds=1)).isoformat()

        result = CliRunner().invoke(
            app, ["--url", source.store, "--json", "copy", "--to", target, "--until", until]
        )

        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f'{{"copied": 3, "frozen_until": "{until}"}}'
        refused = CliRunner().invoke(
            app, ["--url", target, "keys", "create", "--actor", "alice", "--name", "x"]
        )
        assert refused.exit_code != 0
        assert "frozen copy" in refused.stderr
