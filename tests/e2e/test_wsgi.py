"""The WSGI middleware over real HTTP: a Flask app behind it, served by the standard
library's wsgiref server on 127.0.0.1, called with httpx."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from keyledger import Actor, InvalidInput, Ledger, Principal
from keyledger.adapters.driving.asgi import UNAUTHORIZED_DETAIL
from keyledger.adapters.driving.wsgi import PRINCIPAL_KEY, ApiKeyMiddleware
from keyledger.testing import ManualClock

Serve = Callable[[Any], httpx.Client]
MICROSECOND = timedelta(microseconds=1)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def secret(issued: Any) -> str:
    return str(issued.secret.get_secret_value())


class FlaskService:
    """A Flask app that says who called it, counting the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0
        app = Flask("keyledger-e2e")

        @app.before_request
        def count() -> None:
            self.calls += 1

        @app.get("/whoami")
        def whoami() -> ResponseReturnValue:
            principal: Principal = request.environ[PRINCIPAL_KEY]
            grace = principal.grace_until.isoformat() if principal.grace_until else None
            return jsonify(account=principal.account, key_id=principal.key_id, grace_until=grace)

        @app.get("/health")
        def health() -> ResponseReturnValue:
            return jsonify(ok=True, principal=PRINCIPAL_KEY in request.environ)

        self.app = app


@pytest.fixture
def service() -> FlaskService:
    return FlaskService()


@pytest.fixture
def http(serve_wsgi: Serve, service: FlaskService, ledger: Ledger) -> httpx.Client:
    """A client of the middleware in front of the Flask app, served by wsgiref."""
    service.app.wsgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
        service.app.wsgi_app, ledger, exempt_paths=("/health",), realm="acme api"
    )
    return serve_wsgi(service.app)


class TestWorkingKeys:
    def test_a_bearer_key_reaches_the_app_with_its_principal(
        self, http: httpx.Client, ledger: Ledger, alice: Actor
    ) -> None:
        """A working key sent as Bearer reaches the app, which finds its principal in the environ."""
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


class TestRefusals:
    def assert_refused(self, response: httpx.Response, service: FlaskService, *secrets: str) -> None:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="acme api"'
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {"detail": UNAUTHORIZED_DETAIL}
        for value in secrets:
            assert value not in response.text
            assert all(value not in header for header in response.headers.values())
        assert service.calls == 0

    def test_a_key_past_its_grace_deadline_is_refused(
        self, http: httpx.Client, service: FlaskService, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """A secret retired with grace is refused at its deadline, before any sweep records it."""
        old = ledger.create_key(alice, name="Shipping")
        new = ledger.regenerate_key(alice, old.key_id, mode="grace")
        assert new.previous_valid_until is not None
        clock.now = new.previous_valid_until

        response = http.get("/whoami", headers={"Authorization": f"Bearer {secret(old)}"})

        self.assert_refused(response, service, secret(old))

    def test_a_revoked_key_is_refused(
        self, http: httpx.Client, service: FlaskService, ledger: Ledger, alice: Actor
    ) -> None:
        """A revoked key is refused at once, without calling the app."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.revoke_key(alice, issued.key_id)

        response = http.get("/whoami", headers={"Authorization": basic(secret(issued))})

        self.assert_refused(response, service, secret(issued))

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
    def test_a_malformed_header_is_refused(
        self, http: httpx.Client, service: FlaskService, header: str
    ) -> None:
        """A header of another scheme, bad base64 or a key of the wrong shape is refused."""
        response = http.get("/whoami", headers={"Authorization": header})

        credential = header.partition(" ")[2]
        self.assert_refused(response, service, *([credential] if credential else []))

    def test_an_oversized_header_is_refused(self, http: httpx.Client, service: FlaskService) -> None:
        """An 8 KB Authorization header is refused without calling the app."""
        header = "Bearer kl_" + "A" * 8192

        response = http.get("/whoami", headers={"Authorization": header})

        self.assert_refused(response, service, "A" * 100)

    def test_a_missing_header_is_refused(self, http: httpx.Client, service: FlaskService) -> None:
        """A request without Authorization gets the 401 challenge."""
        response = http.get("/whoami")

        self.assert_refused(response, service)


class TestExemptPaths:
    def test_an_exempt_path_needs_no_key(self, http: httpx.Client, service: FlaskService) -> None:
        """An exempt path is served without a key and without a principal."""
        response = http.get("/health")

        assert response.status_code == 200
        assert response.json() == {"ok": True, "principal": False}
        assert service.calls == 1

    def test_exemption_is_by_exact_path(self, http: httpx.Client, service: FlaskService) -> None:
        """A path that only starts with an exempt one still needs a key."""
        response = http.get("/health/details")

        assert response.status_code == 401
        assert service.calls == 0


class TestConfiguration:
    def test_a_realm_that_cannot_be_quoted_is_refused(self, ledger: Ledger) -> None:
        """A realm with a quote would break the WWW-Authenticate header and raises InvalidInput."""
        with pytest.raises(InvalidInput, match="realm"):
            ApiKeyMiddleware(FlaskService().app, ledger, realm='say "hi"')
