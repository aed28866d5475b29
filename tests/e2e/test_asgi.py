"""The ASGI middleware and the FastAPI dependency, over real HTTP: uvicorn on 127.0.0.1
and an httpx client."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from keyledger import Actor, InvalidInput, Ledger, Principal
from keyledger.adapters.driving.asgi import (
    PRINCIPAL_KEY,
    UNAUTHORIZED_DETAIL,
    ApiKeyMiddleware,
    Message,
    Receive,
    Scope,
    Send,
)
from keyledger.adapters.driving.fastapi import require_api_key
from keyledger.testing import ManualClock

Serve = Callable[[Any], httpx.Client]
MICROSECOND = timedelta(microseconds=1)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class CountingApp:
    """A FastAPI app that says who called it, counting the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = False

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            self.started = True
            yield

        api = FastAPI(lifespan=lifespan)

        @api.get("/whoami")
        async def whoami(request: Request) -> dict[str, Any]:
            principal: Principal = request.scope[PRINCIPAL_KEY]
            grace = principal.grace_until.isoformat() if principal.grace_until else None
            return {"account": principal.account, "key_id": principal.key_id, "grace_until": grace}

        @api.get("/health")
        async def health(request: Request) -> dict[str, Any]:
            return {"ok": True, "principal": PRINCIPAL_KEY in request.scope}

        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.api(scope, receive, send)


@pytest.fixture
def inner() -> CountingApp:
    return CountingApp()


@pytest.fixture
def http(serve_asgi: Serve, inner: CountingApp, ledger: Ledger) -> httpx.Client:
    """A client of the middleware in front of the app, served by uvicorn."""
    return serve_asgi(ApiKeyMiddleware(inner, ledger, exempt_paths=("/health",), realm="acme api"))


def secret(issued: Any) -> str:
    return str(issued.secret.get_secret_value())


class TestWorkingKeys:
    def test_a_bearer_key_reaches_the_app_with_its_principal(
        self, http: httpx.Client, ledger: Ledger, alice: Actor
    ) -> None:
        """A working key sent as Bearer reaches the app, which finds its principal in the scope."""
        issued = ledger.create_key(alice, name="Shipping")

        response = http.get("/whoami", headers={"Authorization": f"Bearer {secret(issued)}"})

        assert response.status_code == 200
        assert response.json() == {"account": "acme", "key_id": issued.key_id, "grace_until": None}

    def test_a_basic_key_with_an_empty_password_reaches_the_app(
        self, http: httpx.Client, ledger: Ledger, alice: Actor
    ) -> None:
        """A working key sent as HTTP Basic user name with an empty password reaches the app."""
        issued = ledger.create_key(alice, name="Shipping")

        response = http.get("/whoami", auth=(secret(issued), ""))

        assert response.status_code == 200
        assert response.json()["key_id"] == issued.key_id

    def test_a_key_in_grace_works_until_its_deadline(
        self, http: httpx.Client, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """A secret retired with grace still works one microsecond before its deadline."""
        old = ledger.create_key(alice, name="Shipping")
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        assert new.previous_valid_until is not None
        clock.now = new.previous_valid_until - MICROSECOND

        response = http.get("/whoami", headers={"Authorization": basic(secret(old))})

        assert response.status_code == 200
        assert response.json()["grace_until"] == new.previous_valid_until.isoformat()

    def test_lifespan_events_pass_through_to_the_app(self, http: httpx.Client, inner: CountingApp) -> None:
        """The app behind the middleware receives its lifespan startup."""
        assert inner.started


class TestRefusals:
    def assert_refused(self, response: httpx.Response, inner: CountingApp, *secrets: str) -> None:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="acme api"'
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {"detail": UNAUTHORIZED_DETAIL}
        for value in secrets:
            assert value not in response.text
            assert all(value not in header for header in response.headers.values())
        assert inner.calls == 0

    def test_a_key_past_its_grace_deadline_is_refused(
        self, http: httpx.Client, inner: CountingApp, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """A secret retired with grace is refused at its deadline, before any sweep records it."""
        old = ledger.create_key(alice, name="Shipping")
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        assert new.previous_valid_until is not None
        clock.now = new.previous_valid_until

        response = http.get("/whoami", headers={"Authorization": f"Bearer {secret(old)}"})

        self.assert_refused(response, inner, secret(old))

    def test_a_revoked_key_is_refused(
        self, http: httpx.Client, inner: CountingApp, ledger: Ledger, alice: Actor
    ) -> None:
        """A revoked key is refused at once, without calling the app."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)

        response = http.get("/whoami", headers={"Authorization": basic(secret(issued))})

        self.assert_refused(response, inner, secret(issued))

    @pytest.mark.parametrize(
        "header",
        [
            "Token kl_abc",
            "Basic !!!not-base64",
            "Bearer",
            "Bearer kl_tooshort",
            "Basic " + base64.b64encode(b"kl_x:password").decode(),
        ],
    )
    def test_a_malformed_header_is_refused(self, http: httpx.Client, inner: CountingApp, header: str) -> None:
        """A header of another scheme, bad base64 or a key of the wrong shape is refused."""
        response = http.get("/whoami", headers={"Authorization": header})

        credential = header.partition(" ")[2]
        self.assert_refused(response, inner, *([credential] if credential else []))

    def test_an_oversized_header_is_refused(self, http: httpx.Client, inner: CountingApp) -> None:
        """An 8 KB Authorization header is refused without calling the app."""
        header = "Bearer kl_" + "A" * 8192

        response = http.get("/whoami", headers={"Authorization": header})

        self.assert_refused(response, inner, "A" * 100)

    def test_a_missing_header_is_refused(self, http: httpx.Client, inner: CountingApp) -> None:
        """A request without Authorization gets the 401 challenge."""
        response = http.get("/whoami")

        self.assert_refused(response, inner)

    def test_two_authorization_headers_are_refused(
        self, http: httpx.Client, inner: CountingApp, ledger: Ledger, alice: Actor
    ) -> None:
        """Two Authorization headers are refused rather than one picked, even if both work."""
        key = secret(ledger.create_key(alice, name="Shipping"))

        response = http.get(
            "/whoami", headers=[("Authorization", f"Bearer {key}"), ("Authorization", basic(key))]
        )

        self.assert_refused(response, inner, key)


class TestExemptPaths:
    def test_an_exempt_path_needs_no_key(self, http: httpx.Client, inner: CountingApp) -> None:
        """An exempt path is served without a key and without a principal."""
        response = http.get("/health")

        assert response.status_code == 200
        assert response.json() == {"ok": True, "principal": False}
        assert inner.calls == 1

    def test_exemption_is_by_exact_path(self, http: httpx.Client, inner: CountingApp) -> None:
        """A path that only starts with an exempt one still needs a key."""
        response = http.get("/health/details")

        assert response.status_code == 401
        assert inner.calls == 0


class TestConfiguration:
    @pytest.mark.parametrize("realm", ['say "hi"', "back\\slash", "", "caf\u00e9", "line\nbreak"])
    def test_a_realm_that_cannot_be_quoted_is_refused(self, ledger: Ledger, realm: str) -> None:
        """A realm that would break the WWW-Authenticate header raises InvalidInput."""
        with pytest.raises(InvalidInput, match="realm"):
            ApiKeyMiddleware(CountingApp(), ledger, realm=realm)


class TestWebSockets:
    def handshake(
        self, middleware: ApiKeyMiddleware, headers: list[tuple[bytes, bytes]], **scope: Any
    ) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        full = {"type": "websocket", "path": "/ws", "headers": headers, **scope}
        asyncio.run(middleware(full, receive, send))
        return sent

    def test_a_handshake_without_a_key_is_closed_without_calling_the_app(self, ledger: Ledger) -> None:
        """A WebSocket handshake without a key is closed with policy violation (1008)."""
        inner = CountingApp()

        sent = self.handshake(ApiKeyMiddleware(inner, ledger), [])

        assert sent == [{"type": "websocket.close", "code": 1008}]
        assert inner.calls == 0

    def test_a_handshake_without_a_key_gets_a_401_where_the_server_can_send_one(self, ledger: Ledger) -> None:
        """Where the server offers the denial-response extension, the handshake gets the 401."""
        sent = self.handshake(
            ApiKeyMiddleware(CountingApp(), ledger), [], extensions={"websocket.http.response": {}}
        )

        assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
        assert sent[0]["status"] == 401
        assert (b"www-authenticate", b'Basic realm="keyledger"') in sent[0]["headers"]

    def test_a_handshake_with_a_working_key_reaches_the_app_with_its_principal(
        self, ledger: Ledger, alice: Actor
    ) -> None:
        """A WebSocket handshake with a working key reaches the app with the principal in its scope."""
        issued = ledger.create_key(alice, name="Streaming")
        seen: list[Scope] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope)

        self.handshake(
            ApiKeyMiddleware(app, ledger), [(b"authorization", f"Bearer {secret(issued)}".encode())]
        )

        assert seen[0][PRINCIPAL_KEY].key_id == issued.key_id

    def test_a_handshake_in_an_outage_is_closed_with_try_again_later(self) -> None:
        """Without the denial-response extension, a handshake refused in an outage is closed
        with 1013 (try again later), not 1008 (uvicorn offers the extension: see
        test_websockets.py for the 503 it then sends)."""
        inner = CountingApp()

        sent = self.handshake(ApiKeyMiddleware(inner, UnhealthyVerifier()), [])

        assert sent == [{"type": "websocket.close", "code": 1013}]
        assert inner.calls == 0


class UnhealthyVerifier:
    """A verifier that refuses every credential and says it cannot show it is current."""

    def verify(self, credential: object) -> Principal | None:
        return None

    def health(self) -> Any:
        return SimpleNamespace(ok=False, reason="follower stuck at position 7: MapperDeserialisationError")


class ThreadRecordingVerifier:
    """A verifier that notes the thread each verification runs on."""

    def __init__(self, ledger: Ledger, *, strict: bool) -> None:
        self.ledger = ledger
        self.strict = strict
        self.threads: list[threading.Thread] = []

    def verify(self, credential: object) -> Principal | None:
        self.threads.append(threading.current_thread())
        return self.ledger.verify(credential)


class TestStrictLedgers:
    def call(self, middleware: ApiKeyMiddleware, key: str) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/", "headers": [(b"authorization", f"Bearer {key}".encode())]}
        asyncio.run(middleware(scope, receive, send))
        return sent

    @pytest.mark.parametrize(("strict", "on_loop"), [(False, True), (True, False)])
    def test_only_a_strict_ledger_verifies_off_the_event_loop(
        self, ledger: Ledger, alice: Actor, strict: bool, on_loop: bool
    ) -> None:
        """A strict ledger, which reads the store, verifies in a worker thread; others on the loop."""
        verifier = ThreadRecordingVerifier(ledger, strict=strict)
        key = secret(ledger.create_key(alice, name="Shipping"))
        reached: list[Principal] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            reached.append(scope[PRINCIPAL_KEY])

        self.call(ApiKeyMiddleware(app, verifier), key)

        assert (verifier.threads == [threading.main_thread()]) is on_loop
        assert reached[0].account == "acme"


class TestFastapiDependency:
    @pytest.fixture
    def api(self, serve_asgi: Serve, ledger: Ledger) -> httpx.Client:
        app = FastAPI()
        api_key = require_api_key(ledger)

        # A default, not Annotated[...]: with postponed annotations FastAPI resolves names
        # in module globals, and this dependency is local to the test.
        @app.get("/orders")
        async def orders(principal: Principal = Depends(api_key)) -> dict[str, str]:  # noqa: B008
            return {"account": principal.account, "key_id": principal.key_id}

        @app.get("/public")
        async def public() -> dict[str, str]:
            return {"hello": "world"}

        return serve_asgi(app)

    def test_a_protected_route_returns_the_principal_of_a_working_key(
        self, api: httpx.Client, ledger: Ledger, alice: Actor
    ) -> None:
        """A route that depends on require_api_key gets the principal of a working key."""
        issued = ledger.create_key(alice, name="Shipping")

        response = api.get("/orders", auth=(secret(issued), ""))

        assert response.status_code == 200
        assert response.json() == {"account": "acme", "key_id": issued.key_id}

    def test_a_protected_route_refuses_a_revoked_key_with_the_challenge(
        self, api: httpx.Client, ledger: Ledger, alice: Actor
    ) -> None:
        """A revoked key gets 401 with WWW-Authenticate and a body that does not echo it."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)

        response = api.get("/orders", headers={"Authorization": f"Bearer {secret(issued)}"})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="keyledger"'
        assert secret(issued) not in response.text

    def test_other_routes_need_no_key(self, api: httpx.Client) -> None:
        """Routes without the dependency are served without a key."""
        response = api.get("/public")

        assert response.status_code == 200

    def test_the_openapi_schema_declares_the_api_key_scheme(self, api: httpx.Client) -> None:
        """The OpenAPI schema lists the key scheme on protected routes only."""
        schema = json.loads(api.get("/openapi.json").text)

        assert schema["components"]["securitySchemes"]["keyledger"]["in"] == "header"
        assert schema["paths"]["/orders"]["get"]["security"] == [{"keyledger": []}]
        assert "security" not in schema["paths"]["/public"]["get"]
