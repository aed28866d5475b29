"""Every web adapter refuses alike: the ASGI middleware (uvicorn), the WSGI middleware
(wsgiref) and the FastAPI dependency (uvicorn) answer a refused key with the same 401,
and an outage with the same 503, byte for byte in the body and header for header."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask

from keyledger import Principal
from keyledger.adapters.driving import asgi, wsgi
from keyledger.adapters.driving.asgi import Message, Receive, Scope, Send
from keyledger.adapters.driving.fastapi import require_api_key

Serve = Callable[[Any], httpx.Client]
ADAPTERS = ["asgi", "wsgi", "fastapi"]
COMPARED = ("content-type", "content-length", "www-authenticate", "cache-control", "retry-after")


@dataclass(frozen=True)
class Report:
    ok: bool
    reason: str | None


class Refusing:
    """A verifier that refuses every credential, healthy or in an outage."""

    def __init__(self, *, ok: bool) -> None:
        self.ok = ok

    def verify(self, credential: object) -> Principal | None:
        return None

    def health(self) -> Report:
        return Report(ok=self.ok, reason=None if self.ok else "stuck")


async def plain_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            event = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{event}.complete"})
            if event == "lifespan.shutdown":
                return
    message: Message = {"type": "http.response.start", "status": 200, "headers": []}
    await send(message)
    await send({"type": "http.response.body", "body": b"ok"})


def served(adapter: str, verifier: Refusing, serve_asgi: Serve, serve_wsgi: Serve) -> httpx.Client:
    options: dict[str, Any] = {"realm": "orders", "retry_after": 9}
    if adapter == "asgi":
        return serve_asgi(asgi.ApiKeyMiddleware(plain_asgi, verifier, **options))
    if adapter == "wsgi":
        flask = Flask(__name__)
        flask.add_url_rule("/orders", "orders", lambda: "ok")
        flask.wsgi_app = wsgi.ApiKeyMiddleware(flask.wsgi_app, verifier, **options)  # type: ignore[method-assign]
        return serve_wsgi(flask)
    api = FastAPI()
    api_key = require_api_key(verifier, **options)

    @api.get("/orders")
    async def orders(principal: Principal = Depends(api_key)) -> str:  # noqa: B008
        return "ok"

    return serve_asgi(api)


def answers(ok: bool, serve_asgi: Serve, serve_wsgi: Serve) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Each adapter's answer to a refused key: status, the compared headers, body."""
    found = {}
    for adapter in ADAPTERS:
        http = served(adapter, Refusing(ok=ok), serve_asgi, serve_wsgi)
        response = http.get("/orders", headers={"Authorization": "Bearer kl_wrong"})
        headers = {name: response.headers[name] for name in COMPARED if name in response.headers}
        found[adapter] = (response.status_code, headers, response.content)
    return found


class TestOneAnswerEverywhere:
    def test_a_refused_key_gets_the_same_401_from_every_adapter(
        self, serve_asgi: Serve, serve_wsgi: Serve
    ) -> None:
        """ASGI, WSGI and FastAPI answer 401 with one body and the same challenge and no-store."""
        found = answers(True, serve_asgi, serve_wsgi)

        assert found["wsgi"] == found["asgi"]
        assert found["fastapi"] == found["asgi"]
        status, headers, body = found["asgi"]
        assert status == 401
        assert headers == {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "www-authenticate": 'Basic realm="orders"',
            "cache-control": "no-store",
        }
        assert body == asgi.UNAUTHORIZED_BODY
        assert httpx.Response(200, content=body).json() == {"detail": asgi.UNAUTHORIZED_DETAIL}

    def test_an_outage_gets_the_same_503_from_every_adapter(
        self, serve_asgi: Serve, serve_wsgi: Serve
    ) -> None:
        """ASGI, WSGI and FastAPI answer 503 with one body, Retry-After and no-store."""
        found = answers(False, serve_asgi, serve_wsgi)

        assert found["wsgi"] == found["asgi"]
        assert found["fastapi"] == found["asgi"]
        status, headers, body = found["asgi"]
        assert status == 503
        assert headers == {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "retry-after": "9",
            "cache-control": "no-store",
        }
        assert httpx.Response(200, content=body).json() == {"detail": asgi.UNAVAILABLE_DETAIL}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_refusal_never_echoes_the_credential(adapter: str, serve_asgi: Serve, serve_wsgi: Serve) -> None:
    """The 401 holds nothing of the credential presented, in body or headers."""
    http = served(adapter, Refusing(ok=True), serve_asgi, serve_wsgi)

    response = http.get("/orders", headers={"Authorization": "Bearer kl_presented"})

    assert "kl_presented" not in response.text
    assert all("kl_presented" not in value for value in response.headers.values())
