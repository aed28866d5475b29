"""The example services work as written: each, loaded from ``examples/`` on a SQLite
ledger and served on 127.0.0.1, lets a key through and refuses a missing one."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from keyledger import Actor, Permission

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Serve = Callable[[Any], httpx.Client]


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Iterator[Callable[[str], ModuleType]]:
    """Load an example module with KEYLEDGER_URL naming the test's SQLite file."""
    monkeypatch.setenv("KEYLEDGER_URL", sqlite_url)
    loaded: list[ModuleType] = []

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"keyledger_example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.ledger.close()


def new_key(module: ModuleType) -> str:
    actor = Actor("you", "acme", {Permission.INTEGRATION})
    return str(module.ledger.create_key(actor, name="example").secret.get_secret_value())


@pytest.mark.parametrize(
    ("name", "serve"), [("fastapi_service", "serve_asgi"), ("flask_service", "serve_wsgi")]
)
class TestExampleServices:
    def test_orders_need_a_key_and_health_does_not(
        self, request: pytest.FixtureRequest, load_example: Callable[[str], ModuleType], name: str, serve: str
    ) -> None:
        """/orders answers a working key with its account and a missing key with 401; /health is open."""
        module = load_example(name)
        http = request.getfixturevalue(serve)(module.app)
        key = new_key(module)

        allowed = http.get("/orders", auth=(key, ""))
        refused = http.get("/orders")
        health = http.get("/health")

        assert allowed.status_code == 200
        assert allowed.json()["account"] == "acme"
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="orders"'
        assert health.status_code == 200

    def test_the_instructions_show_the_cli_and_curl(
        self, load_example: Callable[[str], ModuleType], name: str, serve: str
    ) -> None:
        """The printed instructions create a key with the CLI and call the service with curl."""
        text = load_example(name).instructions()

        assert "keyledger keys create" in text
        assert 'curl -u "$(cat key.txt):" http://127.0.0.1:8000/orders' in text
