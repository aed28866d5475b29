"""The ``keyledger`` command line, through typer's runner and as the installed console
script, on a real SQLite file: exit codes, stdout for data, stderr for notes and errors,
and no secret anywhere but the one stdout line that issues it."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from keyledger import Actor, AuditEntry, Ledger, Permission
from keyledger.adapters.driving.cli import app
from keyledger.export import verify_export
from keyledger.testing import ManualClock

Cli = Callable[..., Result]
SUBPROCESS_TIMEOUT = 60


def unopenable(tmp_path: Path) -> str:
    """The URL of a store that cannot be opened: a file that is not a SQLite database."""
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not a SQLite database file\n" * 4)
    return f"sqlite:///{path}"


@pytest.fixture
def cli(sqlite_url: str) -> Cli:
    """Run one command on the test's SQLite ledger; ``input`` feeds stdin."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--url", sqlite_url, *args], input=input)

    return run


def create(cli: Cli, name: str = "Shipping", actor: str = "alice") -> tuple[str, str]:
    """Create a key in account acme; returns (key id, secret)."""
    result = cli("--json", "keys", "create", "-a", "acme", "--actor", actor, "--name", name)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    return data["key_id"], data["secret"]


def verifies(cli: Cli, secret: str) -> bool:
    return cli("verify", "-", input=secret + "\n").exit_code == 0


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


class TestKeysCreate:
    def test_the_secret_is_printed_alone_on_stdout_with_a_warning_on_stderr(self, cli: Cli) -> None:
        """A new secret is the only thing on stdout, and stderr warns once to store it."""
        result = cli("keys", "create", "-a", "acme", "--actor", "alice", "--name", "Shipping")

        assert result.exit_code == 0
        secret = result.stdout.strip()
        assert result.stdout == secret + "\n"
        assert secret.startswith("kl_")
        note, warning = result.stderr.splitlines()
        assert note.startswith("note: account 'acme' is new")
        assert "store the new key now" in warning.lower()
        assert secret not in result.stderr
        assert verifies(cli, secret)

    def test_json_output_holds_the_secret_and_its_key_id(self, cli: Cli) -> None:
        """With --json, stdout is one JSON object holding the secret, key id and hint."""
        result = cli("--json", "keys", "create", "-a", "acme", "--actor", "alice", "--name", "Shipping")

        data = json.loads(result.stdout)
        assert data["account"] == "acme"
        assert data["key_id"].startswith("key_")
        assert data["hint"] == f"kl_...{data['secret'][-4:]}"
        assert data["secret"] not in result.stderr

    def test_a_missing_actor_is_a_usage_error(self, cli: Cli) -> None:
        """Creating without --actor exits 2 and creates nothing."""
        result = cli("keys", "create", "-a", "acme", "--name", "Shipping")

        assert result.exit_code == 2
        assert result.stdout == ""
        assert "--actor" in result.stderr

    def test_an_empty_name_is_bad_input(self, cli: Cli) -> None:
        """An empty name exits 2 with one error line naming the field."""
        result = cli("keys", "create", "-a", "acme", "--actor", "alice", "--name", " ")

        assert result.exit_code == 2
        assert one_error_line(result) == "error: invalid name: must not be empty"

    def test_a_key_pasted_into_a_label_is_refused_and_not_echoed(self, cli: Cli) -> None:
        """A key pasted as a name exits 2 and appears nowhere in the output."""
        _, secret = create(cli)

        result = cli("keys", "create", "-a", "acme", "--actor", "alice", "--name", f"copy of {secret}")

        assert result.exit_code == 2
        assert "invalid name" in one_error_line(result)
        assert secret not in result.output


class TestKeysListAndShow:
    def test_the_list_shows_keys_but_never_a_secret(self, cli: Cli) -> None:
        """The key table lists each key's id and name, and no secret."""
        first_id, first = create(cli, "Shipping")
        second_id, second = create(cli, "Billing")

        result = cli("keys", "list", "-a", "acme")

        assert result.exit_code == 0
        assert first_id in result.stdout
        assert second_id in result.stdout
        assert "Billing" in result.stdout
        assert first not in result.output
        assert second not in result.output

    def test_json_list_holds_hints_in_creation_order(self, cli: Cli) -> None:
        """With --json, the list is a JSON array of keys in creation order, with hints only."""
        first_id, first = create(cli, "Shipping")
        second_id, _ = create(cli, "Billing")

        keys = json.loads(cli("--json", "keys", "list", "-a", "acme").stdout)

        assert [k["key_id"] for k in keys] == [first_id, second_id]
        assert keys[0]["hint"] == f"kl_...{first[-4:]}"
        assert first not in json.dumps(keys)

    def test_an_account_without_keys_says_so(self, cli: Cli) -> None:
        """Listing an account without keys exits 0 and says it has none."""
        result = cli("keys", "list", "-a", "empty")

        assert result.exit_code == 0
        assert "has no keys" in result.stdout

    def test_show_gives_one_key(self, cli: Cli) -> None:
        """Showing a key gives its fields; with --json, one object."""
        key_id, _ = create(cli)

        table = cli("keys", "show", key_id, "-a", "acme")
        data = json.loads(cli("--json", "keys", "show", key_id, "-a", "acme").stdout)

        assert table.exit_code == 0
        assert "Shipping" in table.stdout
        assert (data["key_id"], data["status"], data["created_by"]) == (key_id, "active", "alice")

    def test_show_of_an_unknown_key_exits_1(self, cli: Cli) -> None:
        """An unknown key id exits 1 with one error line naming it."""
        result = cli("keys", "show", "key_0000000000000000", "-a", "acme")

        assert result.exit_code == 1
        assert one_error_line(result) == "error: no key 'key_0000000000000000' in account 'acme'"

    def test_a_secret_given_as_key_id_is_not_echoed(self, cli: Cli) -> None:
        """A secret passed where a key id belongs exits 2 (bad input) without appearing in the output."""
        _, secret = create(cli)

        result = cli("keys", "show", secret, "-a", "acme")

        assert result.exit_code == 2
        assert secret not in result.output
        assert "that is a key, not a key id" in one_error_line(result)


class TestKeysRegenerate:
    def test_with_grace_the_old_secret_keeps_working(self, cli: Cli) -> None:
        """Regenerating with --grace issues a new secret and leaves the old one working."""
        key_id, old = create(cli)

        result = cli("keys", "regenerate", key_id, "-a", "acme", "--actor", "alice", "--grace")

        new = result.stdout.strip()
        assert result.exit_code == 0
        assert new != old
        assert "previous secret works until" in one_error_line(result)
        assert verifies(cli, old)
        assert verifies(cli, new)

    def test_immediately_the_old_secret_stops(self, cli: Cli) -> None:
        """Regenerating with --immediate ends the old secret at once."""
        key_id, old = create(cli)

        result = cli("--json", "keys", "regenerate", key_id, "-a", "acme", "--actor", "bob", "--immediate")

        data = json.loads(result.stdout)
        assert data["previous_valid_until"] is None
        assert not verifies(cli, old)
        assert verifies(cli, data["secret"])

    def test_a_mode_is_required(self, cli: Cli) -> None:
        """Regenerating without --grace or --immediate is a usage error."""
        key_id, old = create(cli)

        result = cli("keys", "regenerate", key_id, "-a", "acme", "--actor", "alice")

        assert result.exit_code == 2
        assert "--grace" in result.stderr
        assert verifies(cli, old)

    def test_a_revoked_key_cannot_be_regenerated(self, cli: Cli) -> None:
        """Regenerating a revoked key exits 1 (KeyAlreadyRevoked) and prints no secret."""
        key_id, _ = create(cli)
        cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")

        result = cli("--json", "keys", "regenerate", key_id, "-a", "acme", "--actor", "alice", "--grace")

        assert result.exit_code == 1
        assert result.stdout == ""
        assert json.loads(one_error_line(result))["error"] == "KeyAlreadyRevoked"


class TestKeysRevoke:
    def test_a_revoked_key_stops_working(self, cli: Cli) -> None:
        """Revoking a key ends it; the reason goes to the audit trail."""
        key_id, secret = create(cli)

        result = cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice", "--reason", "leaked")

        assert result.exit_code == 0
        assert result.stdout == f"key {key_id} revoked\n"
        assert not verifies(cli, secret)
        entry = json.loads(cli("audit", "--action", "KeyRevoked", "--format", "jsonl").stdout)
        assert entry["details"]["reason"] == "leaked"

    def test_revoking_twice_exits_1(self, cli: Cli) -> None:
        """Revoking a revoked key is refused with exit 1."""
        key_id, _ = create(cli)
        cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")

        result = cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")

        assert result.exit_code == 1
        assert "revoked" in one_error_line(result)


class TestUsers:
    def test_revoking_a_user_removes_their_keys(self, cli: Cli) -> None:
        """Revoking a user removes the keys they created and refuses their commands."""
        alices_id, alices = create(cli, actor="alice")
        _, bobs = create(cli, actor="bob")

        result = cli("--json", "users", "revoke", "alice", "-a", "acme", "--actor", "root")
        refused = cli("keys", "create", "-a", "acme", "--actor", "alice", "--name", "Sneaky")

        assert json.loads(result.stdout)["removed_key_ids"] == [alices_id]
        assert not verifies(cli, alices)
        assert verifies(cli, bobs)
        assert refused.exit_code == 1
        assert "revoked" in one_error_line(refused)

    def test_restoring_a_user_lets_them_create_keys_again(self, cli: Cli) -> None:
        """A restored user can create new keys; their removed keys stay removed."""
        _, old = create(cli, actor="alice")
        cli("users", "revoke", "alice", "-a", "acme", "--actor", "root")

        result = cli("users", "restore", "alice", "-a", "acme", "--actor", "root")

        assert result.exit_code == 0
        assert "restored" in result.stdout
        assert not verifies(cli, old)
        create(cli, actor="alice")

    def test_restoring_a_user_who_was_not_revoked_exits_1(self, cli: Cli) -> None:
        """Restoring a user whose access is not revoked is refused (UserAccessUnchanged)."""
        result = cli("--json", "users", "restore", "alice", "-a", "acme", "--actor", "root")

        assert result.exit_code == 1
        assert json.loads(one_error_line(result))["error"] == "UserAccessUnchanged"


class TestVerify:
    def test_a_working_key_from_stdin_exits_0(self, cli: Cli) -> None:
        """A working key read from stdin verifies: exit 0 and its key id on stdout."""
        key_id, secret = create(cli)

        result = cli("verify", "-", input=secret + "\n")

        assert result.exit_code == 0
        assert key_id in result.stdout
        assert secret not in result.output

    def test_an_authorization_value_verifies(self, cli: Cli) -> None:
        """An HTTP Basic value with the key as user name verifies, with --json output."""
        key_id, secret = create(cli)
        basic = "Basic " + base64.b64encode(f"{secret}:".encode()).decode()

        result = cli("--json", "verify", basic)

        assert result.exit_code == 0
        assert json.loads(result.stdout) == {
            "valid": True,
            "account": "acme",
            "key_id": key_id,
            "name": "Shipping",
            "grace_until": None,
        }

    def test_a_typo_is_told_apart_from_an_unknown_key(self, cli: Cli) -> None:
        """A mistyped key exits 1 naming the checksum; nothing of it is echoed."""
        _, secret = create(cli)
        typo = secret[:-1] + ("A" if secret[-1] != "A" else "B")

        result = cli("verify", "-", input=typo)

        assert result.exit_code == 1
        assert result.stdout == ""
        assert "checksum" in one_error_line(result)
        assert typo not in result.output

    def test_a_revoked_key_exits_1_with_json_on_both_streams(self, cli: Cli) -> None:
        """A revoked key exits 1; with --json stdout says invalid and stderr is one JSON error."""
        key_id, secret = create(cli)
        cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")

        result = cli("--json", "verify", "-", input=secret)

        assert result.exit_code == 1
        assert json.loads(result.stdout)["valid"] is False
        assert json.loads(one_error_line(result))["error"] == "InvalidCredential"
        assert secret not in result.output

    def test_help_recommends_stdin_over_an_argument(self, cli: Cli) -> None:
        """The help of verify recommends '-' over shell history."""
        result = cli("verify", "--help")

        assert "history" in result.stdout
        assert "'-'" in result.stdout


class TestAudit:
    @pytest.fixture
    def history(self, cli: Cli) -> str:
        key_id, _ = create(cli, "Shipping")
        cli("keys", "regenerate", key_id, "-a", "acme", "--actor", "bob", "--grace")
        cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")
        return key_id

    def test_jsonl_is_one_audit_entry_per_line_and_nothing_else(self, cli: Cli, history: str) -> None:
        """JSON Lines output is exactly one AuditEntry per line, oldest first."""
        result = cli("audit", "--format", "jsonl")

        entries = [AuditEntry.model_validate_json(line) for line in result.stdout.splitlines()]
        assert [e.action for e in entries] == ["KeyCreated", "KeyRegenerated", "KeyRevoked"]
        assert result.stdout.endswith("\n")
        assert result.stderr == ""

    def test_filters_narrow_the_trail(self, cli: Cli, history: str) -> None:
        """Actor, repeated action and key filters each narrow the entries."""
        by_bob = cli("--json", "audit", "--actor", "bob").stdout
        two_actions = cli("--json", "audit", "--action", "KeyCreated", "--action", "KeyRevoked").stdout
        by_key = cli("--json", "audit", "--key", history, "-a", "acme").stdout

        assert [e["action"] for e in json.loads(by_bob)] == ["KeyRegenerated"]
        assert [e["action"] for e in json.loads(two_actions)] == ["KeyCreated", "KeyRevoked"]
        assert len(json.loads(by_key)) == 3

    def test_a_time_range_with_a_zone_filters_and_a_naive_one_is_refused(
        self, cli: Cli, history: str
    ) -> None:
        """--since and --until take ISO 8601 with a zone; a naive instant exits 2."""
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        everything = cli("--json", "audit", "--since", "2000-01-01T00:00:00Z", "--until", future)
        nothing = cli("--json", "audit", "--since", future)
        naive = cli("audit", "--since", "2026-01-05T09:00:00")

        assert len(json.loads(everything.stdout)) == 3
        assert json.loads(nothing.stdout) == []
        assert naive.exit_code == 2
        assert "timezone" in one_error_line(naive)

    def test_pages_follow_with_after(self, cli: Cli, history: str) -> None:
        """A full page notes the cursor on stderr; --after continues from it."""
        first = cli("--json", "audit", "--limit", "2")
        cursor = json.loads(first.stdout)[-1]["position"]

        rest = cli("--json", "audit", "--after", str(cursor))

        assert f"--after {cursor}" in first.stderr
        assert [e["action"] for e in json.loads(rest.stdout)] == ["KeyRevoked"]

    def test_csv_has_a_header_and_a_row_per_entry(self, cli: Cli, history: str) -> None:
        """CSV output has the documented columns and the full chain of each entry."""
        result = cli("audit", "--format", "csv")

        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["action"] for r in rows] == ["KeyCreated", "KeyRegenerated", "KeyRevoked"]
        assert len(rows[0]["chain"]) == 64
        assert json.loads(rows[1]["details"])["mode"] == "grace"

    def test_output_goes_to_a_file(self, cli: Cli, history: str, tmp_path: Path) -> None:
        """--output writes the entries to a file and notes it on stderr, not stdout."""
        target = tmp_path / "audit.jsonl"

        result = cli("audit", "--format", "jsonl", "--output", str(target))

        assert result.exit_code == 0
        assert result.stdout == ""
        assert len(target.read_text().splitlines()) == 3

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (("--action", "KeyDeleted"), "action"),
            (("--limit", "0"), "limit"),
            (("--since", "yesterday"), "since"),
        ],
    )
    def test_bad_filters_exit_2(self, cli: Cli, args: tuple[str, ...], field: str) -> None:
        """An unknown action, a bad limit or an unreadable instant exits 2 naming the field."""
        result = cli("audit", *args)

        assert result.exit_code == 2
        assert one_error_line(result).startswith(f"error: invalid {field}")

    def test_an_unknown_format_is_a_usage_error(self, cli: Cli) -> None:
        """An unknown --format exits 2 and lists the formats."""
        result = cli("audit", "--format", "xml")

        assert result.exit_code == 2
        assert "jsonl" in result.stderr
        assert result.stdout == ""


class TestSweep:
    def test_a_sweep_records_passed_grace_deadlines(self, cli: Cli, sqlite_url: str) -> None:
        """A sweep records GraceExpired for a deadline that has passed, and only once."""
        with Ledger.open(sqlite_url, clock=ManualClock(datetime.now(UTC) - timedelta(days=2))) as ledger:
            alice = Actor("alice", "acme", {Permission.INTEGRATION})
            issued = ledger.create_key(alice, name="Shipping")
            ledger.regenerate_key(alice, issued.key_id, mode="grace")

        first = cli("--json", "sweep")
        second = cli("sweep")

        assert json.loads(first.stdout)["recorded"] == 1
        assert "recorded 0 GraceExpired" in second.stdout
        assert len(json.loads(cli("--json", "audit", "--action", "GraceExpired").stdout)) == 1

    def test_a_non_positive_interval_exits_2(self, cli: Cli) -> None:
        """--every must be a positive number of seconds."""
        result = cli("sweep", "--every", "0")

        assert result.exit_code == 2
        assert "invalid every" in one_error_line(result)


class TestCheck:
    def test_an_intact_ledger_checks_ok(self, cli: Cli) -> None:
        """An untouched ledger passes the integrity check with exit 0."""
        create(cli)

        result = cli("--json", "check")

        assert result.exit_code == 0
        assert json.loads(result.stdout) == {
            "ok": True,
            "events_checked": 1,
            "first_bad_position": None,
            "reason": None,
        }

    def test_an_edited_event_fails_the_check(self, cli: Cli, tmp_path: Path) -> None:
        """An event edited in the database fails the check: exit 1, position named."""
        create(cli, "Shipping")
        create(cli, "Billing")
        with sqlite3.connect(tmp_path / "keyledger.db") as db:
            db.execute("UPDATE stored_events SET state = replace(state, 'Billing', 'Billinf')")
        db.close()

        result = cli("check")

        assert result.exit_code == 1
        assert "FAILED at position 2" in result.stdout
        assert "position 2" in one_error_line(result)


class TestStoreErrors:
    def test_an_unreachable_store_exits_3(self, tmp_path: Path) -> None:
        """A store that cannot be opened exits 3 with one error line."""
        result = CliRunner().invoke(app, ["--url", unopenable(tmp_path), "keys", "list"])

        assert result.exit_code == 3
        assert "cannot open" in one_error_line(result)

    def test_a_malformed_url_exits_2(self) -> None:
        """A URL of no known scheme is bad input."""
        result = CliRunner().invoke(app, ["--url", "mysql://db", "keys", "list"])

        assert result.exit_code == 2
        assert "invalid url" in one_error_line(result)


class TestDemo:
    def test_the_demo_runs_on_a_sqlite_file(self, cli: Cli, tmp_path: Path) -> None:
        """The demo walks its account through the lifecycle on a file of its own and exits 0."""
        result = cli("demo", "--file", str(tmp_path / "demo.db"))

        assert result.exit_code == 0, result.stderr
        assert "integrity check: ok=True" in result.stdout


# The installed console script, as an operator runs it.


def script() -> str:
    found = shutil.which("keyledger", path=str(Path(sys.executable).parent))
    assert found is not None, "the keyledger console script is not installed next to this Python"
    return found


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def run_script(url: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script(), "--url", url, *args],
        input=input,
        capture_output=True,
        text=True,
        env=environment(),
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


class TestConsoleScript:
    def test_a_key_created_by_one_process_verifies_in_another(self, sqlite_url: str) -> None:
        """A key created by one run of the script verifies, from stdin, in the next."""
        created = run_script(sqlite_url, "keys", "create", "-a", "acme", "--actor", "alice", "--name", "CI")
        secret = created.stdout.strip()

        verified = run_script(sqlite_url, "--json", "verify", "-", input=secret + "\n")

        assert created.returncode == 0
        assert secret not in created.stderr
        assert verified.returncode == 0
        assert json.loads(verified.stdout)["account"] == "acme"

    def test_errors_are_one_line_without_a_traceback(self, sqlite_url: str, tmp_path: Path) -> None:
        """Refusals and an unreachable store exit 1 and 3 with one stderr line each."""
        refused = run_script(
            sqlite_url, "keys", "revoke", "key_0000000000000000", "-a", "acme", "--actor", "a"
        )
        unreachable = run_script(unopenable(tmp_path), "check")

        assert (refused.returncode, unreachable.returncode) == (1, 3)
        for result in (refused, unreachable):
            assert len(result.stderr.splitlines()) == 1
            assert result.stderr.startswith("error: ")
            assert result.stdout == ""

    def test_audit_jsonl_pipes_entries_alone(self, sqlite_url: str) -> None:
        """Piped audit JSON Lines hold only the entries, whatever else the script said."""
        run_script(sqlite_url, "keys", "create", "-a", "acme", "--actor", "alice", "--name", "CI")

        result = run_script(sqlite_url, "audit", "--format", "jsonl")

        assert result.returncode == 0
        assert [AuditEntry.model_validate_json(line).action for line in result.stdout.splitlines()] == [
            "KeyCreated"
        ]

    def test_sweep_every_runs_until_interrupted(self, sqlite_url: str) -> None:
        """sweep --every prints each sweep and stops cleanly on Ctrl-C."""
        lines: queue.Queue[str] = queue.Queue()
        with subprocess.Popen(
            [script(), "--url", sqlite_url, "sweep", "--every", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        ) as process:
            stdout, stderr = process.stdout, process.stderr
            assert stdout is not None
            assert stderr is not None
            reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True)
            reader.start()
            try:
                sweeps = [lines.get(timeout=SUBPROCESS_TIMEOUT) for _ in range(2)]
                process.send_signal(signal.SIGINT)
                process.wait(SUBPROCESS_TIMEOUT)
                reader.join(SUBPROCESS_TIMEOUT)
                err = stderr.read()
            finally:
                if process.poll() is None:
                    process.kill()

        assert process.returncode == 0
        assert all("recorded 0 GraceExpired" in line for line in sweeps)
        assert "sweeper stopped" in err
        assert "Traceback" not in err


class TestReviewCommands:
    """The commands that need the durable views: point in time, export, report, rebuild."""

    def test_verify_and_list_at_a_past_instant(self, tmp_path: Path) -> None:
        """verify --at and keys list --at answer as of an instant before a revocation."""
        url = f"sqlite:///{tmp_path / 'kl.db'}"
        created = CliRunner().invoke(
            app,
            [
                "--url",
                url,
                "--json",
                "keys",
                "create",
                "-a",
                "acme",
                "--actor",
                "alice",
                "--name",
                "Shipping",
            ],
        )
        issued = json.loads(created.stdout)
        before = datetime.now(UTC).isoformat()
        CliRunner().invoke(
            app, ["--url", url, "keys", "revoke", issued["key_id"], "-a", "acme", "--actor", "alice"]
        )

        now = CliRunner().invoke(app, ["--url", url, "verify", "-"], input=issued["secret"])
        then = CliRunner().invoke(app, ["--url", url, "verify", "--at", before, "-"], input=issued["secret"])
        listed = CliRunner().invoke(
            app, ["--url", url, "--json", "keys", "list", "-a", "acme", "--at", before]
        )

        assert now.exit_code == 1
        assert then.exit_code == 0
        assert [k["status"] for k in json.loads(listed.stdout)] == ["active"]

    def test_audit_export_writes_a_checkpoint_apart_from_the_entries(self, tmp_path: Path) -> None:
        """audit --checkpoint writes entries alone to stdout and a checkpoint that verifies them."""
        url = f"sqlite:///{tmp_path / 'kl.db'}"
        CliRunner().invoke(
            app, ["--url", url, "keys", "create", "-a", "acme", "--actor", "alice", "--name", "One"]
        )
        CliRunner().invoke(
            app, ["--url", url, "keys", "create", "-a", "acme", "--actor", "bob", "--name", "Two"]
        )
        checkpoint = tmp_path / "checkpoint.json"

        result = CliRunner().invoke(
            app, ["--url", url, "audit", "--format", "jsonl", "--checkpoint", str(checkpoint)]
        )
        export = tmp_path / "audit.jsonl"
        export.write_text(result.stdout)

        assert result.exit_code == 0
        assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == [
            "KeyCreated",
            "KeyCreated",
        ]
        assert verify_export(export, json.loads(checkpoint.read_text())).ok

    def test_an_export_refuses_a_limit(self, tmp_path: Path) -> None:
        """audit --checkpoint with --limit is bad input (exit 2): an export takes every entry."""
        url = f"sqlite:///{tmp_path / 'kl.db'}"

        result = CliRunner().invoke(
            app,
            ["--url", url, "audit", "--format", "jsonl", "--limit", "5", "--checkpoint", str(tmp_path / "c")],
        )

        assert result.exit_code == 2

    def test_report_and_rebuild(self, tmp_path: Path) -> None:
        """report shows the account's findings and rebuild reports the position it reached."""
        url = f"sqlite:///{tmp_path / 'kl.db'}"
        CliRunner().invoke(
            app, ["--url", url, "keys", "create", "-a", "acme", "--actor", "alice", "--name", "One"]
        )

        report = CliRunner().invoke(app, ["--url", url, "--json", "report", "-a", "acme"])
        rebuilt = CliRunner().invoke(app, ["--url", url, "--json", "rebuild"])

        assert report.exit_code == 0
        assert json.loads(report.stdout)["keys_per_creator"] == {"alice": 1}
        assert json.loads(report.stdout)["working_keys_of_revoked_creators"] == 0
        assert json.loads(rebuilt.stdout) == {"rebuilt_to_position": 1}


class TestUsage:
    @pytest.mark.parametrize(
        "command",
        [(), ("keys",), ("keys", "create"), ("keys", "regenerate"), ("verify",), ("sweep",), ("audit",)],
    )
    def test_help_shows_flags_without_a_bool_metavar(self, cli: Cli, command: tuple[str, ...]) -> None:
        """--help lists flags (--json, --grace/--immediate, --help) bare, never as '<bool>'."""
        result = cli(*command, "--help")

        assert result.exit_code == 0
        assert "--help" in result.stdout
        assert "<bool>" not in result.output

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (("--bogus",), "--bogus"),
            (("keys", "create", "--actor", "alice", "--name", "x", "--bogus"), "--bogus"),
            (("nope",), "nope"),
            (("keys", "create", "--name", "x"), "--actor"),
            (("audit", "--format", "xml"), "--format"),
        ],
    )
    def test_a_usage_mistake_is_one_error_line_and_exit_2(
        self, cli: Cli, args: tuple[str, ...], named: str
    ) -> None:
        """An unknown option or command, or a missing or bad value, is one 'error:' line and exit 2."""
        result = cli(*args)

        assert result.exit_code == 2
        line = one_error_line(result)
        assert line.startswith("error: ")
        assert named in line
        assert result.stdout == ""

    def test_a_usage_mistake_with_json_is_one_json_error_line(self, cli: Cli) -> None:
        """With --json, a usage mistake is one JSON error object on stderr, exit 2."""
        result = cli("--json", "keys", "create", "--bogus")

        assert result.exit_code == 2
        error = json.loads(one_error_line(result))
        assert error["error"] == "UsageError"
        assert "--bogus" in error["message"]


def database_dump(tmp_path: Path) -> list[str]:
    """Every statement that recreates the test's SQLite ledger, rows included."""
    with sqlite3.connect(tmp_path / "keyledger.db") as db:
        dump = list(db.iterdump())
    db.close()
    return dump


class TestCheckpoints:
    def test_checkpoint_prints_json_that_check_against_accepts(self, cli: Cli, tmp_path: Path) -> None:
        """`checkpoint` prints the ledger's checkpoint as JSON on stdout alone, with a note
        on stderr; `check --against` a file holding it passes."""
        create(cli, "Shipping")
        create(cli, "Billing")

        result = cli("checkpoint")
        (tmp_path / "cp.json").write_text(result.stdout, encoding="utf-8")
        checked = cli("check", "--against", str(tmp_path / "cp.json"))

        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert set(data) == {"position", "taken_at", "accounts"}
        assert data["position"] == 2
        assert list(data["accounts"]) == ["acme"]
        assert data["accounts"]["acme"]["version"] == 2
        assert "keep it outside" in one_error_line(result)
        assert checked.exit_code == 0, checked.output
        assert checked.stdout.startswith("ok: 2 events checked")

    def test_json_checkpoint_is_one_line_of_the_same_checkpoint(self, cli: Cli) -> None:
        """With --json the checkpoint is one JSON line, the same as without but for its time."""
        create(cli)

        plain = json.loads(cli("checkpoint").stdout)
        result = cli("--json", "checkpoint")

        assert result.exit_code == 0
        assert len(result.stdout.splitlines()) == 1
        one_line = json.loads(result.stdout)
        assert {**one_line, "taken_at": None} == {**plain, "taken_at": None}

    def test_check_against_a_cut_ledger_fails_naming_the_account(self, cli: Cli, tmp_path: Path) -> None:
        """The newest event deleted and the views rebuilt passes the plain check, but
        `check --against` the earlier checkpoint exits 1 naming the account."""
        create(cli, "Shipping")
        create(cli, "Billing")
        (tmp_path / "cp.json").write_text(cli("checkpoint").stdout, encoding="utf-8")
        with sqlite3.connect(tmp_path / "keyledger.db") as db:
            db.execute("DELETE FROM stored_events WHERE rowid = (SELECT max(rowid) FROM stored_events)")
        db.close()
        assert cli("rebuild").exit_code == 0

        plain = cli("check")
        result = cli("check", "--against", str(tmp_path / "cp.json"))
        as_json = cli("--json", "check", "--against", str(tmp_path / "cp.json"))

        assert plain.exit_code == 0, plain.output
        assert result.exit_code == 1
        assert result.stdout.startswith("FAILED: account 'acme' holds 1 event(s), fewer than the 2")
        assert "integrity check failed: account 'acme'" in one_error_line(result)
        assert as_json.exit_code == 1
        assert json.loads(as_json.stdout)["ok"] is False
        assert "'acme'" in json.loads(as_json.stdout)["reason"]

    @pytest.mark.parametrize(
        "content",
        ["not json\n", "{}\n", '{"position": -1, "taken_at": "2026-01-05T09:00:00Z", "accounts": {}}\n'],
        ids=["not JSON", "empty object", "negative position"],
    )
    def test_a_malformed_checkpoint_file_exits_2_and_records_nothing(
        self, cli: Cli, tmp_path: Path, content: str
    ) -> None:
        """A file that is not a checkpoint is one error line and exit 2, with nothing
        checked and nothing written to the ledger."""
        create(cli)
        (tmp_path / "cp.json").write_text(content, encoding="utf-8")
        before = database_dump(tmp_path)

        result = cli("check", "--against", str(tmp_path / "cp.json"))

        assert result.exit_code == 2
        assert "is not a keyledger checkpoint" in one_error_line(result)
        assert result.stdout == ""
        assert database_dump(tmp_path) == before

    def test_an_exports_checkpoint_is_named_for_what_it_is(self, cli: Cli, tmp_path: Path) -> None:
        """An audit export's checkpoint given to `check --against` is refused as such (exit 2)."""
        create(cli)
        export, point = str(tmp_path / "a.jsonl"), str(tmp_path / "x.json")
        exported = cli("audit", "--format", "jsonl", "-o", export, "--checkpoint", point)

        result = cli("--json", "check", "--against", point)

        assert exported.exit_code == 0, exported.output
        assert result.exit_code == 2
        error = json.loads(one_error_line(result))
        assert error["error"] == "InvalidInput"
        assert "audit export's checkpoint" in error["message"]

    def test_a_missing_checkpoint_file_exits_2(self, cli: Cli, tmp_path: Path) -> None:
        """A checkpoint path that cannot be read is one error line and exit 2."""
        result = cli("check", "--against", str(tmp_path / "missing.json"))

        assert result.exit_code == 2
        assert "cannot read" in one_error_line(result)
