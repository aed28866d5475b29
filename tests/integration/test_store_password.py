"""A PostgreSQL password in the store URL reaches the server and no repr: an error
tracker that captures frame locals (the settings, the ledger) must not ship it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from keyledger import Ledger
from keyledger.adapters.driven.stores import parse_url

PASSWORD = "s3cretpw"


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` set for its user (the test server trusts any password)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}{port}"))


class TestPasswordNeverShown:
    def test_a_ledger_opened_with_a_password_shows_it_in_no_repr(
        self, postgres_url: str, open_ledger: Callable[..., Ledger]
    ) -> None:
        """The settings and the ledger opened on a URL with a password name the store without it."""
        url = with_password(postgres_url, PASSWORD)
        settings = parse_url(url)

        ledger = open_ledger(url)

        assert ledger.position == 0  # the server accepted the connection
        for text in (repr(settings), str(settings), repr(ledger), str(ledger), repr(vars(ledger))):
            assert PASSWORD not in text
        assert "127.0.0.1" in repr(ledger)
