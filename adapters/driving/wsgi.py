"""API-key authentication for any WSGI application (Flask, Django, Falcon, ...).

::

    app.wsgi_app = ApiKeyMiddleware(app.wsgi_app, ledger, exempt_paths=("/health",))

The same contract as :mod:`keyledger.adapters.driving.asgi`: for each request whose
``PATH_INFO`` is not exempt, the ``Authorization`` header is verified; a working key
puts the :class:`~keyledger.Principal` at ``environ["keyledger.principal"]`` and calls
the app, anything else gets the same ``401`` as from the ASGI middleware (headers and
body, byte for byte), without calling the app. When the ledger refuses because it cannot show
it is current (its ``health()`` is not ok), the answer is ``503`` with ``Retry-After``
instead, so an outage is not mistaken for a bad key.
"""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from keyledger.adapters.driving.asgi import (
    DEFAULT_RETRY_AFTER,
    PRINCIPAL_KEY,
    UNAUTHORIZED_BODY,
    UNAVAILABLE_BODY,
    OutageCheck,
    Verifier,
    check_realm,
    check_retry_after,
    unauthorized_headers,
    unavailable_headers,
)

__all__ = ["PRINCIPAL_KEY", "ApiKeyMiddleware"]


class ApiKeyMiddleware:
    """Let through only requests that present a working API key of ``ledger``.

    ``exempt_paths`` are exact paths (``PATH_INFO``, such as ``"/health"``) served
    without a key. ``retry_after`` is the ``Retry-After`` of a 503 during an outage, in
    seconds.
    """

    def __init__(
        self,
        app: WSGIApplication,
        ledger: Verifier,
        *,
        exempt_paths: Iterable[str] = (),
        realm: str = "keyledger",
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.exempt_paths = frozenset(exempt_paths)
        self.realm = check_realm(realm)
        self.retry_after = check_retry_after(retry_after)
        self._outage = OutageCheck(ledger)
        self._headers = _headers(UNAUTHORIZED_BODY, unauthorized_headers(self.realm))
        self._unavailable_headers = _headers(UNAVAILABLE_BODY, unavailable_headers(self.retry_after))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exempt_paths:
            return self.app(environ, start_response)
        # WSGI servers hand header values over as latin-1 decoded native strings.
        principal = self.ledger.verify(environ.get("HTTP_AUTHORIZATION"))
        if principal is None:
            if self._outage():
                start_response("503 Service Unavailable", list(self._unavailable_headers))
                return [UNAVAILABLE_BODY]
            start_response("401 Unauthorized", list(self._headers))
            return [UNAUTHORIZED_BODY]
        environ[PRINCIPAL_KEY] = principal
        return self.app(environ, start_response)


def _headers(body: bytes, headers: dict[str, str]) -> list[tuple[str, str]]:
    """An answer's WSGI headers: JSON of ``body``'s length, then ``headers``."""
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers.items()]
