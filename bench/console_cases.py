"""The web console's pages, timed at the ASGI boundary (server time: routing, the ledger's
read, rendering), against the ledger's own read for the same page as the floor, in the
same run: the keys page of the account holding ``big_account`` keys (10,000 at the
default and small scales) and the audit page on the large store (1,000,000 events at the
default scale), each p95 against the issue's 100 ms."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx

from bench.harness import Row, percentile
from bench.workspace import BIG, Workspace
from keyledger import Actor, Ledger, Permission
from keyledger.adapters.console import console

TARGET_MS = 100.0


def _timed(
    ledger: Ledger, actor: Actor, paths: Callable[[], str], floor: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Milliseconds per page (GET ``paths()``) and per floor call, alternating."""
    app = console(ledger, actor=lambda scope: actor)
    pages: list[float] = []
    floors: list[float] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for n in range(repeats + 5):
                path = paths()
                began = time.perf_counter()
                response = await client.get(path)
                page = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, (path, response.status_code)
                began = time.perf_counter()
                floor()
                floor_ms = (time.perf_counter() - began) * 1000
                if n >= 5:  # the first few warm the caches and the templates
                    pages.append(page)
                    floors.append(floor_ms)

    asyncio.run(run())
    return pages, floors


def _row(metric: str, size: str, pages: list[float], floors: list[float]) -> Row:
    p50, p95 = percentile(pages, 0.5), percentile(pages, 0.95)
    floor95 = percentile(floors, 0.95)
    return Row(
        metric, size, f"{len(pages)} pages", "ms", keyledger=p95, floor=floor95, ratio=floor95 / p95,
        shown=f"p50 {p50:.1f} / p95 {p95:.1f} ms", target=f"p95 <= {TARGET_MS:.0f} ms", met=p95 <= TARGET_MS,
        samples={"ms": pages, "floor_ms": floors},
    )  # fmt: skip


def console_rows(space: Workspace) -> list[Row]:
    scale = space.scale
    repeats = max(5, min(100, scale.audit_repeats // 10))
    rows = []
    store = space.accounts()
    with Ledger.open(store.url, follow=False) as ledger:
        actor = Actor(user_id=f"{BIG}-u0", account=BIG, permissions=set(Permission))
        pages, floors = _timed(ledger, actor, lambda: "/", lambda: ledger.keys(BIG), repeats)
        rows.append(
            _row(
                "console keys page (floor: ledger.keys)",
                f"{len(ledger.keys(BIG)):,}-key account, 50 shown",
                pages,
                floors,
            )
        )
    large = space.large()
    population = large.population
    rng = random.Random(5)
    with Ledger.open(large.url, follow=False) as ledger:
        head = ledger.position
        account = population.accounts[0]
        actor = Actor(user_id=f"{account}-u0", account=account, permissions=set(Permission))
        cursor = {"after": 0}

        def path() -> str:
            cursor["after"] = rng.randrange(head)
            return f"/audit?after={cursor['after']}"

        pages, floors = _timed(
            ledger,
            actor,
            path,
            lambda: ledger.audit(account=account, limit=50, after=cursor["after"]),
            repeats,
        )
        rows.append(
            _row("console audit page (floor: ledger.audit)", f"{head:,} events, 50 a page", pages, floors)
        )
    return rows
