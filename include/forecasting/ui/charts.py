"""Server-side SVG line charts over months: no JavaScript, no CDN, so they render offline.

A chart is plain markup inlined into the page; its colours come from CSS classes (``s-<key>``)
that the page styles for light and dark mode. Every point is a ``<circle>`` carrying
``data-series``, ``data-month`` and ``data-value`` (what tests and scripts read) and a
``<title>`` (what a person reads on hover).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Series:
    """One line: ``points`` are (month "YYYY-MM", value) in any order; ``dashed`` for forecasts."""

    key: str  # CSS class suffix and data-series value
    label: str  # legend text
    points: list[tuple[str, float]] = field(default_factory=list)
    dashed: bool = False
    line: bool = True  # False: markers only (e.g. earlier forecasts, one per month)
    style: str | None = None  # the CSS class suffix when it is not the key (keys that are data)

    @property
    def css(self) -> str:
        return html.escape(self.style or self.key)


@dataclass
class Band:
    """A shaded range per month, e.g. a prediction interval: (month, low, high)."""

    key: str
    label: str
    points: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Frame:
    """Where things go: months map to x, values to y (computed once, shared by every element)."""

    first: pd.Period
    months: int
    y_max: float
    left: int
    top: int
    width: int
    height: int

    def x(self, month: str) -> float:
        index = (pd.Period(month, "M") - self.first).n
        step = self.width / max(self.months - 1, 1)
        return round(self.left + index * step, 1)

    def y(self, value: float) -> float:
        return round(self.top + self.height * (1 - value / self.y_max), 1)


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value != int(value) else f"{value:.0f}"


def line_chart(
    series: Sequence[Series],
    *,
    bands: Sequence[Band] = (),
    title: str,
    y_label: str,
    x_label: str = "month",
    marker: tuple[str, str] | None = None,
    width: int = 820,
    height: int = 340,
) -> str:
    """An SVG chart of ``series`` over their months, y from 0; ``marker`` = (month, label) draws a
    vertical line, e.g. at the last month with actuals. Empty series are left out."""
    series = [s for s in series if s.points]
    bands = [b for b in bands if b.points]
    months = [m for s in series for m, _ in s.points] + [m for b in bands for m, _, _ in b.points]
    if not months:
        return '<p class="muted">Nothing to chart.</p>'
    periods = sorted({pd.Period(m, "M") for m in months})
    values = [v for s in series for _, v in s.points] + [hi for b in bands for _, _, hi in b.points]
    step = nice_step(max(max(values), 0.0) or 1.0)
    y_max = step * math.ceil((max(max(values), 0.0) or 1.0) / step)
    frame = Frame(
        first=periods[0],
        months=(periods[-1] - periods[0]).n + 1,
        y_max=y_max,
        left=64,
        top=24,
        width=width - 64 - 32,
        height=height - 24 - 56,
    )
    parts = [
        # Its text scales with it: no more than 1.3 times its own size on a wide screen.
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'style="max-width: min(100%, {round(width * 1.3)}px)" '
        f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{html.escape(title)}</title>",
        *_y_axis(frame, step, y_label),
        *_x_axis(frame, x_label),
    ]
    for band in bands:
        parts.append(_band(frame, band))
    if marker is not None:
        x = frame.x(marker[0])
        parts.append(
            f'<line class="marker" x1="{x}" x2="{x}" y1="{frame.top}" y2="{frame.top + frame.height}"/>'
            f'<text class="marker-label" x="{x}" y="{frame.top - 6}" text-anchor="middle">'
            f"{html.escape(marker[1])}</text>"
        )
    for s in series:
        parts.append(_series(frame, s))
    parts.append("</svg>")
    return "".join(parts) + _legend(series, bands)


def _y_axis(frame: Frame, step: float, label: str) -> list[str]:
    out = []
    ticks = round(frame.y_max / step)
    for i in range(ticks + 1):
        value = i * step
        y = frame.y(value)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.left + frame.width}" y1="{y}" y2="{y}"/>'
            f'<text class="tick" x="{frame.left - 6}" y="{y + 4}" text-anchor="end">{_number(value)}</text>'
        )
    middle = frame.top + frame.height / 2
    out.append(
        f'<text class="axis-label" x="14" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle})">{html.escape(label)}</text>'
    )
    return out


def _x_axis(frame: Frame, label: str) -> list[str]:
    bottom = frame.top + frame.height
    # Labels on months that divide the year (so Januaries line up), at least 64 units apart: a
    # label ("2026-01") is about 54 units wide in the view's 13px font.
    most = max(2, int(frame.width // 64))
    every = next(
        (e for e in (1, 2, 3, 4, 6, 12) if frame.months / e <= most),
        12 * math.ceil(frame.months / (12 * most)),
    )
    offset = (1 - frame.first.month) % every if every <= 12 else 0
    out = [
        f'<line class="axis" x1="{frame.left}" x2="{frame.left + frame.width}" y1="{bottom}" y2="{bottom}"/>'
    ]
    for i in range(offset, frame.months, every):
        month = str(frame.first + i)
        x = frame.x(month)
        out.append(
            f'<line class="axis" x1="{x}" x2="{x}" y1="{bottom}" y2="{bottom + 4}"/>'
            f'<text class="tick month" x="{x}" y="{bottom + 18}" text-anchor="middle">{month}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{frame.left + frame.width / 2}" y="{bottom + 40}" '
        f'text-anchor="middle">{html.escape(label)}</text>'
    )
    return out


def _series(frame: Frame, s: Series) -> str:
    points = sorted(s.points, key=lambda p: pd.Period(p[0], "M"))
    key = html.escape(s.key)
    out = [f'<g class="series s-{s.css}" data-series="{key}">']
    if s.line and len(points) > 1:
        coords = " ".join(f"{frame.x(m)},{frame.y(v)}" for m, v in points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<polyline fill="none" points="{coords}"{dash}/>')
    for month, value in points:
        out.append(
            f'<circle cx="{frame.x(month)}" cy="{frame.y(value)}" r="{3 if s.line else 4}" '
            f'data-series="{key}" data-month="{month}" data-value="{value!r}">'
            f"<title>{html.escape(s.label)}, {month}: {_number(value)}</title></circle>"
        )
    out.append("</g>")
    return "".join(out)


def _band(frame: Frame, band: Band) -> str:
    points = sorted(band.points, key=lambda p: pd.Period(p[0], "M"))
    upper = [f"{frame.x(m)},{frame.y(hi)}" for m, _, hi in points]
    lower = [f"{frame.x(m)},{frame.y(lo)}" for m, lo, _ in reversed(points)]
    key = html.escape(band.key)
    return (
        f'<polygon class="band s-{key}" data-series="{key}" points="{" ".join(upper + lower)}">'
        f"<title>{html.escape(band.label)}</title></polygon>"
    )


def _legend(series: Sequence[Series], bands: Sequence[Band]) -> str:
    items = []
    for s in series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        swatch = f'<line x1="1" x2="25" y1="5" y2="5"{dash}/>' if s.line else '<circle cx="13" cy="5" r="4"/>'
        items.append(
            f'<span class="legend-item" data-series="{html.escape(s.key)}"><svg width="26" height="10" aria-hidden="true">'
            f'<g class="series s-{s.css}">{swatch}</g></svg>{html.escape(s.label)}</span>'
        )
    for b in bands:
        items.append(
            f'<span class="legend-item"><svg width="26" height="10" aria-hidden="true">'
            f'<rect class="band s-{html.escape(b.key)}" width="26" height="10"/></svg>{html.escape(b.label)}</span>'
        )
    return f'<div class="legend">{"".join(items)}</div>'
