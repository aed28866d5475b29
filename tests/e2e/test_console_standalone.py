"""``keyledger console``: the one-time sign-in link and the loopback default."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from keyledger import Actor, Ledger, Permission
from keyledger.adapters.cli import app as cli
from keyledger.adapters.driving.console.standalone import OneTimeLogin


def fetch(app: Any, path: str, cookies: httpx.Cookies | None = None) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", cookies=cookies) as c:
            response = await c.get(path)
            if cookies is not None:
                cookies.update(c.cookies)
            return response

    return asyncio.run(send())


@pytest.fixture
def login(ledger: Ledger) -> OneTimeLogin:
    return OneTimeLogin(ledger, Actor(user_id="op", account="acme", permissions=set(Permission)))


class TestOneTimeLogin:
    def test_the_link_opens_a_session_once(self, login: OneTimeLogin) -> None:
        """The first use signs in; the link is then spent, for anyone."""
        browser, other = httpx.Cookies(), httpx.Cookies()

        first = fetch(login, f"/login?token={login.token}", browser)
        again = fetch(login, f"/login?token={login.token}", other)

        assert first.status_code == 303
        assert "HttpOnly" in first.headers["set-cookie"]
        assert "SameSite=Strict" in first.headers["set-cookie"]
        assert fetch(login, "/", browser).status_code == 200
        assert again.status_code == 403
        assert fetch(login, "/", other).status_code == 401

    def test_a_wrong_token_opens_nothing(self, login: OneTimeLogin) -> None:
        """A guessed token is refused and does not spend the real one."""
        browser = httpx.Cookies()

        wrong = fetch(login, "/login?token=" + "x" * 43, browser)

        assert wrong.status_code == 403
        assert fetch(login, "/", browser).status_code == 401
        assert fetch(login, f"/login?token={login.token}", browser).status_code == 303

    def test_without_the_link_the_console_answers_401(self, login: OneTimeLogin) -> None:
        """No session, no console."""
        assert fetch(login, "/").status_code == 401


class TestConsoleCommand:
    @pytest.fixture
    def served(self, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        monkeypatch.setattr("uvicorn.run", lambda app, **options: runs.append(options))
        return runs

    def test_it_serves_loopback_and_prints_a_sign_in_link(
        self, tmp_path: Path, served: list[dict[str, Any]]
    ) -> None:
        """By default it binds 127.0.0.1 and prints a link with a random token."""
        url = f"sqlite:///{tmp_path / 'k.db'}"

        result = CliRunner().invoke(cli, ["--url", url, "console", "--account", "acme", "--actor", "op"])

        assert result.exit_code == 0, result.output
        assert served[0]["host"] == "127.0.0.1"
        assert served[0]["access_log"] is False
        assert re.search(r"http://127\.0\.0\.1:8765/login\?token=[\w-]{43}", result.stdout)
        assert "warning" not in result.output

    def test_another_host_is_served_only_with_a_warning(
        self, tmp_path: Path, served: list[dict[str, Any]]
    ) -> None:
        """Binding beyond loopback is allowed when asked for, and says what it risks."""
        url = f"sqlite:///{tmp_path / 'k.db'}"

        result = CliRunner().invoke(
            cli, ["--url", url, "console", "--actor", "op", "--host", "0.0.0.0", "--port", "9000"]
        )

        assert result.exit_code == 0, result.output
        assert served[0]["host"] == "0.0.0.0"
        assert "warning: binding 0.0.0.0" in result.output
