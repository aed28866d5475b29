"""API-key authentication for any ASGI application (Starlette, FastAPI, Quart, ...).

::

    app = ApiKeyMiddleware(app, ledger, exempt_paths=("/health",))

For each HTTP request and WebSocket handshake whose path is not exempt, the middleware
reads the ``Authorization`` header (``Basic`` with the key as user name and an empty
password, or ``Bearer``), asks the ledger to verify it, and either puts the
:class:`~keyledger.Principal` at ``scope["keyledger.principal"]`` and calls the app, or
answers ``401`` with ``WWW-Authenticate: Basic realm="..."``, ``Cache-Control: no-store``
and the JSON body ``{"detail": "a valid API key is required: ..."}``, without calling the
app. The body never echoes the credential. The WSGI middleware and the FastAPI dependency
answer byte for byte the same (FastAPI's ``HTTPException`` shape, which a dependency
cannot change). Lifespan and other
scopes pass through untouched.

Verification is a dict lookup in memory, so it runs directly on the event loop: no
thread hop, no blocking I/O. A strict ledger (``ledger.strict``) reads the log head before
answering, so with one the middleware verifies in a worker thread (``asyncio.to_thread``)
instead, to keep that I/O off the loop.

An outage is not a bad key. A ledger that cannot show its index is current (see
:meth:`keyledger.Ledger.health`) refuses every credential; when a verifier that has a
``health()`` method (the :class:`MonitoredVerifier` port) refuses and reports ``ok`` false,
the request gets ``503 Service Unavailable`` with ``Retry-After`` (``retry_after``
seconds, 5 by default) and ``Cache-Control: no-store`` instead of the 401, so clients
and load balancers retry rather than drop the key. The body is fixed: the health
``reason`` names positions and error classes for logs and health endpoints, not for
clients. ``health()`` is asked only on the refusal path (a working key costs nothing
more), in a worker thread (a ledger opened with ``follow=False`` catches up there, and
another verifier's may do I/O), and at most once a second
(:class:`OutageCheck`). A verifier without it (a plain fake) always gets the 401. A
request whose key verifies passes whatever the health: the ledger itself refuses while it
is not current.
A WebSocket handshake refused in an outage is answered ``503`` where the server offers
the denial-response extension, else closed with ``1013`` (try again later).

A WebSocket stays authenticated only while its key works: at each incoming message
(``websocket.receive``) the middleware verifies the handshake's credential again, the
same way. Once it no longer verifies (revoked, regenerated, past its grace deadline,
its user's access revoked), the middleware closes the connection with ``1008`` (policy
violation; ``1013`` if the ledger is in an outage) and hands the app a
``websocket.disconnect`` with that code instead of the message, so the app ends as if
the client had left; whatever the app sends after that is dropped. An app that only
sends and never receives is checked at its next receive, so such a stream should
receive (or reconnect) now and then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

from keyledger.domain import InvalidInput
from keyledger.results import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("keyledger.web")

PRINCIPAL_KEY = "keyledger.principal"
"""Where the middleware puts the verified :class:`~keyledger.Principal` (ASGI scope, WSGI environ)."""


def _json(detail: str) -> bytes:
    # Byte for byte what FastAPI's HTTPException handler writes (Starlette's JSONResponse),
    # so the ASGI and WSGI middleware and the FastAPI dependency answer alike.
    return json.dumps({"detail": detail}, ensure_ascii=False, separators=(",", ":")).encode()


UNAUTHORIZED_DETAIL = (
    "a valid API key is required: HTTP Basic with the key as user name and an empty password, or Bearer"
)
UNAUTHORIZED_BODY = _json(UNAUTHORIZED_DETAIL)
"""The JSON body of every 401 (the same for a missing, malformed or refused credential),
from every web adapter: ``{"detail": ...}``, the shape FastAPI gives an ``HTTPException``."""

UNAVAILABLE_DETAIL = "the key ledger cannot show it is current; try again later"
UNAVAILABLE_BODY = _json(UNAVAILABLE_DETAIL)
"""The JSON body of every 503, from every web adapter: fixed, never the health reason."""

DEFAULT_RETRY_AFTER = 5
"""Seconds a client is asked to wait (``Retry-After``) before retrying during an outage."""

POLICY_VIOLATION = 1008
"""WebSocket close code: the credential does not (or no longer) verify."""
TRY_AGAIN_LATER = 1013
"""WebSocket close code: the ledger cannot show it is current."""


class Verifier(Protocol):
    """What the middleware needs of a ledger: :meth:`keyledger.Ledger.verify`.

    A verifier may also have ``health()`` (see :class:`MonitoredVerifier`); the web
    adapters then tell an outage (503) from a refused key (401).
    """

    def verify(self, credential: object) -> Principal | None:
        """The principal of a working key, or ``None``; never raises on bad input."""
        ...


class HealthReport(Protocol):
    """What the web adapters read of a verifier's health (:class:`keyledger.Health` has more)."""

    @property
    def ok(self) -> bool:
        """``False`` while the verifier cannot show it is current, and so refuses every key."""
        ...

    @property
    def reason(self) -> str | None:
        """Why not, for logs and health endpoints; never sent to a client."""
        ...


class MonitoredVerifier(Verifier, Protocol):
    """A verifier that can say whether it is current: :meth:`keyledger.Ledger.health`."""

    def health(self) -> HealthReport:
        """Whether verification is current; may read the store, never raises."""
        ...


def strict(ledger: Verifier) -> bool:
    """Whether ``ledger`` verifies strictly, reading the store first (blocking I/O)."""
    return getattr(ledger, "strict", False) is True


HEALTH_TTL = 1.0
"""Seconds an outage check's answer is reused: a flood of bad keys asks ``health()``
(which may read the store) at most once a second, and an outage's start or end shows in
the status code at most that much later (the ledger itself refuses at once)."""


class OutageCheck:
    """Whether a refusal by ``ledger`` is its outage: it has ``health()`` and is not ok.

    Asked only after ``verify`` refused, and ``health()`` at most once per
    :data:`HEALTH_TTL`. A verifier without ``health()`` never has an outage; one whose
    ``health()`` raises has one (it cannot show it is current). Safe to share between
    threads: a race asks ``health()`` twice, no worse.
    """

    def __init__(self, ledger: Verifier) -> None:
        self._health: Callable[[], HealthReport] | None = getattr(ledger, "health", None)
        self._outage = False
        self._until = -math.inf  # monotonic time until which ``_outage`` is the answer

    def known(self) -> bool | None:
        """The answer without asking ``health()``, or ``None`` if it must be asked."""
        if self._health is None:
            return False
        return self._outage if time.monotonic() < self._until else None

    def __call__(self) -> bool:
        """The answer, asking ``health()`` if the last answer is older than :data:`HEALTH_TTL`."""
        health = self._health
        if health is None:
            return False
        if time.monotonic() < self._until:
            return self._outage
        try:
            outage = health().ok is not True
        except Exception:
            logger.warning("the verifier's health() raised; answering 503", exc_info=True)
            outage = True
        # _outage first: a thread reading between the two stores finds _until stale and
        # asks health() itself, rather than taking the old answer as fresh.
        self._outage, self._until = outage, time.monotonic() + HEALTH_TTL
        return outage


def check_retry_after(retry_after: int) -> int:
    """``retry_after`` if it is a whole number of seconds (0 to a day), else :class:`InvalidInput`."""
    if type(retry_after) is not int or not 0 <= retry_after <= 86_400:
        raise InvalidInput("retry_after", "must be a whole number of seconds from 0 to 86400")
    return retry_after


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


def unauthorized_headers(realm: str) -> dict[str, str]:
    """The headers of every 401 but its content type and length, from every web adapter:
    the challenge, and ``Cache-Control: no-store`` (no cache keeps a refusal)."""
    return {"WWW-Authenticate": challenge(realm), "Cache-Control": "no-store"}


def unavailable_headers(retry_after: int) -> dict[str, str]:
    """The headers of every 503 but its content type and length, from every web adapter."""
    return {"Retry-After": str(retry_after), "Cache-Control": "no-store"}


class ApiKeyMiddleware:
    """Let through only requests that present a working API key of ``ledger``.

    ``exempt_paths`` are exact paths (such as ``"/health"``) served without a key.
    ``retry_after`` is the ``Retry-After`` of a 503 during an outage, in seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        ledger: Verifier,
        *,
        exempt_paths: Iterable[str] = (),
        realm: str = "keyledger",
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.exempt_paths = frozenset(exempt_paths)
        self.realm = check_realm(realm)
        self.retry_after = check_retry_after(retry_after)
        self._outage = OutageCheck(ledger)
        self._headers = _raw_headers(UNAUTHORIZED_BODY, unauthorized_headers(self.realm))
        self._unavailable_headers = _raw_headers(UNAVAILABLE_BODY, unavailable_headers(self.retry_after))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        credential = _authorization(scope)
        principal, outage = await self._verify(credential)
        if principal is None:
            await self._refuse(scope, receive, send, outage=outage)
            return
        scope[PRINCIPAL_KEY] = principal
        if kind == "websocket":
            session = _VerifiedWebSocket(self._verify, credential, receive, send)
            await self.app(scope, session.receive, session.send)
        else:
            await self.app(scope, receive, send)

    async def _verify(self, credential: str | None) -> tuple[Principal | None, bool]:
        """The credential's principal, or ``None`` and whether the refusal is an outage."""
        if strict(self.ledger):  # reads the store first: keep that I/O off the event loop
            principal = await asyncio.to_thread(self.ledger.verify, credential)
        else:
            principal = self.ledger.verify(credential)
        if principal is not None:
            return principal, False
        outage = self._outage.known()
        if outage is None:  # health() may read the store (Ledger.health reads the log head)
            outage = await asyncio.to_thread(self._outage)
        return None, outage

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, outage: bool) -> None:
        status, headers, body = (
            (503, self._unavailable_headers, UNAVAILABLE_BODY)
            if outage
            else (401, self._headers, UNAUTHORIZED_BODY)
        )
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        # A WebSocket handshake: answer it with the HTTP status where the server supports
        # the denial-response extension, else close it (servers then answer 403).
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER if outage else POLICY_VIOLATION})


class _VerifiedWebSocket:
    """An accepted WebSocket's ``receive`` and ``send``, verifying its credential again at
    each incoming message and closing the connection once it no longer verifies."""

    def __init__(
        self,
        verify: Callable[[str | None], Awaitable[tuple[Principal | None, bool]]],
        credential: str | None,
        receive: Receive,
        send: Send,
    ) -> None:
        self._verify = verify
        self._credential = credential
        self._receive = receive
        self._send = send
        self._closed: Message | None = None  # the disconnect handed to the app, once closed

    async def receive(self) -> Message:
        if self._closed is not None:
            return dict(self._closed)
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return message
        principal, outage = await self._verify(self._credential)
        if principal is not None:
            return message
        code = TRY_AGAIN_LATER if outage else POLICY_VIOLATION
        self._closed = {"type": "websocket.disconnect", "code": code}
        await self._send({"type": "websocket.close", "code": code})
        return dict(self._closed)

    async def send(self, message: Message) -> None:
        if self._closed is None:  # after the middleware closed the socket, the app's sends go nowhere
            await self._send(message)


def _raw_headers(body: bytes, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """An answer's ASGI headers: JSON of ``body``'s length, then ``headers``."""
    found = {"content-type": "application/json", "content-length": str(len(body))}
    found.update((name.lower(), value) for name, value in headers.items())
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in found.items()]


def _authorization(scope: Scope) -> str | None:
    """The one ``Authorization`` value of a request; ``None`` if absent or repeated."""
    found: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                return None  # two credentials: refuse rather than pick one
            found = value.decode("latin-1")
    return found
