"""The explorer of the Forecasts view: one entity's history, forecasts and earlier forecasts vs actuals.

Predictions are read through the read-only query layer (``forecasting.publishing.query``) with bound
parameters, by the entity columns, which lead the table's ``<table>_entity_month_idx`` index
(entity columns, forecast_month): one entity costs an index range scan whatever the table's size.
Actuals (and the price and promotion covariates) come from the newest published attempt's source
snapshot (``raw.parquet``), read with a filter on the entity columns; the chart's context (the
plans, the same month last year, the entity's what-if scenarios, the zoom) is
``forecasting.ui.entity_chart``'s. Everything shown is one table (``shown_rows``): the charts,
the numbers beside them and the CSV download are all drawn from it, so they cannot disagree (the
zoom cuts the charts and the numbers, never the CSV). The page is drawn by
``templates/explorer.html`` (an entity: ``templates/explorer_entity.html``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_of
from forecasting.core.names import RUNS, relation_name
from forecasting.publishing.query import QueryError, run_query
from forecasting.ui import entity_chart, explain
from forecasting.ui.scenarios import entity_scenarios, no_entity_scenarios
from forecasting.ui.templating import render_page

SEARCH_LIMIT = 50
# A search value of an integer column must fit a 64-bit integer: SQLite and PostgreSQL refuse more.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INTERVAL_COLUMNS = ("p10", "p90")  # a prediction interval, once the predictions table has one
FINAL_COLUMNS = ("final", "override_id")  # the planners' overrides' layer, once the table has it


class BadEntity(ValueError):
    """Search values that cannot be values of their entity columns (the page says which)."""


def quote(name: str) -> str:
    """An SQL identifier, quoted the ANSI way (PostgreSQL and SQLite both read it)."""
    return '"' + name.replace('"', '""') + '"'


def relation(config: Config, name: str) -> str:
    schema = config.predictions.database.schema
    return quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"


@dataclass
class TableShape:
    """What the predictions table looks like: its columns and its entity columns' pandas dtypes."""

    columns: list[str]
    key_dtypes: dict[str, Any]

    @property
    def has_interval(self) -> bool:
        return all(c in self.columns for c in INTERVAL_COLUMNS)

    @property
    def has_final(self) -> bool:
        return all(c in self.columns for c in FINAL_COLUMNS)


def table_shape(config: Config) -> TableShape | None:
    """None when nothing was published yet (no table, or an empty one)."""
    try:
        row = run_query(config, f"SELECT * FROM {relation(config, config.predictions.table)} LIMIT 1")
    except QueryError as err:  # no SQLite file yet
        if "no SQLite database" in str(err):
            return None
        raise
    except sa.exc.DBAPIError as err:  # no table yet (PostgreSQL: undefined_table)
        if "no such table" in str(err) or getattr(err.orig, "sqlstate", None) == "42P01":
            return None
        raise
    if row.empty:
        return None
    return TableShape(
        columns=list(row.columns), key_dtypes={k: row[k].dtype for k in config.source.entity_columns}
    )


def parse_entity(config: Config, shape: TableShape, given: dict[str, str]) -> dict[str, Any]:
    """The non-empty search values, typed like their columns; raises BadEntity for e.g. 'abc'
    given for an integer column."""
    typed: dict[str, Any] = {}
    for column in config.source.entity_columns:
        text = (given.get(column) or "").strip()
        if not text:
            continue
        dtype = shape.key_dtypes[column]
        try:
            if pd.api.types.is_integer_dtype(dtype):
                typed[column] = int(text)
                if not INT64_MIN <= typed[column] <= INT64_MAX:  # no database column holds it
                    raise BadEntity(f"{column}: {text[:40]!r} is out of range for a number column")
            elif pd.api.types.is_float_dtype(dtype):
                typed[column] = float(text)
            else:
                typed[column] = text
        except ValueError:
            raise BadEntity(f"{column} is a number column: {text!r} is not a number") from None
    return typed


def _where(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    conditions = [f"{quote(k)} = :k{i}" for i, k in enumerate(values)]
    return " AND ".join(conditions) or "1 = 1", {f"k{i}": v for i, v in enumerate(values.values())}


def find_entities(config: Config, values: dict[str, Any], limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Entities of the newest run matching ``values`` (exact, on any subset of entity columns),
    ordered by their keys, at most ``limit`` + 1 (so the caller can tell there are more).

    The primary key (run_month, entity columns..., horizon) serves it: one month's horizon-1 rows.
    """
    keys = config.source.entity_columns
    where, params = _where(values)
    table = relation(config, config.predictions.table)
    runs = relation(config, relation_name(config.predictions.table, RUNS))
    sql = (
        f"SELECT {', '.join(quote(k) for k in keys)} FROM {table} "
        f"WHERE run_month = (SELECT max(run_month) FROM {runs}) AND horizon = 1 AND {where} "
        f"ORDER BY {', '.join(quote(k) for k in keys)} LIMIT {int(limit) + 1}"
    )
    found = run_query(config, sql, params=params)
    return [{k: _plain(v) for k, v in row.items()} for row in found.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (for URLs, JSON and parquet filters)."""
    return value.item() if hasattr(value, "item") else value


def _month(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


@dataclass
class EntityForecasts:
    """Everything the explorer shows for one entity."""

    entity: dict[str, Any]
    predictions: pd.DataFrame  # every run's rows of the entity, months as "YYYY-MM"
    history: pd.DataFrame  # month ("YYYY-MM"), actual
    latest_run: str | None  # the newest run month ("YYYY-MM") that published
    history_source: Path | None  # the snapshot the actuals come from
    horizon: int
    has_interval: bool
    seconds: dict[str, float] = field(default_factory=dict)  # server time per step
    has_final: bool = False  # the table has final and override_id (planners' overrides)
    # The newest run's plans of the months it forecasts (month, one column per covariate) and
    # the entity's forecasts under its what-if scenarios (forecast_month, scenario, prediction).
    plans: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"month": pd.Series(dtype=str)}))
    scenarios: pd.DataFrame = field(default_factory=no_entity_scenarios)


def entity_query(config: Config, shape: TableShape, entity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(SQL, parameters) of every run's rows of one entity. The index on (entity columns,
    forecast_month) serves it: a range scan of this entity's rows only."""
    where, params = _where({k: entity[k] for k in config.source.entity_columns})
    extra = list(INTERVAL_COLUMNS) if shape.has_interval else []
    extra += list(FINAL_COLUMNS) if shape.has_final else []
    columns = ["run_month", "forecast_month", "horizon", "prediction", "model_version", "run_id", *extra]
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {relation(config, config.predictions.table)} "
        f"WHERE {where} ORDER BY forecast_month, run_month"
    )
    return sql, params


def entity_forecasts(config: Config, shape: TableShape, entity: dict[str, Any]) -> EntityForecasts:
    """One entity's prediction rows (every run) and actuals. ``entity`` gives every entity column."""
    started = time.perf_counter()
    sql, params = entity_query(config, shape, entity)
    rows = run_query(config, sql, params=params)
    for column in ("run_month", "forecast_month"):
        rows[column] = [_month(v) for v in rows[column]]
    runs = run_query(
        config,
        f"SELECT run_month, run_id FROM {relation(config, f'{config.predictions.table}_runs')} "
        "ORDER BY run_month DESC LIMIT 1",
    )
    queried = time.perf_counter()
    latest_run = _month(runs["run_month"].iloc[0]) if len(runs) else None
    snapshot, attempt = None, None
    if latest_run is not None:
        attempt = paths.published_attempt(config, month_of(latest_run), runs["run_id"].iloc[0])
        if attempt is not None and paths.snapshot_in(attempt).is_file():
            snapshot = paths.snapshot_in(attempt)
    history = read_history(config, snapshot, entity) if snapshot else _empty_history()
    read = time.perf_counter()
    plans = entity_chart.read_plans(config, entity, latest_run, attempt)
    scenarios = entity_scenarios(config, entity, latest_run)
    return EntityForecasts(
        entity=entity,
        predictions=rows,
        history=history,
        latest_run=latest_run,
        history_source=snapshot,
        horizon=config.horizon,
        has_interval=shape.has_interval,
        has_final=shape.has_final,
        seconds={
            "predictions": queried - started,
            "history": read - queried,
            "plans and scenarios": time.perf_counter() - read,
        },
        plans=plans,
        scenarios=scenarios,
    )


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({"month": pd.Series(dtype=str), "actual": pd.Series(dtype=float)})


def read_history(config: Config, snapshot: Path, entity: dict[str, Any]) -> pd.DataFrame:
    """The entity's monthly target, and its price and promotion covariates (the month's mean),
    from a snapshot: parquet's filter skips other entities' rows."""
    keys, time_column, target = (
        config.source.entity_columns,
        config.source.time_column,
        config.source.target_column,
    )
    covariates = entity_chart.snapshot_columns(config, snapshot)
    frame = pd.read_parquet(
        snapshot,
        columns=[*keys, time_column, target, *covariates],
        filters=[(k, "==", entity[k]) for k in keys],
    )
    frame = frame.dropna(subset=[time_column, target])
    months = frame.groupby(frame[time_column].dt.to_period("M")).agg(
        {target: "sum", **dict.fromkeys(covariates, "mean")}
    )
    months = months.sort_index()
    out = pd.DataFrame(
        {"month": [str(p) for p in months.index], "actual": months[target].to_numpy(dtype=float)}
    )
    for c in covariates:
        out[c] = months[c].to_numpy(dtype=float)
    return out


def shown_rows(found: EntityForecasts) -> pd.DataFrame:
    """One row per month: the actual, the earlier runs' forecasts of it made h months ahead (months
    up to the newest run month only: what can be compared with actuals), and the newest run's
    forecast (with its interval, if the table has one). This is the numbers table and the CSV."""
    columns = ["month", "actual"]
    table = found.history.set_index("month")[["actual"]]
    rows = found.predictions
    if found.latest_run is not None and len(rows):
        earlier = rows[(rows["run_month"] < found.latest_run) & (rows["forecast_month"] <= found.latest_run)]
        for h in range(1, found.horizon + 1):
            column = f"forecast_{h}m_ahead"
            columns.append(column)
            at_h = earlier[earlier["horizon"] == h].set_index("forecast_month")["prediction"]
            table = table.join(at_h.rename(column), how="outer")
        latest = rows[rows["run_month"] == found.latest_run].set_index("forecast_month")
        # The final figures beside the forecast where an override changed some of them.
        overridden = found.has_final and latest["override_id"].notna().any()
        kept = [
            "prediction",
            *(["final", "override_id"] if overridden else []),
            "horizon",
            *([*INTERVAL_COLUMNS] if found.has_interval else []),
            "model_version",
        ]
        renamed = latest[kept].rename(
            columns={
                "prediction": "latest_forecast",
                "final": "latest_final",
                "override_id": "latest_override",
                "horizon": "latest_horizon",
                "model_version": "latest_model",
            }
        )
        columns += list(renamed.columns)
        table = table.join(renamed, how="outer")
    forecast_months = (
        table.index[table["latest_forecast"].notna()] if "latest_forecast" in table else table.index[:0]
    )
    context = entity_chart.context_columns(
        table.index, forecast_months, found.history, found.plans, found.scenarios, set(columns)
    )
    columns += list(context.columns)
    table = table.join(context, how="left")
    table = table.reindex(columns=columns[1:]).sort_index(ascending=False)  # newest month first
    table.index.name = "month"
    out = table.reset_index()
    if "latest_horizon" in out.columns:
        out["latest_horizon"] = out["latest_horizon"].astype("Int64")
    return out


def chart_of(found: EntityForecasts, config: Config) -> entity_chart.EntityChart:
    return entity_chart.EntityChart(
        title=", ".join(f"{k} {v}" for k, v in found.entity.items()),
        target=config.source.target_column,
        horizon=found.horizon,
        latest_run=found.latest_run,
        has_interval=found.has_interval,
        covariates=entity_chart.covariates_of(config),
    )


def chart(found: EntityForecasts, shown: pd.DataFrame, config: Config) -> str:
    """The sales chart of ``shown`` (all of an entity's rows, or the zoom's)."""
    return entity_chart.sales_chart(chart_of(found, config), shown)


def csv_text(found: EntityForecasts, shown: pd.DataFrame) -> str:
    """The shown rows with the entity's columns first."""
    frame = shown.copy()
    for i, (k, v) in enumerate(found.entity.items()):
        frame.insert(i, k, v)
    return frame.to_csv(index=False)


def csv_filename(found: EntityForecasts) -> str:
    parts = "_".join(f"{k}-{v}" for k, v in found.entity.items())
    return "forecasts_" + "".join(c if c.isalnum() or c in "-_." else "-" for c in parts) + ".csv"


def entity_csv(config: Config, given: dict[str, str]) -> tuple[str, str] | None:
    """(file name, CSV text) of the rows the explorer shows for the entity ``given`` names in
    full; None when it has no forecasts. Raises BadEntity for values of the wrong type or an
    entity column left out."""
    shape = table_shape(config)
    if shape is None:
        return None
    values = parse_entity(config, shape, given)
    missing = [k for k in config.source.entity_columns if k not in values]
    if missing:
        raise BadEntity(f"name the entity in full: {', '.join(missing)} missing")
    found = entity_forecasts(config, shape, values)
    if found.predictions.empty:
        return None
    return csv_filename(found), csv_text(found, shown_rows(found))


# --- the page --------------------------------------------------------------------------------


def render_explorer(config: Config, given: dict[str, str]) -> str:
    """The explorer page for the query string ``given`` (entity column -> text; ``zoom``: the
    last 12, 24 or 36 months, or all)."""
    started = time.perf_counter()
    keys = config.source.entity_columns
    shape = table_shape(config)
    page = partial(render_page, config, "Explorer", "explorer.html", keys=keys, given=given)
    if shape is None:
        return page(published=False)
    try:
        values = parse_entity(config, shape, given)
    except BadEntity as err:
        return page(published=True, error=str(err))
    if len(values) == len(keys):
        found = entity_forecasts(config, shape, values)
        if found.predictions.empty:
            return page(published=True, error=None, entity={"entity_values": values, "empty": True})
        panels = {
            "drivers": explain.drivers_panel(config, values, found.latest_run),
            "revisions": explain.revisions_panel(config, values),
        }
        zoom = entity_chart.zoom_of(given)
        section = {**_entity_view(config, found, zoom, started), **panels}
        return page(published=True, error=None, entity=section)
    matches = find_entities(config, values)
    return page(
        published=True,
        error=None,
        entity=None,
        values=values,
        matches=matches[:SEARCH_LIMIT],
        more=len(matches) > SEARCH_LIMIT,
        limit=SEARCH_LIMIT,
    )


def _entity_view(config: Config, found: EntityForecasts, zoom: str, started: float) -> dict[str, Any]:
    """What an entity's section shows: where the numbers come from, the charts and their table
    (the zoom's rows of ``shown_rows``; the CSV has them all)."""
    shown = entity_chart.zoomed(shown_rows(found), found.latest_run, zoom)
    drawn = chart_of(found, config)
    sales, covariates = entity_chart.sales_chart(drawn, shown), entity_chart.covariates_chart(drawn, shown)
    source = (
        f"actuals from the snapshot of run {found.latest_run}"
        if found.history_source
        else "no snapshot of the newest run is left, so no actuals"
    )
    if not found.has_interval:
        interval = " The table has no prediction interval (p10/p90) yet."
    elif "p10" not in shown.columns or shown["p10"].isna().all():
        interval = f" Run {found.latest_run}'s forecasts have no prediction interval (p10/p90)."
    else:
        interval = " The band is the p10–p90 prediction interval."
    displayed = [c for c in shown.columns if c != "latest_model"]  # one model: said above the table
    models = sorted(set(shown["latest_model"].dropna())) if "latest_model" in shown.columns else []
    return {
        "entity_values": found.entity,
        "empty": False,
        "source": source,
        "interval": interval,
        "models": models,
        "latest_run": found.latest_run,
        "milliseconds": f"{1000 * (time.perf_counter() - started):.0f}",
        "chart": Markup(sales),
        "covariates_chart": Markup(covariates) if covariates else None,
        "zooms": entity_chart.zoom_links(found.entity, zoom),
        "scenarios": sorted(set(found.scenarios["scenario"])),
        "columns": [(c, _header(c)) for c in displayed],
        "rows": [[_cell(value) for value in row] for row in shown[displayed].itertuples(index=False)],
    }


def _header(column: str) -> str:
    context = entity_chart.header(column)
    if context is not None:
        return context
    if column.startswith("forecast_") and column.endswith("m_ahead"):
        return f"{column.split('_')[1].removesuffix('m')} mo ahead"
    headers = {"latest_forecast": "newest run", "latest_final": "final", "latest_override": "override"}
    return {**headers, "latest_horizon": "h"}.get(column, column)


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float):  # as many decimals as a person compares
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)
