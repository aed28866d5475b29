"""The console served on its own (``keyledger console``): one operator, signed in by a
one-time link with a random token, as Jupyter does. The link opens a session (an
HttpOnly, SameSite=Strict cookie) and is spent; the console then acts as the operator."""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie

from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import Receive, Scope, Send

from keyledger import Actor, Ledger
from keyledger.adapters.driving.console import console
from keyledger.adapters.driving.console.security import SecurityHeaders, new_session, session_cookie

LOGIN_COOKIE = "keyledger_login"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class OneTimeLogin:
    """ASGI app: ``/login?token=...`` (once) opens a session for ``operator``; every other
    path is the console, for the sessions opened so."""

    def __init__(self, ledger: Ledger, operator: Actor, *, secure: bool = False) -> None:
        self.token = secrets.token_urlsafe(32)
        """The token of the login link; spent by its first use."""
        self._spent = False
        self._sessions: set[str] = set()
        self._operator = operator
        self._secure = secure
        self._console = console(ledger, actor=self.actor_of)
        self._login = SecurityHeaders(self._sign_in)

    def link(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/login?token={self.token}"

    def actor_of(self, scope: Scope) -> Actor | None:
        """The operator, for a request carrying a session the login link opened."""
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                morsel = SimpleCookie(value.decode("latin-1")).get(LOGIN_COOKIE)
                if morsel is not None and morsel.value in self._sessions:
                    return self._operator
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/login":
            await self._login(scope, receive, send)
        else:
            await self._console(scope, receive, send)

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(
            part.split("=", 1) for part in scope.get("query_string", b"").decode().split("&") if "=" in part
        )
        presented = query.get("token", "")
        if self._spent or not hmac.compare_digest(presented.encode(), self.token.encode()):
            response: HTMLResponse | RedirectResponse = HTMLResponse(
                "<!doctype html><title>Sign-in link spent</title><p>This sign-in link was already used or "
                "is wrong. Restart <code>keyledger console</code> for a new one.</p>",
                status_code=403,
            )
        else:
            self._spent = True
            session = new_session()
            self._sessions.add(session)
            response = RedirectResponse("/", status_code=303)
            cookie = session_cookie(session, "/", self._secure).replace(
                "keyledger_console=", f"{LOGIN_COOKIE}="
            )
            response.headers.append("set-cookie", cookie)
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)
