"""Webhooks delivered to a real receiver (uvicorn on 127.0.0.1) that fails on purpose:
order, signatures, retries, refusals, and nothing lost while it is down or across a
restart of the delivering ledger; the signing secret never shown, logged or stored."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from keyledger import Actor, AuditEntry, InvalidInput, Ledger, verify_webhook
from keyledger import webhooks as webhooks_module
from keyledger.adapters.driving.cli import app
from keyledger.webhook_signing import KEY_VARIABLE

SECRET = "whsec_" + "Zq8" * 10
DEADLINE = 15.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    found: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return found


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, base64.b64encode(bytes(range(32))).decode())
    monkeypatch.setattr(webhooks_module, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(webhooks_module, "MAX_RETRY", 0.05)
    monkeypatch.setattr(webhooks_module, "REFRESH_INTERVAL", 0.1)


class Receiver:
    """An ASGI receiver: answers ``answer(position, attempt)`` (200 unless told) and
    records each request (headers, body, status), in the order received."""

    def __init__(self) -> None:
        self.answer: Callable[[int, int], int] = lambda position, attempt: 200
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        position = json.loads(body)["position"]
        with self.lock:
            attempt = sum(1 for _, b, _ in self.requests if json.loads(b)["position"] == position) + 1
            status = self.answer(position, attempt)
            self.requests.append((headers, body, status))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def positions(self, status: int | None = None) -> list[int]:
        with self.lock:
            return [json.loads(b)["position"] for _, b, s in self.requests if status is None or s == status]

    def wait(self, count: int, status: int | None = 200) -> list[int]:
        deadline = time.monotonic() + DEADLINE
        while len(self.positions(status)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{count} deliveries not received within {DEADLINE} s: {self.positions()}")
            time.sleep(0.01)
        return self.positions(status)


@contextmanager
def serving(receiver: Receiver, port: int) -> Iterator[None]:
    """Serve ``receiver`` on ``port`` of 127.0.0.1 until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(receiver, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def endpoint(receiver: Receiver) -> Iterator[str]:
    port = free_port()
    with serving(receiver, port):
        yield f"http://127.0.0.1:{port}/hooks/keyledger"


def create(ledger: Ledger, actor: Actor, count: int) -> list[int]:
    before = ledger.position
    for n in range(count):
        ledger.create_key(actor, name=f"key {n}")
    return [entry.position for entry in ledger.audit(after=before)]


class TestDelivery:
    def test_each_entry_is_posted_in_order_signed_and_retried_until_accepted(
        self, url: str, endpoint: str, receiver: Receiver, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """5xx and 429 answers repeat the same entry until a 2xx; nothing later goes first;
        every request carries a signature the receiver verifies."""
        receiver.answer = lambda position, attempt: (503, 429, 500)[attempt - 1] if attempt <= 3 else 200
        ledger = open_ledger(url)
        webhook = ledger.add_webhook(endpoint, SECRET)
        ledger.start_webhooks()

        positions = create(ledger, alice, 3)
        receiver.wait(3)

        assert receiver.positions() == [p for p in positions for _ in range(4)]
        for headers, body, _ in receiver.requests:
            assert verify_webhook(body, headers["keyledger-signature"], SECRET)
            assert not verify_webhook(body, headers["keyledger-signature"], SECRET + "x")
            assert headers["keyledger-webhook-id"] == webhook.webhook_id
            assert headers["keyledger-position"] == str(AuditEntry.model_validate_json(body).position)

    def test_a_refused_entry_is_recorded_as_failed_after_its_attempts_and_delivery_moves_on(
        self,
        url: str,
        endpoint: str,
        receiver: Receiver,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A 4xx (not 408 or 429) is tried CLIENT_ERROR_ATTEMPTS times, then recorded as
        failed, and the next entry follows."""
        monkeypatch.setattr(webhooks_module, "CLIENT_ERROR_ATTEMPTS", 3)
        ledger = open_ledger(url)
        ledger.add_webhook(endpoint, SECRET)
        positions = create(ledger, alice, 2)
        receiver.answer = lambda position, attempt: 400 if position == positions[0] else 200
        ledger.start_webhooks()

        later = create(ledger, alice, 1)
        receiver.wait(2)

        refused = positions[0]
        assert receiver.positions() == [refused, refused, refused, positions[1], later[0]]
        (state,) = ledger.webhooks()
        assert (state.failed, state.last_failed_position) == (1, refused)
        assert state.last_error == "HTTP 400 3 times"

    def test_only_the_chosen_actions_are_sent(
        self, url: str, endpoint: str, receiver: Receiver, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        ledger = open_ledger(url)
        ledger.add_webhook(endpoint, SECRET, actions=["KeyRevoked"])
        ledger.start_webhooks()

        key = ledger.create_key(alice, name="short-lived")
        ledger.revoke_key(alice, key.key_id)
        receiver.wait(1)

        (_, body, _), *rest = receiver.requests
        assert AuditEntry.model_validate_json(body).action == "KeyRevoked"
        assert rest == []


class TestRestart:
    def test_nothing_is_lost_while_the_receiver_is_down_or_across_a_restart(
        self, url: str, receiver: Receiver, open_ledger: Callable[..., Ledger], alice: Actor
    ) -> None:
        """Entries recorded while the receiver is down, and while no process delivers,
        all arrive, in order, once it is back and delivery starts again; nothing is
        delivered twice after a clean stop."""
        port = free_port()
        ledger = open_ledger(url)
        ledger.add_webhook(f"http://127.0.0.1:{port}/", SECRET)
        ledger.start_webhooks()
        down = create(ledger, alice, 2)
        deadline = time.monotonic() + DEADLINE
        while not ledger.webhooks()[0].attempts:
            assert time.monotonic() < deadline, "no failed attempt recorded"
            time.sleep(0.01)
        assert ledger.webhooks()[0].last_error == "ConnectError"
        ledger.close()
        writer = open_ledger(url)
        undelivered = create(writer, alice, 1)

        with serving(receiver, port):
            restarted = open_ledger(url)
            delivery = restarted.start_webhooks()
            receiver.wait(3)
            delivery.stop()
            later = create(writer, alice, 1)
            again = open_ledger(url)
            again.start_webhooks()
            receiver.wait(4)

        assert receiver.positions() == down + undelivered + later


class TestSecret:
    def test_the_secret_is_never_shown_logged_or_stored_in_clear(
        self,
        sqlite_url: str,
        endpoint: str,
        receiver: Receiver,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        caplog: pytest.LogCaptureFixture,
        tmp_path: Path,
    ) -> None:
        receiver.answer = lambda position, attempt: 503 if attempt == 1 else 200
        with caplog.at_level(logging.DEBUG):
            ledger = open_ledger(sqlite_url)
            webhook = ledger.add_webhook(endpoint, SECRET)
            delivery = ledger.start_webhooks()
            create(ledger, alice, 1)
            receiver.wait(1)
            delivery.stop()
            shown = [repr(webhook), str(ledger.webhooks()), repr(delivery), str(ledger.subscriptions())]
            ledger.close()

        stored = b"".join(path.read_bytes() for path in tmp_path.glob("keyledger.db*"))
        piece = SECRET[6:22]
        for text in [*shown, caplog.text]:
            assert piece not in text
        assert piece.encode() not in stored

    def test_adding_needs_the_host_key_and_a_process_with_another_delivers_nothing(
        self,
        sqlite_url: str,
        endpoint: str,
        receiver: Receiver,
        open_ledger: Callable[..., Ledger],
        alice: Actor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ledger = open_ledger(sqlite_url)
        ledger.add_webhook(endpoint, SECRET)
        monkeypatch.setenv(KEY_VARIABLE, base64.b64encode(bytes(32)).decode())
        ledger.start_webhooks()
        create(ledger, alice, 1)
        time.sleep(0.5)

        assert receiver.requests == []
        assert ledger.webhooks()[0].last_error == "signing secret does not open"
        monkeypatch.delenv(KEY_VARIABLE)
        with pytest.raises(InvalidInput, match=KEY_VARIABLE):
            ledger.add_webhook(endpoint, SECRET)


class TestCommandLine:
    def test_add_list_and_remove(self, sqlite_url: str, endpoint: str) -> None:
        """The secret comes from stdin; the list shows the state, never the secret."""
        runner = CliRunner()
        added = runner.invoke(app, ["--url", sqlite_url, "--json", "webhooks", "add", endpoint], input=SECRET)
        webhook_id = json.loads(added.stdout)["webhook_id"]
        listed = runner.invoke(app, ["--url", sqlite_url, "--json", "webhooks", "list"])
        removed = runner.invoke(app, ["--url", sqlite_url, "webhooks", "remove", webhook_id])
        again = runner.invoke(app, ["--url", sqlite_url, "webhooks", "remove", webhook_id])

        assert added.exit_code == 0, added.output
        (shown,) = json.loads(listed.stdout)
        assert (shown["webhook_id"], shown["url"], shown["attempts"], shown["failed"]) == (
            webhook_id,
            endpoint,
            0,
            0,
        )
        assert SECRET[6:22] not in added.output + listed.output
        assert removed.exit_code == 0
        assert again.exit_code == 1
