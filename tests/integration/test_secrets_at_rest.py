"""No secret, nor any long piece of one, is ever stored, logged, or shown.

The ledger keeps a SHA-256 digest and a hint (the prefix and the last 4 characters) of
each key. These tests issue a few hundred secrets and then look for every 16-character
piece of each secret's random part in everything the ledger leaves behind: the database
file and its write-ahead log, PostgreSQL rows, log output at DEBUG, and the values it
returns. Real secrets are also handed to calls that must refuse them (as a name, a user,
a key id, on a closed ledger, on the command line), and the errors are searched.
"""

from __future__ import annotations

import base64
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from keyledger import (
    Actor,
    AuditEntry,
    InvalidInput,
    IssuedKey,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    KeyView,
    Ledger,
    Permission,
    Principal,
    StoreUnavailable,
)
from keyledger.adapters.driving.cli import app as cli_app
from keyledger.domain import keys as keyformat
from keyledger.domain.keys import generate_key
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.integration.conftest import StoreTables

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KEYS = 200
POSTGRES_KEYS = 100
"""PostgreSQL writes are slower; the same scenario at half the size there."""
PIECE = 16
PREFIX = "kl"
RANDOM_LENGTH = 32
_ALNUM_RUN = re.compile(rb"[0-9A-Za-z]{%d,}" % PIECE)


def random_part(secret: str) -> str:
    """The 32 random characters of a key (between ``prefix_`` and the checksum)."""
    start = len(PREFIX) + 1
    return secret[start : start + RANDOM_LENGTH]


def pieces_of(secrets: Iterable[str]) -> set[bytes]:
    """Every 16-character piece of every secret's random part."""
    found: set[bytes] = set()
    for secret in secrets:
        part = random_part(secret).encode("ascii")
        found.update(part[i : i + PIECE] for i in range(len(part) - PIECE + 1))
    return found


def leaked(haystack: bytes | str, pieces: set[bytes]) -> set[str]:
    """The pieces that occur in ``haystack``.

    A piece is 16 base62 characters, so it can only sit inside a run of at least 16
    letters and digits; only those runs are searched.
    """
    data = haystack.encode("utf-8", "backslashreplace") if isinstance(haystack, str) else haystack
    hits: set[str] = set()
    for run in _ALNUM_RUN.finditer(data):
        text = run.group()
        hits.update(
            text[i : i + PIECE].decode()
            for i in range(len(text) - PIECE + 1)
            if text[i : i + PIECE] in pieces
        )
    return hits


def _flip(character: str) -> str:
    return "A" if character != "A" else "B"


def near_misses(secret: str) -> list[str]:
    """Credentials one slip away from ``secret``: each must fail to verify."""
    start = len(PREFIX) + 1
    one_off = secret[: start + 5] + _flip(secret[start + 5]) + secret[start + 6 :]
    return [
        one_off,
        secret[:-1] + _flip(secret[-1]),
        secret[:-1],
        secret + "0",
        "zz" + secret[len(PREFIX) :],
        f"Bearer {one_off}",
        "Basic " + base64.b64encode(f"{one_off}:".encode()).decode(),
        "Basic " + base64.b64encode(f"{secret}:password".encode()).decode(),
        "Basic " + base64.b64encode(f"user:{secret}".encode()).decode(),
        f"Token {secret}",
        f"Bearer {secret} extra",
        secret.swapcase(),
    ]


@dataclass
class Exposure:
    """Every secret issued, and everything the ledger showed or left behind meanwhile."""

    secrets: list[str] = field(default_factory=list)
    issued: list[IssuedKey] = field(default_factory=list)
    principals: list[Principal] = field(default_factory=list)
    near_miss_results: list[Principal | None] = field(default_factory=list)
    views: list[KeyView] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    ledger_repr: str = ""
    files_while_open: dict[str, bytes] = field(default_factory=dict)
    """The database file and its ``-wal`` and ``-shm`` files before the ledger closes."""
    files_after: dict[str, bytes] = field(default_factory=dict)
    """The same files after it closes (those that still exist)."""


def issue_and_use(
    ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor, keys: int = KEYS
) -> Exposure:
    """Create ``keys`` keys, regenerate each with grace (every tenth also at once), revoke
    some, remove Bob, let grace expire, and verify every secret and near miss."""
    seen = Exposure()

    def issue(key: IssuedKey) -> IssuedKey:
        seen.issued.append(key)
        seen.secrets.append(key.secret.get_secret_value())
        return key

    created = [
        issue(
            ledger.create_key(
                bob if index % 7 == 0 else alice,
                name=f"Key {index}",
                purpose="integration tests",
                application="Recurly",
            )
        )
        for index in range(keys)
    ]
    clock.advance(minutes=1)
    for index, key in enumerate(created):
        actor = bob if index % 7 == 0 else alice
        issue(ledger.regenerate_key(actor, key.key_id, mode="grace"))
        if index % 10 == 0:
            issue(ledger.regenerate_key(actor, key.key_id, mode="immediate"))
    for key in created[1:40:9]:
        ledger.revoke_key(alice, key.key_id, reason="rotated out")
    ledger.revoke_user_access(admin, "bob")

    seen.ledger_repr = repr(ledger)
    for secret in seen.secrets:
        for credential in (
            secret,
            f"Bearer {secret}",
            "Basic " + base64.b64encode(f"{secret}:".encode()).decode(),
        ):
            principal = ledger.verify(credential)
            if principal is not None:
                seen.principals.append(principal)
        seen.near_miss_results.extend(ledger.verify(miss) for miss in near_misses(secret))

    clock.advance(hours=13)
    ledger.expire_grace()
    seen.views = ledger.keys("acme")
    seen.audit = ledger.audit(limit=10_000)
    return seen


def rendered(seen: Exposure) -> list[str]:
    """``repr`` and ``str`` of every value the ledger returned."""
    values: list[object] = [*seen.issued, *seen.principals, *seen.views, *seen.audit]
    return [text for value in values for text in (repr(value), str(value))]


class TestTheDetector:
    """The search these tests rely on finds what it looks for."""

    def test_finds_a_planted_piece(self) -> None:
        """A 16-character piece of a secret's random part is found in surrounding bytes."""
        secret = "kl_" + "0123456789ABCDEFGHIJKLMNOPQRSTUV" + "abcdef"
        pieces = pieces_of([secret])

        found = leaked(b'{"note":"xx6789ABCDEFGHIJKLMNyy"}', pieces)
        missed = leaked(b'{"hint":"kl_...cdef","note":"6789ABCDEFGHIJK"}', pieces)

        assert found == {"6789ABCDEFGHIJKL", "789ABCDEFGHIJKLM", "89ABCDEFGHIJKLMN"}
        assert missed == set()


def expose_sqlite(url: str, clock: ManualClock, alice: Actor, bob: Actor, admin: Actor) -> Exposure:
    """The scenario on a SQLite file, with the bytes of the database files while the
    ledger is open and after it is closed."""
    database = Path(url.removeprefix("sqlite:///"))
    ledger = Ledger.open(url, clock=clock)
    try:
        seen = issue_and_use(ledger, clock, alice, bob, admin)
        seen.files_while_open = files_of(database)
    finally:
        ledger.close()
    seen.files_after = files_of(database)
    return seen


@pytest.fixture(scope="class")
def exposure(tmp_path_factory: pytest.TempPathFactory) -> Exposure:
    """The scenario on a SQLite file, run once for the tests of a class that only read it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('secrets') / 'keyledger.db'}"
    alice = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})
    bob = Actor(user_id="bob", account="acme", permissions={Permission.INTEGRATION})
    admin = Actor(
        user_id="root", account="acme", permissions={Permission.INTEGRATION, Permission.USER_MANAGEMENT}
    )
    return expose_sqlite(url, ManualClock(START), alice, bob, admin)


class TestSecretsOnSQLite:
    """A SQLite ledger keeps no secret in its files or answers."""

    def test_the_write_ahead_log_holds_no_secret_while_open(self, exposure: Exposure) -> None:
        """While the ledger is open, its database file and write-ahead log hold no piece of a secret."""
        pieces = pieces_of(exposure.secrets)

        found = {name: leaked(data, pieces) for name, data in exposure.files_while_open.items()}

        assert len(exposure.files_while_open.get("-wal", b"")) > 0, "the WAL exists while the ledger is open"
        assert found == {name: set() for name in exposure.files_while_open}

    def test_the_files_hold_no_secret_after_closing(self, exposure: Exposure) -> None:
        """After the ledger closes, the database file and any WAL hold no piece of a secret."""
        pieces = pieces_of(exposure.secrets)

        found = {name: leaked(data, pieces) for name, data in exposure.files_after.items()}

        assert len(exposure.files_after[""]) > 0
        assert found == {name: set() for name in exposure.files_after}

    def test_the_files_hold_the_history(self, exposure: Exposure) -> None:
        """The history is really in the files searched: every key id is there."""
        seen = exposure
        everything = b"".join(seen.files_after.values())

        missing = [key.key_id for key in seen.issued[:KEYS] if key.key_id.encode() not in everything]

        assert len(seen.secrets) == KEYS * 2 + KEYS // 10
        assert missing == []

    def test_returned_values_show_no_secret(self, exposure: Exposure) -> None:
        """``repr`` and ``str`` of issued keys, key views, audit entries and principals hide every secret."""
        seen = exposure

        found = leaked("\n".join([*rendered(seen), seen.ledger_repr]), pieces_of(seen.secrets))

        assert len(seen.principals) > KEYS
        assert len(seen.views) == KEYS
        assert len(seen.issued) == KEYS * 2 + KEYS // 10
        assert found == set()

    def test_audit_json_shows_no_secret(self, exposure: Exposure) -> None:
        """The JSON of every audit entry holds no piece of a secret."""
        seen = exposure

        found = leaked("\n".join(entry.model_dump_json() for entry in seen.audit), pieces_of(seen.secrets))

        assert len(seen.audit) > KEYS * 2
        assert found == set()

    def test_near_misses_fail_to_verify(self, exposure: Exposure) -> None:
        """Every credential one slip away from a real secret fails to verify."""
        seen = exposure

        accepted = [principal for principal in seen.near_miss_results if principal is not None]

        assert len(seen.near_miss_results) == len(seen.secrets) * len(near_misses(seen.secrets[0]))
        assert accepted == []


def files_of(database: Path) -> dict[str, bytes]:
    """The bytes of the database file and of its ``-wal`` and ``-shm`` files, where they exist."""
    found = {"": database.read_bytes()}
    for suffix in ("-wal", "-shm"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            found[suffix] = companion.read_bytes()
    return found


class TestSecretsInLogs:
    """Nothing the ledger logs, down to DEBUG, holds a secret."""

    def test_logs_show_no_secret(
        self,
        sqlite_url: str,
        clock: ManualClock,
        alice: Actor,
        bob: Actor,
        admin: Actor,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """DEBUG log output of every command, verification and near miss holds no piece of a secret."""
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="keyledger")

        seen = expose_sqlite(sqlite_url, clock, alice, bob, admin)

        text = caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)
        assert any(record.name == "keyledger" for record in caplog.records)
        assert leaked(text, pieces_of(seen.secrets)) == set()


class TestSecretsOnPostgreSQL:
    """A PostgreSQL ledger stores no secret in any event, snapshot or view."""

    def test_no_stored_row_holds_a_secret(
        self,
        postgres_url: str,
        store_tables: type[StoreTables],
        clock: ManualClock,
        alice: Actor,
        bob: Actor,
        admin: Actor,
    ) -> None:
        """No event's state, no snapshot and no other row in the ledger's schema holds a
        piece of a secret."""
        with Ledger.open(postgres_url, clock=clock) as ledger:
            seen = issue_and_use(ledger, clock, alice, bob, admin, keys=POSTGRES_KEYS)
            position = ledger.position
        tables = store_tables(postgres_url)

        rows = tables.rows()
        snapshots = tables.snapshot_states()
        contents = tables.table_contents()

        assert len(rows) == position
        assert len(snapshots) >= 1
        pieces = pieces_of(seen.secrets)
        haystack = b"\n".join([*(row.state + row.topic.encode() for row in rows), *snapshots])
        assert leaked(haystack, pieces) == set()
        found = {name: leaked(data, pieces) for name, data in contents.items()}
        assert found == {name: set() for name in contents}


@dataclass
class Given:
    """A ledger on a SQLite file with a working key and a revoked one, and who made them."""

    ledger: Ledger
    url: str
    alice: Actor
    admin: Actor
    key_id: str
    """The working key's id."""
    working: str
    revoked_key_id: str
    revoked: str

    @property
    def secrets(self) -> list[str]:
        return [self.working, self.revoked]


@pytest.fixture
def given(open_ledger: Callable[..., Ledger], sqlite_url: str, alice: Actor, admin: Actor) -> Given:
    ledger = open_ledger(sqlite_url)
    working = ledger.create_key(alice, name="Working")
    revoked = ledger.create_key(alice, name="Revoked")
    ledger.revoke_key(alice, revoked.key_id)
    return Given(
        ledger=ledger,
        url=sqlite_url,
        alice=alice,
        admin=admin,
        key_id=working.key_id,
        working=working.secret.get_secret_value(),
        revoked_key_id=revoked.key_id,
        revoked=revoked.secret.get_secret_value(),
    )


def closed(ledger: Ledger) -> Ledger:
    """``ledger``, closed: every call but ``verify`` then raises ``StoreUnavailable``."""
    ledger.close()
    return ledger


def error_texts(error: BaseException) -> str:
    """Everything an error shows or keeps: ``str``, ``repr``, arguments and attributes of
    it and of every error chained to it (``__cause__`` and ``__context__``, even a
    context suppressed by ``raise ... from None``), and the traceback a log handler prints."""
    texts = ["".join(traceback.format_exception(error))]
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(getattr(current, "__dict__", {}))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


def log_texts(caplog: pytest.LogCaptureFixture) -> str:
    """The captured log output and every captured record's attributes."""
    return caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)


def shown(text: str, secrets: list[str]) -> set[str]:
    """The pieces of ``secrets`` in ``text``: any 16 characters of a secret's random part,
    so the whole secret and its random body without the prefix are found too."""
    return leaked(text, pieces_of(secrets))


Refusal = tuple[type[KeyLedgerError], str | None, Callable[[Given], object]]

REFUSALS: dict[str, Refusal] = {
    "as a key's name": (InvalidInput, "name", lambda g: g.ledger.create_key(g.alice, name=g.working)),
    "inside a name too long": (
        InvalidInput,
        "name",
        lambda g: g.ledger.create_key(g.alice, name=g.working * 3),
    ),
    "inside a name with a control character": (
        InvalidInput,
        "name",
        lambda g: g.ledger.create_key(g.alice, name=g.working + "\x00"),
    ),
    "as a purpose": (
        InvalidInput,
        "purpose",
        lambda g: g.ledger.create_key(g.alice, name="Pasted", purpose=g.working),
    ),
    "as an application": (
        InvalidInput,
        "application",
        lambda g: g.ledger.create_key(g.alice, name="Pasted", application=g.working),
    ),
    "as a revocation's reason": (
        InvalidInput,
        "reason",
        lambda g: g.ledger.revoke_key(g.alice, g.key_id, reason=f"leaked: {g.working}"),
    ),
    "as the user to remove": (
        InvalidInput,
        "user_id",
        lambda g: g.ledger.revoke_user_access(g.admin, g.working),
    ),
    "as the user to restore": (
        InvalidInput,
        "user_id",
        lambda g: g.ledger.restore_user_access(g.admin, g.working),
    ),
    "as the acting user": (
        InvalidInput,
        "user_id",
        lambda g: g.ledger.create_key(
            Actor(user_id=g.working, account="acme", permissions={Permission.INTEGRATION}), name="Pasted"
        ),
    ),
    "as the acting account": (
        InvalidInput,
        "account",
        lambda g: g.ledger.create_key(
            Actor(user_id="alice", account=g.working, permissions={Permission.INTEGRATION}), name="Pasted"
        ),
    ),
    "as a key id to revoke": (KeyNotFound, None, lambda g: g.ledger.revoke_key(g.alice, g.working)),
    "as a key id to regenerate": (
        KeyNotFound,
        None,
        lambda g: g.ledger.regenerate_key(g.alice, g.working, mode="grace"),
    ),
    "as an audit action": (InvalidInput, "action", lambda g: g.ledger.audit(action=g.working)),
    "as an audit position": (InvalidInput, "after", lambda g: g.ledger.audit(after=g.working)),  # type: ignore[arg-type]
    "revoked, verified at an instant of the wrong type": (
        InvalidInput,
        "at",
        lambda g: g.ledger.verify(g.revoked, at="yesterday"),  # type: ignore[arg-type]
    ),
    "revoked, verified with strict of the wrong type": (
        InvalidInput,
        "strict",
        lambda g: g.ledger.verify(g.revoked, strict="yes"),  # type: ignore[arg-type]
    ),
    "as the instant to verify a revoked key at": (
        InvalidInput,
        "at",
        lambda g: g.ledger.verify(g.revoked, at=g.working),  # type: ignore[arg-type]
    ),
    "as a key id, on a closed ledger": (
        StoreUnavailable,
        None,
        lambda g: closed(g.ledger).revoke_key(g.alice, g.working),
    ),
    "as an account, on a closed ledger": (StoreUnavailable, None, lambda g: closed(g.ledger).keys(g.working)),
}


class TestSecretsInErrors:
    """A refusal never shows or keeps a secret handed to it: not in its message, not in an
    error chained to it, not in what is logged."""

    @pytest.mark.parametrize(("error", "field", "call"), REFUSALS.values(), ids=REFUSALS.keys())
    def test_errors_show_no_secret(
        self,
        given: Given,
        caplog: pytest.LogCaptureFixture,
        error: type[KeyLedgerError],
        field: str | None,
        call: Callable[[Given], object],
    ) -> None:
        """A real secret passed where it does not belong is refused with an error whose
        text, chained errors and log records (down to DEBUG) hold no piece of it."""
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="keyledger")

        with pytest.raises(KeyLedgerError) as refused:
            call(given)

        assert type(refused.value) is error, refused.value
        assert getattr(refused.value, "field", None) == field
        assert shown(error_texts(refused.value), given.secrets) == set()
        assert shown(log_texts(caplog), given.secrets) == set()

    @pytest.mark.parametrize(
        ("error", "call"),
        [
            (StoreUnavailable, lambda g: closed(g.ledger).create_key(g.alice, name="Drawn")),
            (StoreUnavailable, lambda g: closed(g.ledger).regenerate_key(g.alice, g.key_id, mode="grace")),
            (KeyAlreadyRevoked, lambda g: g.ledger.regenerate_key(g.alice, g.revoked_key_id, mode="grace")),
        ],
        ids=["created on a closed ledger", "regenerated on a closed ledger", "regenerated, key revoked"],
    )
    def test_a_secret_drawn_before_a_refusal_is_not_shown(
        self,
        given: Given,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
        error: type[KeyLedgerError],
        call: Callable[[Given], object],
    ) -> None:
        """A command refused after it drew its new secret (the store closed, the key
        revoked) shows no piece of that secret, in the error or the log."""
        drawn: list[str] = []

        def drawing(prefix: str) -> str:
            drawn.append(generate_key(prefix))
            return drawn[-1]

        monkeypatch.setattr(keyformat, "generate_key", drawing)
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="keyledger")

        with pytest.raises(KeyLedgerError) as refused:
            call(given)

        assert type(refused.value) is error, refused.value
        assert len(drawn) == 1, "the command draws its secret before it is refused"
        assert shown(error_texts(refused.value), drawn) == set()
        assert shown(log_texts(caplog), drawn) == set()

    def test_a_secret_given_as_a_permission_is_not_kept(self, given: Given) -> None:
        """A secret passed as a permission is refused without keeping it in a chained error."""
        with pytest.raises(InvalidInput) as refused:
            Actor(user_id="alice", account="acme", permissions=[given.working])

        assert refused.value.field == "permissions"
        assert shown(error_texts(refused.value), given.secrets) == set()


COMMAND_LINE_REFUSALS: dict[str, tuple[int, Callable[[Given], list[str]]]] = {
    "a key's name": (2, lambda g: ["keys", "create", "--actor", "alice", "-a", "acme", "--name", g.working]),
    "a revocation's reason": (
        2,
        lambda g: ["keys", "revoke", g.key_id, "--actor", "alice", "-a", "acme", "--reason", g.working],
    ),
    "a key id to revoke": (2, lambda g: ["keys", "revoke", g.working, "--actor", "alice", "-a", "acme"]),
    "a key id to show": (2, lambda g: ["keys", "show", g.working, "-a", "acme"]),
    "the user to remove": (2, lambda g: ["users", "revoke", g.working, "--actor", "root", "-a", "acme"]),
    "the acting user": (2, lambda g: ["keys", "create", "--actor", g.working, "-a", "acme", "--name", "x"]),
    "an extra argument": (2, lambda g: ["keys", "show", g.key_id, g.working, "-a", "acme"]),
    "a revoked key to verify": (1, lambda g: ["verify", g.revoked]),
    "the instant to verify at": (2, lambda g: ["verify", g.revoked, "--at", g.working]),
}


class TestSecretsOnTheCommandLine:
    """A command refused with a secret among its arguments does not print it back."""

    @pytest.mark.parametrize(
        ("code", "argv"), COMMAND_LINE_REFUSALS.values(), ids=COMMAND_LINE_REFUSALS.keys()
    )
    def test_errors_show_no_secret(
        self,
        given: Given,
        caplog: pytest.LogCaptureFixture,
        code: int,
        argv: Callable[[Given], list[str]],
    ) -> None:
        """The command exits with its refusal's code, and neither its output nor the log
        holds a piece of the secret in its arguments."""
        given.ledger.close()
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="keyledger")

        result = CliRunner().invoke(cli_app, ["--url", given.url, *argv(given)])

        assert result.exit_code == code, result.output
        assert result.stderr.splitlines()[-1].startswith("error: ")  # after a warning, if any
        assert shown(f"{result.output}\n{result.stderr}", given.secrets) == set()
        assert shown(log_texts(caplog), given.secrets) == set()
