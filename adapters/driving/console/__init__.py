"""The web console: the API credentials page for the people who manage keys, and the
users, audit trail and report pages for those who review them (Starlette and Jinja2,
the ``console`` extra). Mount it behind the host's login with :func:`console`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from keyledger import Ledger
from keyledger.adapters.driving.console import keys, review
from keyledger.adapters.driving.console.app import HERE, ActorOf, Console
from keyledger.adapters.driving.console.security import SecurityHeaders
from keyledger.bootstrap import Clock
from keyledger.ledger import system_clock

__all__ = ["console"]


def console(
    ledger: Ledger,
    *,
    actor: ActorOf,
    login_url: str | None = None,
    api_url: str = "https://api.example.com/",
    clock: Clock = system_clock,
) -> ASGIApp:
    """The web console of ``ledger`` as an ASGI app, to mount behind the host's login:
    ``app.mount("/api-credentials", console(ledger, actor=lambda scope: ...))``.

    ``actor`` receives the request's ASGI scope (where the host's authentication put its
    user) and returns the :class:`~keyledger.Actor` acting, or ``None``: then the console
    answers ``401``, or redirects to ``login_url`` (with ``next=`` the page asked for).
    The console has no users of its own; every permission is the ledger's, and an actor
    sees only its own account. ``api_url`` is the service the keys are for, shown in the
    ready-made curl line. ``clock`` is the ledger's (for the deadlines and time left shown).
    """
    shared = Console(ledger, actor, login_url, api_url, clock)
    routes: list[BaseRoute] = [
        *keys.routes(shared),
        *review.routes(shared),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))
