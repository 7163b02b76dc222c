"""The Forecasts view's Scenarios page: the what-if scenarios the forecast_scenarios DAG published
(``<table>_scenarios``, forecasting.scenarios.publish) beside the base plan's forecasts.

For the newest run month with scenarios: every scenario with its forecasts, how many it plans
and its total against the base; for the chosen one, per month the base and scenario totals, the
difference and its share of the base (a chart and the numbers), the same per group of a level
of the hierarchy that groups by entity columns, and the entities whose forecasts move most.
The explorer shows an entity's scenario forecasts beside its base (``entity_scenarios``).

Everything is read through the read-only query layer (``forecasting.publishing.query``) with
bound parameters. The page's numbers are the rows ``publish_scenarios`` summed for the
publication into ``<table>_scenario_totals`` (forecasting.scenarios.totals); a database published
before that table (or a month re-published by a release before it) has none, and the page then
makes them itself from the month's rows, with the same queries.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup

from forecasting.core.config import Config
from forecasting.core.months import month_of
from forecasting.core.names import SCENARIO_TOTALS, SCENARIOS, relation_name
from forecasting.publishing.query import QueryError, run_query
from forecasting.publishing.scenario_totals_table import GROUP, MONTH, MOVER
from forecasting.scenarios.totals import (
    MOVERS,
    base_name,
    grouped_totals_sql,
    level_totals,
    month_totals_sql,
    movers_sql,
    quote,
    table_levels,
    tidy_totals,
    totals_of,
)
from forecasting.ui.charts import Series, line_chart
from forecasting.ui.templating import render_page

CACHED = 16  # the month scans, movers and summaries kept (``cached``)
_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
AMOUNTS = ("base", "scenario", "difference")  # columns in units of the target


def scenarios_relation(config: Config, suffix: str = SCENARIOS) -> str:
    """``<table>_scenarios`` (or ``<table>_<suffix>``), quoted, in its schema."""
    name = quote(relation_name(config.predictions.table, suffix))
    schema = config.predictions.database.schema
    return name if schema is None else f"{quote(schema)}.{name}"


def rows_or_none(config: Config, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame | None:
    """The query's rows; None while there is no predictions database or no scenarios table."""
    try:
        return run_query(config, sql, params=params or {})
    except QueryError as err:
        if "no SQLite database" in str(err):
            return None
        raise
    except sa.exc.DBAPIError as err:
        if "no such table" in str(err) or getattr(err.orig, "sqlstate", None) == "42P01":
            return None
        raise


def _month(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def _month_date(month: str) -> Any:
    return month_of(month).to_timestamp().date()


def _entity_where(keys: list[str], entity: dict[str, Any], alias: str = "") -> tuple[str, dict[str, Any]]:
    prefix = f"{alias}." if alias else ""
    where = " AND ".join(f"{prefix}{quote(k)} = :k{i}" for i, k in enumerate(keys))
    return where, {f"k{i}": entity[k] for i, k in enumerate(keys)}


def no_entity_scenarios() -> pd.DataFrame:
    """An entity's scenario forecasts when it has none (the columns of ``entity_scenarios``)."""
    return pd.DataFrame(
        {
            "forecast_month": pd.Series(dtype=str),
            "scenario": pd.Series(dtype=str),
            "prediction": pd.Series(dtype=float),
        }
    )


def entity_scenarios(config: Config, entity: dict[str, Any], run: str | None) -> pd.DataFrame:
    """The entity's forecasts under each scenario (not the base's) of run month ``run``:
    forecast_month ("YYYY-MM"), scenario, prediction. Empty: no scenarios table, or none for
    that run. The WHERE names the entity only, so the index on (entity columns, forecast_month)
    serves it (with run_month in it, SQLite takes the primary key's range of the whole month):
    every run's rows of the entity are few, the run is picked here."""
    empty = no_entity_scenarios()
    if run is None:
        return empty
    where, params = _entity_where(config.source.entity_columns, entity)
    sql = (
        f"SELECT run_month, scenario, forecast_month, prediction FROM {scenarios_relation(config)} "
        f"WHERE {where} ORDER BY scenario, forecast_month"
    )
    found = rows_or_none(config, sql, params)
    if found is None or found.empty:
        return empty
    of_run = np.array([_month(v) == run for v in found["run_month"]])
    found = found[of_run & (found["scenario"].astype(str) != base_name(config)).to_numpy()]
    if found.empty:
        return empty
    found["forecast_month"] = [_month(v) for v in found["forecast_month"]]
    found["scenario"] = found["scenario"].astype(str)
    return found[["forecast_month", "scenario", "prediction"]]


def newest_run(config: Config) -> dict[str, Any] | None:
    """The newest run month with scenarios and the model that made them (None: none yet), with
    what names its publication: a re-publish of the month writes a new run_id and created_at."""
    found = rows_or_none(
        config,
        f"SELECT run_month, model_version, run_id, created_at FROM {scenarios_relation(config)} "
        f"WHERE run_month = (SELECT max(run_month) FROM {scenarios_relation(config)}) LIMIT 1",
    )
    if found is None or found.empty:
        return None
    row = found.iloc[0]
    return {
        "month": _month(row["run_month"]),
        "model_version": str(row["model_version"]),
        "publication": (str(row["run_id"]), str(row["created_at"])),
    }


def month_totals(config: Config, run: str) -> pd.DataFrame:
    """Per scenario (base included) and forecast month of run ``run``: forecasts, how many the
    scenario plans, their total. One scan of the month's rows (the primary key's range)."""
    sql = month_totals_sql(scenarios_relation(config))
    return tidy_totals(run_query(config, sql, params={"run": _month_date(run)}))


def clear_cache() -> None:
    """Forget every kept scan (benchmarks time a first view with it)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cached(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept for ``key`` (which names a publication: its rows never change) while
    it is among the CACHED newest; a planner clicking through scenarios and levels reads the
    month's rows once."""
    with _CACHE_LOCK:  # the api-server serves pages from a pool of threads
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = compute()  # outside the lock: another page need not wait for this scan
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > CACHED:
            _CACHE.popitem(last=False)
    return value


def compared(totals: pd.DataFrame, base: str, scenario: str) -> pd.DataFrame:
    """Per forecast month: the base's total, the scenario's, the difference, its share of the
    base, and the forecasts the scenario plans."""

    def of(name: str) -> pd.DataFrame:
        return totals[totals["scenario"] == name].set_index("forecast_month")

    b, s = of(base), of(scenario)
    out = pd.DataFrame({"base": b["total"], "scenario": s["total"]}).sort_index()
    out["difference"] = out["scenario"] - out["base"]
    out["share"] = out["difference"] / out["base"].where(out["base"] != 0)
    out["planned"] = s["planned"].reindex(out.index).fillna(0).astype(int)
    out.index.name = "month"
    return out.reset_index()


def scenario_list(totals: pd.DataFrame, base: str) -> list[dict[str, Any]]:
    """Every scenario of the run (not the base): forecasts, planned, total against the base's."""
    by = totals.groupby("scenario").agg(
        forecasts=("forecasts", "sum"), planned=("planned", "sum"), total=("total", "sum")
    )
    base_total = float(by.loc[base, "total"]) if base in by.index else None
    out = []
    for name, row in by.drop(index=base, errors="ignore").iterrows():
        difference = None if base_total is None else float(row["total"]) - base_total
        out.append(
            {
                "name": str(name),
                "forecasts": int(row["forecasts"]),
                "planned": int(row["planned"]),
                "total": float(row["total"]),
                "difference": difference,
                "share": difference / base_total if difference is not None and base_total else None,
            }
        )
    return out


def movers(config: Config, run: str, base: str, scenario: str, limit: int = MOVERS) -> pd.DataFrame:
    """The entities whose forecasts the scenario moves most (summed over the months it
    forecasts), by the size of the move: entity columns, months, base, scenario, difference."""
    sql = movers_sql(scenarios_relation(config), config.source.entity_columns, limit)
    return run_query(config, sql, params={"run": _month_date(run), "base": base, "scenario": scenario})


def grouped_totals(config: Config, run: str, level: list[str]) -> pd.DataFrame:
    """``month_totals`` per group of ``level`` (the month totals are its sums over the groups)."""
    sql = grouped_totals_sql(scenarios_relation(config), level)
    return tidy_totals(run_query(config, sql, params={"run": _month_date(run)}))


# --- the publication's summary (<table>_scenario_totals) ---------------------------------------


def summary_totals(config: Config, run: dict[str, Any]) -> pd.DataFrame | None:
    """``month_totals`` as ``publish_scenarios`` summed them for the newest run's publication
    (``newest_run``). None: not summed, and the page scans the month's rows instead, as it did
    before the table: a database published before ``<table>_scenario_totals`` has none, and a
    month re-published by a release before it has another publication's (or none)."""
    sql = (
        "SELECT scenario, forecast_month, forecasts, planned, total, run_id, created_at "
        f"FROM {scenarios_relation(config, SCENARIO_TOTALS)} WHERE run_month = :run AND part = :part"
    )
    found = rows_or_none(config, sql, {"run": _month_date(run["month"]), "part": MONTH})
    if found is None or found.empty:
        return None
    made = set(zip(found["run_id"].astype(str), found["created_at"].astype(str), strict=True))
    if made != {run["publication"]}:
        return None
    return tidy_totals(found[["scenario", "forecast_month", "forecasts", "planned", "total"]].copy())


def summary_groups(config: Config, run: str, scenario: str, level: list[str]) -> pd.DataFrame | None:
    """``level_totals`` of the scenario as ``publish_scenarios`` summed them (once
    ``summary_totals`` found the publication's). None: the level was not among the config's when
    the month was published."""
    columns = ", ".join(quote(c) for c in level)
    sql = (
        f"SELECT {columns}, base_total AS base, total AS scenario, difference "
        f"FROM {scenarios_relation(config, SCENARIO_TOTALS)} WHERE run_month = :run AND part = :part "
        "AND level = :level AND scenario = :scenario ORDER BY position"
    )
    params = {"run": _month_date(run), "part": GROUP, "level": ",".join(level), "scenario": scenario}
    found = run_query(config, sql, params=params)
    if found.empty:
        return None
    found["share"] = found["difference"] / found["base"].where(found["base"] != 0)  # as level_totals
    found["size"] = found["difference"].abs()
    return found


def summary_movers(config: Config, run: str, scenario: str) -> pd.DataFrame:
    """``movers`` of the scenario as ``publish_scenarios`` summed them (once ``summary_totals``
    found the publication's)."""
    columns = ", ".join(quote(k) for k in config.source.entity_columns)
    sql = (
        f"SELECT {columns}, forecasts AS months, base_total AS base, total AS scenario, difference "
        f"FROM {scenarios_relation(config, SCENARIO_TOTALS)} WHERE run_month = :run AND part = :part "
        "AND scenario = :scenario ORDER BY position"
    )
    return run_query(config, sql, params={"run": _month_date(run), "part": MOVER, "scenario": scenario})


# --- the page --------------------------------------------------------------------------------


def render_scenarios(config: Config, given: dict[str, str]) -> str:
    """The Scenarios page for the query string ``given`` (``scenario``, ``level``)."""
    started = time.perf_counter()
    page = _page_context(config, given)
    page["milliseconds"] = f"{1000 * (time.perf_counter() - started):.0f}"
    return render_page(config, "Scenarios", "scenarios.html", **page)


def _page_context(config: Config, given: dict[str, str]) -> dict[str, Any]:
    run = newest_run(config)
    base = base_name(config)
    if run is None:
        return {
            "run": None,
            "base": base,
            "configured": config.plans is not None and config.plans.scenarios is not None,
        }
    levels = table_levels(config)
    level = next((lv for lv in levels if ",".join(lv) == given.get("level")), levels[0] if levels else None)
    month, where = (
        run["month"],
        (str(config.predictions.database.url), config.predictions.table, run["publication"]),
    )
    summary = cached((*where, "summary"), lambda: summary_totals(config, run))
    grouped = None
    if summary is not None:
        totals = summary
    elif level:  # one scan: the level's groups, summed to the month totals
        grouped = cached((*where, "groups", *level), lambda: grouped_totals(config, month, level))
        totals = totals_of(grouped)
    else:
        totals = cached((*where, "months"), lambda: month_totals(config, month))
    listed = scenario_list(totals, base)
    names = [s["name"] for s in listed]
    chosen = given.get("scenario") if given.get("scenario") in names else (names[0] if names else None)
    context: dict[str, Any] = {
        "run": run,
        "base": base,
        "configured": True,
        "scenarios": listed,
        "chosen": chosen,
    }
    if chosen is None:
        return context
    by_month = compared(totals, base, chosen)
    groups = _level_groups(config, run, level, chosen, grouped) if level else None
    keys = config.source.entity_columns
    if summary is not None:
        moved = cached((*where, "summed movers", chosen), lambda: summary_movers(config, month, chosen))
    else:
        moved = cached((*where, "movers", chosen), lambda: movers(config, month, base, chosen))
    context.update(
        months=_rows(by_month, ["month", "base", "scenario", "difference", "share", "planned"]),
        chart=Markup(_chart(by_month, base, chosen, config)),
        levels=[{"name": ",".join(lv), "label": " × ".join(lv), "chosen": lv == level} for lv in levels],
        level=level,
        groups=_rows(groups, [*level, "base", "scenario", "difference", "share"])
        if groups is not None and level
        else [],
        keys=keys,
        movers=[
            {
                "entity": {k: _plain(row[k]) for k in keys},
                "cells": _cells(row, ["months", "base", "scenario", "difference"]),
            }
            | {"share": _share(row["difference"], row["base"])}
            for row in moved.to_dict(orient="records")
        ],
    )
    return context


def _level_groups(
    config: Config, run: dict[str, Any], level: list[str], chosen: str, grouped: pd.DataFrame | None
) -> pd.DataFrame:
    """The level's groups of the chosen scenario: summed at publish, else from the month's scan."""
    base, month = base_name(config), run["month"]
    where = (str(config.predictions.database.url), config.predictions.table, run["publication"])
    if grouped is None:  # the month totals were summed: the level's groups may be too
        summed = cached(
            (*where, "summed groups", chosen, *level), lambda: summary_groups(config, month, chosen, level)
        )
        if summed is not None:
            return summed
        grouped = cached((*where, "groups", *level), lambda: grouped_totals(config, month, level))
    return level_totals(grouped, base, chosen, level)


def _chart(by_month: pd.DataFrame, base: str, chosen: str, config: Config) -> str:
    def points(column: str) -> list[tuple[str, float]]:
        return list(zip(by_month["month"], by_month[column].astype(float), strict=True))

    return line_chart(
        [
            Series("base", f"{base} (base plan)", points("base")),
            Series("scenario", chosen, points("scenario"), dashed=True, style="scen0"),
        ],
        title=f"{chosen} against {base}: total {config.source.target_column} per month",
        y_label=config.source.target_column,
        height=260,
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> str:
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _share(difference: Any, base: Any) -> str:
    if difference is None or base is None or pd.isna(base) or float(base) == 0:
        return ""
    return f"{float(difference) / float(base):+.1%}"


def _cells(row: dict[str, Any], columns: list[str]) -> list[dict[str, str]]:
    out = []
    for c in columns:
        value = row[c]
        if c == "share":
            text = "" if value is None or pd.isna(value) else f"{float(value):+.1%}"
        elif c in ("planned", "months"):
            text = f"{int(value):,}"
        elif c in AMOUNTS:
            text = _number(value)
        else:
            text = str(value)
        out.append(
            {
                "column": c,
                "text": text,
                "value": "" if value is None or pd.isna(value) else str(_plain(value)),
            }
        )
    return out


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[list[dict[str, str]]]:
    return [_cells(row, columns) for row in frame.to_dict(orient="records")]  # each column's own type
