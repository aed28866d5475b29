"""WebSockets behind the ASGI middleware, over a real connection: uvicorn on 127.0.0.1
and the websockets package's client. A handshake needs a working key, an outage is told
apart from a bad key, and a connection ends once its key stops working."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from keyledger import Actor, Ledger, Principal
from keyledger.adapters.driving.asgi import (
    PRINCIPAL_KEY,
    ApiKeyMiddleware,
    HealthReport,
    MonitoredVerifier,
    Verifier,
)
from tests.e2e.conftest import REQUEST_TIMEOUT, uvicorn_server

UNAVAILABLE = {"detail": "the key ledger cannot show it is current; try again later"}


def secret(issued: Any) -> str:
    return str(issued.secret.get_secret_value())


class EchoService:
    """A FastAPI app that echoes text with the caller's key id, recording what it
    received and how each connection ended."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.disconnects: list[int] = []
        self.ended = threading.Event()
        api = FastAPI()

        @api.websocket("/ws")
        async def echo(websocket: WebSocket) -> None:
            principal: Principal = websocket.scope[PRINCIPAL_KEY]
            await websocket.accept()
            try:
                while True:
                    text = await websocket.receive_text()
                    self.received.append(text)
                    await websocket.send_text(f"{principal.key_id}: {text}")
            except WebSocketDisconnect as gone:
                self.disconnects.append(gone.code)
                self.ended.set()

        self.api = api


class UnhealthyVerifier(MonitoredVerifier):
    """A verifier that refuses everything because it cannot show it is current."""

    def verify(self, credential: object) -> Principal | None:
        return None

    def health(self) -> HealthReport:
        return _Report()


class _Report:
    ok = False
    reason = "follower stuck at position 7: MapperDeserialisationError"


Connect = Callable[..., ClientConnection]


@pytest.fixture
def service() -> EchoService:
    return EchoService()


@pytest.fixture
def websocket_to() -> Iterator[Callable[[Verifier, EchoService], Connect]]:
    """Serve the echo app behind the middleware with uvicorn until the test ends; returns
    a function that opens sockets to it (closed when the test ends)."""
    with ExitStack() as stack:

        def serve(verifier: Verifier, service: EchoService) -> Connect:
            base = stack.enter_context(uvicorn_server(ApiKeyMiddleware(service.api, verifier)))

            def open_socket(key: str | None = None) -> ClientConnection:
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                return stack.enter_context(
                    connect(
                        base.replace("http://", "ws://") + "/ws",
                        additional_headers=headers,
                        open_timeout=REQUEST_TIMEOUT,
                        close_timeout=REQUEST_TIMEOUT,
                        proxy=None,  # nothing from the environment between us and 127.0.0.1
                    )
                )

            return open_socket

        yield serve


@contextmanager
def closed_by_server() -> Iterator[list[ConnectionClosed]]:
    """Catch the ConnectionClosed the client raises when the server closes the socket."""
    caught: list[ConnectionClosed] = []
    try:
        yield caught
    except ConnectionClosed as closed:
        caught.append(closed)


def open_and_exchange(connect: Any, issued: Any) -> Any:
    """A socket opened with the key, which has echoed one message ("before")."""
    socket = connect(secret(issued))
    socket.send("before")
    assert socket.recv(timeout=REQUEST_TIMEOUT) == f"{issued.key_id}: before"
    return socket


def assert_closed_at_next_message(socket: Any, service: EchoService, code: int) -> None:
    """The next message the client sends closes the socket with ``code``, and the app
    ends with that code, having received nothing after "before"."""
    with closed_by_server() as caught:
        socket.send("after")
        socket.recv(timeout=REQUEST_TIMEOUT)

    assert caught, "the socket stayed open"
    assert caught[0].rcvd is not None
    assert caught[0].rcvd.code == code
    assert service.ended.wait(REQUEST_TIMEOUT)
    assert service.disconnects == [code]
    assert service.received == ["before"]


class TestHandshake:
    def test_a_working_key_opens_a_socket_with_its_principal(
        self, websocket_to: Any, service: EchoService, ledger: Ledger, alice: Actor
    ) -> None:
        """A handshake with a working key reaches the app, which sees the key's principal."""
        issued = ledger.create_key(alice, name="Streaming")
        socket = websocket_to(ledger, service)(secret(issued))

        socket.send("hello")

        assert socket.recv(timeout=REQUEST_TIMEOUT) == f"{issued.key_id}: hello"

    def test_a_handshake_without_a_key_is_refused_with_401(
        self, websocket_to: Any, service: EchoService, ledger: Ledger
    ) -> None:
        """A handshake without a key is answered 401 with the challenge (uvicorn sends denials)."""
        with pytest.raises(InvalidStatus) as refused:
            websocket_to(ledger, service)()

        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["WWW-Authenticate"] == 'Basic realm="keyledger"'

    def test_a_handshake_in_an_outage_is_refused_with_503(
        self, websocket_to: Any, service: EchoService
    ) -> None:
        """A handshake refused while the verifier is unhealthy is answered 503 with Retry-After."""
        with pytest.raises(InvalidStatus) as refused:
            websocket_to(UnhealthyVerifier(), service)("kl_whatever")

        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.headers["Cache-Control"] == "no-store"
        assert json.loads(response.body) == UNAVAILABLE


class TestOpenSockets:
    def test_a_socket_closes_with_1008_at_the_next_message_after_its_key_is_revoked(
        self, websocket_to: Any, service: EchoService, ledger: Ledger, alice: Actor
    ) -> None:
        """After its key is revoked, the next message closes the socket (1008) and the app ends."""
        issued = ledger.create_key(alice, name="Streaming")
        socket = open_and_exchange(websocket_to(ledger, service), issued)

        ledger.revoke_key(alice, issued.key_id)

        assert_closed_at_next_message(socket, service, 1008)

    def test_a_socket_stays_open_while_its_key_works(
        self, websocket_to: Any, service: EchoService, ledger: Ledger, alice: Actor
    ) -> None:
        """Revoking another key leaves an open socket working, message after message."""
        issued = ledger.create_key(alice, name="Streaming")
        other = ledger.create_key(alice, name="Other")
        socket = websocket_to(ledger, service)(secret(issued))

        ledger.revoke_key(alice, other.key_id)
        replies = []
        for text in ("one", "two", "three"):
            socket.send(text)
            replies.append(socket.recv(timeout=REQUEST_TIMEOUT))

        assert replies == [f"{issued.key_id}: {text}" for text in ("one", "two", "three")]
        assert service.disconnects == []

    def test_a_socket_closes_with_1013_at_the_next_message_once_the_ledger_is_closed(
        self, websocket_to: Any, service: EchoService, ledger: Ledger, alice: Actor
    ) -> None:
        """A ledger that can no longer show it is current ends its sockets with 1013 (try again later)."""
        issued = ledger.create_key(alice, name="Streaming")
        socket = open_and_exchange(websocket_to(ledger, service), issued)

        ledger.close()

        assert_closed_at_next_message(socket, service, 1013)
