"""The console's protections that do not depend on a page: the session cookie, the CSRF
token bound to it, and the security headers on every response.

The console keeps no session state on the server: the session is a random cookie, and a
form's CSRF token is an HMAC of it (and of the actor it was issued to) under a key that
lives only in this process, so a token is good for one browser session and one actor,
and a restart invalidates the forms that were open (OWASP's "signed double-submit
cookie"). Tokens are compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyledger import Actor

SESSION_COOKIE = "keyledger_console"
_SESSION_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
)


def new_session() -> str:
    """A new session id: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def valid_session(value: str | None) -> str | None:
    """The session id a cookie holds, if it has a session id's shape."""
    if value is not None and _SESSION_SHAPE.fullmatch(value):
        return value
    return None


class CsrfTokens:
    """Issues and checks the forms' CSRF tokens under a key of this process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def issue(self, session: str, actor: Actor) -> str:
        """The token for forms of ``session`` shown to ``actor``."""
        message = "\0".join(("csrf", session, actor.account, actor.user_id)).encode()
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def check(self, session: str | None, actor: Actor, presented: str | None) -> bool:
        """Whether ``presented`` is the token of ``session`` and ``actor`` (constant time)."""
        if session is None or not presented:
            return False
        return hmac.compare_digest(self.issue(session, actor).encode(), presented.encode("utf-8", "replace"))


def session_cookie(session: str, path: str, secure: bool, name: str = SESSION_COOKIE) -> str:
    """The ``Set-Cookie`` value of a session: HttpOnly, SameSite=Strict, for the mount only."""
    attributes = [f"{name}={session}", f"Path={path or '/'}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


class SecurityHeaders:
    """ASGI middleware: every HTTP response of the console gets the security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
