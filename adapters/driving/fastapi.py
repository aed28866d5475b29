"""A FastAPI dependency for apps that protect some routes only (the ``asgi`` extra).

::

    api_key = require_api_key(ledger)

    @app.get("/orders")
    async def orders(principal: Annotated[Principal, Depends(api_key)]) -> list[Order]: ...

The dependency returns the :class:`~keyledger.Principal` of a working key presented in
the ``Authorization`` header (``Basic`` with the key as user name and an empty password,
or ``Bearer``), or raises ``HTTPException(401)`` with ``WWW-Authenticate`` and
``Cache-Control: no-store``; when the ledger refuses because it cannot show it is current
(its ``health()`` is not ok), it raises ``HTTPException(503)`` with ``Retry-After`` and
``Cache-Control: no-store`` instead. FastAPI answers either as ``{"detail": ...}`` (fixed
text, never the health reason), byte for byte what the ASGI and WSGI middleware send. It is
declared as an API-key security scheme, so the OpenAPI docs show which routes need a key.
Where :class:`keyledger.adapters.driving.asgi.ApiKeyMiddleware` already verified the request, its
principal is reused. This is the only module that imports FastAPI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from keyledger.adapters.driving.asgi import (
    DEFAULT_RETRY_AFTER,
    PRINCIPAL_KEY,
    UNAUTHORIZED_DETAIL,
    UNAVAILABLE_DETAIL,
    OutageCheck,
    Verifier,
    check_realm,
    check_retry_after,
    strict,
    unauthorized_headers,
    unavailable_headers,
)
from keyledger.results import Principal

DETAIL = UNAUTHORIZED_DETAIL
"""The ``detail`` of every 401 (the ASGI and WSGI middleware send the same)."""


def require_api_key(
    ledger: Verifier, *, realm: str = "keyledger", retry_after: int = DEFAULT_RETRY_AFTER
) -> Callable[..., Awaitable[Principal]]:
    """A dependency that returns the request's :class:`~keyledger.Principal` or answers
    401 (503 with ``Retry-After: retry_after`` while the ledger is not current)."""
    refused_headers = unauthorized_headers(check_realm(realm))
    outage_headers = unavailable_headers(check_retry_after(retry_after))
    outage_check = OutageCheck(ledger)
    scheme = APIKeyHeader(
        name="Authorization",
        scheme_name="keyledger",
        description="An API key: 'Bearer <key>', or HTTP Basic with the key as user name and no password.",
        auto_error=False,
    )

    # async: verification is an in-memory lookup, so it runs on the event loop, not in a
    # thread, unless the ledger is strict.
    async def api_key_principal(
        request: Request,
        authorization: str | None = Security(scheme),
    ) -> Principal:
        verified = request.scope.get(PRINCIPAL_KEY)
        if isinstance(verified, Principal):
            return verified
        if len(request.headers.getlist("authorization")) != 1:
            authorization = None  # two credentials: refuse rather than pick one
        if strict(ledger):  # reads the store first: keep that I/O off the event loop
            principal = await asyncio.to_thread(ledger.verify, authorization)
        else:
            principal = ledger.verify(authorization)
        if principal is not None:
            return principal
        outage = outage_check.known()
        if outage is None:  # health() may read the store: off the event loop too
            outage = await asyncio.to_thread(outage_check)
        if outage:
            raise HTTPException(status_code=503, detail=UNAVAILABLE_DETAIL, headers=outage_headers)
        raise HTTPException(status_code=401, detail=UNAUTHORIZED_DETAIL, headers=refused_headers)

    return api_key_principal
