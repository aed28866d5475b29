"""API-key authentication for any ASGI application (Starlette, FastAPI, Quart, ...).

::

    app = ApiKeyMiddleware(app, ledger, exempt_paths=("/health",))

For each HTTP request and WebSocket handshake whose path is not exempt, the middleware
reads the ``Authorization`` header (``Basic`` with the key as user name and an empty
password, or ``Bearer``), asks the ledger to verify it, and either puts the
:class:`~keyledger.Principal` at ``scope["keyledger.principal"]`` and calls the app, or
answers ``401`` with ``WWW-Authenticate: Basic realm="..."`` and a small JSON body,
without calling the app. The body never echoes the credential. Lifespan and other
scopes pass through untouched.

Verification is a dict lookup in memory, so it runs directly on the event loop: no
thread hop, no blocking I/O. A strict ledger (``ledger.strict``) reads the log head before
answering, so with one the middleware verifies in a worker thread (``asyncio.to_thread``)
instead, to keep that I/O off the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

from keyledger.domain import InvalidInput
from keyledger.results import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PRINCIPAL_KEY = "keyledger.principal"
"""Where the middleware puts the verified :class:`~keyledger.Principal` (ASGI scope, WSGI environ)."""

UNAUTHORIZED_BODY = json.dumps(
    {
        "error": "unauthorized",
        "detail": "a valid API key is required: HTTP Basic with the key as user name and an "
        "empty password, or Bearer",
    }
).encode()
"""The JSON body of every 401 (the same for a missing, malformed or refused credential)."""


class Verifier(Protocol):
    """What the middleware needs of a ledger: :meth:`keyledger.Ledger.verify`."""

    def verify(self, credential: object) -> Principal | None:
        """The principal of a working key, or ``None``; never raises on bad input."""
        ...


def strict(ledger: Verifier) -> bool:
    """Whether ``ledger`` verifies strictly, reading the store first (blocking I/O)."""
    return getattr(ledger, "strict", False) is True


def check_realm(realm: str) -> str:
    """``realm`` if it can be quoted in a ``WWW-Authenticate`` header, else :class:`InvalidInput`."""
    if (
        not isinstance(realm, str)
        or not realm
        or not realm.isascii()
        or not realm.isprintable()
        or '"' in realm
        or "\\" in realm
    ):
        raise InvalidInput("realm", "must be printable ASCII without quotes or backslashes")
    return realm


def challenge(realm: str) -> str:
    """The ``WWW-Authenticate`` value sent with a 401."""
    return f'Basic realm="{realm}"'


class ApiKeyMiddleware:
    """Let through only requests that present a working API key of ``ledger``.

    ``exempt_paths`` are exact paths (such as ``"/health"``) served without a key.
    """

    def __init__(
        self,
        app: ASGIApp,
        ledger: Verifier,
        *,
        exempt_paths: Iterable[str] = (),
        realm: str = "keyledger",
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.exempt_paths = frozenset(exempt_paths)
        self.realm = check_realm(realm)
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
            (b"www-authenticate", challenge(self.realm).encode()),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        credential = _authorization(scope)
        if strict(self.ledger):
            principal = await asyncio.to_thread(self.ledger.verify, credential)
        else:
            principal = self.ledger.verify(credential)
        if principal is None:
            await self._refuse(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": self._headers})
            await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
            return
        # A WebSocket handshake: answer it with a 401 where the server supports the
        # denial-response extension, else close it (servers then answer 403).
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": self._headers})
            await send({"type": "websocket.http.response.body", "body": UNAUTHORIZED_BODY})
        else:
            await send({"type": "websocket.close", "code": 1008})


def _authorization(scope: Scope) -> str | None:
    """The one ``Authorization`` value of a request; ``None`` if absent or repeated."""
    found: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                return None  # two credentials: refuse rather than pick one
            found = value.decode("latin-1")
    return found
