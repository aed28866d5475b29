"""Issue 6, point 5: whatever a caller presents to ``verify``, to the ASGI and WSGI
middleware or to the CLI, nothing raises and nothing but an issued, working key gets in.

Hypothesis generates random text, bytes and objects, oversized values, wrong encodings
and near misses of real keys (one character changed, dropped, added or swapped, a wrong
or recomputed checksum, another prefix, another case, retired and revoked secrets), bare
and inside ``Basic`` and ``Bearer`` credentials, and working secrets with something added
around them. An answer that lets a credential in must be one of the spellings the
credential grammar accepts of a working secret of exactly that key (see :func:`spells`).
(atheris is not used: it is not among the project's dependencies; hypothesis covers the
same inputs here.)
"""

from __future__ import annotations

import asyncio
import base64
import gc
import re
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyledger import Actor, Ledger, Permission, Principal
from keyledger.adapters.driving.asgi import PRINCIPAL_KEY
from keyledger.adapters.driving.asgi import ApiKeyMiddleware as AsgiMiddleware
from keyledger.adapters.driving.cli import app as cli_app
from keyledger.adapters.driving.wsgi import ApiKeyMiddleware as WsgiMiddleware
from keyledger.testing import ManualClock

if TYPE_CHECKING:
    from tests.reliability.conftest import Sizes, Tally

POINT = 5
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class Keys:
    """A ledger with working and dead secrets, and what the tests learned of it."""

    ledger: Ledger
    url: str
    working: dict[str, str]
    """Working secret -> its key id."""
    dead: list[str]
    """Secrets that were issued and no longer work (retired at once, or revoked)."""
    tried: int = 0
    refused: int = 0
    admitted: list[tuple[Any, Principal]] = field(default_factory=list)

    def judge(self, credential: object, principal: Principal | None) -> None:
        """Count one answer; an admission is kept for the test to check."""
        self.tried += 1
        if principal is None:
            self.refused += 1
        else:
            self.admitted.append((credential, principal))

    def wrongly_admitted(self) -> list[str]:
        """Admissions whose credential is not an accepted spelling of a working secret of that key."""
        return [
            repr(credential)[:80]
            for credential, principal in self.admitted
            if not any(
                spells(credential, secret) and key_id == principal.key_id
                for secret, key_id in self.working.items()
            )
        ]


MAX_CREDENTIAL = 1024
"""The longest credential the grammar reads; anything longer is refused unread."""
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
"""The ASCII characters that count as whitespace around a credential and after its scheme."""


def spelling(secret: str) -> re.Pattern[str]:
    """Every credential the grammar accepts for ``secret``, and nothing else: the key
    itself, ``Bearer <key>`` or ``Basic base64(<key>:)`` (the key as user name, an empty
    password), the scheme in any case followed by one space, and any ASCII whitespace
    around the whole and after that space.

    Written from the grammar's rules, not with the ledger's parser. ``<key>:`` of a
    ``kl`` key is 42 bytes, a multiple of 3, so its base64 has no padding and exactly one
    spelling.
    """
    basic = base64.b64encode(f"{secret}:".encode("ascii")).decode("ascii")
    space = f"[{re.escape(WHITESPACE)}]*"
    key = re.escape(secret)
    return re.compile(
        rf"{space}(?:{key}|(?i:bearer) {space}{key}|(?i:basic) {space}{re.escape(basic)}){space}", re.ASCII
    )


def spells(credential: object, secret: str) -> bool:
    """Whether ``credential`` is exactly one of the spellings of ``secret`` the credential
    grammar accepts: text, ASCII, at most :data:`MAX_CREDENTIAL` characters, matching
    :func:`spelling`. Bytes, a secret inside other text, padding that is not whitespace,
    another scheme or a password are not."""
    return (
        isinstance(credential, str)
        and len(credential) <= MAX_CREDENTIAL
        and credential.isascii()
        and spelling(secret).fullmatch(credential) is not None
    )


def checksum(head: str) -> str:
    number, digits = zlib.crc32(head.encode("ascii")), []
    for _ in range(6):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Five keys on a SQLite file: one plain, one regenerated with grace (both secrets
    work), one regenerated at once and one revoked (their old secrets are dead), one created
    by a user whose access was then revoked."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'keyledger.db'}"
    clock = ManualClock()
    alice = Actor(user_id="alice", account="acme", permissions={Permission.INTEGRATION})
    bob = Actor(user_id="bob", account="acme", permissions={Permission.INTEGRATION})
    root = Actor(user_id="root", account="acme", permissions=set(Permission))
    with Ledger.open(url, clock=clock) as ledger:
        plain, graced, immediate, revoked = (ledger.create_key(alice, name=f"k{i}") for i in range(4))
        removed = ledger.create_key(bob, name="bob's")
        again = ledger.regenerate_key(alice, graced.key_id, mode="grace")
        renewed = ledger.regenerate_key(alice, immediate.key_id, mode="immediate")
        ledger.revoke_key(alice, revoked.key_id)
        ledger.revoke_user_access(root, "bob")
        working = {k.secret.get_secret_value(): k.key_id for k in (plain, graced, again, renewed)}
        dead = [k.secret.get_secret_value() for k in (immediate, revoked, removed)]
        yield Keys(ledger, url, working, dead)


def near_misses(keys: Keys) -> st.SearchStrategy[str]:
    """Credentials one slip from a working secret, or dead ones, bare or wrapped."""
    secret = st.sampled_from(sorted(keys.working))

    @st.composite
    def slipped(draw: st.DrawFn) -> str:
        key = draw(secret)
        kind = draw(
            st.sampled_from(
                ["change", "drop", "add", "swap", "checksum", "valid checksum", "prefix", "case", "dead"]
            )
        )
        at = draw(st.integers(0, len(key) - 1))
        if kind == "change":
            other = draw(st.characters().filter(lambda c: c != key[at]))
            return key[:at] + other + key[at + 1 :]
        if kind == "drop":
            return key[:at] + key[at + 1 :]
        if kind == "add":
            return key[:at] + draw(st.characters()) + key[at:]
        if kind == "swap":
            at = min(at, len(key) - 2)
            swapped = key[:at] + key[at + 1] + key[at] + key[at + 2 :]
            return swapped if swapped != key else swapped + "x"
        if kind == "checksum":
            check = draw(st.text(BASE62, min_size=6, max_size=6).filter(lambda c: c != key[-6:]))
            return key[:-6] + check
        if kind == "valid checksum":  # well-formed, but not a key anyone was given
            at = draw(st.integers(3, len(key) - 7))
            head = key[:at] + draw(st.sampled_from(BASE62).filter(lambda c: c != key[at])) + key[at + 1 : -6]
            return head + checksum(head)
        if kind == "prefix":
            return draw(st.sampled_from(["kk", "KL", "k1", "kl_live", "acme", ""])) + key[2:]
        if kind == "case":
            letters = [i for i, c in enumerate(key) if c.isalpha()]
            i = letters[at % len(letters)]
            return key[:i] + key[i].swapcase() + key[i + 1 :]
        return draw(st.sampled_from(keys.dead))

    @st.composite
    def wrapped(draw: st.DrawFn) -> str:
        key = draw(slipped())
        how = draw(st.sampled_from(["bare", "bearer", "basic", "basic password", "basic user"]))
        if how == "bare":
            return key
        if how == "bearer":
            return draw(st.sampled_from(["Bearer ", "bearer  ", "BEARER\t"])) + key
        if how == "basic":
            return "Basic " + base64.b64encode(f"{key}:".encode("utf-8", "surrogatepass")).decode()
        if how == "basic password":  # the real key pasted as the password
            real = draw(secret)
            return "Basic " + base64.b64encode(f"{key}:{real}".encode("utf-8", "surrogatepass")).decode()
        real = draw(secret)
        return "Basic " + base64.b64encode(f"user:{real}".encode()).decode()

    return wrapped()


def basic(secret: str) -> str:
    """``secret`` as HTTP Basic user name with an empty password."""
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


JUNK = BASE62 + "_-:.=+/;,'\"<>()[]{}@\x00\x7f" + WHITESPACE


def padded(keys: Keys) -> st.SearchStrategy[str]:
    """A working secret, bare or wrapped, with text added before or after it, around the
    whole credential or inside the Basic user name: only whitespace around the whole (or
    after the scheme) leaves a spelling the grammar accepts."""
    secret = st.sampled_from(sorted(keys.working))
    junk = st.text(alphabet=st.sampled_from(JUNK), max_size=6)

    @st.composite
    def around(draw: st.DrawFn) -> str:
        key, before, after = draw(secret), draw(junk), draw(junk)
        where = draw(st.sampled_from(["bare", "bearer", "after bearer", "basic", "basic user", "scheme"]))
        if where == "bare":
            return before + key + after
        if where == "bearer":
            return before + f"Bearer {key}" + after
        if where == "after bearer":
            return f"Bearer {before}{key}{after}"
        if where == "basic":
            return before + basic(key) + after
        if where == "basic user":
            return basic(before + key + after)
        return (
            draw(st.sampled_from(["Bearer", "Basic", "Token", "Bearer:", "bearer;"])) + before + key + after
        )

    return around()


def oversized(keys: Keys) -> st.SearchStrategy[str]:
    """Huge values: padding around a working secret, or a secret repeated."""
    secret = st.sampled_from(sorted(keys.working))
    size = st.integers(1025, 2_000_000)
    return st.one_of(
        st.builds(lambda s, n: s + " " * n, secret, size),
        st.builds(lambda s, n: "Bearer " + s + "A" * n, secret, size),
        st.builds(lambda s, n: s * (n // len(s) + 1), secret, size),
        st.builds(lambda n: "A" * n, size),
    )


def wrong_encodings(keys: Keys) -> st.SearchStrategy[object]:
    """A working secret in the wrong clothes: UTF-16, full-width, bytes, with NULs."""
    secret = st.sampled_from(sorted(keys.working))
    return st.one_of(
        secret.map(lambda s: s.encode("utf-16").decode("latin-1")),
        secret.map(lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)),
        secret.map(lambda s: s.encode()),
        secret.map(lambda s: "\x00".join(s)),
        secret.map(lambda s: "Basic " + base64.b64encode(f"{s}:".encode("utf-16")).decode()),
        secret.map(lambda s: "Basic " + base64.urlsafe_b64encode(f"{s}:".encode()).decode().rstrip("=")),
    )


def anything() -> st.SearchStrategy[object]:
    return st.one_of(
        st.text(),
        st.binary(),
        st.none(),
        st.integers(),
        st.floats(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        st.text(alphabet=st.sampled_from(BASE62 + "_ :="), min_size=30, max_size=60),
    )


def hostile(keys: Keys) -> st.SearchStrategy[object]:
    return st.one_of(anything(), near_misses(keys), padded(keys), oversized(keys), wrong_encodings(keys))


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


def spellings(secret: str) -> dict[str, bool]:
    """Credentials around ``secret``, each with whether the grammar accepts it."""
    return {
        secret: True,
        f"Bearer {secret}": True,
        f"bEaReR {secret}": True,
        basic(secret): True,
        f"BASIC {basic(secret)[6:]}": True,
        f" \t{secret}\r\n": True,
        f"\x1cBearer \x0b {secret}\x1f": True,
        f"Basic \t{basic(secret)[6:]} ": True,
        f"x{secret}": False,
        f"{secret}x": False,
        f"{secret}.": False,
        f'"{secret}"': False,
        f"<{secret}>": False,
        f"{secret};": False,
        f"{secret}\x00": False,
        f"\xa0{secret}": False,
        f"Bearer x{secret}": False,
        f"Bearer {secret} extra": False,
        f"Bearer\t{secret}": False,
        f"Bearer:{secret}": False,
        f"Token {secret}": False,
        f"Bearer Bearer {secret}": False,
        basic("x" + secret): False,
        basic(secret + "x"): False,
        "Basic " + base64.b64encode(f"{secret}:password".encode()).decode(): False,
        "Basic " + base64.b64encode(f"{secret}".encode()).decode(): False,
        f"{secret} {secret}": False,
        secret + " " * 1024: False,
    }


class TestTheOracle:
    """The oracle the fuzz tests judge admissions with accepts exactly the spellings of a
    key the credential grammar accepts."""

    SECRET = "kl_" + "0123456789ABCDEFGHIJKLMNOPQRSTUV" + "abcdef"

    def test_accepts_exactly_the_grammars_spellings(self) -> None:
        """The key, ``Bearer`` and ``Basic`` (any case, whitespace around) are accepted;
        the key inside other text, another scheme or a password is not."""
        table = spellings(self.SECRET)

        judged = {credential: spells(credential, self.SECRET) for credential in table}

        assert judged == table

    def test_refuses_what_is_not_text(self) -> None:
        """The key as bytes, or in a list, is no spelling of it."""
        assert not spells(self.SECRET.encode(), self.SECRET)
        assert not spells([self.SECRET], self.SECRET)
        assert spells(self.SECRET, self.SECRET)


class TestVerify:
    """``Ledger.verify`` answers every input without raising, and admits only working keys."""

    def test_a_working_key_verifies_in_exactly_the_grammars_spellings(self, keys: Keys) -> None:
        """Each credential around a working secret verifies if and only if the grammar accepts it."""
        secret = sorted(keys.working)[0]
        table = spellings(secret)

        verified = {credential: keys.ledger.verify(credential) is not None for credential in table}

        assert verified == table

    def test_the_canonical_forms_of_working_keys_verify(self, keys: Keys) -> None:
        """A working secret verifies bare, as Bearer and as Basic with an empty password."""
        forms = [
            form
            for secret in keys.working
            for form in (
                secret,
                f"Bearer {secret}",
                "Basic " + base64.b64encode(f"{secret}:".encode()).decode(),
            )
        ]

        verified = [keys.ledger.verify(form) for form in forms]

        assert all(principal is not None for principal in verified)

    def test_hostile_input_never_raises_and_never_admits_a_key_not_issued(
        self, keys: Keys, sizes: Sizes, tally: Tally
    ) -> None:
        """Random, oversized, mis-encoded and near-miss credentials are refused."""
        keys.tried = keys.refused = 0
        keys.admitted.clear()

        @fuzz(sizes.hostile_examples)
        @given(credential=hostile(keys))
        def check(credential: object) -> None:
            keys.judge(credential, keys.ledger.verify(credential))

        check()

        wrong = keys.wrongly_admitted()
        tally(
            POINT,
            "verify: hostile credentials refused or rightly admitted",
            "sqlite",
            keys.tried,
            keys.tried - len(wrong),
        )
        assert keys.tried >= sizes.hostile_examples
        assert wrong == []

    def test_huge_credentials_are_refused_without_copying_them(self, keys: Keys, tally: Tally) -> None:
        """Refusing a 20 MB credential, and 10,000 hostile ones, allocates next to nothing."""
        huge = "Bearer " + next(iter(keys.working)) + "A" * 20_000_000
        small = [f"Basic {'x' * (i % 900)}" for i in range(10_000)]
        gc.collect()
        tracemalloc.start()

        try:
            refused = [keys.ledger.verify(huge) for _ in range(20)]
            refused += [keys.ledger.verify(credential) for credential in small]
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        tally(
            POINT,
            "verify: huge credentials refused in bounded memory",
            "sqlite",
            len(refused),
            refused.count(None),
        )
        assert refused == [None] * len(refused)
        assert peak < 1_000_000
        assert current < 100_000


async def asgi_call(middleware: Any, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Call the middleware with ``scope``; the messages sent and the principal the app saw."""
    sent: list[dict[str, Any]] = []
    seen: list[Any] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope.get(PRINCIPAL_KEY))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await AsgiMiddleware(inner, middleware)(scope, receive, send)
    return sent, seen[0] if seen else None


def as_header(value: object) -> bytes:
    """Any generated value as the bytes of a header value."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else repr(value)).encode("utf-8", "surrogatepass")


def headers(keys: Keys) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """Header lists as a hostile client can make a server hand over."""
    values = st.one_of(
        st.binary(max_size=300),
        hostile(keys).map(as_header),
        padded(keys).map(as_header),
        st.sampled_from(sorted(keys.working)).map(str.encode),
        st.integers(8_000, 200_000).map(lambda n: b"Bearer " + b"\xff" * n),
    )
    names = st.sampled_from([b"authorization", b"authorization", b"x-api-key", b"cookie"])
    return st.lists(st.tuples(names, values), max_size=4)


class TestMiddleware:
    """The ASGI and WSGI middleware answer hostile requests with 401, never an exception."""

    def test_asgi_lets_in_only_working_keys(self, keys: Keys, sizes: Sizes, tally: Tally) -> None:
        """HTTP and WebSocket scopes with hostile headers get 401 or a close; only a working
        key's principal reaches the app."""
        keys.tried = keys.refused = 0
        keys.admitted.clear()
        loop = asyncio.new_event_loop()
        answered: list[bool] = []

        @fuzz(sizes.middleware_examples)
        @given(
            kind=st.sampled_from(["http", "websocket"]),
            header_list=headers(keys),
            extensions=st.sampled_from([None, {}, {"websocket.http.response": {}}]),
        )
        def check(kind: str, header_list: list[tuple[bytes, bytes]], extensions: Any) -> None:
            scope = {"type": kind, "path": "/orders", "headers": header_list, "extensions": extensions}
            sent, principal = loop.run_until_complete(asgi_call(keys.ledger, scope))
            # The credential is the one Authorization value, as text; a repeated one is none.
            values = [value.decode("latin-1") for name, value in header_list if name == b"authorization"]
            keys.judge(values[0] if len(values) == 1 else None, principal)
            refusals = [m for m in sent if m.get("status") == 401 or m["type"] == "websocket.close"]
            answered.append(principal is not None or len(refusals) == 1)

        try:
            check()
        finally:
            loop.close()

        wrong = keys.wrongly_admitted()
        tally(
            POINT,
            "ASGI: hostile requests refused or rightly admitted",
            "sqlite",
            keys.tried,
            keys.tried - len(wrong),
        )
        assert keys.tried >= sizes.middleware_examples
        assert keys.admitted
        assert all(answered)
        assert wrong == []

    def test_wsgi_lets_in_only_working_keys(self, keys: Keys, sizes: Sizes, tally: Tally) -> None:
        """Environs with hostile or missing Authorization get 401; only a working key's
        principal reaches the app."""
        keys.tried = keys.refused = 0
        keys.admitted.clear()
        statuses: list[str] = []

        def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [])
            return [b"ok"]

        middleware = WsgiMiddleware(inner, keys.ledger)

        @fuzz(sizes.middleware_examples)
        @given(header=st.one_of(st.none(), headers(keys).map(lambda h: h[0][1] if h else b"")))
        def check(header: bytes | None) -> None:
            environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/orders"}
            if header is not None:
                environ["HTTP_AUTHORIZATION"] = header.decode("latin-1")
            middleware(environ, lambda status, headers: statuses.append(status))
            keys.judge(environ.get("HTTP_AUTHORIZATION"), environ.get(PRINCIPAL_KEY))

        check()

        wrong = keys.wrongly_admitted()
        tally(
            POINT,
            "WSGI: hostile requests refused or rightly admitted",
            "sqlite",
            keys.tried,
            keys.tried - len(wrong),
        )
        assert len(statuses) == keys.tried >= sizes.middleware_examples
        assert statuses.count("401 Unauthorized") == keys.refused
        assert keys.admitted
        assert wrong == []


class TestCommandLine:
    """``keyledger verify`` refuses hostile credentials with a one-line error, never a crash."""

    def test_arguments_and_stdin_are_refused_cleanly(self, keys: Keys, sizes: Sizes, tally: Tally) -> None:
        """Hostile text as the argument, or hostile bytes on stdin, exits 1 or 2 with an
        error that is not an internal one, and never verifies."""
        runner = CliRunner()
        outcomes: list[tuple[int, bool]] = []

        @fuzz(sizes.cli_examples)
        @given(
            credential=st.one_of(
                near_misses(keys),
                st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
                st.binary(max_size=200),
            )
        )
        def check(credential: str | bytes) -> None:
            if isinstance(credential, bytes):
                result = runner.invoke(cli_app, ["--url", keys.url, "verify", "-"], input=credential)
            else:
                result = runner.invoke(cli_app, ["--url", keys.url, "verify", "--", credential])
            clean = (
                result.exit_code in (1, 2)
                and "bug in keyledger" not in result.stderr
                and "Traceback" not in result.output
                and (result.exception is None or isinstance(result.exception, SystemExit))
            )
            outcomes.append((result.exit_code, clean))

        check()

        clean = [ok for _, ok in outcomes]
        tally(POINT, "CLI verify: hostile credentials refused cleanly", "sqlite", len(clean), sum(clean))
        assert len(clean) >= sizes.cli_examples
        assert all(clean), [code for code, ok in outcomes if not ok][:5]

    def test_bytes_that_are_not_utf8_on_stdin_are_refused_as_malformed(self, keys: Keys) -> None:
        """Binary garbage piped to ``verify -`` is refused as a malformed credential (exit
        1), not reported as an internal error."""
        runner = CliRunner()

        result = runner.invoke(cli_app, ["--url", keys.url, "verify", "-"], input=b"\xff\xfe\x00kl_\x80")

        assert result.exit_code == 1
        assert "bug in keyledger" not in result.stderr
        assert "malformed" in result.stderr
