"""A Flask service whose routes need a keyledger API key (any WSGI app works the same).

Run it (from the repository, after ``make demo`` or ``make test`` made ``.venv``)::

    .venv/bin/python examples/flask_service.py

It serves http://127.0.0.1:8000 (``--port N`` or the ``PORT`` variable choose another
port) with the ledger at ``KEYLEDGER_URL`` (else ``./keyledger.db``), records grace
expiries every minute, and prints how to create a key with the CLI and call the
service with curl. Every route but ``/health`` needs a key; a
route finds who called in ``request.environ["keyledger.principal"]``. Flask's own server
is for trying things out; in production, serve ``app`` with gunicorn or waitress.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from keyledger import Ledger, Principal
from keyledger.adapters.wsgi import PRINCIPAL_KEY, ApiKeyMiddleware

HOST, DEFAULT_PORT = "127.0.0.1", 8000
URL = os.environ.get("KEYLEDGER_URL") or f"sqlite:///{Path('keyledger.db').resolve()}"

ledger = Ledger.open(URL)
ledger.start_sweeper(60)  # records GraceExpired once a deadline passes, without cron
atexit.register(ledger.close)

app = Flask(__name__)
app.wsgi_app = ApiKeyMiddleware(app.wsgi_app, ledger, exempt_paths=("/health",), realm="orders")  # type: ignore[method-assign]


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(status="ok")


@app.get("/orders")
def orders() -> ResponseReturnValue:
    principal: Principal = request.environ[PRINCIPAL_KEY]
    return jsonify(account=principal.account, key=principal.key_id, orders=[])


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
    return f"""keyledger Flask example on {base}, ledger {ledger.store}

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
    app.run(host=HOST, port=port)
