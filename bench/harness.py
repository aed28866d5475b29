"""The harness: scales, paired timing, result rows and the one table they print as.

Every ratio pairs a floor run and a keyledger run made back to back in the same process,
alternating which goes first (floor, keyledger, keyledger, floor, ...), so that a change
in machine load falls on both alike. A row's figures are the medians of its runs and its
ratio is the median of the per-pair ratios, oriented so that 1.0 means "as fast as the
floor" and higher is better (for memory, lower is better and the target says so).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Scale:
    """How big each case is and how many runs it takes."""

    name: str
    accounts: int
    """Accounts in the large store; each holds ``keys_per_account`` valid keys."""
    keys_per_account: int
    verify_sample: int
    """Keys verified per run (a shuffled sample of the indexed keys)."""
    runs: int
    heavy_runs: int
    """Runs of the slow cases: those that read the whole store (open, rebuild, integrity,
    memory) and commands on the large account."""
    commands: int
    """Commands per run on a SQLite file."""
    big_account: int
    small_account: int
    account_commands: int
    """Commands per run on one account: 1,000 (one event each), so that every run on the
    10,000-key account includes exactly one snapshot, as every thousandth command there
    does (``keyledger.application.snapshot_interval``)."""
    pg_seconds: float
    """Length of one PostgreSQL run, each writer sending commands for this long."""
    revocations: int
    audit_repeats: int

    @property
    def keys(self) -> int:
        return self.accounts * self.keys_per_account


SCALES = {
    "default": Scale(
        "default", accounts=1000, keys_per_account=1000, verify_sample=200_000, runs=5, heavy_runs=3,
        commands=1000, big_account=10_000, small_account=10, account_commands=1000, pg_seconds=8.0,
        revocations=200, audit_repeats=1000,
    ),
    "small": Scale(
        "small", accounts=20, keys_per_account=1000, verify_sample=20_000, runs=5, heavy_runs=3,
        commands=200, big_account=10_000, small_account=10, account_commands=1000, pg_seconds=1.0,
        revocations=50, audit_repeats=200,
    ),
    "smoke": Scale(
        "smoke", accounts=4, keys_per_account=250, verify_sample=1000, runs=1, heavy_runs=1,
        commands=10, big_account=200, small_account=10, account_commands=4, pg_seconds=0.5,
        revocations=3, audit_repeats=10,
    ),
}  # fmt: skip


def chosen_scale(environ: dict[str, str] | None = None) -> Scale:
    """``BENCH_SCALE`` (default or small), shrunk to the smoke sizes by ``BENCH_SMOKE=1``;
    ``BENCH_ACCOUNTS`` overrides the number of 1,000-key accounts in the large store."""
    env = os.environ if environ is None else environ
    name = env.get("BENCH_SCALE", "default") or "default"
    if name not in ("default", "small"):
        raise SystemExit(f"BENCH_SCALE must be 'default' or 'small', not {name!r}")
    scale = SCALES["smoke"] if env.get("BENCH_SMOKE") == "1" else SCALES[name]
    if env.get("BENCH_ACCOUNTS"):
        scale = replace(scale, accounts=int(env["BENCH_ACCOUNTS"]))
    return scale


@dataclass
class Row:
    """One line of the table: a measured figure, its floor, their ratio and the target."""

    metric: str
    size: str
    runs: str
    unit: str
    keyledger: float | None = None
    floor: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    shown: str = ""
    """The keyledger column as printed, when a bare number says too little."""
    samples: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def paired(
    floor: Callable[[], float], keyledger: Callable[[], float], runs: int
) -> tuple[list[float], list[float]]:
    """Run ``floor`` and ``keyledger`` ``runs`` times each, back to back, alternating
    which goes first; returns their measurements in run order."""
    floors: list[float] = []
    ours: list[float] = []
    for run in range(runs):
        if run % 2 == 0:
            floors.append(floor())
            ours.append(keyledger())
        else:
            ours.append(keyledger())
            floors.append(floor())
    return floors, ours


def pair_ratio(floors: Sequence[float], ours: Sequence[float], *, higher_is_better: bool) -> float:
    """The median over pairs of keyledger relative to the floor (1.0 = as fast)."""
    ratios = [o / f if higher_is_better else f / o for f, o in zip(floors, ours, strict=True)]
    return median(ratios)


def compared(
    metric: str,
    size: str,
    unit: str,
    floors: Sequence[float],
    ours: Sequence[float],
    *,
    higher_is_better: bool,
    minimum: float,
) -> Row:
    """A row for a paired measurement whose target is ``ratio >= minimum``."""
    ratio = pair_ratio(floors, ours, higher_is_better=higher_is_better)
    return Row(
        metric, size, f"median of {len(ours)}", unit, keyledger=median(ours), floor=median(floors),
        ratio=ratio, target=f"ratio >= {minimum}", met=ratio >= minimum,
        samples={"keyledger": list(ours), "floor": list(floors)},
    )  # fmt: skip


def latency_row(metric: str, size: str, values: Sequence[float], target_ms: float = 100.0) -> Row:
    """A row of latencies in milliseconds, shown as p50 / p99 against a p99 target."""
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return Row(
        metric, size, f"{len(values)} samples", "ms", keyledger=p99,
        shown=f"p50 {p50:.1f} / p99 {p99:.1f} ms", target=f"p99 <= {target_ms:.0f} ms", met=p99 <= target_ms,
        samples={"p50": p50, "p99": p99, "ms": list(values)},
    )  # fmt: skip


def figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def render(rows: Sequence[Row]) -> str:
    """The table, as plain text columns."""
    header = ("metric", "size", "runs", "keyledger", "floor", "ratio", "target", "met?")
    lines = [header]
    for row in rows:
        if row.error is not None:
            lines.append((row.metric, row.size, row.runs, f"ERROR: {row.error}", "", "", row.target, "-"))
            continue
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            (
                row.metric, row.size, row.runs, row.shown or figure(row.keyledger, row.unit),
                figure(row.floor, row.unit), "-" if row.ratio is None else f"{row.ratio:.2f}",
                row.target, met,
            )
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
