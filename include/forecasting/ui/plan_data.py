"""What the planners' pages read (the overview's first sections, the level explorer and its
exports): per entity and per group of each hierarchy level, the newest run's forecast, its change
since the previous run, and how its 1-month-ahead forecasts did, computed once per published run.

Sorting 100,000 series by their change or their bias takes every series' numbers: a query per
page would aggregate the whole newest run each time. So ``plan_data`` reads them once per
published run (read-only query layer, bound parameters) and keeps them in memory, keyed by the
newest run's identity (run month, run id, created_at), the snapshot file and the newest
``<table>_accuracy`` score: after a publish or a monitoring run, a thread reads them again while
the pages show the numbers held, saying so. A page then filters, sorts and cuts in memory
(``LIMIT`` in Python terms).

* **Entities**: the newest run's rows (``<table>``, primary key's ``run_month`` prefix), the
  previous run's forecasts of the same months (its change), and ``<table>_tracking_signal``'s
  1-month-ahead row (the monitoring's tracking signal and mean absolute error; none before
  forecast_monitoring ran).
* **Groups**: ``<table>_levels`` (the newest run's rows, the previous run's, and every run's
  1-month-ahead forecasts), and the group's actuals: the sum of its members' actuals in the newest
  run's snapshot, a member being an entity whose latest row carries the group's values (as the
  hierarchy's reconciliation groups them, forecasting.orchestration.levels.level_members). Their
  error and bias are the tracking signal's definition (forecasting.publishing.tables) applied to
  the group's 1-month-ahead forecasts of its last TRACKING_MONTHS months with actuals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import sparse

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_of
from forecasting.core.names import ACCURACY, LEVELS, RUNS, TRACKING_SIGNAL, relation_name
from forecasting.data.panel import key_text
from forecasting.publishing.query import QueryError, run_query
from forecasting.publishing.tables import TRACKING_MONTHS
from forecasting.ui.explorer import quote, relation
from forecasting.ui.overrides import newest_run

ENTITY = "entity"  # the level explorer's name of the bottom level: the entities themselves
TOTAL = "total"  # forecasting.modeling.hierarchy's name of the empty level
SEPARATOR = ","  # between a level's columns, and between a group's values (forecasting.modeling.hierarchy)
BIASED = 4.0  # |tracking signal| from which a bias is rarely chance (docs/monitoring.md)
METRICS = ("volume", "next", "p10", "p90", "previous", "change", "change_pct", "error", "bias", "scored")


@dataclass
class PlanData:
    """Every series' numbers of the newest run (one row per entity, one per level group)."""

    latest_run: str  # "YYYY-MM"
    previous_run: str | None
    keys: list[str]  # the entity columns
    level_columns: list[str]  # the columns the hierarchy's levels group by
    levels: list[str]  # the levels' names, as <table>_levels has them ("total", "region,category")
    entities: pd.DataFrame  # keys, level columns but the keys (text), METRICS
    groups: pd.DataFrame  # level, level_key, level columns, METRICS, members
    group_months: pd.DataFrame  # level, level_key, forecast_month, prediction, p10, p90, previous
    entity_groups: dict[str, np.ndarray]  # per level: each entity's group (its level_key)
    months: list[str]  # the newest run's forecast months
    actual_months: list[str]  # the snapshot's months (the columns of ``actuals``)
    actuals: np.ndarray  # [entity row, month]: the entity's actual (0: no row that month)
    snapshot: Path | None
    biased_signals: bool  # entities' bias comes from <table>_tracking_signal
    overrides: dict | None  # what the newest run's publish did with the overrides (ui.overrides)
    stale: bool = False  # newer numbers are being read (a publish or a monitoring run since)


def _month(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def _date(month: str) -> Any:
    return month_of(month).to_timestamp().date()


def missing_relation(err: Exception) -> bool:
    """A query failed because a table or view does not exist (yet)."""
    state = getattr(getattr(err, "orig", None), "sqlstate", None)
    return "no such table" in str(err) or state == "42P01" or "no SQLite database" in str(err)


def _query(config: Config, sql: str, **params: Any) -> pd.DataFrame | None:
    """The rows of ``sql``; None when a relation it reads does not exist."""
    try:
        return run_query(config, sql, params=params)
    except (QueryError, sa.exc.DBAPIError) as err:
        if missing_relation(err):
            return None
        raise


def _runs(config: Config) -> pd.DataFrame | None:
    runs = relation(config, relation_name(config.predictions.table, RUNS))
    return _query(config, f"SELECT run_month, run_id, created_at FROM {runs} ORDER BY run_month DESC LIMIT 2")


def _scored_at(config: Config) -> str | None:
    accuracy = relation(config, relation_name(config.predictions.table, ACCURACY))
    found = _query(config, f"SELECT max(scored_at) AS scored FROM {accuracy}")
    return None if found is None or found.empty else str(found["scored"].iloc[0])


def _snapshot(config: Config, latest_run: str, run_id: str) -> Path | None:
    attempt = paths.published_attempt(config, month_of(latest_run), run_id)
    if attempt is None or not paths.snapshot_in(attempt).is_file():
        return None
    return paths.snapshot_in(attempt)


# The deployment's newest numbers read, by deployment: (their key, them). One deployment is kept.
_CACHE: dict[tuple, tuple[tuple, PlanData]] = {}
_LOCK = threading.Lock()  # guards _CACHE and _REFRESHING
_READING = threading.Lock()  # one read of every series at a time
_REFRESHING: dict[tuple, threading.Thread] = {}


def plan_data(config: Config, wait: bool = False) -> PlanData | None:
    """The newest run's numbers (None: nothing published), read again only when they changed.

    When they changed (a publish, a monitoring run) and earlier ones are held, those are returned
    at once, marked ``stale``, while a thread reads the new ones (unless ``wait``): a page never
    waits for a read of every series but the first one (the api-server's warm-up makes that)."""
    runs = _runs(config)
    if runs is None or runs.empty:
        return None
    latest_run, run_id = _month(runs["run_month"].iloc[0]), str(runs["run_id"].iloc[0])
    snapshot = _snapshot(config, latest_run, run_id)
    deployment = (str(config.path), config.predictions.database.url, config.predictions.table)
    key = (
        tuple(map(str, runs.itertuples(index=False))),
        str(snapshot),
        snapshot.stat().st_mtime_ns if snapshot else None,
        _scored_at(config),
    )
    previous = _month(runs["run_month"].iloc[1]) if len(runs) > 1 else None
    with _LOCK:
        held = _CACHE.get(deployment)
        if held is not None and held[0] == key:
            return held[1]
        if held is not None and not wait:
            if deployment not in _REFRESHING:
                thread = threading.Thread(
                    target=_refresh,
                    args=(config, deployment, key, latest_run, previous, snapshot),
                    name="forecasts-view-numbers",
                    daemon=True,
                )
                _REFRESHING[deployment] = thread
                thread.start()
            return replace(held[1], stale=True)
    return _refresh(config, deployment, key, latest_run, previous, snapshot)


def _refresh(
    config: Config,
    deployment: tuple,
    key: tuple,
    latest_run: str,
    previous: str | None,
    snapshot: Path | None,
) -> PlanData:
    try:
        with _READING:
            with _LOCK:
                held = _CACHE.get(deployment)
            if held is not None and held[0] == key:  # read meanwhile by another page
                return held[1]
            found = _read(config, latest_run, previous, snapshot)
            with _LOCK:
                _CACHE.clear()  # one deployment's numbers are kept
                _CACHE[deployment] = (key, found)
            return found
    finally:
        with _LOCK:
            if _REFRESHING.get(deployment) is threading.current_thread():
                del _REFRESHING[deployment]


def refreshing(config: Config) -> threading.Thread | None:
    """The thread reading the deployment's newer numbers, if one is (for tests and benchmarks)."""
    with _LOCK:
        return _REFRESHING.get((str(config.path), config.predictions.database.url, config.predictions.table))


def level_names(config: Config) -> tuple[list[str], list[str]]:
    """(the levels' names, the columns they group by), after the config's hierarchy."""
    levels = config.hierarchy.levels if config.hierarchy is not None else []
    names = [SEPARATOR.join(level) or TOTAL for level in levels]
    return names, list(dict.fromkeys(c for level in levels for c in level))


def _read(config: Config, latest_run: str, previous_run: str | None, snapshot: Path | None) -> PlanData:
    keys = config.source.entity_columns
    levels, level_columns = level_names(config)
    entities, months = _entity_numbers(config, latest_run, previous_run)
    members, actual_months, actuals = _snapshot_numbers(config, snapshot, entities[keys], level_columns)
    for column in level_columns:
        if column not in keys:
            entities[column] = members[column].to_numpy()
    groups, group_months = _group_numbers(config, latest_run, previous_run, level_columns, levels)
    if groups.empty:  # no hierarchy: the entities' total stands for the levels
        group_months = _entity_totals(config, latest_run, previous_run)
    text = entities.assign(**{k: key_text(entities[k]) for k in keys})
    entity_groups = {level: group_keys(text, level) for level in levels}
    groups = _group_accuracy(config, groups, entity_groups, actual_months, actuals, latest_run)
    return PlanData(
        latest_run=latest_run,
        previous_run=previous_run,
        keys=keys,
        level_columns=level_columns,
        levels=levels,
        entities=entities,
        groups=groups,
        group_months=group_months,
        entity_groups=entity_groups,
        months=months,
        actual_months=actual_months,
        actuals=actuals,
        snapshot=snapshot,
        biased_signals=bool(entities["bias"].notna().any()),
        overrides=newest_run(config),
    )


def _entity_numbers(
    config: Config, latest_run: str, previous_run: str | None
) -> tuple[pd.DataFrame, list[str]]:
    """Per entity of the newest run: its forecasts' sum (volume), next month's with p10/p90, the
    previous run's forecast of the same months and the change, and the tracking signal's numbers
    (one query: a row per entity); and the newest run's forecast months."""
    keys = config.source.entity_columns
    table = relation(config, config.predictions.table)
    entity = ", ".join(f"c.{quote(k)}" for k in keys)
    interval = _has_interval(config)
    next_month = "SUM(CASE WHEN c.horizon = 1 THEN c.{} END)"
    columns = [
        f"{entity}",
        "SUM(c.prediction) AS volume",
        f"{next_month.format('prediction')} AS next",
        f"{next_month.format('p10')} AS p10" if interval else "NULL AS p10",
        f"{next_month.format('p90')} AS p90" if interval else "NULL AS p90",
    ]
    joins, params = "", {"run": _date(latest_run)}
    if previous_run is not None:
        # The previous run's forecasts of the months both forecast: the entity_month index serves
        # the join (entity columns, forecast_month), the primary key's run_month prefix the rest.
        columns += ["SUM(p.prediction) AS previous", "SUM(c.prediction - p.prediction) AS change"]
        on = " AND ".join(f"p.{quote(k)} = c.{quote(k)}" for k in keys)
        joins = f" LEFT JOIN {table} p ON p.run_month = :previous AND {on} AND p.forecast_month = c.forecast_month"
        params["previous"] = _date(previous_run)
    else:
        columns += ["NULL AS previous", "NULL AS change"]
    signal = relation(config, relation_name(config.predictions.table, TRACKING_SIGNAL))
    tracked = " AND ".join(f"t.{quote(k)} = c.{quote(k)}" for k in keys)
    scores = [
        "MAX(t.mean_absolute_error) AS error",
        "MAX(t.tracking_signal) AS bias",
        "MAX(t.months) AS scored",
    ]
    joined = f"{joins} LEFT JOIN {signal} t ON t.horizon = 1 AND {tracked}"
    out = _query(config, _per_entity(columns + scores, table, joined, entity), **params)
    if out is None:  # no <table>_tracking_signal: forecast_monitoring never ran
        unscored = ["NULL AS error", "NULL AS bias", "NULL AS scored"]
        out = run_query(config, _per_entity(columns + unscored, table, joins, entity), params=params)
    found = run_query(
        config,
        f"SELECT DISTINCT forecast_month FROM {table} WHERE run_month = :run",
        params={"run": params["run"]},
    )
    months = sorted(_month(v) for v in found["forecast_month"])
    out["change_pct"] = _ratio(out["change"], out["previous"])
    for column in METRICS:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out.sort_values(keys, kind="stable").reset_index(drop=True), months


def _per_entity(columns: list[str], table: str, joins: str, entity: str) -> str:
    return f"SELECT {', '.join(columns)} FROM {table} c{joins} WHERE c.run_month = :run GROUP BY {entity}"


def _ratio(change: pd.Series, previous: pd.Series) -> pd.Series:
    base = previous.astype(float)
    return change.astype(float) / base.where(base != 0)


def _entity_totals(config: Config, latest_run: str, previous_run: str | None) -> pd.DataFrame:
    """Per forecast month of the newest run: its forecasts' total, and the previous run's of the
    same month (the overview's totals without a hierarchy)."""
    table = relation(config, config.predictions.table)
    sums = run_query(
        config,
        f"SELECT run_month, forecast_month, SUM(prediction) AS prediction FROM {table} "
        "WHERE run_month IN (:run, :previous) GROUP BY run_month, forecast_month",
        params={"run": _date(latest_run), "previous": _date(previous_run or latest_run)},
    )
    sums["run_month"] = sums["run_month"].map(_month)
    sums["forecast_month"] = sums["forecast_month"].map(_month)
    newest = sums[sums["run_month"] == latest_run].set_index("forecast_month")["prediction"]
    before = sums[sums["run_month"] == previous_run].set_index("forecast_month")["prediction"]
    out = pd.DataFrame({"prediction": newest, "previous": before.reindex(newest.index)}).reset_index()
    return out.assign(level=TOTAL, level_key=TOTAL, p10=np.nan, p90=np.nan)


def _has_interval(config: Config) -> bool:
    found = run_query(config, f"SELECT * FROM {relation(config, config.predictions.table)} LIMIT 1")
    return {"p10", "p90"} <= set(found.columns)


def _snapshot_numbers(
    config: Config, snapshot: Path | None, entities: pd.DataFrame, level_columns: list[str]
) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Per entity (in the order of ``entities``): its level columns as text (its latest row's
    attributes), and its actual per month of the snapshot (0 where it has no row). Arrow's join
    finds each row's entity (millions of rows: no Python per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = config.source
    keys = src.entity_columns
    members = pd.DataFrame({k: key_text(entities[k]) for k in keys})
    attributes = [c for c in level_columns if c not in keys]
    if snapshot is None:
        for column in attributes:
            members[column] = ""
        return members, [], np.zeros((len(entities), 0))
    # The attributes as dictionaries (a few distinct values in millions of rows: no string each).
    columns = [*keys, src.time_column, src.target_column, *attributes]
    table = pq.read_table(snapshot, columns=columns, read_dictionary=attributes)
    # Each row's entity by a join of the keys alone (the rest is gathered by row position after).
    keyed = pa.table({**{k: table[k] for k in keys}, "_pos": np.arange(table.num_rows, dtype=np.int64)})
    index = pa.Table.from_pandas(entities[keys].assign(_row=np.arange(len(entities))), preserve_index=False)
    index = index.cast(
        pa.schema([*(pa.field(k, table.schema.field(k).type) for k in keys), pa.field("_row", pa.int64())])
    )
    joined = keyed.join(index, keys=keys, join_type="inner", use_threads=True)
    position, row = joined["_pos"].to_numpy(), joined["_row"].to_numpy()
    # Each row's month as a number: worked out once per distinct date (a few dozen), not per row.
    dates = pc.dictionary_encode(table[src.time_column]).combine_chunks()
    distinct = pd.DatetimeIndex(dates.dictionary.to_pandas())
    numbers = np.append((distinct.year * 12 + distinct.month - 1).to_numpy(dtype=np.int64), -1)
    month = numbers[pc.fill_null(dates.indices, -1).to_numpy(zero_copy_only=False)][position]
    dated = month >= 0  # rows without a date count nowhere
    position, row, month = position[dated], row[dated], month[dated]
    if not len(month):
        return members.assign(**{c: "" for c in attributes}), [], np.zeros((len(entities), 0))
    first, width = int(month.min()), int(month.max() - month.min()) + 1
    target = table[src.target_column].combine_chunks().to_numpy(zero_copy_only=False)
    values = np.nan_to_num(target.astype(float)[position])
    actuals = np.bincount(row * width + (month - first), weights=values, minlength=len(entities) * width)
    actuals = actuals.reshape(len(entities), width)
    if attributes:
        newest = np.full(len(entities), -1, dtype=np.int64)
        np.maximum.at(newest, row, month)
        latest = np.flatnonzero(month == newest[row])  # each entity's rows of its newest month
        picked = table.select(attributes).take(pa.array(position[latest])).to_pandas()
        picked = picked.assign(_row=row[latest]).drop_duplicates("_row", keep="last")
        picked = picked.set_index("_row").reindex(range(len(entities)))
        for column in attributes:
            members[column] = picked[column].astype("string").fillna("").to_numpy(dtype=object)
    months = [
        str(pd.Period(year=(first + i) // 12, month=(first + i) % 12 + 1, freq="M")) for i in range(width)
    ]
    return members, months, actuals


def _group_numbers(
    config: Config, latest_run: str, previous_run: str | None, level_columns: list[str], levels: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per level group of the newest run (``<table>_levels``): as ``_entity_numbers``'s; and
    per group and forecast month, the newest run's forecast and the previous run's. Only the
    config's ``levels``: one a run published before the hierarchy changed is not shown."""
    columns = ["level", "level_key", *level_columns, *METRICS]
    table = relation(config, relation_name(config.predictions.table, LEVELS))
    selected = ", ".join(quote(c) for c in ["level", "level_key", *level_columns])
    rows = _query(
        config,
        f"SELECT {selected}, run_month, forecast_month, horizon, prediction, p10, p90 FROM {table} "
        "WHERE run_month IN (:run, :previous)",
        run=_date(latest_run),
        previous=_date(previous_run or latest_run),
    )
    month_columns = ["level", "level_key", "forecast_month", "prediction", "p10", "p90", "previous"]
    if rows is not None:
        rows = rows[rows["level"].isin(levels)]
    if rows is None or rows.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=month_columns)
    rows["run_month"] = rows["run_month"].map(_month)
    rows["forecast_month"] = rows["forecast_month"].map(_month)
    group = ["level", "level_key"]
    newest = rows[rows["run_month"] == latest_run]
    out = newest.groupby(group, sort=False).agg(
        **{c: (c, "first") for c in level_columns}, volume=("prediction", "sum")
    )
    nxt = newest[newest["horizon"] == 1].set_index(group)[["prediction", "p10", "p90"]]
    out = out.join(nxt.rename(columns={"prediction": "next"}))
    before = rows[rows["run_month"] == previous_run] if previous_run else rows.iloc[:0]
    both = newest.merge(
        before[[*group, "forecast_month", "prediction"]],
        on=[*group, "forecast_month"],
        how="left",
        suffixes=("", "_previous"),
    )
    both["change"] = both["prediction"] - both["prediction_previous"]
    known = both[both["prediction_previous"].notna()]
    sums = known.groupby(group).agg(previous=("prediction_previous", "sum"), change=("change", "sum"))
    out = out.join(sums)
    out["change_pct"] = _ratio(out["change"], out["previous"])
    months = both.rename(columns={"prediction_previous": "previous"})[month_columns]
    return out.reset_index().reindex(columns=columns), months


def group_keys(entities: pd.DataFrame, level: str) -> np.ndarray:
    """Each entity's group of ``level``: its values of the level's columns, as level_key has them."""
    if level == TOTAL:
        return np.full(len(entities), TOTAL, dtype=object)
    columns = level.split(SEPARATOR)
    text = entities[columns[0]].astype(str)
    for column in columns[1:]:
        text = text + SEPARATOR + entities[column].astype(str)
    return text.to_numpy(dtype=object)


def _group_accuracy(
    config: Config,
    groups: pd.DataFrame,
    entity_groups: dict[str, np.ndarray],
    actual_months: list[str],
    actuals: np.ndarray,
    latest_run: str,
) -> pd.DataFrame:
    """Each group's members, and the error (mean absolute) and tracking signal of its 1-month-
    ahead forecasts of its last TRACKING_MONTHS months with actuals (every run's, <table>_levels)."""
    groups = groups.assign(members=0, error=np.nan, bias=np.nan, scored=np.nan)
    if groups.empty:
        return groups
    table = relation(config, relation_name(config.predictions.table, LEVELS))
    ahead = run_query(
        config,
        f"SELECT level, level_key, forecast_month, prediction FROM {table} "
        "WHERE horizon = 1 AND forecast_month <= :run",
        params={"run": _date(latest_run)},
    )
    ahead["forecast_month"] = ahead["forecast_month"].map(_month)
    scored = [m for m in actual_months if m <= latest_run]
    for level, rows in groups.groupby("level", sort=False):
        codes, names = pd.factorize(entity_groups[str(level)])
        counts = pd.Series(np.bincount(codes, minlength=len(names)), index=names)
        groups.loc[rows.index, "members"] = rows["level_key"].map(counts).fillna(0).to_numpy()
        made = ahead[ahead["level"] == level].pivot_table(
            index="level_key", columns="forecast_month", values="prediction", aggfunc="last"
        )
        common = [m for m in scored if m in made.columns][-TRACKING_MONTHS:]
        if not common:
            continue
        # The groups' actuals: a sparse sum of their members' rows (one 1 per entity).
        summing = sparse.csr_matrix(
            (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(names), len(codes))
        )
        columns = [actual_months.index(m) for m in common]
        sums = pd.DataFrame(summing @ actuals[:, columns], index=names, columns=common)
        error = made[common].sub(sums.reindex(index=made.index).fillna(0.0))
        mae = error.abs().mean(axis=1, skipna=True)
        signal = error.sum(axis=1, skipna=True) / mae.where(mae > 0)
        at = rows["level_key"]
        groups.loc[rows.index, "error"] = at.map(mae).to_numpy(dtype=float)
        groups.loc[rows.index, "bias"] = at.map(signal).to_numpy(dtype=float)
        groups.loc[rows.index, "scored"] = at.map(error.notna().sum(axis=1)).to_numpy(dtype=float)
    return groups
