"""The reviewer's pages: users (revoking a user's access after a dry run that shows
which keys it removes), the audit trail (filters, cursor pages, an export with its
checkpoint, the integrity check) and the compliance report with its charts."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyledger import AuditEntry, KeyLedgerError, Ledger, Permission
from keyledger.adapters.driving.console import charts
from keyledger.adapters.driving.console.app import Console, Page, Refused, endpoint, status_of
from keyledger.adapters.driving.console.keys import parse_instant
from keyledger.projections.audit import ACTIONS

AUDIT_PAGE = 50
REMOVALS = ("UserAccessRevoked", "UserAccessRestored")


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/users", endpoint(console, users_page), methods=["GET"]),
        Route("/users/{user_id}/revoke", endpoint(console, preview_revoke), methods=["GET"]),
        Route("/users/{user_id}/revoke", endpoint(console, revoke_user), methods=["POST"]),
        Route("/users/{user_id}/restore", endpoint(console, restore_user), methods=["POST"]),
        Route("/audit", endpoint(console, audit_page), methods=["GET"]),
        Route("/audit/export", endpoint(console, export_audit), methods=["GET"]),
        Route("/audit/integrity", endpoint(console, check_integrity), methods=["POST"]),
        Route("/report", endpoint(console, report_page), methods=["GET"]),
    ]


def every_entry(ledger: Ledger, **filters: Any) -> Iterator[AuditEntry]:
    """Every audit entry matching ``filters``, a page of 10,000 at a time."""
    after = None
    while page := ledger.audit(**filters, limit=10_000, after=after):
        yield from page
        after = page[-1].position


# Users


def user_managing(page: Page) -> None:
    if not page.actor.can(Permission.USER_MANAGEMENT):
        raise Refused(
            403,
            f"The Users page needs the user_management permission, which user {page.actor.user_id!r} "
            f"does not have in account {page.account!r}.",
        )


def list_users(ledger: Ledger, account: str) -> list[dict[str, Any]]:
    """The account's key creators, the users who received a secret by regenerating a
    key, and those whose access was ever changed, with the keys they created and
    whether their access is revoked now."""
    keys = ledger.keys(account)
    revoked: dict[str, bool] = {}
    recipients: set[str] = set()  # a regeneration issues its new secret to whoever ran it
    for entry in every_entry(ledger, account=account, action=[*REMOVALS, "KeyRegenerated"]):
        if entry.action == "KeyRegenerated":
            recipients.add(entry.actor or "")
        else:
            revoked[entry.details["user_id"]] = entry.action == "UserAccessRevoked"
    names = sorted(({key.created_by for key in keys} | recipients | set(revoked)) - {""})
    return [
        {
            "user_id": name,
            "revoked": revoked.get(name, False),
            "created": [key for key in keys if key.created_by == name],
            "active": sum(1 for key in keys if key.created_by == name and key.status == "active"),
        }
        for name in names
    ]


async def users_page(console: Console, page: Page, status: int = 200, **context: Any) -> Response:
    user_managing(page)
    users = await console.call(list_users, console.ledger, page.account)
    return console.render(page, "users.html", status, users=users, **context)


async def preview_revoke(console: Console, page: Page, status: int = 200, **context: Any) -> Response:
    """The dry run: exactly which keys revoking this user's access removes; nothing recorded."""
    user_managing(page)
    user_id = page.request.path_params["user_id"]
    try:
        removed: list[str] = await console.call(
            console.ledger.preview_revoke_user_access, page.actor, user_id
        )
    except KeyLedgerError as error:
        return await users_page(console, page, status_of(error), error=str(error))
    keys = {key.key_id: key for key in await console.call(console.ledger.keys, page.account)}
    return console.render(
        page,
        "users_revoke.html",
        status,
        user_id=user_id,
        removed=[keys[key_id] for key_id in removed if key_id in keys],
        expected=",".join(removed),
        **context,
    )


async def revoke_user(console: Console, page: Page) -> Response:
    """Revoke, if the keys it removes are still those the preview showed."""
    user_managing(page)
    form = await console.form(page)
    user_id = page.request.path_params["user_id"]
    try:
        now_removed = await console.call(console.ledger.preview_revoke_user_access, page.actor, user_id)
        if ",".join(now_removed) != form.get("expected", ""):
            return await preview_revoke(
                console,
                page,
                409,
                error="The keys this would remove changed since you looked. Nothing was changed: check the "
                "list again, then confirm.",
            )
        removed = await console.call(console.ledger.revoke_user_access, page.actor, user_id)
    except KeyLedgerError as error:
        return await users_page(console, page, status_of(error), error=str(error))
    listed = ", ".join(removed) or "none"
    return await users_page(
        console, page, notice=f"Access of user {user_id} revoked; {len(removed)} key(s) removed: {listed}."
    )


async def restore_user(console: Console, page: Page) -> Response:
    user_managing(page)
    await console.form(page)
    user_id = page.request.path_params["user_id"]
    try:
        await console.call(console.ledger.restore_user_access, page.actor, user_id)
    except KeyLedgerError as error:
        return await users_page(console, page, status_of(error), error=str(error))
    return await users_page(
        console, page, notice=f"Access of user {user_id} restored (for new keys; removed keys stay removed)."
    )


# Audit trail


def audit_filters(page: Page) -> tuple[dict[str, Any], dict[str, str]]:
    """The ledger's audit filters from the query string (always this account), and the
    values to put back in the form."""
    query = page.request.query_params
    shown = {name: query.get(name, "") for name in ("key", "actor", "action", "since", "until")}
    filters: dict[str, Any] = {"account": page.account}
    if shown["key"]:
        filters["key_id"] = shown["key"]
    if shown["actor"]:
        filters["actor"] = shown["actor"]
    if shown["action"]:
        if shown["action"] not in ACTIONS:
            raise Refused(400, f"action: one of {', '.join(ACTIONS)}")
        filters["action"] = shown["action"]
    for name in ("since", "until"):
        instant = parse_instant(shown[name], name)
        if instant is not None:
            filters[name] = instant
    return filters, shown


async def audit_page(console: Console, page: Page, status: int = 200, **context: Any) -> Response:
    filters, shown = audit_filters(page)
    after_value = page.request.query_params.get("after", "")
    after = int(after_value) if after_value.isdigit() else None
    try:
        entries = await console.call(console.ledger.audit, **filters, limit=AUDIT_PAGE, after=after)
    except KeyLedgerError as error:
        entries, status, context["error"] = [], status_of(error), str(error)
    query = "&".join(f"{name}={value}" for name, value in shown.items() if value)
    return console.render(
        page,
        "audit.html",
        status,
        entries=entries,
        shown=shown,
        actions=ACTIONS,
        after=after,
        next_after=entries[-1].position if len(entries) == AUDIT_PAGE else None,
        filter_query=query,
        **context,
    )


async def export_audit(console: Console, page: Page) -> Response:
    """The matching entries as JSON Lines or CSV, zipped with the export's checkpoint."""
    filters, _ = audit_filters(page)
    form_format = page.request.query_params.get("format", "jsonl")
    if form_format not in ("jsonl", "csv"):
        raise Refused(400, "format: jsonl or csv")
    buffer = io.StringIO()
    checkpoint = await console.call(console.ledger.export_audit, buffer, form_format, **filters)
    stamp = console.clock().strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-{page.account}-{stamp}"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"{name}.{form_format}", buffer.getvalue())
        bundle.writestr(f"{name}.checkpoint.json", checkpoint.model_dump_json(indent=2))
        bundle.writestr(
            "README.txt",
            "Keep the checkpoint apart from the export. To verify the export offline:\n"
            "  from keyledger import ExportCheckpoint, verify_export\n"
            f"  verify_export('{name}.{form_format}', "
            f"ExportCheckpoint.model_validate_json(open('{name}.checkpoint.json').read()))\n",
        )
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Response(
        archive.getvalue(),
        media_type="application/zip",
        headers={
            "content-disposition": f'attachment; filename="{safe_name}.zip"',
            "cache-control": "no-store",
        },
    )


async def check_integrity(console: Console, page: Page) -> Response:
    """The ledger's integrity check (every event against its chain, the views against the events)."""
    await console.form(page)
    report = await console.call(console.ledger.check_integrity)
    # A failure's reason may name another account: show it only when it is about this one.
    reason = report.reason if report.reason and repr(page.account) in report.reason else None
    return await audit_page(console, page, integrity=report, integrity_reason=reason)


# Report


def months(now: datetime, count: int = 12) -> list[str]:
    year, month = now.year, now.month
    found = []
    for _ in range(count):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return found[::-1]


def short(month: str) -> str:
    """``2026-01`` as ``Jan 26``; other months as ``Feb``."""
    year, number = month.split("-")
    name = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[
        int(number) - 1
    ]
    return f"{name} {year[2:]}" if number == "01" else name


def grace_intervals(entries: list[AuditEntry]) -> list[tuple[datetime, datetime]]:
    """When each retired secret was in grace: from its regeneration to its deadline, or
    to the command that ended it sooner (an immediate regeneration, a revocation, a
    user's removal)."""
    open_by_key: dict[str, list[list[datetime]]] = {}
    intervals: list[list[datetime]] = []
    for entry in entries:
        d = entry.details
        ended: list[str] = []
        if entry.action == "KeyRegenerated" and d.get("mode") == "grace" and entry.key_id:
            until = datetime.fromisoformat(str(d["grace_until"]).replace("Z", "+00:00"))
            interval = [entry.occurred_at, until]
            intervals.append(interval)
            open_by_key.setdefault(entry.key_id, []).append(interval)
        elif (
            entry.action == "KeyRegenerated" and d.get("mode") == "immediate"
        ) or entry.action == "KeyRevoked":
            ended = [entry.key_id] if entry.key_id else []
        elif entry.action == "UserAccessRevoked":
            ended = list(d.get("removed_key_ids", []))
        for key_id in ended:
            for interval in open_by_key.pop(key_id, []):
                interval[1] = min(interval[1], entry.occurred_at)
    return [(start, end) for start, end in intervals]


def report_data(ledger: Ledger, account: str) -> dict[str, Any]:
    report = ledger.report(account)
    now = report.generated_at
    entries = list(
        every_entry(
            ledger,
            account=account,
            action=["KeyCreated", "KeyRegenerated", "KeyRevoked", "UserAccessRevoked"],
        )
    )
    groups = months(now)
    counts: dict[str, Counter[str]] = {name: Counter() for name in ("created", "regenerated", "revoked")}
    for entry in entries:
        month = entry.occurred_at.strftime("%Y-%m")
        if entry.action == "KeyCreated":
            counts["created"][month] += 1
        elif entry.action == "KeyRegenerated":
            counts["regenerated"][month] += 1
        elif entry.action == "KeyRevoked":
            counts["revoked"][month] += 1
        else:
            counts["revoked"][month] += len(entry.details.get("removed_key_ids", []))
    series = {f"keys {name}": [counts[name][m] for m in groups] for name in counts}
    window = now - timedelta(days=90)
    intervals = [(max(s, window), e) for s, e in grace_intervals(entries) if e > window]
    changes = sorted({window, now, *(t for s, e in intervals for t in (s, e) if window <= t <= now)})
    points = [(at, sum(1 for s, e in intervals if s <= at < e)) for at in changes]
    return {
        "report": report,
        "month_rows": list(zip(groups, *series.values(), strict=True)),
        "per_month": charts.grouped_bars(
            "per-month", "Keys created, regenerated and revoked per month", [short(m) for m in groups], series
        ),
        "per_creator": charts.horizontal_bars(
            "per-creator", "Active keys per creator", report.keys_per_creator
        ),
        "in_grace": charts.step_line("in-grace", "Secrets in grace over time", points),
        "grace_rows": points[-40:],
    }


async def report_page(console: Console, page: Page) -> Response:
    data = await console.call(report_data, console.ledger, page.account)
    return console.render(page, "report.html", **data)
