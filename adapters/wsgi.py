"""API-key authentication for any WSGI application (Flask, Django, Falcon, ...).

::

    app.wsgi_app = ApiKeyMiddleware(app.wsgi_app, ledger, exempt_paths=("/health",))

The same contract as :mod:`keyledger.adapters.asgi`: for each request whose
``PATH_INFO`` is not exempt, the ``Authorization`` header is verified; a working key
puts the :class:`~keyledger.Principal` at ``environ["keyledger.principal"]`` and calls
the app, anything else gets ``401`` with ``WWW-Authenticate: Basic realm="..."`` and a
small JSON body, without calling the app.
"""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from keyledger.adapters.asgi import PRINCIPAL_KEY, UNAUTHORIZED_BODY, Verifier, challenge, check_realm

__all__ = ["PRINCIPAL_KEY", "ApiKeyMiddleware"]


class ApiKeyMiddleware:
    """Let through only requests that present a working API key of ``ledger``.

    ``exempt_paths`` are exact paths (``PATH_INFO``, such as ``"/health"``) served
    without a key.
    """

    def __init__(
        self,
        app: WSGIApplication,
        ledger: Verifier,
        *,
        exempt_paths: Iterable[str] = (),
        realm: str = "keyledger",
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.exempt_paths = frozenset(exempt_paths)
        self.realm = check_realm(realm)
        self._headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(UNAUTHORIZED_BODY))),
            ("WWW-Authenticate", challenge(self.realm)),
            ("Cache-Control", "no-store"),
        ]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exempt_paths:
            return self.app(environ, start_response)
        # WSGI servers hand header values over as latin-1 decoded native strings.
        principal = self.ledger.verify(environ.get("HTTP_AUTHORIZATION"))
        if principal is None:
            start_response("401 Unauthorized", list(self._headers))
            return [UNAUTHORIZED_BODY]
        environ[PRINCIPAL_KEY] = principal
        return self.app(environ, start_response)
