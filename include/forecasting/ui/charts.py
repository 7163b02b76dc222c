"""Server-side SVG line charts over months: no JavaScript, no CDN, so they render offline.

A chart is plain markup inlined into the page; its colours come from CSS classes (``s-<key>``)
that the page styles for light and dark mode. This module places things (months to x, values to
y, the ticks); ``templates/chart.svg`` draws them: every point is a ``<circle>`` carrying
``data-series``, ``data-month`` and ``data-value`` (what tests and scripts read) and a
``<title>`` (what a person reads on hover).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

from forecasting.ui.templating import render


@dataclass
class Series:
    """One line: ``points`` are (month "YYYY-MM", value) in any order; ``dashed`` for forecasts."""

    key: str  # CSS class suffix and data-series value
    label: str  # legend text
    points: list[tuple[str, float]] = field(default_factory=list)
    dashed: bool = False
    line: bool = True  # False: markers only (e.g. earlier forecasts, one per month)
    style: str | None = None  # the CSS class suffix when it is not the key (keys that are data)
    step: bool = False  # a value that holds until the next month's (a price): drawn as steps


@dataclass
class Band:
    """A shaded range per month, e.g. a prediction interval: (month, low, high)."""

    key: str
    label: str
    points: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Shade:
    """Months to shade from top to bottom, e.g. promotions: (month, label) each."""

    key: str
    label: str
    months: list[tuple[str, str]] = field(default_factory=list)


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
        index = month_number(month) - (self.first.year * 12 + self.first.month - 1)
        step = self.width / max(self.months - 1, 1)
        return round(self.left + index * step, 1)

    def y(self, value: float) -> float:
        return round(self.top + self.height * (1 - value / self.y_max), 1)


@lru_cache(maxsize=4096)
def month_number(month: str) -> int:
    """Months since year 0 of a month ("YYYY-MM", or any text pandas reads as one): placing
    and sorting hundreds of points needs no Period arithmetic per point."""
    period = pd.Period(month, "M")
    return period.year * 12 + period.month - 1


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
    shades: Sequence[Shade] = (),
    months: tuple[str, str] | None = None,
    width: int = 820,
    height: int = 340,
) -> str:
    """An SVG chart of ``series`` over their months, y from 0; ``marker`` = (month, label) draws a
    vertical line, e.g. at the last month with actuals; ``shades`` shade whole months; ``months``
    = (first, last) fixes the x range (charts stacked over the same months). Empty series are
    left out."""
    series = [s for s in series if s.points]
    bands = [b for b in bands if b.points]
    shades = [s for s in shades if s.months]
    months_drawn = [m for s in series for m, _ in s.points] + [m for b in bands for m, _, _ in b.points]
    if not months_drawn and not shades:
        return render("chart.svg", empty=True)
    months_drawn += [m for s in shades for m, _ in s.months] + list(months or ())
    periods = [
        pd.Period(m, "M") for m in (min(months_drawn, key=month_number), max(months_drawn, key=month_number))
    ]
    values = [v for s in series for _, v in s.points] + [hi for b in bands for _, _, hi in b.points]
    values = values or [1.0]
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
    step_width = frame.width / max(frame.months - 1, 1)
    return render(
        "chart.svg",
        empty=False,
        width=width,
        height=height,
        max_width=round(width * 1.3),
        title=title,
        left=frame.left,
        right=frame.left + frame.width,
        top=frame.top,
        bottom=frame.top + frame.height,
        middle=frame.top + frame.height / 2,
        center=frame.left + frame.width / 2,
        y_ticks=[(frame.y(i * step), _number(i * step)) for i in range(round(frame.y_max / step) + 1)],
        y_label=y_label,
        x_ticks=[(frame.x(month), month) for month in _month_ticks(frame)],
        x_label=x_label,
        bands=[_band(frame, b) for b in bands],
        shades=[_shade(frame, s, step_width) for s in shades],
        marker={"x": frame.x(marker[0]), "label": marker[1]} if marker else None,
        series=[_series(frame, s) for s in series],
    )


def _month_ticks(frame: Frame) -> list[str]:
    """The labelled months: months that divide the year (so Januaries line up), at least 64 units
    apart (a label, "2026-01", is about 54 units wide in the view's 13px font)."""
    most = max(2, int(frame.width // 64))
    every = next(
        (e for e in (1, 2, 3, 4, 6, 12) if frame.months / e <= most),
        12 * math.ceil(frame.months / (12 * most)),
    )
    offset = (1 - frame.first.month) % every if every <= 12 else 0
    return [str(frame.first + i) for i in range(offset, frame.months, every)]


def _series(frame: Frame, s: Series) -> dict[str, Any]:
    points = sorted(s.points, key=lambda p: month_number(p[0]))
    drawn = s.line and len(points) > 1
    coords = [(frame.x(m), frame.y(v)) for m, v in points]
    if s.step:  # the value holds until the next month's: across, then up or down
        coords = [
            c
            for (x, y), (x_next, _) in zip(coords, [*coords[1:], coords[-1]], strict=True)
            for c in ((x, y), (x_next, y))
        ]
    return {
        "key": s.key,
        "css": s.style or s.key,
        "label": s.label,
        "line": s.line,
        "dashed": s.dashed,
        "coords": " ".join(f"{x},{y}" for x, y in coords) if drawn else None,
        "radius": 3 if s.line else 4,
        "points": [
            {"x": frame.x(m), "y": frame.y(v), "month": m, "value": repr(v), "number": _number(v)}
            for m, v in points
        ],
    }


def _band(frame: Frame, band: Band) -> dict[str, str]:
    points = sorted(band.points, key=lambda p: month_number(p[0]))
    upper = [f"{frame.x(m)},{frame.y(hi)}" for m, _, hi in points]
    lower = [f"{frame.x(m)},{frame.y(lo)}" for m, lo, _ in reversed(points)]
    return {"key": band.key, "label": band.label, "points": " ".join(upper + lower)}


def _shade(frame: Frame, shade: Shade, step: float) -> dict[str, Any]:
    """A rectangle per month, a month wide (half a step each side of the month's x, within the plot)."""
    rects = []
    for month, label in sorted(shade.months, key=lambda p: month_number(p[0])):
        left = max(frame.left, frame.x(month) - step / 2)
        right = min(frame.left + frame.width, frame.x(month) + step / 2)
        rects.append(
            {"x": round(left, 1), "width": round(max(right - left, 2.0), 1), "month": month, "label": label}
        )
    return {"key": shade.key, "label": shade.label, "rects": rects}
