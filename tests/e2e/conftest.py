"""Real servers on 127.0.0.1 for the end-to-end tests, and an HTTP client with bounded
timeouts. Every server binds a free port of its own and is stopped when its test ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import WSGIApplication

import httpx
import pytest
import uvicorn

STARTUP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 5.0


def wait_until(ready: Callable[[], bool], what: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if not alive():
            pytest.fail(f"{what} stopped before it was ready")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not ready within {STARTUP_TIMEOUT} s")
        time.sleep(0.01)


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yields its base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn", thread.is_alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: WSGIApplication) -> Iterator[str]:
    """Serve a WSGI app with the standard library's wsgiref server in a thread."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STARTUP_TIMEOUT)
    assert not thread.is_alive(), "the WSGI server did not stop"


@contextmanager
def _serving(server: Callable[[Any], AbstractContextManager[str]], app: Any) -> Iterator[httpx.Client]:
    # Bounded timeouts on every request; no proxy from the environment between us and 127.0.0.1.
    with (
        server(app) as base_url,
        httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False) as http,
    ):
        yield http


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], httpx.Client]]:
    """Serve an ASGI app with uvicorn until the test ends; returns a client for it."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(_serving(uvicorn_server, app))


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[WSGIApplication], httpx.Client]]:
    """Serve a WSGI app with wsgiref until the test ends; returns a client for it."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(_serving(wsgi_server, app))
