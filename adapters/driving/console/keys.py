"""The API credentials pages: the account's keys (now or as of an instant), the Add key
form whose answer shows the new key once, and a key's page with its timeline,
Regenerate and Revoke."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyledger import IssuedKey, KeyLedgerError, KeyPage, KeyView
from keyledger.adapters.driving.console.app import Console, Page, Refused, endpoint, status_of
from keyledger.report import build_report

PAGE_SIZE = 50


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/", endpoint(console, keys_page), methods=["GET"]),
        Route("/keys", endpoint(console, create_key), methods=["POST"]),
        Route("/keys/{key_id}", endpoint(console, key_page), methods=["GET"]),
        Route("/keys/{key_id}/regenerate", endpoint(console, regenerate_key), methods=["POST"]),
        Route("/keys/{key_id}/revoke", endpoint(console, revoke_key), methods=["POST"]),
    ]


def parse_instant(value: str | None, field: str) -> datetime | None:
    """A date and time from a form (``datetime-local``, read as UTC), or ``None`` if empty."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{field}: not a date and time, such as 2026-03-01T09:30") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def page_number(value: str | None) -> int:
    try:
        number = int(value or "1")
    except ValueError:
        number = 1
    return max(number, 1)


async def keys_page(console: Console, page: Page, status: int = 200, **context: Any) -> Response:
    """The account's keys, newest first, a page at a time; as of ``at`` if given."""
    query = page.request.query_params
    try:
        at = parse_instant(query.get("at"), "as of")
    except Refused as refusal:
        at, status, context["error"] = None, refusal.status, refusal.message
    number = page_number(query.get("page"))
    if at is None:
        # Now: one page read from the catalogue, and its counts (never the whole list).
        found: KeyPage = await console.call(
            console.ledger.keys_page, page.account, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        total, active = found.total, found.active
        pages = max(1, -(-total // PAGE_SIZE))
        if number > pages:
            number = pages
            found = await console.call(
                console.ledger.keys_page, page.account, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
            )
        shown = found.keys
    else:
        # As of a past instant: the account's history replayed, then the page cut from it.
        keys: list[KeyView] = await console.call(console.ledger.keys, page.account, at=at)
        keys.reverse()
        total, active = len(keys), sum(1 for key in keys if key.status == "active")
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(number, pages)
        shown = keys[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    now = at or console.clock()
    flags = build_report(page.account, shown, 0, now)  # the report's flags of the keys shown
    context.setdefault("form", {"name": "", "purpose": "", "application": ""})
    return console.render(
        page,
        "keys.html",
        status,
        keys=shown,
        total=total,
        active=active,
        number=number,
        pages=pages,
        at=at,
        at_value=at.strftime("%Y-%m-%dT%H:%M") if at else "",
        now=now,
        stale=set(flags.not_regenerated),
        unused=set(flags.unused),
        **context,
    )


async def create_key(console: Console, page: Page) -> Response:
    """Add a key; the answer (never a redirect) shows it once and is never stored."""
    form = await console.form(page)
    values = {name: form.get(name, "") for name in ("name", "purpose", "application")}
    try:
        issued: IssuedKey = await console.call(console.ledger.create_key, page.actor, **values)
    except KeyLedgerError as error:
        status = status_of(error)
        return await keys_page(console, page, status, error=str(error), form=values)
    view = await console.call(console.ledger.key, page.account, issued.key_id)
    return show_secret(console, page, issued, view, created=True)


def show_secret(
    console: Console, page: Page, issued: IssuedKey, view: KeyView | None, *, created: bool
) -> Response:
    secret = issued.secret.get_secret_value()
    header = "Basic " + base64.b64encode(f"{secret}:".encode()).decode("ascii")
    return console.render(
        page,
        "keys_secret.html",
        secret=True,
        created=created,
        issued=issued,
        key=view,
        key_value=secret,
        authorization=header,
        curl=f"curl -H 'Authorization: {header}' {console.api_url}",
    )


async def find_key(console: Console, page: Page) -> KeyView:
    key_id = page.request.path_params["key_id"]
    view: KeyView | None = await console.call(console.ledger.key, page.account, key_id)
    if view is None:
        raise Refused(404, f"There is no key {key_id!r} in account {page.account!r}.")
    return view


async def key_page(console: Console, page: Page, status: int = 200, **context: Any) -> Response:
    """A key: its labels, its timeline, Regenerate and Revoke."""
    view = await find_key(console, page)
    history = await console.call(console.ledger.history, page.account, view.key_id)
    now = console.clock()
    return console.render(
        page,
        "keys_key.html",
        status,
        key=view,
        history=list(reversed(history)),
        now=now,
        deadline=now + console.ledger.grace_period,
        **context,
    )


async def regenerate_key(console: Console, page: Page) -> Response:
    """A new secret, shown once; the old one stops now or at its grace deadline."""
    form = await console.form(page)
    view = await find_key(console, page)
    mode = form.get("mode")
    if mode not in ("immediate", "grace"):
        return await key_page(
            console,
            page,
            400,
            regenerate_error="Choose how the old key ends: immediately or after the grace period.",
        )
    try:
        issued: IssuedKey = await console.call(
            console.ledger.regenerate_key, page.actor, view.key_id, mode=mode
        )
    except KeyLedgerError as error:
        status = status_of(error)
        return await key_page(console, page, status, regenerate_error=str(error))
    fresh = await console.call(console.ledger.key, page.account, issued.key_id)
    return show_secret(console, page, issued, fresh, created=False)


async def revoke_key(console: Console, page: Page) -> Response:
    """Revoke a key once its name is typed to confirm."""
    form = await console.form(page)
    view = await find_key(console, page)
    if form.get("confirm_name", "").strip() != view.name:
        return await key_page(
            console,
            page,
            400,
            revoke_error="To revoke, type the key's name exactly as shown. Nothing was changed.",
            reason=form.get("reason", ""),
        )
    reason = form.get("reason", "").strip() or None
    try:
        await console.call(console.ledger.revoke_key, page.actor, view.key_id, reason=reason)
    except KeyLedgerError as error:
        status = status_of(error)
        return await key_page(console, page, status, revoke_error=str(error), reason=form.get("reason", ""))
    return await key_page(console, page, notice=f"Key {view.name} is revoked: it never works again.")
