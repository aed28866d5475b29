"""An outage is not a bad key: the ASGI and WSGI middleware and the FastAPI dependency
answer 503 with Retry-After while a verifier that refused reports itself unhealthy, over
real HTTP (uvicorn or wsgiref on 127.0.0.1, an httpx client)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask, jsonify
from flask import request as flask_request
from flask.typing import ResponseReturnValue

from keyledger import Actor, InvalidInput, Ledger, Principal
from keyledger.adapters.driving import asgi, wsgi
from keyledger.adapters.driving.asgi import PRINCIPAL_KEY, HealthReport, MonitoredVerifier, Verifier
from keyledger.adapters.driving.fastapi import require_api_key

Serve = Callable[[Any], httpx.Client]

PRINCIPAL = Principal(account="acme", key_id="key_0000000000000001", name="Shipping", grace_until=None)
# What a stuck ledger's health says: a position and an error class, for logs only.
REASON = "follower stuck at position 7: MapperDeserialisationError"
UNAVAILABLE = {"detail": "the key ledger cannot show it is current; try again later"}


@dataclass(frozen=True)
class Report:
    ok: bool
    reason: str | None


class FakeVerifier(MonitoredVerifier):
    """A verifier whose answer and health the test sets; it counts calls to health()."""

    def __init__(self, *, accepts: bool, ok: bool) -> None:
        self.accepts = accepts
        self.ok = ok
        self.health_calls = 0
        self.threads: dict[str, threading.Thread] = {}

    def verify(self, credential: object) -> Principal | None:
        self.threads["verify"] = threading.current_thread()
        return PRINCIPAL if self.accepts else None

    def health(self) -> HealthReport:
        self.threads["health"] = threading.current_thread()
        self.health_calls += 1
        return Report(ok=self.ok, reason=None if self.ok else REASON)


class PlainVerifier:
    """A verifier with no health(): every refusal is the credential's."""

    def verify(self, credential: object) -> Principal | None:
        return None


def asgi_app(calls: list[str]) -> FastAPI:
    api = FastAPI()

    @api.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        calls.append("whoami")
        return {"key_id": request.scope[PRINCIPAL_KEY].key_id}

    return api


def flask_app(calls: list[str]) -> Flask:
    app = Flask("keyledger-outages")

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        calls.append("whoami")
        return jsonify(key_id=flask_request.environ[PRINCIPAL_KEY].key_id)

    return app


def fastapi_app(verifier: Verifier, **options: Any) -> FastAPI:
    api = FastAPI()
    api_key = require_api_key(verifier, **options)

    @api.get("/whoami")
    async def whoami(principal: Principal = Depends(api_key)) -> dict[str, str]:  # noqa: B008
        return {"key_id": principal.key_id}

    return api


@pytest.fixture(params=["asgi", "wsgi"])
def protect(request: pytest.FixtureRequest, serve_asgi: Serve, serve_wsgi: Serve) -> Any:
    """Serve a small app behind the ASGI (uvicorn) or WSGI (wsgiref) middleware; returns
    a client and the list of requests that reached the app."""

    def serve(verifier: Verifier, **options: Any) -> tuple[httpx.Client, list[str]]:
        calls: list[str] = []
        if request.param == "asgi":
            return serve_asgi(asgi.ApiKeyMiddleware(asgi_app(calls), verifier, **options)), calls
        app = flask_app(calls)
        app.wsgi_app = wsgi.ApiKeyMiddleware(app.wsgi_app, verifier, **options)  # type: ignore[method-assign]
        return serve_wsgi(app), calls

    return serve


def assert_unavailable(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    assert "www-authenticate" not in response.headers
    assert response.json() == UNAVAILABLE
    assert "position" not in response.text
    assert "Mapper" not in response.text


class TestMiddlewareOutages:
    def test_a_refusal_while_unhealthy_is_503_with_retry_after(self, protect: Any) -> None:
        """A refused credential while the verifier is unhealthy gets 503, Retry-After and a fixed body."""
        verifier = FakeVerifier(accepts=False, ok=False)
        http, calls = protect(verifier)

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_whatever"})

        assert_unavailable(response, "5")
        assert calls == []
        assert verifier.health_calls == 1

    def test_retry_after_is_configurable(self, protect: Any) -> None:
        """retry_after sets the Retry-After seconds of the 503."""
        http, _ = protect(FakeVerifier(accepts=False, ok=False), retry_after=30)

        response = http.get("/whoami")

        assert_unavailable(response, "30")

    def test_a_refusal_while_healthy_is_401(self, protect: Any) -> None:
        """A wrong key while the verifier is healthy gets the 401 challenge, not a 503."""
        verifier = FakeVerifier(accepts=False, ok=True)
        http, calls = protect(verifier)

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_wrong"})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="keyledger"'
        assert "retry-after" not in response.headers
        assert response.json() == {"detail": asgi.UNAUTHORIZED_DETAIL}
        assert calls == []

    def test_a_verified_key_passes_while_unhealthy_without_asking_health(self, protect: Any) -> None:
        """A key the verifier accepts reaches the app, and health() is asked only on refusals."""
        verifier = FakeVerifier(accepts=True, ok=False)
        http, calls = protect(verifier)

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_fine"})

        assert response.status_code == 200
        assert response.json() == {"key_id": PRINCIPAL.key_id}
        assert calls == ["whoami"]
        assert verifier.health_calls == 0

    def test_a_flood_of_refusals_asks_health_once_a_second_at_most(self, protect: Any) -> None:
        """Refusals in quick succession share one health() answer (it may read the store)."""
        verifier = FakeVerifier(accepts=False, ok=False)
        http, _ = protect(verifier)

        statuses = [http.get("/whoami").status_code for _ in range(5)]

        assert statuses == [503] * 5
        assert verifier.health_calls == 1

    def test_a_verifier_without_health_keeps_the_401(self, protect: Any) -> None:
        """A plain verifier (no health()) that refuses gets the 401 as before."""
        http, _ = protect(PlainVerifier())

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_wrong"})

        assert response.status_code == 401

    @pytest.mark.parametrize("retry_after", [-1, 1.5, True, "5", 86_401])
    def test_a_retry_after_that_is_not_whole_seconds_is_refused(self, retry_after: Any) -> None:
        """retry_after must be a whole number of seconds from 0 to a day."""
        with pytest.raises(InvalidInput, match="retry_after"):
            asgi.ApiKeyMiddleware(asgi_app([]), PlainVerifier(), retry_after=retry_after)
        with pytest.raises(InvalidInput, match="retry_after"):
            wsgi.ApiKeyMiddleware(flask_app([]).wsgi_app, PlainVerifier(), retry_after=retry_after)
        with pytest.raises(InvalidInput, match="retry_after"):
            require_api_key(PlainVerifier(), retry_after=retry_after)


class TestRealLedger:
    def test_a_working_key_of_a_closed_ledger_gets_503(
        self, protect: Any, ledger: Ledger, alice: Actor
    ) -> None:
        """A closed ledger refuses every key and reports itself not ok: its clients get 503."""
        issued = ledger.create_key(alice, name="Shipping")
        key = issued.secret.get_secret_value()
        http, calls = protect(ledger)
        assert http.get("/whoami", headers={"Authorization": f"Bearer {key}"}).status_code == 200

        ledger.close()
        response = http.get("/whoami", headers={"Authorization": f"Bearer {key}"})

        assert_unavailable(response, "5")
        assert key not in response.text
        assert calls == ["whoami"]

    def test_a_wrong_key_of_a_healthy_ledger_gets_401(self, protect: Any, ledger: Ledger) -> None:
        """A healthy ledger's refusal is the credential's: 401, not 503."""
        http, _ = protect(ledger)
        assert ledger.health().ok

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_" + "A" * 38})

        assert response.status_code == 401
        assert "retry-after" not in response.headers


class TestEventLoop:
    @pytest.mark.parametrize("dependency", [False, True])
    def test_health_is_asked_off_the_event_loop(self, serve_asgi: Serve, dependency: bool) -> None:
        """The ASGI middleware and the FastAPI dependency ask health() in a worker thread,
        since it may read the store, while a non-strict verify runs on the loop."""
        verifier = FakeVerifier(accepts=False, ok=False)
        app = fastapi_app(verifier) if dependency else asgi.ApiKeyMiddleware(asgi_app([]), verifier)
        http = serve_asgi(app)

        response = http.get("/whoami")

        assert response.status_code == 503
        assert verifier.threads["verify"].name == "uvicorn"
        assert verifier.threads["health"] is not verifier.threads["verify"]


class TestFastapiDependencyOutages:
    def test_a_refusal_while_unhealthy_is_503_with_retry_after(self, serve_asgi: Serve) -> None:
        """The dependency answers 503 with Retry-After and FastAPI's fixed detail while unhealthy."""
        http = serve_asgi(fastapi_app(FakeVerifier(accepts=False, ok=False), retry_after=7))

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_whatever"})

        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == UNAVAILABLE

    def test_a_refusal_while_healthy_is_401(self, serve_asgi: Serve) -> None:
        """The dependency answers a wrong key with 401 while the verifier is healthy."""
        http = serve_asgi(fastapi_app(FakeVerifier(accepts=False, ok=True)))

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_wrong"})

        assert response.status_code == 401
        assert "retry-after" not in response.headers

    def test_a_verified_key_passes_while_unhealthy(self, serve_asgi: Serve) -> None:
        """A key the verifier accepts reaches the route whatever the health."""
        verifier = FakeVerifier(accepts=True, ok=False)
        http = serve_asgi(fastapi_app(verifier))

        response = http.get("/whoami", headers={"Authorization": "Bearer kl_fine"})

        assert response.status_code == 200
        assert verifier.health_calls == 0
