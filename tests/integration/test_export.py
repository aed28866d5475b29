"""Exporting the audit trail, and proving an export offline.

An export is JSON Lines (one ``AuditEntry`` per line, nothing else) or CSV, and comes
with a checkpoint (length and rolling head) kept apart from the file. ``verify_export``
checks a file against its checkpoint without the ledger: an untouched export is ``ok``;
an edited, deleted, swapped, added, truncated or garbled line makes it fail at that line
(1-based), and it returns that report rather than raising. The tests tamper with copies
of real exports from SQLite and from PostgreSQL, whose positions may have gaps.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

import keyledger
from keyledger import Actor, AuditEntry, InvalidInput, Ledger, Permission
from keyledger.export import Checkpoint, ExportReport, verify_export
from keyledger.testing import ManualClock


@dataclass
class Export:
    """A ledger with a recorded history, its audit trail and one export of it."""

    ledger: Ledger
    entries: list[AuditEntry]
    path: Path
    checkpoint: Checkpoint
    secrets: list[str]

    def line_of(self, action: str, key_name: str | None = None) -> int:
        """The 1-based line of the first entry with this action (and key name)."""
        for number, entry in enumerate(self.entries, start=1):
            if entry.action == action and (key_name is None or entry.key_name == key_name):
                return number
        raise AssertionError(f"no {action} of {key_name}")


def record_history(ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor) -> list[str]:
    """Keys in two accounts through every kind of event; returns every secret issued."""
    gina = Actor(user_id="gina", account="globex", permissions={Permission.INTEGRATION})
    issued = [
        ledger.create_key(alice, name="Shipping", purpose='labels, "quoted"\nand a second line'),
        ledger.create_key(alice, name="Billing", application="Stripe"),
        ledger.create_key(bob, name="Bob sync"),
        ledger.create_key(gina, name="CRM"),
    ]
    shipping, billing, bob_sync, crm = (key.key_id for key in issued)
    clock.advance(minutes=5)
    issued.append(ledger.regenerate_key(alice, shipping, mode="grace"))
    issued.append(ledger.regenerate_key(alice, billing, mode="immediate"))
    issued.append(ledger.regenerate_key(bob, bob_sync, mode="grace"))
    clock.advance(hours=13)
    assert ledger.expire_grace() == 2
    ledger.revoke_key(alice, billing, reason="rotated")
    ledger.revoke_user_access(admin, "bob")
    issued.append(ledger.regenerate_key(gina, crm, mode="grace"))
    ledger.restore_user_access(admin, "bob")
    issued.append(ledger.create_key(alice, name="Reports"))
    return [key.secret.get_secret_value() for key in issued]


def export_of(ledger: Ledger, secrets: list[str], path: Path, **options: object) -> Export:
    checkpoint = ledger.export_audit(path, **options)  # type: ignore[arg-type]
    filters = {k: v for k, v in options.items() if k != "format"}
    entries = ledger.audit(limit=10_000, **filters)  # type: ignore[arg-type]
    return Export(ledger=ledger, entries=entries, path=path, checkpoint=checkpoint, secrets=secrets)


@pytest.fixture
def history(
    sqlite_url: str,
    open_ledger: Callable[..., Ledger],
    clock: ManualClock,
    alice: Actor,
    bob: Actor,
    admin: Actor,
) -> tuple[Ledger, list[str]]:
    ledger = open_ledger(sqlite_url)
    return ledger, record_history(ledger, clock, alice, bob, admin)


@pytest.fixture
def jsonl(history: tuple[Ledger, list[str]], tmp_path: Path) -> Export:
    """The whole audit trail of the SQLite history, as JSON Lines."""
    return export_of(*history, tmp_path / "audit.jsonl")


@pytest.fixture
def csv_export(history: tuple[Ledger, list[str]], tmp_path: Path) -> Export:
    """The whole audit trail of the SQLite history, as CSV."""
    return export_of(*history, tmp_path / "audit.csv", format="csv")


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def tampered(original: Path, lines: list[str], name: str = "tampered.jsonl") -> Path:
    copy = original.with_name(name)
    copy.write_text("".join(lines), encoding="utf-8")
    return copy


def edit_field(line: str, field: str, change: Callable[[str], str]) -> str:
    """``line`` with the text value of ``"field":"..."`` changed, found exactly once."""
    pattern = re.compile(rf'"{field}":"([^"]*)"')
    [match] = pattern.finditer(line)
    edited = change(match.group(1))
    assert len(edited) == len(match.group(1))
    assert edited != match.group(1)
    return line[: match.start(1)] + edited + line[match.end(1) :]


def next_char(text: str, index: int = -1) -> str:
    """``text`` with one character moved on by one (a one-byte edit of ASCII text)."""
    index %= len(text)
    return text[:index] + chr(ord(text[index]) + 1) + text[index + 1 :]


def one_second_later(timestamp: str) -> str:
    """An ISO timestamp ending ``:SSZ`` with its last second digit changed."""
    last = timestamp[-2]
    return timestamp[:-2] + ("1" if last == "0" else "0") + timestamp[-1]


def failed_at(report: ExportReport, line: int) -> bool:
    return not report.ok and report.first_bad_line == line and report.lines_checked == line - 1


class TestTheExport:
    """An export holds every entry, one AuditEntry per JSON line and nothing else."""

    def test_an_untouched_export_verifies(self, jsonl: Export) -> None:
        """verify_export accepts the export with its checkpoint, having checked every line."""
        report = verify_export(jsonl.path, jsonl.checkpoint)

        assert report.ok, report
        assert report.lines_checked == jsonl.checkpoint.length == len(jsonl.entries) == 14
        assert report.first_bad_line is None

    def test_each_line_is_exactly_one_audit_entry(self, jsonl: Export) -> None:
        """Every line parses as one AuditEntry equal to the ledger's, with no other field."""
        lines = lines_of(jsonl.path)

        parsed = [AuditEntry.model_validate_json(line) for line in lines]

        assert parsed == jsonl.entries
        assert all(line.endswith("}\n") and line.count("\n") == 1 for line in lines)
        assert all(set(json.loads(line)) == set(AuditEntry.model_fields) for line in lines)

    def test_the_export_holds_no_secret(self, jsonl: Export) -> None:
        """No secret ever issued appears in the export."""
        text = jsonl.path.read_text(encoding="utf-8")

        leaked = [secret for secret in jsonl.secrets if secret in text or secret[3:] in text]

        assert leaked == []
        assert len(jsonl.secrets) == 9

    def test_the_checkpoint_names_the_scope_and_filters(self, jsonl: Export, tmp_path: Path) -> None:
        """An export of everything is 'full', of one account 'account', otherwise 'filtered'."""
        ledger = jsonl.ledger

        account = ledger.export_audit(tmp_path / "acme.jsonl", account="acme")
        by_actor = ledger.export_audit(tmp_path / "alice.jsonl", actor="alice")

        assert (jsonl.checkpoint.scope, jsonl.checkpoint.filters) == ("full", {})
        assert (account.scope, account.filters) == ("account", {"account": "acme"})
        assert (by_actor.scope, by_actor.filters) == ("filtered", {"actor": "alice"})
        assert account.length == 12

    def test_an_export_takes_no_page_options(self, jsonl: Export, tmp_path: Path) -> None:
        """limit and after are refused: an export takes every matching entry."""
        with pytest.raises(InvalidInput):
            jsonl.ledger.export_audit(tmp_path / "page.jsonl", limit=5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            jsonl.ledger.export_audit(tmp_path / "page.jsonl", after=5)  # type: ignore[arg-type]

        assert not (tmp_path / "page.jsonl").exists()

    def test_verify_export_is_public(self) -> None:
        """The offline verifier is keyledger.verify_export."""
        assert getattr(keyledger, "verify_export", None) is verify_export
        assert "verify_export" in keyledger.__all__


class TestTheCheckpoint:
    """The checkpoint travels as JSON and binds the file."""

    def test_round_trips_as_json(self, jsonl: Export) -> None:
        """A checkpoint dumped to JSON and read back is equal, and still verifies the export."""
        text = jsonl.checkpoint.model_dump_json()

        restored = Checkpoint.model_validate_json(text)

        assert restored == jsonl.checkpoint
        assert verify_export(jsonl.path, restored).ok
        assert verify_export(jsonl.path, json.loads(text)).ok

    def test_another_exports_checkpoint_does_not_verify(self, jsonl: Export, tmp_path: Path) -> None:
        """An export does not verify against the checkpoint of a different export."""
        other = jsonl.ledger.export_audit(tmp_path / "acme.jsonl", account="acme")

        report = verify_export(jsonl.path, other)

        assert not report.ok

    def test_a_longer_checkpoint_reports_the_missing_lines(self, jsonl: Export) -> None:
        """A checkpoint counting one line more fails at the line that is missing."""
        longer = jsonl.checkpoint.model_copy(update={"length": jsonl.checkpoint.length + 1})

        report = verify_export(jsonl.path, longer)

        assert failed_at(report, jsonl.checkpoint.length + 1)


class TestAnEditedLine:
    """A one-byte edit of any field of line k fails at line k."""

    @pytest.mark.parametrize(
        ("field", "action", "key_name", "change"),
        [
            ("name", "KeyCreated", "Billing", next_char),
            ("actor", "KeyRevoked", "Billing", next_char),
            ("actor", "KeyCreated", "Bob sync", next_char),
            ("occurred_at", "KeyRegenerated", "Bob sync", one_second_later),
            ("occurred_at", "GraceExpired", None, one_second_later),
            ("recorded_at", "GraceExpired", None, one_second_later),
            ("key_name", "KeyRegenerated", "Shipping", next_char),
            ("key_name", "KeyCreated", "Reports", next_char),
            ("reason", "KeyRevoked", "Billing", next_char),
            ("hint", "KeyRegenerated", "CRM", next_char),
            ("grace_until", "KeyRegenerated", "Shipping", one_second_later),
        ],
    )
    def test_fails_at_the_edited_line(
        self, jsonl: Export, field: str, action: str, key_name: str | None, change: Callable[[str], str]
    ) -> None:
        """The verifier reports the edited line as the first bad one."""
        k = jsonl.line_of(action, key_name)
        lines = lines_of(jsonl.path)
        lines[k - 1] = edit_field(lines[k - 1], field, change)

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    @pytest.mark.parametrize("field", ["version", "previous_position"])
    def test_fails_at_a_line_whose_number_field_was_edited(self, jsonl: Export, field: str) -> None:
        """Editing the version or previous position of a middle line fails at that line."""
        k = jsonl.line_of("KeyRevoked")
        lines = lines_of(jsonl.path)
        record = json.loads(lines[k - 1])
        lines[k - 1] = lines[k - 1].replace(f'"{field}":{record[field]},', f'"{field}":{record[field] + 1},')

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    def test_fails_at_a_line_with_a_field_added(self, jsonl: Export) -> None:
        """A line carrying a field an audit entry does not have is not an audit entry."""
        k = jsonl.line_of("KeyRevoked")
        lines = lines_of(jsonl.path)
        lines[k - 1] = lines[k - 1].replace('{"position"', '{"approved_by":"mallory","position"', 1)

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report


class TestMissingMovedAndAddedLines:
    """A deleted, swapped, truncated or added line fails where the export stops being provable."""

    def test_a_deleted_middle_line_fails_at_its_number(self, jsonl: Export) -> None:
        """Deleting line k fails at k, the number the following line now has."""
        lines = lines_of(jsonl.path)
        k = 7
        del lines[k - 1]

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    def test_a_deleted_first_line_fails_at_one(self, jsonl: Export) -> None:
        """Deleting the first line fails at line 1."""
        lines = lines_of(jsonl.path)[1:]

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, 1), report

    def test_swapped_lines_fail_at_the_first_of_them(self, jsonl: Export) -> None:
        """Swapping lines k and k + 1 fails at k."""
        lines = lines_of(jsonl.path)
        k = 9
        lines[k - 1], lines[k] = lines[k], lines[k - 1]

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    def test_a_truncated_last_line_fails_at_the_length(self, jsonl: Export) -> None:
        """Removing the last line fails at the line the checkpoint counts last."""
        lines = lines_of(jsonl.path)[:-1]

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, jsonl.checkpoint.length), report

    def test_an_empty_file_fails_at_line_one(self, jsonl: Export) -> None:
        """An export emptied of every line fails at line 1."""
        report = verify_export(tampered(jsonl.path, []), jsonl.checkpoint)

        assert failed_at(report, 1), report

    def test_a_line_added_at_the_end_fails_after_the_length(self, jsonl: Export) -> None:
        """A line appended after the last fails at length + 1."""
        lines = lines_of(jsonl.path)
        lines.append(lines[-1])

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, jsonl.checkpoint.length + 1), report

    def test_a_line_repeated_in_the_middle_fails_at_the_copy(self, jsonl: Export) -> None:
        """A copy of line k inserted after it fails at k + 1."""
        lines = lines_of(jsonl.path)
        k = 4
        lines.insert(k, lines[k - 1])

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k + 1), report


class TestGarbage:
    """Lines that are not audit entries fail at their line, and never raise."""

    @pytest.mark.parametrize(
        "garbage",
        ["not json at all\n", "\n", "[1, 2, 3]\n", '{"position": 5}\n', "null\n", '{"position":\n'],
    )
    def test_a_garbage_line_in_place_of_line_k_fails_at_k(self, jsonl: Export, garbage: str) -> None:
        """Replacing line k with something that is not an audit entry fails at k."""
        lines = lines_of(jsonl.path)
        k = 6
        lines[k - 1] = garbage

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    def test_a_garbage_line_inserted_fails_at_it(self, jsonl: Export) -> None:
        """A non-JSON line inserted before line k fails at k."""
        lines = lines_of(jsonl.path)
        k = 3
        lines.insert(k - 1, "# reviewed by mallory\n")

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    @pytest.mark.parametrize("field", ["position", "version", "previous_position"])
    def test_a_number_written_as_text_fails_at_its_line(self, jsonl: Export, field: str) -> None:
        """A line whose number field is a JSON string fails at that line, without raising."""
        k = jsonl.line_of("KeyRevoked")
        lines = lines_of(jsonl.path)
        value = json.loads(lines[k - 1])[field]
        lines[k - 1] = lines[k - 1].replace(f'"{field}":{value},', f'"{field}":"{value}",', 1)

        report = verify_export(tampered(jsonl.path, lines), jsonl.checkpoint)

        assert failed_at(report, k), report

    def test_bytes_that_are_not_text_fail_at_their_line(self, jsonl: Export) -> None:
        """A line of bytes that are not UTF-8 fails at that line, without raising."""
        lines = [line.encode() for line in lines_of(jsonl.path)]
        k = 12
        lines[k - 1] = b"\xff\xfe\x00garbage\n"
        copy = jsonl.path.with_name("binary.jsonl")
        copy.write_bytes(b"".join(lines))

        report = verify_export(copy, jsonl.checkpoint)

        assert not report.ok
        assert report.first_bad_line == k, report


class TestFilteredExports:
    """An export filtered by key or actor proves its own lines."""

    @pytest.mark.parametrize("by", ["key_id", "actor"])
    def test_a_filtered_export_verifies(
        self, history: tuple[Ledger, list[str]], tmp_path: Path, by: str
    ) -> None:
        """An export by key or by actor verifies, with scope 'filtered'."""
        ledger, secrets = history
        value = ledger.keys("acme")[2].key_id if by == "key_id" else "alice"

        export = export_of(ledger, secrets, tmp_path / "filtered.jsonl", **{by: value})

        report = verify_export(export.path, export.checkpoint)
        assert report.ok, report
        assert report.lines_checked == export.checkpoint.length == len(export.entries)
        assert export.checkpoint.scope == "filtered"
        assert export.checkpoint.filters == {by: value}
        assert len(export.entries) == (4 if by == "key_id" else 6)

    def test_a_key_export_includes_the_user_removal_that_ended_it(
        self, history: tuple[Ledger, list[str]], tmp_path: Path
    ) -> None:
        """Bob's key exported by id ends with the removal of Bob's access."""
        ledger, secrets = history
        bob_sync = ledger.keys("acme")[2]

        export = export_of(ledger, secrets, tmp_path / "bob.jsonl", key_id=bob_sync.key_id)

        actions = [AuditEntry.model_validate_json(line).action for line in lines_of(export.path)]
        assert actions == ["KeyCreated", "KeyRegenerated", "GraceExpired", "UserAccessRevoked"]

    @pytest.mark.parametrize(
        ("field", "change"),
        [("actor", next_char), ("occurred_at", one_second_later), ("key_name", next_char)],
    )
    def test_an_edited_line_of_a_filtered_export_fails_at_it(
        self, history: tuple[Ledger, list[str]], tmp_path: Path, field: str, change: Callable[[str], str]
    ) -> None:
        """Editing a line of an export by actor fails at that line."""
        ledger, secrets = history
        export = export_of(ledger, secrets, tmp_path / "alice.jsonl", actor="alice")
        lines = lines_of(export.path)
        k = 4
        lines[k - 1] = edit_field(lines[k - 1], field, change)

        report = verify_export(tampered(export.path, lines), export.checkpoint)

        assert failed_at(report, k), report

    def test_an_edited_previous_position_of_a_filtered_export_fails(
        self, history: tuple[Ledger, list[str]], tmp_path: Path
    ) -> None:
        """An edited previous position fails a filtered export (at some line: the position
        it names lies outside the export)."""
        ledger, secrets = history
        export = export_of(ledger, secrets, tmp_path / "alice.jsonl", actor="alice")
        lines = lines_of(export.path)
        k = 4
        record = json.loads(lines[k - 1])
        before = f'"previous_position":{record["previous_position"]},'
        lines[k - 1] = lines[k - 1].replace(before, f'"previous_position":{record["previous_position"] - 1},')

        report = verify_export(tampered(export.path, lines), export.checkpoint)

        assert not report.ok, report

    def test_a_deleted_line_of_a_filtered_export_fails(
        self, history: tuple[Ledger, list[str]], tmp_path: Path
    ) -> None:
        """Deleting a line of a filtered export fails (at the end, against the checkpoint)."""
        ledger, secrets = history
        export = export_of(ledger, secrets, tmp_path / "alice.jsonl", actor="alice")
        lines = lines_of(export.path)
        del lines[2]

        report = verify_export(tampered(export.path, lines), export.checkpoint)

        assert not report.ok
        assert report.first_bad_line is not None


class TestAccountExports:
    """An export of one account proves every event of that account is there."""

    def test_a_deleted_line_of_an_account_export_fails_at_its_number(
        self, history: tuple[Ledger, list[str]], tmp_path: Path
    ) -> None:
        """Deleting line k of an account export fails at k."""
        ledger, secrets = history
        export = export_of(ledger, secrets, tmp_path / "acme.jsonl", account="acme")
        lines = lines_of(export.path)
        assert verify_export(export.path, export.checkpoint).ok
        k = 5
        del lines[k - 1]

        report = verify_export(tampered(export.path, lines), export.checkpoint)

        assert failed_at(report, k), report


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as source:
        return list(csv.reader(source))


def csv_copy(original: Path, rows: list[list[str]]) -> Path:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    copy = original.with_name("tampered.csv")
    copy.write_text(text.getvalue(), encoding="utf-8", newline="")
    return copy


class TestCsvExports:
    """A CSV export keeps every field and fails at the row that was tampered with."""

    def test_an_untouched_csv_export_verifies(self, csv_export: Export) -> None:
        """verify_export accepts the CSV export, one row per entry after the header."""
        rows = csv_rows(csv_export.path)

        report = verify_export(csv_export.path, csv_export.checkpoint)

        assert report.ok, report
        assert report.lines_checked == csv_export.checkpoint.length == len(csv_export.entries)
        assert rows[0] == list(AuditEntry.model_fields)
        assert len(rows) == len(csv_export.entries) + 1
        assert csv_export.checkpoint.format == "csv"

    def test_rows_hold_the_entries_fields(self, csv_export: Export) -> None:
        """Each row holds its entry's fields, details as JSON, quoting a multi-line purpose."""
        [header, *rows] = csv_rows(csv_export.path)

        records = [dict(zip(header, row, strict=True)) for row in rows]

        assert [int(r["position"]) for r in records] == [e.position for e in csv_export.entries]
        assert [r["chain"] for r in records] == [e.chain for e in csv_export.entries]
        assert json.loads(records[0]["details"])["purpose"] == 'labels, "quoted"\nand a second line'

    @pytest.mark.parametrize("column", ["actor", "key_name", "occurred_at", "chain"])
    def test_an_edited_row_fails_at_it(self, csv_export: Export, column: str) -> None:
        """A one-character edit of a field of row k fails at k."""
        rows = csv_rows(csv_export.path)
        k = csv_export.line_of("KeyRevoked")
        row = rows[k]
        index = rows[0].index(column)
        row[index] = one_second_later(row[index]) if column == "occurred_at" else next_char(row[index], 0)

        report = verify_export(csv_copy(csv_export.path, rows), csv_export.checkpoint)

        assert failed_at(report, k), report

    def test_a_deleted_row_fails_at_its_number(self, csv_export: Export) -> None:
        """Deleting row k fails at k."""
        rows = csv_rows(csv_export.path)
        k = 6
        del rows[k]

        report = verify_export(csv_copy(csv_export.path, rows), csv_export.checkpoint)

        assert failed_at(report, k), report

    def test_swapped_rows_fail_at_the_first_of_them(self, csv_export: Export) -> None:
        """Swapping rows k and k + 1 fails at k."""
        rows = csv_rows(csv_export.path)
        k = 10
        rows[k], rows[k + 1] = rows[k + 1], rows[k]

        report = verify_export(csv_copy(csv_export.path, rows), csv_export.checkpoint)

        assert failed_at(report, k), report

    def test_a_truncated_csv_fails_at_the_length(self, csv_export: Export) -> None:
        """Removing the last row fails at the row the checkpoint counts last."""
        rows = csv_rows(csv_export.path)[:-1]

        report = verify_export(csv_copy(csv_export.path, rows), csv_export.checkpoint)

        assert failed_at(report, csv_export.checkpoint.length), report

    def test_a_row_that_is_not_an_entry_fails_at_it(self, csv_export: Export) -> None:
        """A row with a position that is not a number fails at that row."""
        rows = csv_rows(csv_export.path)
        k = 3
        rows[k][0] = "three"

        report = verify_export(csv_copy(csv_export.path, rows), csv_export.checkpoint)

        assert failed_at(report, k), report


def consume_a_position(url: str) -> None:
    """Make PostgreSQL skip a notification id, as a rolled-back concurrent write does:
    insert a copy of an event at a version already taken, which fails on the unique key."""
    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    conninfo = urlunsplit(parts._replace(query=urlencode([])))
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        events = f"{schema}.keyledger_events"
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                f"INSERT INTO {events} (originator_id, originator_version, topic, state) "  # type: ignore[arg-type]
                f"SELECT originator_id, originator_version, topic, state FROM {events} "
                "ORDER BY notification_id LIMIT 1"
            )


class TestPostgresExports:
    """On PostgreSQL, where positions can skip, an export still verifies and still catches tampering."""

    @pytest.fixture
    def gapped(
        self,
        postgres_url: str,
        open_ledger: Callable[..., Ledger],
        clock: ManualClock,
        alice: Actor,
        bob: Actor,
        admin: Actor,
        tmp_path: Path,
    ) -> Export:
        """The history on PostgreSQL with a skipped position after its sixth event."""
        ledger = open_ledger(postgres_url)
        secrets = [ledger.create_key(alice, name=f"Early {n}").secret.get_secret_value() for n in range(6)]
        consume_a_position(postgres_url)
        secrets += record_history(ledger, clock, alice, bob, admin)
        return export_of(ledger, secrets, tmp_path / "audit.jsonl")

    def test_an_export_with_a_gap_in_positions_verifies(self, gapped: Export) -> None:
        """Positions skip one id; each line's previous position is the line before's, and it verifies."""
        positions = [e.position for e in gapped.entries]

        report = verify_export(gapped.path, gapped.checkpoint)

        assert report.ok, report
        assert report.lines_checked == len(positions) == 20
        assert positions[6] == positions[5] + 2
        assert [e.previous_position for e in gapped.entries] == [0, *positions[:-1]]

    def test_the_line_after_a_gap_is_still_checked(self, gapped: Export) -> None:
        """Deleting the line after the gap fails at its number."""
        lines = lines_of(gapped.path)
        k = 7
        del lines[k - 1]

        report = verify_export(tampered(gapped.path, lines), gapped.checkpoint)

        assert failed_at(report, k), report

    def test_an_edited_line_fails_at_it(self, gapped: Export) -> None:
        """A one-byte edit of an actor fails at its line."""
        lines = lines_of(gapped.path)
        k = 12
        lines[k - 1] = edit_field(lines[k - 1], "actor", next_char)

        report = verify_export(tampered(gapped.path, lines), gapped.checkpoint)

        assert failed_at(report, k), report


class TestSavedCheckpointsAndPlainReasons:
    """A checkpoint saved to a file is read from its path; a missing file and a format
    mismatch are reported in plain words."""

    def test_a_checkpoint_saved_to_a_file_is_read_from_its_path(self, jsonl: Export, tmp_path: Path) -> None:
        """verify_export takes the path of a checkpoint saved as JSON, as str or Path."""
        saved = tmp_path / "cp.json"
        saved.write_text(jsonl.checkpoint.model_dump_json(), encoding="utf-8")

        by_path = verify_export(jsonl.path, saved)
        by_str = verify_export(str(jsonl.path), str(saved))

        assert by_path.ok
        assert by_str == by_path

    def test_a_checkpoint_file_that_cannot_be_read_is_invalid_input(
        self, jsonl: Export, tmp_path: Path
    ) -> None:
        """A missing checkpoint file raises InvalidInput naming the checkpoint."""
        with pytest.raises(InvalidInput, match="invalid checkpoint: cannot read"):
            verify_export(jsonl.path, tmp_path / "missing.json")

    def test_the_ledgers_checkpoint_is_not_an_exports(self, jsonl: Export, tmp_path: Path) -> None:
        """A file holding the ledger's own checkpoint is refused as not an export's."""
        saved = tmp_path / "ledger-cp.json"
        saved.write_text(jsonl.ledger.checkpoint().model_dump_json(), encoding="utf-8")

        with pytest.raises(InvalidInput, match="does not hold the checkpoint of an audit export"):
            verify_export(jsonl.path, saved)

    def test_a_missing_export_file_is_reported_as_not_found(self, jsonl: Export, tmp_path: Path) -> None:
        """An export path with no file fails with 'file not found', at no line."""
        report = verify_export(tmp_path / "nothing.jsonl", jsonl.checkpoint)

        assert not report.ok
        assert report.reason is not None
        assert report.reason.startswith("file not found: ")
        assert (report.lines_checked, report.first_bad_line) == (0, None)

    def test_a_csv_export_against_a_jsonl_checkpoint_is_a_format_mismatch(
        self, jsonl: Export, csv_export: Export
    ) -> None:
        """Each format checked against the other's checkpoint says 'format mismatch' at line 1."""
        csv_as_jsonl = verify_export(csv_export.path, jsonl.checkpoint)
        jsonl_as_csv = verify_export(jsonl.path, csv_export.checkpoint)

        assert csv_as_jsonl.reason == "format mismatch: the checkpoint is of a jsonl export, the file is csv"
        assert jsonl_as_csv.reason == "format mismatch: the checkpoint is of a csv export, the file is jsonl"
        assert csv_as_jsonl.first_bad_line == jsonl_as_csv.first_bad_line == 1
