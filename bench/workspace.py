"""Where the cases get their stores: built once per run in a temporary folder on disk
(not tmpfs, so durable commits pay for real fsyncs), the large one cached between runs.

The large store takes minutes to write at the default scale, so it is kept in
``BENCH_CACHE`` (default: ``keyledger-bench-cache`` in the system's temporary folder;
``BENCH_CACHE=0`` turns caching off) under a digest of the code that shapes it (domain,
projections, transcoding, SQL views, this folder's fixtures) and of its size; each run
works on a copy, so a case that rewrites views never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fixtures import Population, account_names, sqlite_store
from bench.harness import Scale

ROOT = Path(__file__).resolve().parent.parent
SHAPING = (
    "domain/*.py", "projections/*.py", "adapters/driven/*.py", "keyledger/application.py",
    "keyledger/follower.py", "keyledger/commands.py", "bench/fixtures.py",
)  # fmt: skip
NOT_SHAPING = {"sql_rebuild.py", "delivery_lease.py", "delivery_store.py"}
"""Modules matched above that write no part of a store the cases are given (the bulk
rebuild, subscribers' positions): changing them keeps the cached store."""
BIG = "big-account"
SMALL = "small-account"


@dataclass
class Store:
    """A SQLite store a case reads or writes."""

    url: str
    path: Path
    population: Population
    how: str
    """How it was made (built, in how long; or taken from the cache)."""


def _digest(scale: Scale) -> str:
    code = hashlib.sha256(f"{scale.accounts}x{scale.keys_per_account}".encode())
    for pattern in SHAPING:
        for path in sorted(ROOT.glob(pattern)):
            if path.name in NOT_SHAPING:
                continue
            code.update(path.name.encode() + path.read_bytes())
    return code.hexdigest()[:16]


def _cache_folder() -> Path | None:
    setting = os.environ.get("BENCH_CACHE", "")
    if setting == "0":
        return None
    return Path(setting) if setting else Path(tempfile.gettempdir()) / "keyledger-bench-cache"


class Workspace:
    """The stores of one benchmark run, made on first use."""

    def __init__(self, scale: Scale, folder: Path, *, cache: bool) -> None:
        self.scale = scale
        self.folder = folder
        self.cache = _cache_folder() if cache else None
        self._large: Store | None = None
        self._accounts: Store | None = None

    def descriptions(self) -> dict[str, str]:
        """How each store made so far was made."""
        made = {"large": self._large, "accounts": self._accounts}
        return {name: store.how for name, store in made.items() if store is not None}

    def path(self, name: str) -> Path:
        """A path for a fresh file in this run's folder."""
        return self.folder / name

    def large(self) -> Store:
        """Many accounts of 1,000 keys each (the cases' "1,000,000 keys")."""
        if self._large is None:
            self._large = self._cached_large()
        return self._large

    def _build_large(self, path: Path) -> Store:
        began = time.perf_counter()
        url, population, views = sqlite_store(
            str(path), account_names(self.scale.accounts), self.scale.keys_per_account
        )
        total = time.perf_counter() - began
        how = f"built in {total:.0f} s (events {population.seconds:.0f} s, views catch-up {views:.0f} s)"
        return Store(url, path, population, how)

    def _cached_large(self) -> Store:
        target = self.path("large.db")
        if self.cache is None:
            return self._build_large(target)
        folder = self.cache / _digest(self.scale)
        saved, meta = folder / "large.db", folder / "population.pickle"
        if not meta.exists():
            folder.mkdir(parents=True, exist_ok=True)
            store = self._build_large(saved)
            meta.write_bytes(pickle.dumps((store.population, store.how)))
        population, how = pickle.loads(meta.read_bytes())
        shutil.copyfile(saved, target)
        return Store(f"sqlite:///{target}", target, population, f"{how}; cached in {folder}")

    def accounts(self) -> Store:
        """One account of ``big_account`` keys and one of ``small_account``, each with a
        snapshot at its head, as a long-lived ledger would have."""
        if self._accounts is None:
            path = self.path("accounts.db")
            began = time.perf_counter()
            url, population, _ = sqlite_store(
                str(path), [BIG], self.scale.big_account, snapshot=[BIG], seed=11
            )
            _, small, _ = sqlite_store(
                str(path), [SMALL], self.scale.small_account, snapshot=[SMALL], seed=13
            )
            population.secrets += small.secrets
            population.key_ids += small.key_ids
            population.accounts += small.accounts
            how = f"built in {time.perf_counter() - began:.0f} s"
            self._accounts = Store(url, path, population, how)
        return self._accounts
