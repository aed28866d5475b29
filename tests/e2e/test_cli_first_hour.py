"""What a newcomer meets in the first hour of the ``keyledger`` command line (issue 14),
through typer's runner on a real SQLite file: exit codes, stdout for data, stderr for
notes, warnings and errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from keyledger import Actor, Ledger, Permission
from keyledger.adapters.driving import cli_review
from keyledger.adapters.driving.cli import app
from keyledger.export import ExportCheckpoint

Cli = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(sqlite_url: str) -> Cli:
    """Run one command on the test's SQLite ledger; ``input`` feeds stdin, ``env`` sets variables."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["--url", sqlite_url, *args], input=input, env=env)

    return run


def create(cli: Cli, name: str = "Shipping", account: str = "acme") -> tuple[str, str]:
    """Create a key; returns (key id, secret)."""
    result = cli("--json", "keys", "create", "-a", account, "--actor", "alice", "--name", name)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    return data["key_id"], data["secret"]


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


class TestTheDemo:
    """Item 1: the demo runs on a ledger of its own, with recorded time going forward."""

    def test_the_demo_leaves_the_ledger_of_url_untouched(self, cli: Cli, sqlite_url: str) -> None:
        """`keyledger --url X demo` writes nothing to X and names the ledger it used."""
        create(cli)

        result = cli("demo")

        assert result.exit_code == 0, result.output
        assert "integrity check: ok=True" in result.stdout
        assert "a ledger of its own" in result.stdout
        assert "--url and KEYLEDGER_URL are not used" in result.stderr
        with Ledger.open(sqlite_url) as ledger:
            assert [a.account for a in ledger.accounts()] == ["acme"]
            assert len(ledger.audit()) == 1

    def test_the_demo_writes_a_new_file_in_time_order(self, cli: Cli, tmp_path: Path) -> None:
        """demo --file writes a new ledger whose recorded times never go back, and says how to inspect it."""
        file = tmp_path / "demo.db"

        result = cli("demo", "--file", str(file))

        assert result.exit_code == 0, result.output
        assert f"keyledger --url 'sqlite:///{file}' audit" in " ".join(result.stdout.split())
        with Ledger.open(f"sqlite:///{file}") as ledger:
            recorded = [entry.recorded_at for entry in ledger.audit(limit=1000)]
            assert recorded == sorted(recorded)
            assert ledger.check_integrity().ok
            assert [key.status for key in ledger.keys("demo")] == ["revoked"] * 3

    def test_the_demo_refuses_a_file_that_exists(self, cli: Cli, tmp_path: Path) -> None:
        """demo --file naming an existing file exits 2 and leaves it as it was."""
        file = tmp_path / "mine.db"
        file.write_bytes(b"precious")

        result = cli("demo", "--file", str(file))

        assert result.exit_code == 2
        assert "exists: the demo runs on a new ledger of its own" in one_error_line(result)
        assert file.read_bytes() == b"precious"


class TestFutureInstants:
    """Item 3: --at a future instant is bad input."""

    @pytest.mark.parametrize("command", [("verify", "-"), ("keys", "list", "-a", "acme")])
    def test_a_future_instant_exits_2(self, cli: Cli, command: tuple[str, ...]) -> None:
        """verify --at and keys list --at a future instant exit 2 saying it is in the future."""
        _, secret = create(cli)
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        result = cli(*command, "--at", future, input=secret)

        assert result.exit_code == 2
        assert "in the future" in one_error_line(result)
        assert result.stdout == ""


class TestOpeningErrors:
    """Items 5 and 6: a missing directory and bad variables are bad input, named as such."""

    def test_a_ledger_in_a_missing_directory_exits_2_saying_so(self, tmp_path: Path) -> None:
        """A SQLite path in a directory that does not exist exits 2 naming the directory."""
        url = f"sqlite:///{tmp_path / 'nodir' / 'x.db'}"

        result = CliRunner().invoke(app, ["--url", url, "keys", "list"])

        assert result.exit_code == 2
        assert one_error_line(result) == (
            f"error: invalid url: the directory '{tmp_path / 'nodir'}' does not exist: create it, "
            "or give another path"
        )
        assert not (tmp_path / "nodir").exists()

    @pytest.mark.parametrize(
        ("variable", "value", "expected"),
        [
            (
                "KEYLEDGER_GRACE_SECONDS",
                "2",
                "must be a number of seconds from 60 to 604800 (1 minute to 7 days)",
            ),
            ("KEYLEDGER_GRACE_SECONDS", "soon", "must be a number of seconds from 60 to 604800"),
            ("KEYLEDGER_KEY_PREFIX", "Acme", "must be lowercase letters and digits"),
        ],
    )
    def test_a_bad_variable_is_named(self, cli: Cli, variable: str, value: str, expected: str) -> None:
        """A bad KEYLEDGER_GRACE_SECONDS or KEYLEDGER_KEY_PREFIX exits 2 naming the variable and the range."""
        result = cli("keys", "list", env={variable: value})

        assert result.exit_code == 2
        line = one_error_line(result)
        assert line.startswith(f"error: invalid {variable}: ")
        assert expected in line


class TestKeyIds:
    """Item 7: a malformed key id is bad input (exit 2); a key given as one is called a key."""

    @pytest.mark.parametrize("command", ["show", "regenerate", "revoke"])
    def test_a_malformed_key_id_exits_2(self, cli: Cli, command: str) -> None:
        """keys show/regenerate/revoke notakey exits 2 saying what a key id looks like."""
        extra = {"show": [], "regenerate": ["--actor", "alice", "--grace"], "revoke": ["--actor", "alice"]}

        result = cli("keys", command, "notakey", "-a", "acme", *extra[command])

        assert result.exit_code == 2
        assert "invalid key_id: must be a key id: key_ and 16 letters and digits" in one_error_line(result)

    @pytest.mark.parametrize("command", ["show", "revoke"])
    def test_a_key_given_as_a_key_id_is_called_a_key_and_not_echoed(self, cli: Cli, command: str) -> None:
        """A secret where a key id belongs exits 2 with 'that is a key, not a key id', and is not echoed."""
        key_id, secret = create(cli)
        extra = [] if command == "show" else ["--actor", "alice"]

        result = cli("keys", command, secret, "-a", "acme", *extra)

        assert result.exit_code == 2
        assert "that is a key, not a key id" in one_error_line(result)
        assert secret not in result.output
        assert json.loads(cli("--json", "keys", "show", key_id, "-a", "acme").stdout)["status"] == "active"


class TestJsonAnywhere:
    """Item 8: --json after the command works as before it; usage names arguments in capitals."""

    @pytest.mark.parametrize(
        "command",
        [("keys", "list", "-a", "acme"), ("accounts",), ("report", "-a", "acme"), ("audit",)],
    )
    def test_json_after_the_command_equals_json_before_it(self, cli: Cli, command: tuple[str, ...]) -> None:
        """`keyledger CMD --json` prints what `keyledger --json CMD` prints."""
        create(cli)

        before = cli("--json", *command)
        after = cli(*command, "--json")

        assert after.exit_code == 0, after.output
        normalise = (lambda d: {**d, "generated_at": None}) if command[0] == "report" else (lambda d: d)
        assert normalise(json.loads(after.stdout)) == normalise(json.loads(before.stdout))

    def test_json_after_the_command_makes_errors_json(self, cli: Cli) -> None:
        """An error of a command given --json after it is one JSON object on stderr."""
        result = cli("keys", "show", "key_0000000000000000", "-a", "acme", "--json")

        assert result.exit_code == 1
        assert json.loads(one_error_line(result))["error"] == "KeyNotFound"

    @pytest.mark.parametrize(
        ("command", "usage"),
        [(("verify",), "verify [OPTIONS] CREDENTIAL"), (("keys", "show"), "show [OPTIONS] KEY_ID")],
    )
    def test_usage_names_arguments_in_capitals(self, cli: Cli, command: tuple[str, ...], usage: str) -> None:
        """Usage lines read CREDENTIAL and KEY_ID, not {credential}, and help lists --json."""
        result = cli(*command, "--help")

        assert usage in result.stdout
        assert "{" not in result.stdout.splitlines()[1]
        assert "--json" in result.stdout


@contextmanager
def exported(cli: Cli, tmp_path: Path, fmt: str = "jsonl") -> Iterator[tuple[Path, Path]]:
    create(cli, "One")
    create(cli, "Two")
    export, checkpoint = tmp_path / f"audit.{fmt}", tmp_path / f"cp-{fmt}.json"
    result = cli("audit", "--format", fmt, "-o", str(export), "--checkpoint", str(checkpoint))
    assert result.exit_code == 0, result.output
    yield export, checkpoint


class TestVerifyExport:
    """Item 9: keyledger verify-export FILE --checkpoint CP, exit 0 or 1."""

    def test_an_untouched_export_exits_0(self, cli: Cli, tmp_path: Path) -> None:
        """An export with its checkpoint verifies: exit 0 and the entries proved."""
        with exported(cli, tmp_path) as (export, checkpoint):
            result = cli("verify-export", str(export), "--checkpoint", str(checkpoint))
            as_json = cli("verify-export", str(export), "--checkpoint", str(checkpoint), "--json")

        assert result.exit_code == 0, result.output
        assert result.stdout == f"ok: {export}: 2 entries proved against the checkpoint\n"
        assert json.loads(as_json.stdout)["ok"] is True

    def test_an_edited_export_exits_1_naming_the_line(self, cli: Cli, tmp_path: Path) -> None:
        """An export edited after it was written exits 1 naming the first bad line."""
        with exported(cli, tmp_path) as (export, checkpoint):
            export.write_text(export.read_text().replace('"Two"', '"Tw0"'))

            result = cli("verify-export", str(export), "--checkpoint", str(checkpoint))

        assert result.exit_code == 1
        assert result.stdout.startswith("FAILED at line 2: ")
        assert "export verification failed at line 2" in one_error_line(result)

    def test_a_missing_export_says_file_not_found(self, cli: Cli, tmp_path: Path) -> None:
        """A path with no export exits 1 saying 'file not found', with no line number."""
        with exported(cli, tmp_path) as (_, checkpoint):
            result = cli("verify-export", str(tmp_path / "gone.jsonl"), "--checkpoint", str(checkpoint))

        assert result.exit_code == 1
        assert (
            result.stdout == f"FAILED: file not found: {tmp_path / 'gone.jsonl'} (0 lines proved before it)\n"
        )

    def test_a_csv_export_against_a_jsonl_checkpoint_is_a_format_mismatch(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        """The CSV export checked against the JSON Lines export's checkpoint says 'format mismatch'."""
        with exported(cli, tmp_path, "jsonl") as (_, jsonl_checkpoint):
            csv_export = tmp_path / "audit.csv"
            cli("audit", "--format", "csv", "-o", str(csv_export), "--checkpoint", str(tmp_path / "c.json"))

            result = cli("verify-export", str(csv_export), "--checkpoint", str(jsonl_checkpoint))

        assert result.exit_code == 1
        assert "format mismatch: the checkpoint is of a jsonl export, the file is csv" in result.stdout

    def test_a_checkpoint_that_is_not_an_exports_exits_2(self, cli: Cli, tmp_path: Path) -> None:
        """The ledger's own checkpoint given as an export's exits 2."""
        with exported(cli, tmp_path) as (export, _):
            ledger_checkpoint = tmp_path / "ledger-cp.json"
            ledger_checkpoint.write_text(cli("checkpoint").stdout)

            result = cli("verify-export", str(export), "--checkpoint", str(ledger_checkpoint))

        assert result.exit_code == 2
        assert "does not hold the checkpoint of an audit export" in one_error_line(result)

    def test_the_checkpoint_file_is_an_export_checkpoint(self, cli: Cli, tmp_path: Path) -> None:
        """What audit --checkpoint writes reads back as an ExportCheckpoint."""
        with exported(cli, tmp_path) as (_, checkpoint):
            point = ExportCheckpoint.model_validate_json(checkpoint.read_text())

        assert point.length == 2


class TestVerifyWarnings:
    """Item 10: a credential given as an argument works, with a warning on stderr."""

    def test_a_key_as_an_argument_warns_on_stderr(self, cli: Cli) -> None:
        """verify KEY exits 0 and warns that the argument lands in shell history."""
        _, secret = create(cli)

        result = cli("verify", secret)

        assert result.exit_code == 0
        assert one_error_line(result).startswith(
            "warning: a credential given as an argument lands in shell history"
        )
        assert secret not in result.stderr

    def test_a_key_from_stdin_does_not_warn(self, cli: Cli) -> None:
        """verify - reads the key from stdin and warns about nothing."""
        _, secret = create(cli)

        result = cli("verify", "-", input=secret)

        assert result.exit_code == 0
        assert result.stderr == ""

    def test_the_warning_is_json_with_json(self, cli: Cli) -> None:
        """With --json the warning is one JSON object on stderr."""
        _, secret = create(cli)

        result = cli("--json", "verify", secret)

        assert json.loads(one_error_line(result))["warning"] == "CredentialInArguments"


class TestLastUse:
    """Item 11: keys list and keys show tell when each key was last used."""

    def test_the_tables_show_last_use(self, cli: Cli) -> None:
        """After a verification, the list and the key's detail show its last use; an unused key shows '-'."""
        used_id, secret = create(cli, "Used")
        unused_id, _ = create(cli, "Unused")
        cli("verify", "-", input=secret)
        used_at = json.loads(cli("--json", "keys", "show", used_id, "-a", "acme").stdout)["last_used_at"]

        listed = cli("keys", "list", "-a", "acme")
        shown = cli("keys", "show", used_id, "-a", "acme")
        unused = cli("keys", "show", unused_id, "-a", "acme")

        assert used_at is not None
        used = datetime.fromisoformat(used_at).astimezone(UTC)
        assert "last used" in listed.stdout
        rows = {
            line.split()[0]: line for line in listed.stdout.splitlines() if line.strip().startswith("key_")
        }
        assert rows[used_id].split()[-2:] == [f"{used:%Y-%m-%d}", f"{used:%H:%M:%S}Z"]
        assert rows[unused_id].rstrip().endswith("-")
        assert "last used" in shown.stdout
        assert used_at.replace("+00:00", "Z") in shown.stdout
        assert "never" in unused.stdout


class TestAccounts:
    """Item 12: keyledger accounts, and a note when a command meets an account without events."""

    def test_accounts_lists_each_account_with_its_key_counts(self, cli: Cli) -> None:
        """accounts lists every account by name with its events, keys and active keys."""
        key_id, _ = create(cli, "One", account="acme")
        create(cli, "Two", account="acme")
        create(cli, "Other", account="globex")
        cli("keys", "revoke", key_id, "-a", "acme", "--actor", "alice")

        table = cli("accounts")
        data = json.loads(cli("--json", "accounts").stdout)

        assert table.exit_code == 0
        assert [
            line.split() for line in table.stdout.splitlines() if line.strip().startswith(("acme", "globex"))
        ] == [
            ["acme", "3", "2", "1"],
            ["globex", "1", "1", "1"],
        ]
        assert data == [
            {"account": "acme", "events": 3, "keys": 2, "active_keys": 1},
            {"account": "globex", "events": 1, "keys": 1, "active_keys": 1},
        ]

    def test_an_empty_ledger_has_no_accounts(self, cli: Cli) -> None:
        """accounts on a new ledger says it has none."""
        result = cli("accounts")

        assert result.exit_code == 0
        assert result.stdout == "the ledger has no accounts yet\n"

    def test_a_typo_in_an_account_is_noted_on_stderr(self, cli: Cli) -> None:
        """A command on an account without events says so on stderr; one on a known account does not."""
        create(cli, account="acme")

        typo = cli("keys", "list", "-a", "acmee")
        known = cli("keys", "list", "-a", "acme")
        created = cli("keys", "create", "-a", "initech", "--actor", "alice", "--name", "First")
        again = cli("keys", "create", "-a", "initech", "--actor", "alice", "--name", "Second")

        assert typo.exit_code == 0
        assert "account 'acmee' has no events" in typo.stderr
        assert "keyledger accounts" in typo.stderr
        assert "has no events" not in known.stderr
        assert "account 'initech' is new: this command started it" in created.stderr
        assert "is new" not in again.stderr


class TestProgressAndDocs:
    """Item 14: results print after the progress bar is gone; make clean removes every file."""

    @pytest.mark.parametrize(("command", "result_line"), [("check", "ok: "), ("rebuild", "rebuilt every")])
    def test_the_result_is_printed_after_the_progress_bar_ends(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch, command: str, result_line: str
    ) -> None:
        """check and rebuild print their result once the bar has stopped, not under it."""
        create(cli)
        events: list[str] = []

        @contextmanager
        def recording_bar(description: str) -> Iterator[Callable[[int, int], None]]:
            events.append("bar shown")
            yield lambda done, total: None
            events.append("bar gone")

        monkeypatch.setattr(cli_review, "progress_bar", recording_bar)
        original = cli_review.render.Output.line
        monkeypatch.setattr(
            cli_review.render.Output, "line", lambda self, text: (events.append(text), original(self, text))
        )

        result = cli(command)

        assert result.exit_code == 0, result.output
        printed = next(i for i, event in enumerate(events) if event.startswith(result_line))
        assert events.index("bar gone") < printed

    def test_make_clean_removes_every_file_the_default_ledger_writes(self, tmp_path: Path) -> None:
        """Each file a ledger at ./keyledger.db leaves beside it is one `make clean` removes."""
        with Ledger.open(f"sqlite:///{tmp_path / 'keyledger.db'}") as ledger:
            ledger.create_key(Actor("alice", "acme", {Permission.INTEGRATION}), name="Shipping")
            written = sorted(path.name for path in tmp_path.iterdir())
        clean = subprocess.run(
            ["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()

        assert "keyledger.db.lock" in written
        assert [name for name in written if name not in clean] == []

    @pytest.mark.parametrize("name", ["fastapi_service", "flask_service"])
    def test_the_example_services_take_a_port(
        self, name: str, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
    ) -> None:
        """--port N, else PORT, else 8000; the instructions use the port chosen."""
        monkeypatch.setenv("KEYLEDGER_URL", sqlite_url)
        spec = importlib.util.spec_from_file_location(f"port_{name}", ROOT / "examples" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            ports = [
                module.chosen_port(["--port", "9001"], {"PORT": "9002"}),
                module.chosen_port([], {"PORT": "9002"}),
                module.chosen_port([], {}),
            ]
            text = module.instructions(9001)
        finally:
            module.ledger.close()

        assert ports == [9001, 9002, 8000]
        assert "http://127.0.0.1:9001/orders" in text

    def test_the_readme_documents_the_report_thresholds(self) -> None:
        """The README names report()'s thresholds and the CLI's --stale-days and --unused-days."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")

        for name in ("stale_after=", "unused_after=", "--stale-days", "--unused-days", "keyledger accounts"):
            assert name in readme
