"""The explorer's entity chart, made to explain itself: beside the sales and forecasts, the same
month last year of each forecast month, the entity's what-if scenario forecasts, and a panel
under it with the price (a step line: what was charged, then what is planned) and the
promotion months shaded; and a zoom to the last 12, 24 or 36 months.

What is a price and what a promotion is the drivers' rule (``features.families``): a covariate
named *price* is a price, every other one a promotion. Their values come from where the
forecasts read them: up to the run month, the source snapshot (``raw.parquet``, read with the
actuals, ``explorer.read_history``); for the months forecast, the plans as they stood at the end
of the run month (the published attempt's ``plans.parquet``, filtered on the entity's columns).

Everything here becomes columns of the explorer's one table (``explorer.shown_rows``): the
chart, the numbers and the CSV are drawn from it. The zoom cuts the chart and the numbers the
page shows, never the CSV (the full rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_end, month_of
from forecasting.features.families import PRICE, covariate_family
from forecasting.features.plans import latest_plans
from forecasting.ui.charts import Band, Series, Shade, line_chart

# The zoom (query parameter ``zoom``): the last N months up to the newest run, and its forecasts.
ZOOMS = {"12": 12, "24": 24, "36": 36, "all": None}
DEFAULT_ZOOM = "all"
LAST_YEAR = "same_month_last_year"  # the actual of the month a year before a forecast month
SCENARIO_PREFIX = "scenario_"  # a what-if scenario's forecast: scenario_<name>
SCENARIO_STYLES = 4  # scenario series cycle through this many colours (forecasts.css: .s-scen<i>)


@dataclass
class Covariates:
    """The entity's price and promotion columns (the source's covariates, by family)."""

    prices: list[str]
    promotions: list[str]

    @property
    def columns(self) -> list[str]:
        return [*self.prices, *self.promotions]


def covariates_of(config: Config) -> Covariates:
    covariates = config.source.covariates
    prices = [c for c in covariates if covariate_family(c) == PRICE]
    return Covariates(prices=prices, promotions=[c for c in covariates if c not in prices])


def zoom_of(given: Mapping[str, str]) -> str:
    """The zoom asked for; anything else is the default (every month)."""
    value = (given.get("zoom") or "").strip()
    return value if value in ZOOMS else DEFAULT_ZOOM


def snapshot_columns(config: Config, snapshot: Path) -> list[str]:
    """The covariates the snapshot has (read with the actuals): its footer says which."""
    names = set(pq.read_schema(snapshot).names)
    return [c for c in covariates_of(config).columns if c in names]


def read_plans(
    config: Config, entity: dict[str, Any], latest_run: str | None, attempt: Path | None
) -> pd.DataFrame:
    """The entity's planned covariates for the months its newest run forecasts (month
    "YYYY-MM", one column per covariate), as they stood at the end of the run month: what the
    forecasts read. Empty without plans or the published ``attempt``'s plans.parquet."""
    wanted = covariates_of(config).columns
    empty = pd.DataFrame({"month": pd.Series(dtype=str)})
    plans = config.plans
    if plans is None or latest_run is None or not wanted:
        return empty
    run = month_of(latest_run)
    file = paths.plans(config, run, attempt.name) if attempt is not None else None
    if file is None or not file.is_file():
        return empty
    names = set(pq.read_schema(file).names)
    covariates = [c for c in plans.covariates if c in wanted and c in names]
    keys = [k for k in plans.entity_columns if k in entity]
    if not covariates or len(keys) != len(plans.entity_columns):
        return empty
    frame = pd.read_parquet(
        file,
        columns=[*keys, plans.month_column, plans.planned_at, *covariates],
        filters=[(k, "==", entity[k]) for k in keys],
    )
    frame = latest_plans(frame.dropna(subset=[plans.month_column]), config, month_end(run))
    months = frame[plans.month_column].dt.to_period("M")
    frame = frame[(months > run) & (months <= run + config.horizon)]
    out = pd.DataFrame({"month": [str(m) for m in frame[plans.month_column].dt.to_period("M")]})
    for c in covariates:
        out[c] = frame[c].to_numpy(dtype=float)
    return out.drop_duplicates("month", keep="last")


def context_columns(
    months: pd.Index,
    forecast_months: pd.Index,
    history: pd.DataFrame,
    plans: pd.DataFrame,
    scenarios: pd.DataFrame,
    taken: set[str],
) -> pd.DataFrame:
    """The columns the chart's context adds to the explorer's table, indexed by ``months``:
    ``same_month_last_year`` beside each forecast month, each covariate (the snapshot's up to
    the run month, the plan's after it), each scenario's forecast (``scenario_<name>``).
    A covariate named like a column of ``taken`` gets the prefix ``covariate_``."""

    def by_month(frame: pd.DataFrame, column: str, month: str = "month") -> dict[str, float]:
        if column not in frame.columns:
            return {}
        return dict(zip(frame[month].tolist(), frame[column].astype(float).tolist(), strict=True))

    listed, forecast = list(months), set(forecast_months)
    actual = by_month(history, "actual")
    columns: dict[str, list[float]] = {
        LAST_YEAR: [actual.get(str(month_of(m) - 12), np.nan) if m in forecast else np.nan for m in listed]
    }
    covariates = [c for c in history.columns if c not in ("month", "actual")]
    covariates += [c for c in plans.columns if c != "month" and c not in covariates]
    for c in covariates:  # the plan where there is one (months forecast), else the snapshot's
        known, planned = by_month(history, c), by_month(plans, c)
        column = f"covariate_{c}" if c in taken else c
        columns[column] = [planned.get(m, known.get(m, np.nan)) for m in listed]
    for name, rows in scenarios.groupby("scenario", sort=True):
        predicted = by_month(rows, "prediction", month="forecast_month")
        columns[SCENARIO_PREFIX + str(name)] = [predicted.get(m, np.nan) for m in listed]
    return pd.DataFrame(columns, index=months, dtype=float)


def zoomed(shown: pd.DataFrame, latest_run: str | None, zoom: str) -> pd.DataFrame:
    """The rows of the last N months up to the newest run month, and every month after it."""
    months = ZOOMS.get(zoom)
    if months is None or latest_run is None:
        return shown
    first = str(month_of(latest_run) - months + 1)
    return shown[shown["month"] >= first].reset_index(drop=True)


def zoom_links(entity: dict[str, Any], chosen: str) -> list[dict[str, Any]]:
    """The zoom's choices, as links to the entity's page (the chosen one marked)."""
    return [
        {
            "zoom": z,
            "label": "all" if z == "all" else f"{z} months",
            "chosen": z == chosen,
            "query": {**entity, "zoom": z},
        }
        for z in ZOOMS
    ]


def header(column: str) -> str | None:
    """The numbers table's header of a context column (None: not one of them)."""
    if column == LAST_YEAR:
        return "last year"
    if column.startswith(SCENARIO_PREFIX):
        return column.removeprefix(SCENARIO_PREFIX)
    return None


def _points(shown: pd.DataFrame, column: str) -> list[tuple[str, float]]:
    """(month, value) of the rows that have a value in ``column``, as Python floats."""
    if column not in shown.columns:
        return []
    values = pd.to_numeric(shown[column], errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(values)
    return list(zip(shown["month"].to_numpy()[present].tolist(), values[present].tolist(), strict=True))


@dataclass
class EntityChart:
    """What the chart draws for one entity, from its shown rows."""

    title: str
    target: str
    horizon: int
    latest_run: str | None
    has_interval: bool
    covariates: Covariates


def sales_chart(chart: EntityChart, shown: pd.DataFrame) -> str:
    """The sales chart: actuals, earlier forecasts by lead time, the newest run's forecast (and
    final, interval), the same month last year and the scenarios' forecasts."""
    series = [Series("actual", "actual", _points(shown, "actual"))]
    for h in range(1, chart.horizon + 1):
        label = f"earlier forecast, {h} month{'s' if h > 1 else ''} ahead"
        series.append(Series(f"ahead{h}", label, _points(shown, f"forecast_{h}m_ahead"), line=False))
    series.append(Series("last_year", "same month last year", _points(shown, LAST_YEAR), line=False))
    scenarios = [c for c in shown.columns if c.startswith(SCENARIO_PREFIX)]
    for i, column in enumerate(scenarios):
        name = column.removeprefix(SCENARIO_PREFIX)
        style = f"scen{i % SCENARIO_STYLES}"
        series.append(Series(column, f"scenario {name}", _points(shown, column), dashed=True, style=style))
    # The base forecast after the scenarios: drawn over them where a scenario leaves it as it is.
    series.append(
        Series(
            "latest", f"forecast of run {chart.latest_run}", _points(shown, "latest_forecast"), dashed=True
        )
    )
    if "latest_final" in shown.columns:  # the newest run's figures after the planners' overrides
        series.append(Series("final", "final, after overrides", _points(shown, "latest_final"), dashed=True))
    bands = []
    if chart.has_interval and "p10" in shown.columns:
        present = shown[shown["p10"].notna() & shown["p90"].notna()]
        spans = zip(present["month"], present["p10"].astype(float), present["p90"].astype(float), strict=True)
        bands.append(Band("interval", "p10–p90", list(spans)))
    marker = (chart.latest_run, f"run {chart.latest_run}") if chart.latest_run else None
    return line_chart(
        series,
        bands=bands,
        title=f"{chart.title}: {chart.target} per month",
        y_label=chart.target,
        marker=marker,
        months=_span(shown),
    )


def covariates_chart(chart: EntityChart, shown: pd.DataFrame) -> str | None:
    """The panel under the sales chart, over the same months: each price as a step line (solid
    up to the run month, dashed where planned), each promotion's months shaded. None: the
    entity has neither."""
    present = [c for c in chart.covariates.columns if c in shown.columns]
    if not present or shown[present].isna().all().all():
        return None
    run = chart.latest_run or "9999-12"
    series = []
    for c in (c for c in chart.covariates.prices if c in shown.columns):
        points = _points(shown, c)
        known = [p for p in points if p[0] <= run]
        planned = [p for p in points if p[0] > run]
        series += [
            Series(c, c, known, step=True, style="price"),
            Series(f"{c}_planned", f"{c}, planned", planned, step=True, dashed=True, style="price"),
        ]
    shades = []
    for c in (c for c in chart.covariates.promotions if c in shown.columns):
        on = shown[shown[c].notna() & (shown[c] != 0)]
        shades.append(
            Shade(c, f"{c} (promotion)", [(m, f"{v:g}") for m, v in zip(on["month"], on[c], strict=True)])
        )
    marker = (chart.latest_run, "plans after") if chart.latest_run else None
    return line_chart(
        series,
        shades=shades,
        title=f"{chart.title}: price and promotions per month",
        y_label=", ".join(c for c in chart.covariates.prices if c in shown.columns) or "promotion",
        marker=marker,
        months=_span(shown),
        height=170,
    )


def _span(shown: pd.DataFrame) -> tuple[str, str] | None:
    """The months both charts cover: every month of the shown rows."""
    months = shown["month"].dropna()
    return (min(months), max(months)) if len(months) else None
