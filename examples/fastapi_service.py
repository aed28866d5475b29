"""A FastAPI service whose routes need a keyledger API key.

Run it (from the repository, after ``make demo`` or ``make test`` made ``.venv``)::

    .venv/bin/python examples/fastapi_service.py

It serves http://127.0.0.1:8000 (``--port N`` or the ``PORT`` variable choose another
port) with the ledger at ``KEYLEDGER_URL`` (else ``./keyledger.db``), records grace
expiries every minute, and prints how to create a key with the CLI and call the
service with curl. ``/orders`` needs a key (the
``require_api_key`` dependency); ``/health`` does not. To protect every route instead,
wrap the app: ``ApiKeyMiddleware(app, ledger, exempt_paths=("/health",))`` from
``keyledger.adapters.asgi``, and read ``request.scope["keyledger.principal"]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from starlette.requests import HTTPConnection
from starlette.types import Scope

from keyledger import Actor, Ledger, Permission, Principal
from keyledger.adapters.console import console
from keyledger.adapters.fastapi import require_api_key

HOST, DEFAULT_PORT = "127.0.0.1", 8000
URL = os.environ.get("KEYLEDGER_URL") or f"sqlite:///{Path('keyledger.db').resolve()}"

ledger = Ledger.open(URL)
ledger.start_sweeper(60)  # records GraceExpired once a deadline passes, without cron
api_key = require_api_key(ledger, realm="orders")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    ledger.close()  # stops the sweeper too


app = FastAPI(title="orders", lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/orders")
async def orders(principal: Annotated[Principal, Depends(api_key)]) -> dict[str, object]:
    return {"account": principal.account, "key": principal.key_id, "orders": []}


# The web console at /api-credentials, behind a stand-in for your own login: visiting
# /demo-login signs the browser in as "demo", who manages account acme's keys.
DEMO_SESSIONS: set[str] = set()


@app.get("/demo-login")
async def demo_login() -> RedirectResponse:
    session = secrets.token_urlsafe(32)
    DEMO_SESSIONS.add(session)
    response = RedirectResponse("/api-credentials/", status_code=303)
    response.set_cookie("demo_session", session, httponly=True, samesite="strict")
    return response


def signed_in(scope: Scope) -> Actor | None:
    """The console's actor: whoever your login put in the request (here, a demo cookie)."""
    if HTTPConnection(scope).cookies.get("demo_session") in DEMO_SESSIONS:
        return Actor(user_id="demo", account="acme", permissions=set(Permission))
    return None


app.mount("/api-credentials", console(ledger, actor=signed_in, login_url="/demo-login", api_url="/orders"))


def chosen_port(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The port to serve on: ``--port N``, else the ``PORT`` variable, else 8000."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, help=f"the port (default: PORT, else {DEFAULT_PORT})")
    given = parser.parse_args(argv).port
    if given is None:
        text = environ.get("PORT") or str(DEFAULT_PORT)
        if not text.isdigit():
            parser.error(f"PORT must be a port number, not {text!r}")
        given = int(text)
    if not 1 <= given <= 65535:
        parser.error(f"the port must be from 1 to 65535, not {given}")
    return given


def instructions(port: int = DEFAULT_PORT) -> str:
    """How to try the service from another terminal."""
    url = "" if "KEYLEDGER_URL" in os.environ else f" --url '{URL}'"
    base = f"http://{HOST}:{port}"
    return f"""keyledger FastAPI example on {base}, ledger {ledger.store}

In another terminal, create a key (printed once; keep it in a file, not in shell history):
  .venv/bin/keyledger{url} keys create --account acme --actor you --name example > key.txt
Call the service with it, as HTTP Basic (key as user name, empty password) or as Bearer:
  curl -u "$(cat key.txt):" {base}/orders
  curl -H "Authorization: Bearer $(cat key.txt)" {base}/orders
Without a key you get 401:
  curl -i {base}/orders
"""


if __name__ == "__main__":
    port = chosen_port(sys.argv[1:], os.environ)
    print(instructions(port))
    uvicorn.run(app, host=HOST, port=port)
