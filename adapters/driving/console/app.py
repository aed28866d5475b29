"""What every page of the console shares: the actor from the host's scope, the session
and its CSRF token, rendering, and the ledger's refusals shown as pages."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Scope

from keyledger import (
    AccessRevoked,
    Actor,
    Conflict,
    InvalidInput,
    KeyAlreadyRevoked,
    KeyLedgerError,
    KeyNotFound,
    Ledger,
    PermissionDenied,
    StoreUnavailable,
    UserAccessUnchanged,
)
from keyledger.adapters.driving.console.security import (
    SESSION_COOKIE,
    CsrfTokens,
    new_session,
    session_cookie,
    valid_session,
)
from keyledger.bootstrap import Clock
from keyledger.ledger import system_clock

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 64 * 1024
ActorOf = Callable[[Scope], Actor | None]
T = TypeVar("T")

STATUS_OF_ERROR: dict[type[KeyLedgerError], int] = {
    InvalidInput: 400,
    PermissionDenied: 403,
    AccessRevoked: 403,
    KeyNotFound: 404,
    KeyAlreadyRevoked: 409,
    UserAccessUnchanged: 409,
    Conflict: 409,
    StoreUnavailable: 503,
}


class Refused(Exception):
    """A request the console itself refuses (no actor, bad CSRF token, a form too big),
    shown as a page with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Page:
    """One request as a page sees it: the actor, the session and its CSRF token."""

    request: Request
    actor: Actor
    session: str
    new_session: bool
    csrf_token: str
    base: str
    """The path the console is mounted at (``""`` at the root)."""

    @property
    def account(self) -> str:
        return self.actor.account


@dataclass
class Console:
    """What the pages share: the ledger, how to find the actor, the templates."""

    ledger: Ledger
    actor_of: ActorOf
    login_url: str | None = None
    api_url: str = "https://api.example.com/"
    clock: Clock = system_clock
    tokens: CsrfTokens = field(default_factory=CsrfTokens)
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every page is HTML: whatever a user typed shows as text
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = when
        self.templates.filters["left"] = time_left
        self.templates.filters["instant"] = lambda value: when(datetime.fromisoformat(str(value)))
        self.templates.filters["q"] = lambda value: urllib.parse.quote(str(value), safe="")

    # Per request

    async def page(self, request: Request) -> Page:
        """The page's actor and session; :class:`Refused` (401) without an actor."""
        actor = self.actor_of(request.scope)
        if actor is None:
            raise Refused(401, "Sign in to the service to manage its API credentials.")
        if not isinstance(actor, Actor):
            raise TypeError("the console's actor function must return an Actor or None")
        session = valid_session(request.cookies.get(SESSION_COOKIE))
        fresh = session is None
        if session is None:
            session = new_session()
        base = request.scope.get("root_path", "")
        return Page(request, actor, session, fresh, self.tokens.issue(session, actor), base)

    async def form(self, page: Page) -> dict[str, str]:
        """The POSTed form, once its CSRF token is the session's: else :class:`Refused` (403)."""
        request = page.request
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "The form is too large.")
        fields = {
            name: values[-1]
            for name, values in urllib.parse.parse_qs(
                body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50
            ).items()
        }
        session = None if page.new_session else page.session
        if not self.tokens.check(session, page.actor, fields.get("csrf_token")):
            raise Refused(
                403,
                "This form has expired or did not come from this console (its CSRF token is missing "
                "or wrong). Nothing was changed: reload the page and try again.",
            )
        return fields

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ledger call in a worker thread (the ledger does blocking I/O)."""
        return await run_in_threadpool(function, *args, **kwargs)

    def render(
        self, page: Page | None, template: str, status: int = 200, *, secret: bool = False, **context: Any
    ) -> HTMLResponse:
        """The template as an HTML response that no cache keeps (a page that shows a new
        key says so twice, with ``Pragma`` for old proxies)."""
        html = self.templates.get_template(template).render(
            page=page,
            actor=page.actor if page else None,
            base=page.base if page else "",
            csrf_token=page.csrf_token if page else "",
            section=template.removesuffix(".html").partition("_")[0],
            grace_seconds=int(self.ledger.grace_period.total_seconds()),
            grace_period=describe_period(self.ledger.grace_period),
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["cache-control"] = "no-store"
        if secret:
            response.headers["pragma"] = "no-cache"
        if page is not None and page.new_session:
            secure = page.request.url.scheme == "https"
            response.headers.append("set-cookie", session_cookie(page.session, page.base + "/", secure))
        return response

    def refused(self, request: Request, refusal: Refused) -> Response:
        """A refusal as a page; without an actor, the redirect to the host's login if any."""
        if refusal.status == 401 and self.login_url is not None:
            target = urllib.parse.quote(str(request.url.path), safe="/")
            separator = "&" if "?" in self.login_url else "?"
            return RedirectResponse(f"{self.login_url}{separator}next={target}", status_code=303)
        response = self.render(None, "refused.html", refusal.status, message=refusal.message)
        if refusal.status == 401:
            response.headers["www-authenticate"] = 'Cookie realm="keyledger console"'
        return response


Handler = Callable[[Console, Page], Awaitable[Response]]


def endpoint(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that resolves the page, then runs ``handler``; refusals become pages."""

    async def run(request: Request) -> Response:
        try:
            page = await console.page(request)
            return await handler(console, page)
        except Refused as refusal:
            return console.refused(request, refusal)

    return run


def status_of(error: KeyLedgerError) -> int:
    """The HTTP status of a command the ledger refused."""
    return next((status for kind, status in STATUS_OF_ERROR.items() if isinstance(error, kind)), 400)


def when(value: datetime | None) -> str:
    """An instant as the console shows it: UTC to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_left(until: datetime, now: datetime) -> str:
    """How long until ``until``, in words a person reads at a glance."""
    left = until - now
    if left <= timedelta(0):
        return "passed"
    minutes = int(left.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h left"
    if hours:
        return f"{hours} h {minutes} min left"
    return f"{minutes} min left" if minutes else "under a minute left"


def describe_period(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    return f"{seconds // 60} minutes"
