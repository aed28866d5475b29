"""A commit whose answer is lost (the connection drops during ``COMMIT``) is taken as
done, never decided a second time."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from keyledger import Actor, Ledger
from keyledger.testing import ManualClock

pytestmark = pytest.mark.postgres


class CommitCutter:
    """A TCP proxy to the PostgreSQL server on 127.0.0.1. Once armed, it lets the next
    ``COMMIT`` of a transaction that appended events (locked the events table) reach the server, waits for the
    server's answer (so the commit has happened), and closes the client's connection
    instead of passing the answer on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            connection = {"inserted": False, "cut_next_answer": False}
            threading.Thread(target=self._up, args=(client, server, connection), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, connection), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, connection: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                if b"LOCK TABLE" in data:  # the append's prelude (sent as text every time)
                    connection["inserted"] = True
                if b"COMMIT\x00" in data:
                    if connection["inserted"] and self.armed.is_set():
                        self.armed.clear()
                        connection["cut_next_answer"] = True
                    connection["inserted"] = False
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shut(server)

    def _down(self, server: socket.socket, client: socket.socket, connection: dict[str, bool]) -> None:
        try:
            while data := server.recv(65536):
                if connection["cut_next_answer"]:
                    self.cut.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client)
            _shut(server)

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[str, CommitCutter]]:
    parts = urlsplit(postgres_url)
    cutter = CommitCutter((parts.hostname or "127.0.0.1", parts.port or 5432))
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{cutter.port}")), cutter
    finally:
        cutter.close()


class TestACommitWhoseAnswerIsLost:
    def test_returns_the_secret_of_the_one_key_recorded(
        self, proxied: tuple[str, CommitCutter], clock: ManualClock, alice: Actor
    ) -> None:
        url, cutter = proxied
        with Ledger.open(url, clock=clock, follow=False) as ledger:
            ledger.create_key(alice, name="before")
            cutter.armed.set()

            issued = ledger.create_key(alice, name="cut at commit")

            assert cutter.cut.is_set(), "the connection was cut after the server committed"
            assert [k.name for k in ledger.keys("acme")] == ["before", "cut at commit"]
            created = ledger.audit(account="acme", action="KeyCreated")
            assert [e.key_id for e in created][-1] == issued.key_id
            assert len(created) == 2
            principal = ledger.verify(issued.secret.get_secret_value())
            assert principal is not None
            assert principal.key_id == issued.key_id

    def test_a_regeneration_cut_at_commit_is_recorded_once(
        self, proxied: tuple[str, CommitCutter], clock: ManualClock, alice: Actor
    ) -> None:
        url, cutter = proxied
        with Ledger.open(url, clock=clock, follow=False) as ledger:
            key_id = ledger.create_key(alice, name="one").key_id
            cutter.armed.set()

            issued = ledger.regenerate_key(alice, key_id, mode="immediate")

            assert cutter.cut.is_set()
            assert len(ledger.audit(account="acme", action="KeyRegenerated")) == 1
            assert ledger.verify(issued.secret.get_secret_value()) is not None
