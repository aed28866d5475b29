"""Server-rendered SVG charts for the report page: no script, no library, readable
without colour (each series has its own fill pattern, every bar its number, and each
chart has a text table beside it). Every label is escaped: creator names are typed by
users."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 30, 48
PATTERNS = ("solid", "hatch", "dots")
DEFS = (
    "<defs>"
    '<pattern id="solid" width="6" height="6" patternUnits="userSpaceOnUse">'
    '<rect width="6" height="6" fill="#1a56db"/></pattern>'
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#fff"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#b42318" stroke-width="3"/>'
    "</pattern>"
    '<pattern id="dots" width="6" height="6" patternUnits="userSpaceOnUse">'
    '<rect width="6" height="6" fill="#fff"/><circle cx="3" cy="3" r="1.6" fill="#067647"/></pattern>'
    "</defs>"
)


def _fill(chart: str, series: int) -> str:
    return f"url(#{chart}-{PATTERNS[series % len(PATTERNS)]})"


def _frame(chart: str, title: str, body: Sequence[str]) -> Markup:
    """The chart's SVG; its patterns' ids start with ``chart``, unique on the page."""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart}-title"><title id="{chart}-title">{escape(title)}</title>'
    )
    defs = DEFS.replace('id="', f'id="{chart}-')
    return Markup(head + defs + "".join(body) + "</svg>")  # noqa: S704 - built from escaped parts


def _axis(top: int) -> list[str]:
    base = HEIGHT - BOTTOM
    return [
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#5f6b7a"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#5f6b7a"/>',
        f'<text x="{LEFT - 6}" y="{base + 4}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top}</text>',
    ]


def grouped_bars(
    chart: str, title: str, groups: Sequence[str], series: Mapping[str, Sequence[int]]
) -> Markup:
    """Bars per group (a month), one per series, each with its pattern and its number."""
    names = list(series)
    top = max([1, *(v for values in series.values() for v in values)])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(groups))
    bar = min(28.0, slot * 0.8 / max(1, len(names)))
    body = _axis(top)
    for g, group in enumerate(groups):
        x0 = LEFT + g * slot + (slot - bar * len(names)) / 2
        for s, name in enumerate(names):
            value = series[name][g]
            h = plot_h * value / top
            x, y = x0 + s * bar, TOP + plot_h - h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                f'fill="{_fill(chart, s)}" stroke="#1f2933"><title>{escape(name)} in {escape(group)}: '
                f"{value}</title></rect>"
            )
            if value:  # a zero is the empty slot; the table beside the chart lists it
                body.append(
                    f'<text x="{x + bar / 2 - 1:.1f}" y="{y - 4:.1f}" text-anchor="middle">{value}</text>'
                )
        body.append(
            f'<text x="{LEFT + g * slot + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
    for s, name in enumerate(names):
        x = LEFT + s * 150
        body.append(
            f'<rect x="{x}" y="{HEIGHT - 20}" width="14" height="14" '
            f'fill="{_fill(chart, s)}" stroke="#1f2933"/>'
        )
        body.append(f'<text x="{x + 20}" y="{HEIGHT - 9}">{escape(name)}</text>')
    return _frame(chart, title, body)


def horizontal_bars(chart: str, title: str, values: dict[str, int]) -> Markup:
    """One labelled bar per name (keys per creator), largest first, with its number."""
    ordered = sorted(values.items(), key=lambda item: (-item[1], item[0]))[:12]
    top = max([1, *values.values()])
    label_w = 140
    row = min(36.0, (HEIGHT - TOP - 10) / max(1, len(ordered)))
    body: list[str] = []
    for i, (name, value) in enumerate(ordered):
        y = TOP + i * row
        w = (WIDTH - label_w - 60) * value / top
        shown = name if len(name) <= 20 else name[:19] + "…"
        body.append(
            f'<text x="{label_w - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">{escape(shown)}</text>'
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 3:.1f}" width="{w:.1f}" height="{max(4.0, row - 6):.1f}" '
            f'fill="{_fill(chart, 0)}" stroke="#1f2933"><title>{escape(name)}: {value}</title></rect>'
        )
        body.append(f'<text x="{label_w + w + 6:.1f}" y="{y + row / 2 + 4:.1f}">{value}</text>')
    if not ordered:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No active keys</text>')
    return _frame(chart, title, body)


def step_line(chart: str, title: str, points: Sequence[tuple[datetime, int]]) -> Markup:
    """A count over time (secrets in grace), as a step line with a marker per sample."""
    top = max([1, *(v for _, v in points)])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = _axis(top)
    if len(points) >= 2:
        start, end = points[0][0], points[-1][0]
        span = max((end - start).total_seconds(), 1.0)

        def xy(at: datetime, value: int) -> tuple[float, float]:
            return (LEFT + plot_w * (at - start).total_seconds() / span, TOP + plot_h * (1 - value / top))

        path: list[str] = []
        for i, (at, value) in enumerate(points):
            x, y = xy(at, value)
            if i:
                path.append(f"H{x:.1f} V{y:.1f}")
            else:
                path.append(f"M{x:.1f} {y:.1f}")
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="#5b21b6" stroke-width="2"/>')
        for at, value in points:
            x, y = xy(at, value)
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#5b21b6">'
                f"<title>{at:%Y-%m-%d %H:%M} UTC: {value}</title></circle>"
            )
        base = HEIGHT - BOTTOM + 16
        body.append(f'<text x="{LEFT}" y="{base}">{start:%Y-%m-%d %H:%M}</text>')
        body.append(f'<text x="{WIDTH - RIGHT}" y="{base}" text-anchor="end">{end:%Y-%m-%d %H:%M} UTC</text>')
    return _frame(chart, title, body)
