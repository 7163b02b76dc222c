"""The explorer's panels beside an entity's chart: why its newest forecasts are what they are
(``<table>_drivers``) and how every run revised its forecast of each month (``<table>_revisions``).

Both read the database through the read-only query layer, by the entity columns (the drivers
table's ``_entity_month_idx`` index; the revisions view's window is partitioned by them, so the
filter goes inside it). A database published before drivers existed shows neither panel, and
says so.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.months import month_of
from forecasting.core.names import DRIVERS, REVISIONS, relation_name
from forecasting.features.families import DESCRIPTIONS, FAMILIES
from forecasting.publishing.query import QueryError, run_query

# A blend's statistical members' part (forecasting.modeling.drivers.BASELINES), shown last.
BASELINES = "baselines"
ORDER = (*FAMILIES, BASELINES)
TITLES = {**DESCRIPTIONS, BASELINES: "the blend's statistical members: no driver explains them"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _query(
    config: Config, suffix: str, columns: list[str], entity: dict[str, Any], extra: str = "", **params: Any
) -> pd.DataFrame | None:
    """The entity's rows of ``<table>_<suffix>`` (``extra``: more SQL after the WHERE, with
    ``params``); None when the relation does not exist (a database published before it)."""
    keys = config.source.entity_columns
    schema, name = config.predictions.database.schema, relation_name(config.predictions.table, suffix)
    relation = _quote(name) if schema is None else f"{_quote(schema)}.{_quote(name)}"
    where = " AND ".join(f"{_quote(k)} = :k{i}" for i, k in enumerate(keys))
    sql = f"SELECT {', '.join(_quote(c) for c in columns)} FROM {relation} WHERE {where} {extra}"
    try:
        return run_query(config, sql, params={**{f"k{i}": entity[k] for i, k in enumerate(keys)}, **params})
    except (QueryError, sa.exc.DBAPIError) as err:
        state = getattr(getattr(err, "orig", None), "sqlstate", None)
        if "no such table" in str(err) or state == "42P01":
            return None
        raise


def _month(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def _number(value: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{value:{sign},.1f}" if abs(value) >= 10 else f"{value:{sign}.2f}"


def drivers_panel(config: Config, entity: dict[str, Any], latest_run: str | None) -> dict[str, Any]:
    """The newest run's drivers of the entity: one row per family, one column per forecast month
    (the contribution in units, its share and a bar), the forecasts they sum to, what they explain."""
    if latest_run is None:
        return {"state": "none", "run": None}
    run = month_of(latest_run).to_timestamp().date()
    columns = ["forecast_month", "family", "contribution", "share", "explained", "model_version"]
    found = _query(config, DRIVERS, columns, entity, "AND run_month = :run", run=run)
    if found is None:
        return {"state": "no-table", "run": latest_run}
    if found.empty:
        return {"state": "none", "run": latest_run}
    found["forecast_month"] = [_month(v) for v in found["forecast_month"]]
    months = sorted(set(found["forecast_month"]))
    table = found.pivot_table(index="family", columns="forecast_month", values="contribution", aggfunc="sum")
    shares = found.pivot_table(index="family", columns="forecast_month", values="share", aggfunc="sum")
    widest = float(table.abs().max().max()) or 1.0
    rows = []
    for family in (f for f in ORDER if f in table.index):
        cells = []
        for month in months:
            value = float(table.at[family, month])
            share = shares.at[family, month] if month in shares.columns else None
            cells.append(
                {
                    "text": _number(value, signed=True),
                    "share": "" if share is None or pd.isna(share) else f"{share:.0%}",
                    "width": f"{100 * abs(value) / widest:.0f}",
                    "sign": "up" if value >= 0 else "down",
                    "value": f"{value:.6g}",
                }
            )
        rows.append({"family": family, "title": TITLES[family], "cells": cells})
    explained = found.groupby("forecast_month")["explained"].min()
    totals = table.sum()
    return {
        "state": "shown",
        "run": latest_run,
        "months": months,
        "rows": rows,
        "totals": [_number(float(totals[m])) for m in months],
        "explained": [f"{explained[m]:.0%}" for m in months],
        "partly": bool((explained < 0.999).any()),
        "models": sorted(set(found["model_version"])),
    }


def revisions_panel(config: Config, entity: dict[str, Any]) -> dict[str, Any]:
    """Every run's forecast of each month of the entity that more than one run forecast, newest
    month first: the forecasts in run order, and the last run's change."""
    columns = ["forecast_month", "run_month", "prediction", "change"]
    found = _query(config, REVISIONS, columns, entity, "ORDER BY forecast_month DESC, run_month")
    if found is None:
        return {"state": "no-table"}
    rows = []
    for month, runs in found.groupby("forecast_month", sort=False):
        if len(runs) < 2:
            continue
        last = runs.iloc[-1]
        previous = float(runs.iloc[-2]["prediction"])
        change = float(last["change"])
        rows.append(
            {
                "month": _month(month),
                "path": [
                    {"run": _month(r["run_month"]), "value": _number(float(r["prediction"]))}
                    for _, r in runs.iterrows()
                ],
                "change": _number(change, signed=True),
                "percent": f"({change / previous:+.1%})" if previous else "",
                "sign": "up" if change >= 0 else "down",
            }
        )
    return {"state": "shown" if rows else "none", "rows": rows}
