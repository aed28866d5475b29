"""The key prefix belongs to the ledger: recorded when it is first opened, taken by every
process opened without one, refused when a process asks for another, and changed only
on purpose, with the keys of earlier prefixes still working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyledger import Actor, InvalidInput, Ledger
from keyledger.adapters.cli import app
from keyledger.testing import ManualClock

PREFIX_VARIABLE = "KEYLEDGER_KEY_PREFIX"


@pytest.fixture(autouse=True)
def no_prefix_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PREFIX_VARIABLE, raising=False)


class TestRecorded:
    def test_a_key_made_under_a_prefix_verifies_in_a_process_opened_without_one(
        self, durable_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        """The reported snag: KEYLEDGER_KEY_PREFIX=acme_live in one process, nothing in the next."""
        with Ledger.open(durable_url, key_prefix="acme_live", clock=clock) as ledger:
            secret = ledger.create_key(alice, name="live").secret.get_secret_value()

        with Ledger.open(durable_url, clock=clock) as ledger:
            principal = ledger.verify(secret)
            issued = ledger.create_key(alice, name="next").secret.get_secret_value()

        assert principal is not None
        assert ledger.key_prefix == "acme_live"
        assert issued.startswith("acme_live_")

    def test_a_new_ledger_opened_without_a_prefix_records_the_default(self, durable_url: str) -> None:
        with Ledger.open(durable_url) as ledger:
            assert (ledger.key_prefix, ledger.key_prefixes) == ("kl", ("kl",))

    def test_a_process_asking_for_another_prefix_is_refused_naming_the_argument(
        self, durable_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        with Ledger.open(durable_url, key_prefix="acme", clock=clock) as ledger:
            ledger.create_key(alice, name="kept")

        with pytest.raises(InvalidInput) as refused:
            Ledger.open(durable_url, key_prefix="other", clock=clock)

        assert refused.value.field == "key_prefix"
        assert "'acme'" in str(refused.value)
        assert "'other'" in str(refused.value)
        with Ledger.open(durable_url, clock=clock) as ledger:
            assert (ledger.key_prefix, ledger.key_prefixes) == ("acme", ("acme",))

    def test_a_process_whose_environment_asks_for_another_prefix_is_refused_naming_the_variable(
        self, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        Ledger.open(sqlite_url, key_prefix="acme").close()
        monkeypatch.setenv(PREFIX_VARIABLE, "other")

        with pytest.raises(InvalidInput) as refused:
            Ledger.open(sqlite_url)

        assert refused.value.field == PREFIX_VARIABLE

    def test_the_recorded_prefix_survives_a_rebuild(
        self, sqlite_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        with Ledger.open(sqlite_url, key_prefix="acme", clock=clock) as ledger:
            secret = ledger.create_key(alice, name="kept").secret.get_secret_value()
            ledger.rebuild_projections()

        with Ledger.open(sqlite_url, clock=clock) as ledger:
            assert ledger.key_prefix == "acme"
            assert ledger.verify(secret) is not None


class TestChanged:
    def test_keys_of_the_earlier_prefix_keep_working_and_new_keys_take_the_new_one(
        self, durable_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        with Ledger.open(durable_url, key_prefix="acme", clock=clock) as ledger:
            old = ledger.create_key(alice, name="old").secret.get_secret_value()

            ledger.change_key_prefix("acme_live")
            new = ledger.create_key(alice, name="new").secret.get_secret_value()

            assert ledger.verify(old) is not None
            assert ledger.verify(new) is not None
            assert new.startswith("acme_live_")
        with Ledger.open(durable_url, clock=clock) as reopened:
            assert reopened.key_prefixes == ("acme_live", "acme")
            assert reopened.verify(old) is not None
            assert reopened.verify(f"Basic {_basic(new)}") is not None
        with pytest.raises(InvalidInput):
            Ledger.open(durable_url, key_prefix="acme", clock=clock)

    def test_a_bad_new_prefix_is_refused_and_nothing_changes(self, sqlite_url: str) -> None:
        with Ledger.open(sqlite_url, key_prefix="acme") as ledger:
            with pytest.raises(InvalidInput):
                ledger.change_key_prefix("Acme!")
            assert ledger.key_prefixes == ("acme",)
        with Ledger.open(sqlite_url) as reopened:
            assert reopened.key_prefix == "acme"

    def test_a_key_shaped_like_an_earlier_prefix_is_never_recorded_as_a_label(
        self, sqlite_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        with Ledger.open(sqlite_url, key_prefix="acme", clock=clock) as ledger:
            old = ledger.create_key(alice, name="old").secret.get_secret_value()
            ledger.change_key_prefix("acme_live")

            with pytest.raises(InvalidInput):
                ledger.create_key(alice, name="copy", purpose=f"was {old}")


class TestLedgersFromBeforePrefixesWereRecorded:
    def test_the_prefix_the_keys_show_is_recorded_at_the_first_open(
        self, tmp_path: Path, clock: ManualClock, alice: Actor
    ) -> None:
        """A ledger whose settings table is empty (made by an earlier release) takes the
        prefix its keys' hints show, and keeps verifying them."""
        path = tmp_path / "keyledger.db"
        with Ledger.open(f"sqlite:///{path}", key_prefix="acme_live", clock=clock) as ledger:
            secret = ledger.create_key(alice, name="live").secret.get_secret_value()
        with sqlite3.connect(path) as connection:
            connection.execute("DELETE FROM keyledger_settings")

        with Ledger.open(f"sqlite:///{path}", clock=clock) as ledger:
            assert ledger.key_prefix == "acme_live"
            assert ledger.verify(secret) is not None


class TestTheCommand:
    def test_prefix_shows_and_changes_the_ledgers_prefix(
        self, sqlite_url: str, clock: ManualClock, alice: Actor
    ) -> None:
        Ledger.open(sqlite_url, key_prefix="acme").close()
        runner = CliRunner()

        shown = runner.invoke(app, ["--url", sqlite_url, "prefix"])
        changed = runner.invoke(app, ["--url", sqlite_url, "--json", "prefix", "acme_live"])
        refused = runner.invoke(app, ["--url", sqlite_url, "prefix", "Bad!"])

        assert shown.exit_code == 0, shown.output
        assert "key prefix: acme" in shown.stdout
        assert changed.exit_code == 0, changed.output
        assert changed.stdout.strip() == '{"key_prefix": "acme_live", "accepted": ["acme_live", "acme"]}'
        assert refused.exit_code == 2
        with Ledger.open(sqlite_url) as ledger:
            assert ledger.key_prefix == "acme_live"

    def test_a_cli_process_whose_environment_asks_for_another_prefix_exits_2_naming_it(
        self, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        Ledger.open(sqlite_url, key_prefix="acme").close()
        monkeypatch.setenv(PREFIX_VARIABLE, "other")

        result = CliRunner().invoke(app, ["--url", sqlite_url, "keys", "list"])

        assert result.exit_code == 2
        assert PREFIX_VARIABLE in result.stderr


def _basic(key: str) -> str:
    import base64

    return base64.b64encode(f"{key}:".encode()).decode()
