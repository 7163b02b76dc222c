"""The Scenarios page's numbers of a run month's what-if scenarios (forecasting.ui.scenarios):
the queries over ``<table>_scenarios`` that make them, and the rows of ``<table>_scenario_totals``
that ``publish_scenarios`` writes from those same queries in the transaction that replaces the
month's rows, so that the page's first view reads a few hundred rows instead of the month's
(forecasting.publishing.scenario_totals_table).

The month's totals are one scan of the month's rows (the primary key's range of run_month); the
movers join only the rows the scenario plans (``overridden``: every other forecast is the
base's, docs/scenarios.md) to the base's rows by the primary key.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import BASE_SCENARIO, Config
from forecasting.monitoring.accuracy import plain
from forecasting.publishing.scenario_totals_table import GROUP, MONTH, MOVER

MOVERS = 20  # the entities the page lists per scenario, largest move first
GROUPS = 50  # the groups of a level it lists, largest move first
TOTAL = "total"  # the level of the month rows: every forecast


def quote(name: str) -> str:
    """An SQL identifier, quoted the ANSI way (PostgreSQL and SQLite both read it)."""
    return '"' + name.replace('"', '""') + '"'


def base_name(config: Config) -> str:
    """The base plan's scenario name (plans.scenarios.base; the default once the section is gone)."""
    if config.plans is not None and config.plans.scenarios is not None:
        return config.plans.scenarios.base
    return BASE_SCENARIO


def table_levels(config: Config) -> list[list[str]]:
    """The hierarchy's levels that group by entity columns only (the scenarios table has those),
    the total left out (the month totals are it)."""
    if config.hierarchy is None:
        return []
    keys = set(config.source.entity_columns)
    return [list(level) for level in config.hierarchy.levels if level and set(level) <= keys]


def month_of_value(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def month_totals_sql(relation: str) -> str:
    """Per scenario (base included) and forecast month of run ``:run``: forecasts, how many the
    scenario plans, their total."""
    return (
        "SELECT scenario, forecast_month, count(*) AS forecasts, "
        "sum(CASE WHEN overridden THEN 1 ELSE 0 END) AS planned, sum(prediction) AS total "
        f"FROM {relation} WHERE run_month = :run GROUP BY scenario, forecast_month"
    )


def grouped_totals_sql(relation: str, level: list[str]) -> str:
    """``month_totals_sql`` per group of ``level`` (the month totals are its sums over the groups)."""
    groups = ", ".join(quote(c) for c in level)
    return (
        f"SELECT scenario, forecast_month, {groups}, count(*) AS forecasts, "
        "sum(CASE WHEN overridden THEN 1 ELSE 0 END) AS planned, sum(prediction) AS total "
        f"FROM {relation} WHERE run_month = :run GROUP BY scenario, forecast_month, {groups}"
    )


def movers_sql(relation: str, keys: list[str], limit: int = MOVERS) -> str:
    """The entities whose forecasts scenario ``:scenario`` moves most from ``:base``'s (summed
    over the months it plans), by the size of the move: entity columns, months, base, scenario,
    difference."""
    on = " AND ".join(f"b.{quote(k)} = s.{quote(k)}" for k in keys)
    columns = ", ".join(f"s.{quote(k)}" for k in keys)
    return (
        f"SELECT {columns}, count(*) AS months, sum(b.prediction) AS base, sum(s.prediction) AS scenario, "
        "sum(s.prediction - b.prediction) AS difference "
        f"FROM {relation} s JOIN {relation} b ON b.run_month = s.run_month AND b.scenario = :base AND {on} "
        "AND b.horizon = s.horizon "
        "WHERE s.run_month = :run AND s.scenario = :scenario AND s.overridden "
        f"GROUP BY {columns} HAVING sum(s.prediction - b.prediction) <> 0 "
        f"ORDER BY abs(sum(s.prediction - b.prediction)) DESC, {columns} LIMIT {int(limit)}"
    )


def tidy_totals(found: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``month_totals_sql`` or ``grouped_totals_sql`` with "YYYY-MM" months."""
    found["forecast_month"] = [month_of_value(v) for v in found["forecast_month"]]
    found["scenario"] = found["scenario"].astype(str)
    return found.astype({"forecasts": int, "planned": int, "total": float})


def totals_of(grouped: pd.DataFrame) -> pd.DataFrame:
    """The month totals from ``grouped_totals_sql``'s rows: their sums over the groups."""
    columns = ["forecasts", "planned", "total"]
    return grouped.groupby(["scenario", "forecast_month"], as_index=False)[columns].sum()


def level_totals(
    grouped: pd.DataFrame, base: str, scenario: str, level: list[str], limit: int = GROUPS
) -> pd.DataFrame:
    """Per group of ``level``, over the months forecast (from ``grouped_totals_sql``): the
    base's total, the scenario's and the difference, the groups that move most first (at most
    ``limit``), then those that do not."""

    def of(name: str) -> pd.Series:
        return grouped[grouped["scenario"] == name].groupby(level)["total"].sum()

    found = pd.DataFrame({"base": of(base), "scenario": of(scenario)}).reset_index()
    found["difference"] = found["scenario"] - found["base"]
    found["share"] = found["difference"] / found["base"].where(found["base"] != 0)
    found["size"] = found["difference"].abs()
    return found.sort_values(["size", *level], ascending=[False, *[True] * len(level)]).head(limit)


# --- <table>_scenario_totals ------------------------------------------------------------------


def summary_rows(
    conn: sa.Connection,
    scenarios: sa.Table,
    config: Config,
    run_month: date,
    publication: tuple[str, datetime],
) -> list[dict[str, Any]]:
    """The rows of ``<table>_scenario_totals`` for ``run_month``, from the rows of
    ``scenarios`` (``<table>_scenarios``) the connection's transaction sees: per scenario, its
    month totals, the GROUPS groups of each of the config's levels and the MOVERS entities that
    move most from the base plan's, as the Scenarios page shows them."""
    relation = conn.dialect.identifier_preparer.format_table(scenarios)
    keys, base = config.source.entity_columns, base_name(config)

    def read(sql: str, **params: Any) -> pd.DataFrame:
        result = conn.execute(sa.text(sql), {"run": run_month, **params})
        return pd.DataFrame.from_records(result.all(), columns=list(result.keys()), coerce_float=True)

    totals = tidy_totals(read(month_totals_sql(relation)))
    run_id, created_at = publication
    rows: list[dict[str, Any]] = []

    def add(part: str, level: str, scenario: str, found: pd.DataFrame, renamed: dict[str, str]) -> None:
        """The rows of ``found`` in order, its columns renamed by ``renamed``."""
        named = {"run_month": run_month, "scenario": scenario, "part": part, "level": level}
        named |= {"run_id": run_id, "created_at": created_at}
        for position, row in enumerate(found.to_dict(orient="records"), 1):
            values = {column: plain(row[given]) for given, column in renamed.items()}
            rows.append(named | {"position": position} | values)

    month_columns = {c: c for c in ("forecast_month", "forecasts", "planned", "total")}
    for scenario, months in totals.groupby("scenario", sort=True):
        months = months.sort_values("forecast_month")
        months["forecast_month"] = [pd.Period(m, "M").to_timestamp().date() for m in months["forecast_month"]]
        add(MONTH, TOTAL, str(scenario), months, month_columns)
    names = [s for s in totals["scenario"].unique() if s != base]
    if base not in set(totals["scenario"]):
        return rows  # nothing to compare with
    amounts = {"scenario": "total", "base": "base_total", "difference": "difference"}
    for level in table_levels(config):
        grouped = tidy_totals(read(grouped_totals_sql(relation, level)))
        for scenario in names:
            counted = (
                grouped[grouped["scenario"] == scenario].groupby(level, as_index=False)["forecasts"].sum()
            )
            found = level_totals(grouped, base, scenario, level).merge(counted, on=level, how="left")
            columns = {c: c for c in [*level, "forecasts"]} | amounts
            add(GROUP, ",".join(level), scenario, found, columns)
    for scenario in names:
        moved = read(movers_sql(relation, keys), base=base, scenario=scenario)
        add(MOVER, ",".join(keys), scenario, moved, {k: k for k in keys} | {"months": "forecasts"} | amounts)
    return rows
