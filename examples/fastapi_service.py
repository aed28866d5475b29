"""A FastAPI service whose routes need a keyledger API key.

Run it (from the repository, after ``make demo`` or ``make test`` made ``.venv``)::

    .venv/bin/python examples/fastapi_service.py

It serves http://127.0.0.1:8000 with the ledger at ``KEYLEDGER_URL`` (else
``./keyledger.db``), records grace expiries every minute, and prints how to create a key
with the CLI and call the service with curl. ``/orders`` needs a key (the
``require_api_key`` dependency); ``/health`` does not. To protect every route instead,
wrap the app: ``ApiKeyMiddleware(app, ledger, exempt_paths=("/health",))`` from
``keyledger.adapters.asgi``, and read ``request.scope["keyledger.principal"]``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI

from keyledger import Ledger, Principal
from keyledger.adapters.fastapi import require_api_key

HOST, PORT = "127.0.0.1", 8000
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


def instructions() -> str:
    """How to try the service from another terminal."""
    url = "" if "KEYLEDGER_URL" in os.environ else f" --url '{URL}'"
    base = f"http://{HOST}:{PORT}"
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
    print(instructions())
    uvicorn.run(app, host=HOST, port=PORT)
