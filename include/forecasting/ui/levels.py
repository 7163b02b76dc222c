"""The explorer by level: any level of the hierarchy (config ``hierarchy``), its groups' forecasts,
one group's history and forecast as a chart, and the group's member entities.

What a list shows is one table, made by ``selection`` from the newest run's numbers
(forecasting.ui.plan_data): the page shows its first ``limit`` rows, and the CSV and Parquet
downloads (forecasting.ui.export) hold the same rows, up to EXPORT_LIMIT. A list is filtered by
minimums (volume, error, |bias|, |change %|) and sorted by volume, error, bias or change, largest
first (bias and change by their size, either way). A group's chart reads its every run's rows
from ``<table>_levels`` through the read-only query layer (bound parameters; the table's
``_level_month_idx`` index on level and forecast_month serves them), and its actuals are the sum
of its members' in the newest run's snapshot.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from forecasting.core.config import Config
from forecasting.core.names import LEVELS, relation_name
from forecasting.publishing.query import run_query
from forecasting.ui.charts import Band, Series, line_chart
from forecasting.ui.explorer import relation
from forecasting.ui.plan_data import BIASED, ENTITY, PlanData, plan_data
from forecasting.ui.templating import render_page

SORTS = ("volume", "error", "bias", "change")
FILTERS = {  # query parameter -> (column, by its size)
    "min_volume": ("volume", False),
    "min_error": ("error", False),
    "min_bias": ("bias", True),
    "min_change": ("change_pct", True),  # in percent on the page
}
LIMITS = (50, 100, 500, 1000)
EXPORT_LIMIT = 100_000  # rows of a download at most (the whole 100,000-series list fits)
NUMBERS = [
    "members",
    "next",
    "p10",
    "p90",
    "volume",
    "previous",
    "change",
    "change_pct",
    "error",
    "bias",
    "scored",
]
HEADERS = {
    "members": "entities",
    "next": "next month",
    "volume": "forecast, all months",
    "previous": "previous run, same months",
    "change_pct": "change %",
    "error": "error (MAE)",
    "bias": "tracking signal",
    "scored": "months scored",
}


class BadSelection(ValueError):
    """A query string the explorer cannot read (the page says why)."""


@dataclass
class Selection:
    """What a list shows: its rows (``rows``, in order, at most the limit) and how many matched."""

    level: str
    key: str | None  # a group: its members are listed
    sort: str
    limit: int
    filters: dict[str, float]
    rows: pd.DataFrame
    matched: int
    columns: list[str] = field(default_factory=list)  # the identifying columns, then NUMBERS

    @property
    def kind(self) -> str:
        return "groups" if self.level != ENTITY and self.key is None else "entities"

    def name(self) -> str:
        """A file name's stem for its download."""
        parts = [self.level.replace(",", "-"), *([self.key] if self.key else []), f"by-{self.sort}"]
        text = "_".join(parts)
        return "forecasts_" + "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _number(text: str | None, name: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadSelection(f"{name}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadSelection(f"{name}: give a finite number")
    return value


def parse(data: PlanData, given: dict[str, str], limit_cap: int) -> dict[str, Any]:
    """The level, group, sort, filters and limit the query string ``given`` asks for."""
    level = given.get("level") or (data.levels[0] if data.levels else ENTITY)
    if level != ENTITY and level not in data.levels:
        raise BadSelection(f"no level {level[:60]!r}: pick one of {', '.join([*data.levels, ENTITY])}")
    sort = given.get("sort") or "volume"
    if sort not in SORTS:
        raise BadSelection(f"sort by one of {', '.join(SORTS)}")
    filters = {}
    for name in FILTERS:
        value = _number(given.get(name), name)
        if value is not None:
            filters[name] = value
    limit = _number(given.get("limit"), "limit")
    limit_value = int(limit) if limit is not None else LIMITS[1]
    if limit_value < 1:
        raise BadSelection("limit: give at least 1")
    key = given.get("key") or None
    if key is not None and level == ENTITY:
        raise BadSelection("an entity has no members: open it in the explorer")
    return {
        "level": level,
        "key": key,
        "sort": sort,
        "filters": filters,
        "limit": min(limit_value, limit_cap),
    }


def selection(data: PlanData, given: dict[str, str], limit_cap: int = LIMITS[-1]) -> Selection:
    """The rows a list shows (and its downloads hold): a level's groups, a group's members, or
    every entity, filtered, sorted largest first and cut at the limit."""
    asked = parse(data, given, limit_cap)
    level, key = asked["level"], asked["key"]
    if level != ENTITY and key is None:
        frame = data.groups[data.groups["level"] == level]
        columns = level.split(",")
        ids = ["level_key", *columns] if len(columns) > 1 else ["level_key"]  # one column: the key
        frame = frame.assign(level_key=frame["level_key"].astype(str))
    else:
        frame = data.entities
        ids = [*data.keys, *(c for c in data.level_columns if c not in data.keys)]
    # Row positions only, until the rows shown are picked: no copy of 100,000 series' numbers.
    kept = np.flatnonzero(data.entity_groups[level] == key) if key is not None else np.arange(len(frame))
    for name, value in asked["filters"].items():
        column, by_size = FILTERS[name]
        values = frame[column].to_numpy(dtype=float)[kept]
        threshold = value / 100 if column == "change_pct" else value
        kept = kept[(np.abs(values) if by_size else values) >= threshold]  # NaN: not kept
    ranked = frame[asked["sort"]].to_numpy(dtype=float)[kept]
    ranked = np.nan_to_num(np.abs(ranked) if asked["sort"] in ("bias", "change") else ranked, nan=-np.inf)
    top = kept[np.argsort(-ranked, kind="stable")[: asked["limit"]]]  # NaN (not known) last
    numbers = NUMBERS if level != ENTITY and key is None else [n for n in NUMBERS if n != "members"]
    columns = list(dict.fromkeys([*ids, *numbers]))
    rows = frame.iloc[top].reindex(columns=columns).reset_index(drop=True)
    return Selection(
        level=level,
        key=key,
        sort=asked["sort"],
        limit=asked["limit"],
        filters=asked["filters"],
        rows=rows,
        matched=len(kept),
        columns=columns,
    )


# --- a group: its chart and its forecasts ---------------------------------------------------------


def group_history(data: PlanData, level: str, key: str) -> pd.DataFrame:
    """The group's actual per month: the sum of its members' in the newest run's snapshot."""
    members = (data.entity_groups[level] == key).astype(float)
    sums = members @ data.actuals if data.actual_months else np.zeros(0)  # no copy of the rows
    return pd.DataFrame({"month": data.actual_months, "actual": sums})


def group_forecasts(config: Config, level: str, key: str) -> pd.DataFrame:
    """Every run's rows of one group in ``<table>_levels``, months as "YYYY-MM"."""
    table = relation(config, relation_name(config.predictions.table, LEVELS))
    rows = run_query(
        config,
        f"SELECT run_month, forecast_month, horizon, prediction, p10, p90 FROM {table} "
        "WHERE level = :level AND level_key = :key ORDER BY forecast_month, run_month",
        params={"level": level, "key": key},
    )
    for column in ("run_month", "forecast_month"):
        rows[column] = [f"{pd.Timestamp(v):%Y-%m}" for v in rows[column]]
    return rows


def group_chart(config: Config, data: PlanData, level: str, key: str) -> tuple[Markup, pd.DataFrame]:
    """The group's chart (its actuals, earlier runs' forecasts of past months per lead time, the
    newest run's forecast with its p10-p90 band) and the newest run's rows."""
    history = group_history(data, level, key)
    rows = group_forecasts(config, level, key)
    latest = rows[rows["run_month"] == data.latest_run]
    earlier = rows[(rows["run_month"] < data.latest_run) & (rows["forecast_month"] <= data.latest_run)]
    series = [
        Series(
            "actual",
            "actual (sum of its entities)",
            list(zip(history["month"], history["actual"], strict=True)),
        )
    ]
    for h in sorted(set(earlier["horizon"])):
        at = earlier[earlier["horizon"] == h]
        label = f"earlier forecast, {h} month{'s' if h > 1 else ''} ahead"
        series.append(
            Series(
                f"ahead{h}",
                label,
                list(zip(at["forecast_month"], at["prediction"].astype(float), strict=True)),
                line=False,
            )
        )
    series.append(
        Series(
            "latest",
            f"forecast of run {data.latest_run}",
            list(zip(latest["forecast_month"], latest["prediction"].astype(float), strict=True)),
            dashed=True,
        )
    )
    banded = latest[latest["p10"].notna() & latest["p90"].notna()]
    band = Band(
        "interval",
        "p10–p90",
        list(
            zip(
                banded["forecast_month"],
                banded["p10"].astype(float),
                banded["p90"].astype(float),
                strict=True,
            )
        ),
    )
    chart = line_chart(
        series,
        bands=[band],
        title=f"{level} {key}: {config.source.target_column} per month",
        y_label=config.source.target_column,
        marker=(data.latest_run, f"run {data.latest_run}"),
    )
    return Markup(chart), latest


# --- the page ---------------------------------------------------------------------------------


def render_levels(config: Config, given: dict[str, str]) -> str:
    """The explorer by level for the query string ``given``."""
    started = time.perf_counter()
    data = plan_data(config)
    page = partial(render_page, config, "Levels", "levels.html", given=given, stale=bool(data and data.stale))
    if data is None:
        return page(published=False)
    try:
        chosen = selection(data, given)
    except BadSelection as err:
        levels = [*data.levels, ENTITY]
        return page(
            published=True, error=str(err), levels=levels, entity_level=ENTITY, latest_run=data.latest_run
        )
    group = None
    if chosen.key is not None:
        chart, latest = group_chart(config, data, chosen.level, chosen.key)
        group = {
            "chart": chart,
            "months": [
                {"month": r.forecast_month, "prediction": r.prediction, "p10": r.p10, "p90": r.p90}
                for r in latest.itertuples()
            ],
        }
    query = {k: v for k, v in given.items() if v}
    return page(
        published=True,
        error=None,
        levels=[*data.levels, ENTITY],
        entity_level=ENTITY,
        latest_run=data.latest_run,
        previous_run=data.previous_run,
        chosen=chosen,
        group=group,
        rows=[_row_view(chosen, data, r) for r in chosen.rows.to_dict(orient="records")],
        headers=[(c, HEADERS.get(c, c)) for c in chosen.columns],
        sorts=SORTS,
        limits=LIMITS,
        query=query,
        biased=BIASED,
        biased_signals=data.biased_signals,
        milliseconds=f"{1000 * (time.perf_counter() - started):.0f}",
    )


def _row_view(chosen: Selection, data: PlanData, row: dict[str, Any]) -> dict[str, Any]:
    """A row's cells and where its link goes: a group to its members, an entity to the explorer."""
    if chosen.kind == "groups":
        link = {"level": chosen.level, "key": row["level_key"], "sort": chosen.sort}
        target = "levels"
    else:
        link = {k: _plain(row[k]) for k in data.keys}
        target = "explorer"
    cells = [(c, cell(c, row[c]) if c in NUMBERS else _text(row[c])) for c in chosen.columns]
    return {"cells": cells, "href": target, "link": link, "biased": _biased(row.get("bias"))}


def _text(value: Any) -> str:
    """An identifying value (an entity column, a level's value) as it reads: 7, never 7.00."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(_plain(value))


def _biased(value: Any) -> bool:
    return value is not None and not pd.isna(value) and abs(float(value)) >= BIASED


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def cell(column: str, value: Any) -> str:
    """A number as a person compares it ("" when not known)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, str):
        return value
    if column == "change_pct":
        return f"{value:+.1%}"
    if column in ("members", "scored"):
        return f"{int(value):,}"
    if column == "bias":
        return f"{value:+.2f}"
    value = float(value)
    sign = "+" if column == "change" else ""
    return f"{value:{sign},.1f}" if abs(value) >= 10 else f"{value:{sign}.2f}"
