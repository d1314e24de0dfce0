"""Small line charts as inline SVG, drawn on the server: no chart library to load
(nothing external may be), nothing for a Content-Security-Policy to forbid.

Time on x (epoch milliseconds), values on y; each series is a polyline with a
dot per point and a <title> tooltip; an optional dashed threshold line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 28, 34
COLOURS = ("#2c5fb3", "#c2571a", "#19793a", "#7a3db8")

Point = tuple[float, float]


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _day(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def line_chart(title: str, series: Sequence[tuple[str, Sequence[Point]]], *,
               threshold: float | None = None, y_min: float | None = None,
               y_max: float | None = None, chart_id: str = "") -> str:
    """An ``<svg>`` of ``series`` [(label, [(time_ms, value)])]; says so when there is no point."""
    points = [p for _, pts in series for p in pts]
    head = (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
            f'xmlns="http://www.w3.org/2000/svg"'
            f'{f" id={chr(34)}{escape(chart_id)}{chr(34)}" if chart_id else ""}>'
            f'<title>{escape(title)}</title>'
            f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>')
    if not points:
        return (head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                f'class="chart-empty">no data yet</text></svg>')
    xs = [t for t, _ in points]
    ys = [v for _, v in points] + ([threshold] if threshold is not None else [])
    x0, x1 = min(xs), max(xs)
    lo = min(ys) if y_min is None else y_min
    hi = max(ys) if y_max is None else max(y_max, max(ys))
    if hi == lo:
        hi = lo + 1
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * plot_w

    def sy(v: float) -> float:
        return TOP + (1 - (v - lo) / (hi - lo)) * plot_h

    parts = [head,
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
             f'class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" class="tick">{_fmt(hi)}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" class="tick">{_fmt(lo)}</text>',
             f'<text x="{LEFT}" y="{HEIGHT - 8}" class="tick">{escape(_day(x0))}</text>',
             f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end" class="tick">'
             f'{escape(_day(x1))}</text>']
    if threshold is not None:
        y = sy(threshold)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
                     f'class="threshold"><title>threshold {_fmt(threshold)}</title></line>')
    for i, (label, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        ordered = sorted(pts)
        if len(ordered) > 1:
            path = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in ordered)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"/>')
        parts.extend(f'<circle cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="3.5" fill="{colour}" '
                     f'class="point"><title>{escape(label)} {escape(_day(t))}: {_fmt(v)}</title>'
                     f'</circle>' for t, v in ordered)
        parts.append(f'<text x="{LEFT + plot_w - 4 - 110 * i}" y="16" text-anchor="end" '
                     f'fill="{colour}" class="legend">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
