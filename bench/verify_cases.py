"""Verification against the large store: a raw key, a ``Basic`` header, the index's
memory per key, and opening the ledger until the first verify answers."""

from __future__ import annotations

import base64
import gc
import hashlib
import random
import sqlite3
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Row, compared, median, pair_ratio, paired
from bench.workspace import Workspace
from keyledger import Ledger
from keyledger.adapters.driven.stores import parse_url
from keyledger.application import KeyringApplication
from keyledger.projections.valid_keys import ValidKeyIndex

VALID = "SELECT digest, account, key_id, name, valid_until FROM keyledger_valid"


def raw_index(path: Path) -> dict[bytes, tuple[Any, ...]]:
    """The floor's index: the valid-key table read raw into a dict of digest -> tuple."""
    connection = sqlite3.connect(path)
    try:
        return {bytes(r[0]): (r[1], r[2], r[3], r[4]) for r in connection.execute(VALID)}
    finally:
        connection.close()


def ns_per_call(keys: list[str], check: Callable[[str], object]) -> float:
    """Mean nanoseconds of ``check`` over ``keys``; every key must be found."""
    missing = 0
    began = time.perf_counter_ns()
    for key in keys:
        if check(key) is None:
            missing += 1
    elapsed = time.perf_counter_ns() - began
    if missing:
        raise RuntimeError(f"{missing} of {len(keys)} valid keys were not found")
    return elapsed / len(keys)


def verify_rows(space: Workspace) -> list[Row]:
    store = space.large()
    scale = space.scale
    count = min(scale.verify_sample, len(store.population.secrets))
    size = f"{len(store.population.secrets):,} keys, {count:,} verified/run"
    keys = random.Random(5).sample(store.population.secrets, count)
    headers = ["Basic " + base64.b64encode(f"{key}:".encode()).decode() for key in keys]
    floor_index = raw_index(store.path)
    get, sha256, b64decode = floor_index.get, hashlib.sha256, base64.b64decode

    def floor_raw(key: str) -> object:
        return get(sha256(key.encode()).digest())

    def floor_basic(header: str) -> object:
        user = b64decode(header[6:]).split(b":", 1)[0]
        return get(sha256(user).digest())

    with Ledger.open(store.url) as ledger:
        verify = ledger.verify
        raw = paired(lambda: ns_per_call(keys, floor_raw), lambda: ns_per_call(keys, verify), scale.runs)
        basic = paired(
            lambda: ns_per_call(headers, floor_basic), lambda: ns_per_call(headers, verify), scale.runs
        )
    del floor_index
    return [
        compared("verify a raw key", size, "ns", *raw, higher_is_better=False, minimum=0.5),
        compared("verify a Basic header", size, "ns", *basic, higher_is_better=False, minimum=0.5),
    ]


def _traced(build: Callable[[], Any]) -> tuple[int, int]:
    """Bytes still allocated after ``build`` (what its result holds), and its length."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = build()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, len(result)


def memory_rows(space: Workspace) -> list[Row]:
    store = space.large()
    app = KeyringApplication(env=parse_url(store.url).env)
    views = app.construct_views()
    try:

        def ours() -> float:
            held, count = _traced(lambda: ValidKeyIndex(views.valid_entries()))
            return held / count

        def floor() -> float:
            held, count = _traced(lambda: raw_index(store.path))
            return held / count

        floors, measured = paired(floor, ours, space.scale.heavy_runs)
    finally:
        views.close()
        app.close()
    ratio = pair_ratio(floors, measured, higher_is_better=True)
    return [
        Row(
            "index memory per valid key (tracemalloc)", f"{len(store.population.secrets):,} keys",
            f"median of {len(measured)}", "B", keyledger=median(measured), floor=median(floors),
            ratio=ratio, target="ratio <= 1.2", met=ratio <= 1.2,
            samples={"keyledger": measured, "floor": floors},
        )
    ]  # fmt: skip


def open_rows(space: Workspace) -> list[Row]:
    store = space.large()
    first = store.population.secrets[0]
    digest = hashlib.sha256(first.encode()).digest()

    def floor() -> float:
        began = time.perf_counter()
        index = raw_index(store.path)
        if index.get(digest) is None:
            raise RuntimeError("the floor's index lacks the first key")
        return time.perf_counter() - began

    def ours() -> float:
        began = time.perf_counter()
        ledger = Ledger.open(store.url)
        try:
            if ledger.verify(first) is None:
                raise RuntimeError("the opened ledger refuses the first key")
            return time.perf_counter() - began
        finally:
            ledger.close()

    floors, measured = paired(floor, ours, space.scale.heavy_runs)
    ratio = pair_ratio(floors, measured, higher_is_better=False)
    seconds = median(measured)
    return [
        Row(
            "open ledger until first verify (warm cache)", f"{len(store.population.secrets):,} keys",
            f"median of {len(measured)}", "s", keyledger=seconds, floor=median(floors), ratio=ratio,
            target="<= 3 s, ratio >= 0.5", met=seconds <= 3 and ratio >= 0.5,
            samples={"keyledger": measured, "floor": floors},
        )
    ]  # fmt: skip
