"""Realised accuracy: how good the published forecasts were, once their month's actuals are in.

The run of month M extracts M's actuals. ``realised_accuracy`` then scores every forecast
published for ``forecast_month = M`` (made by the runs of M-1 ... M-horizon) against them:

* ``<table>_errors``: per entity, forecast_month and horizon, the run and model that made the
  forecast, the actual, the prediction and the error (prediction - actual: > 0 is over-forecast).
* ``<table>_accuracy``: per forecast_month, run_month, horizon and model_version, over all
  entities (``segment_column`` and ``segment`` are ``'(all)'``) and per value of the config's
  ``monitoring.segment`` column: the number of forecasts, the actual and predicted sums, WAPE,
  MAE and bias of the published forecasts, and the same for each naive baseline of
  ``forecasting.modeling.evaluate``, made as of the same origin from the snapshot's history up to that
  origin; the best of those baselines and the forecast value added over it
  (``fva`` = best naive WAPE - WAPE: > 0 when the published forecasts beat every naive one).
  Also per age bucket of the entity as of the forecast's run month (``segment_column``
  ``history_months``, ``segment`` 1-2, 3-5, 6-23 or established: ``forecasting.features.age``),
  so new items' forecasts are scored apart. With a hierarchy, per level too (``segment_column``
  ``level``, ``segment`` the level's name): each group's total against its forecast in
  ``<table>_levels`` (forecasting.monitoring.level_accuracy).
* ``<table>_tracking_signal`` (view): per entity and horizon, over its last 12 scored months,
  the cumulative error over the mean absolute error (persistently > 0: over-forecast).

An entity-month without a row in the snapshot sold nothing (0), as everywhere in the pipeline.
Scoring M again replaces M's rows of both tables in one transaction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.core.errors import DataError
from forecasting.core.months import month_index, month_start
from forecasting.data.panel import Panel, build_panel
from forecasting.features import age
from forecasting.modeling.baselines import NAIVE_BASELINES as BASELINES
from forecasting.modeling.baselines import naive_forecasts
from forecasting.modeling.forecaster import MODEL_FORECAST, STATISTICAL_FORECAST
from forecasting.modeling.scoring import metrics
from forecasting.monitoring import value_added
from forecasting.monitoring.coverage import ALL, COVERAGE_COLUMNS, interval_coverage
from forecasting.monitoring.level_accuracy import SEGMENT_COLUMN as LEVEL_SEGMENT
from forecasting.monitoring.level_accuracy import level_errors, level_rows, published_levels
from forecasting.publishing import tables
from forecasting.publishing.publish import predictions_tables

log = logging.getLogger(__name__)

_ENTITY = "_entity"
GROUP_COLUMNS = ["forecast_month", "run_month", "horizon", "model_version", "segment_column", "segment"]
METRIC_COLUMNS = [
    "forecasts",
    "actual_sum",
    "prediction_sum",
    "wape",
    "mae",
    "bias",
    "bias_pct",
    *(f"{name}_{metric}" for name in BASELINES for metric in ("wape", "mae", "bias")),
    "best_naive",
    "best_naive_wape",
    "fva",
    *COVERAGE_COLUMNS,
]
ACCURACY_COLUMNS = [*GROUP_COLUMNS, *METRIC_COLUMNS]  # what score() computes of each accuracy row
_CREATE_RACE = {"23505", "42P07", "42710"}  # unique_violation, duplicate_table, duplicate_object
T = TypeVar("T")


def accuracy_table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.ACCURACY)


def errors_table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.ERRORS)


def tracking_view_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.TRACKING_SIGNAL)


def fva_table_name(config: Config) -> str:
    return tables.for_config(config).fva.name


def monitoring_tables(config: Config, key_dtypes: dict[str, object]) -> tuple[sa.Table, sa.Table]:
    """The accuracy and errors tables, the entity columns typed as in the predictions table."""
    declared = tables.for_config(config, key_dtypes)
    return declared.accuracy, declared.errors


def ensure_monitoring_schema(
    conn: sa.Connection, config: Config, key_dtypes: dict[str, object]
) -> tuple[sa.Table, sa.Table]:
    """Create the accuracy, errors and FVA tables (and the level errors', with a hierarchy) and the
    tracking-signal view if missing."""
    accuracy, errors = monitoring_tables(config, key_dtypes)
    declared = tables.for_config(config)
    tables.create(
        conn, accuracy, errors, declared.fva, *((declared.level_errors,) if config.hierarchy else ())
    )
    # The interval coverage came after the first release.
    tables.add_missing_columns(conn, accuracy, [accuracy.c[c] for c in COVERAGE_COLUMNS])
    view_ref, select = tables.tracking_signal_sql(
        errors, config.predictions.table, config.source.entity_columns, conn.dialect
    )
    if tracking_view_name(config) not in sa.inspect(conn).get_view_names(schema=errors.schema):
        conn.execute(sa.text(f"CREATE VIEW {view_ref} AS {select}"))
    return accuracy, errors


@dataclass
class Scores:
    """What scoring M found: one row per published forecast, and the accuracy rows."""

    month: pd.Period
    errors: pd.DataFrame
    accuracy: pd.DataFrame
    segment_column: str | None = None
    key_dtypes: dict[str, object] = field(default_factory=dict)
    fva: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # the waterfall (forecasting.monitoring.value_added)
    level_errors: pd.DataFrame = field(default_factory=pd.DataFrame)  # each level group's error

    def overall(self) -> list[dict]:
        """The accuracy rows over every entity, by horizon (JSON-ready, for the run summary)."""
        rows = self.accuracy[self.accuracy["segment_column"] == ALL].sort_values("horizon")
        columns = ["run_month", "horizon", "model_version", "forecasts", "actual_sum", "wape", "bias_pct"]
        columns += ["best_naive", "best_naive_wape", "fva"]
        return [
            {c: (str(v)[:7] if c == "run_month" else plain(v)) for c, v in row.items()}
            for row in rows[columns].to_dict(orient="records")
        ]

    def by_level(self) -> list[dict]:
        """The accuracy rows of the hierarchy's levels, by level and horizon (JSON-ready)."""
        rows = self.accuracy[self.accuracy["segment_column"] == LEVEL_SEGMENT]
        columns = ["run_month", "horizon", "segment", "forecasts", "wape", "bias_pct", "best_naive_wape"]
        columns += ["fva", "coverage"]
        return [
            {
                ("level" if c == "segment" else c): (str(v)[:7] if c == "run_month" else plain(v))
                for c, v in row.items()
            }
            for row in rows.sort_values(["segment", "horizon"])[columns].to_dict(orient="records")
        ]


def plain(value):
    """A NumPy or pandas scalar as the Python value a database driver and JSON take (NaN: None)."""
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def score(
    forecasts: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    levels: pd.DataFrame | None = None,
) -> Scores:
    """Score the published ``forecasts`` for M (rows of the predictions table with
    forecast_month = M) against the actuals of M in ``snapshot``, a validated snapshot whose
    history ends with M; the naive baselines use only the history up to each row's run month.
    ``levels``: the hierarchy's level forecasts for M (forecasting.monitoring.level_accuracy),
    scored into accuracy rows of their own."""
    keys = config.source.entity_columns
    panel = build_panel(snapshot, config, sales_only=True)
    m = month_index(month)
    col = panel.column(m)
    if not (0 <= col < panel.months and panel.observed[:, col].any()):
        raise DataError(
            f"the snapshot has no rows in {month}: its actuals are not in, so nothing can be scored"
        )
    origin = month_index(pd.PeriodIndex(pd.to_datetime(forecasts["run_month"]), freq="M")).to_numpy()
    horizon = forecasts["horizon"].to_numpy(dtype=np.int64)
    if len(forecasts) and not (origin + horizon == m).all():
        raise ValueError(f"forecasts given for scoring {month} are not all for {month}")

    index = panel.keys.reset_index().rename(columns={"index": _ENTITY})
    entity = forecasts[keys].astype(str).merge(index, on=keys, how="left")[_ENTITY].to_numpy()
    known = ~pd.isna(entity)
    entity = np.where(known, entity, 0).astype(np.int64)
    actual = np.zeros(len(forecasts))
    actual[known] = np.nan_to_num(panel.sales[entity[known], col], nan=0.0)
    naive = {name: np.zeros(len(forecasts)) for name in BASELINES}
    for name, values in naive_forecasts(panel, entity[known], origin[known], horizon[known]).items():
        naive[name][known] = np.nan_to_num(values, nan=0.0)  # no history at the origin: nothing known sold

    errors = forecasts[[*keys, "forecast_month", "horizon", "run_month", "model_version"]].reset_index(
        drop=True
    )
    errors["actual"] = actual
    errors["prediction"] = forecasts["prediction"].to_numpy(dtype=float)
    errors["error"] = errors["prediction"] - errors["actual"]

    segment = config.monitoring.segment
    frame = errors.assign(**{f"_naive_{name}": values for name, values in naive.items()})
    for column in SCORED_COLUMNS:  # the intervals, and what the value added's waterfall reads
        frame[column] = forecasts[column].to_numpy() if column in forecasts else None
    frame["segment_column"], frame["segment"] = ALL, ALL
    parts = [frame]
    by_segment = _segments(snapshot, config, forecasts) if segment is not None else None
    if segment is not None:
        parts.append(frame.assign(segment_column=segment, segment=by_segment))
    ages = _age_segments(panel, entity, origin, known, config)
    parts.append(frame.assign(segment_column=age.HISTORY_MONTHS, segment=ages))
    by_level = pd.DataFrame()
    if levels is not None and len(levels):
        by_level = level_rows(levels, panel, snapshot, config, month, list(BASELINES))
        parts.append(by_level)
    rows = [
        _accuracy_row(dict(zip(GROUP_COLUMNS, group, strict=True)), rows_of_group)
        for part in parts
        for group, rows_of_group in part.groupby(GROUP_COLUMNS, sort=True)
    ]
    accuracy = pd.DataFrame(rows, columns=ACCURACY_COLUMNS)
    fva = value_added.waterfall(
        value_added.segments(frame, segment, by_segment), config.monitoring.fva_statistical
    )
    return Scores(month, errors, accuracy, segment, _dtypes(snapshot, keys), fva, level_errors(by_level))


def _dtypes(snapshot: pd.DataFrame, keys: list[str]) -> dict[str, object]:
    return {k: snapshot[k].dtype for k in keys}


def _segments(snapshot: pd.DataFrame, config: Config, forecasts: pd.DataFrame) -> np.ndarray:
    """Each forecast's entity's value of the segment column, as of its latest row in the snapshot."""
    keys, segment = config.source.entity_columns, config.monitoring.segment
    assert segment is not None
    if segment in keys:
        return forecasts[segment].astype(str).to_numpy()
    latest = (
        snapshot.sort_values(config.source.time_column, kind="stable")
        .drop_duplicates(keys, keep="last")[[*keys, segment]]
        .astype({k: str for k in keys})
    )
    values = forecasts[keys].astype(str).merge(latest, on=keys, how="left")[segment]
    return values.map(lambda v: "(none)" if pd.isna(v) else str(v)).to_numpy()


def _age_segments(
    panel: Panel, entity: np.ndarray, origin: np.ndarray, known: np.ndarray, config: Config
) -> np.ndarray:
    """Each forecast's entity's age bucket as of its run month ("(none)": not in the snapshot)."""
    months = np.where(known, age.history_months(panel, entity, origin), 0)
    buckets = age.age_buckets(months, config.features.lookback_months)
    return np.where(pd.isna(buckets), "(none)", buckets).astype(object)


def _accuracy_row(identity: dict, rows: pd.DataFrame) -> dict:
    actual = rows["actual"].to_numpy()
    scored = metrics(actual, rows["prediction"].to_numpy())
    row = {
        **identity,
        "forecasts": len(rows),
        "actual_sum": float(actual.sum()),
        "prediction_sum": float(rows["prediction"].sum()),
        "wape": scored["wape"],
        "mae": scored["mae"],
        "bias": scored["bias"],
        "bias_pct": scored["bias_pct"],
    }
    for name in BASELINES:
        naive = metrics(actual, rows[f"_naive_{name}"].to_numpy())
        row.update({f"{name}_{m}": naive[m] for m in ("wape", "mae", "bias")})
    defined = {name: row[f"{name}_wape"] for name in BASELINES if not math.isnan(row[f"{name}_wape"])}
    best = min(defined, key=lambda name: defined[name]) if defined else None
    row["best_naive"] = best
    row["best_naive_wape"] = defined[best] if best else float("nan")
    row["fva"] = row["best_naive_wape"] - row["wape"]
    return {**row, **interval_coverage(actual, rows["p10"].to_numpy(float), rows["p90"].to_numpy(float))}


# Read with each published forecast when the predictions table has them (an older release's
# rows: NULL): its interval and the forecasts of the value added's steps (final: after overrides).
SCORED_COLUMNS = [
    "p10",
    "p90",
    value_added.DEMAND_CLASS,
    STATISTICAL_FORECAST,
    MODEL_FORECAST,
    value_added.FINAL,
    value_added.PLANNER,
]


def published_forecasts(
    conn: sa.Connection, config: Config, month: pd.Period, key_dtypes: dict
) -> pd.DataFrame:
    """The rows of the predictions table for forecast_month = M (none if it does not exist yet),
    with the SCORED_COLUMNS."""
    declared, _ = predictions_tables(config, key_dtypes)
    keys = config.source.entity_columns
    columns = [*keys, "run_month", "forecast_month", "horizon", "prediction", "model_version"]
    if not sa.inspect(conn).has_table(declared.name, schema=declared.schema):
        return pd.DataFrame(columns=[*columns, *SCORED_COLUMNS])
    # As it is in the database: a later release's columns (the overrides') are read where they exist.
    table = sa.Table(declared.name, sa.MetaData(schema=declared.schema), autoload_with=conn)
    source, planner = value_added.with_planner(conn, table, config.predictions.table)
    optional = [table.c[c] if c in table.c else sa.null().label(c) for c in SCORED_COLUMNS[:-2]]
    final = table.c[value_added.final_column(table.c.keys())].label(value_added.FINAL)
    query = (
        sa.select(*(table.c[c] for c in columns), *optional, final, planner.label(value_added.PLANNER))
        .select_from(source)
        .where(table.c.forecast_month == month_start(month).date())
        .order_by(table.c.run_month, *(table.c[k] for k in keys))
    )
    result = conn.execute(query)
    return pd.DataFrame(result.all(), columns=[*columns, *SCORED_COLUMNS])


@dataclass
class AccuracyResult:
    month: str
    forecasts: int  # published forecasts for M that were scored
    accuracy_rows: int
    scores: Scores
    tables: tuple[str, str, str, str]  # accuracy, errors, tracking-signal view, FVA


def realised_accuracy(
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    *,
    run_id: str | None = None,
    scored_at: datetime | None = None,
) -> AccuracyResult:
    """Score the forecasts published for M against M's actuals in ``snapshot`` and replace M's
    rows of ``<table>_errors`` and ``<table>_accuracy`` with the result, in one transaction."""
    scored_at = scored_at or datetime.now(UTC)
    keys = config.source.entity_columns
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            forecasts = published_forecasts(conn, config, month, _dtypes(snapshot, keys))
            levels = published_levels(conn, config, month)
        scores = score(forecasts, snapshot, config, month, levels)
        accuracy, errors = _create_tables(engine, config, scores.key_dtypes)
        declared = tables.for_config(config)
        written = (errors, accuracy, declared.fva) + ((declared.level_errors,) if config.hierarchy else ())
        with write_transaction(engine, *written) as conn:
            first = month_start(month).date()
            for table in written:
                conn.execute(sa.delete(table).where(table.c.forecast_month == first))
            insert_rows(conn, errors, scores.errors.assign(scored_at=scored_at))
            insert_rows(conn, accuracy, scores.accuracy.assign(run_id=run_id, scored_at=scored_at))
            insert_rows(conn, declared.fva, scores.fva.assign(run_id=run_id, scored_at=scored_at))
            if config.hierarchy:
                insert_rows(conn, declared.level_errors, scores.level_errors.assign(scored_at=scored_at))
    finally:
        engine.dispose()
    log.info(
        "Scored %d published forecasts for %s (%d accuracy rows): %s",
        len(forecasts),
        month,
        len(scores.accuracy),
        "; ".join(
            f"run {r['run_month']} horizon {r['horizon']}: WAPE {r['wape']}, best naive {r['best_naive']} "
            f"{r['best_naive_wape']}"
            for r in scores.overall()
        )
        or "nothing was published for it",
    )
    return AccuracyResult(
        month=str(month),
        forecasts=len(forecasts),
        accuracy_rows=len(scores.accuracy),
        scores=scores,
        tables=(accuracy.name, errors.name, tracking_view_name(config), fva_table_name(config)),
    )


def _create_tables(engine: sa.Engine, config: Config, key_dtypes: dict) -> tuple[sa.Table, sa.Table]:
    return create_missing(engine, lambda conn: ensure_monitoring_schema(conn, config, key_dtypes))


def create_missing(engine: sa.Engine, create: Callable[[sa.Connection], T]) -> T:
    """``create(conn)`` (tables that are missing) in a short transaction of its own; of two runs
    that create the same tables at once on PostgreSQL, the loser rolls back and finds them on its
    next try."""
    for attempt in range(1, 6):
        try:
            with engine.begin() as conn:
                return create(conn)
        except sa.exc.DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) not in _CREATE_RACE or attempt == 5:
                raise
            log.info("Another run created the monitoring tables meanwhile; trying again")
    raise AssertionError("unreachable")


@contextmanager
def write_transaction(engine: sa.Engine, *tables: sa.Table) -> Iterator[sa.Connection]:
    """``engine.begin()``; on PostgreSQL with the tables locked against other writers (never
    against readers), so two scorings of a month never interleave, waiting at most the publish
    lock timeout (FORECAST_PUBLISH_LOCK_TIMEOUT) for them."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from forecasting.publishing.postgres import publish_lock_timeout

            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, round(publish_lock_timeout() * 1000))}")
            names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in tables)
            conn.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
        yield conn


def insert_rows(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Insert the frame's rows (its columns that the table has), as plain Python values."""
    if frame.empty:
        return
    records = [
        {c: plain(v) for c, v in record.items() if c in table.c} for record in frame.to_dict(orient="records")
    ]
    conn.execute(table.insert(), records)


def months_to_score(
    requested: str | None, event_extras: list[dict], published: list[str], horizon: int
) -> list[dict]:
    """What a forecast_monitoring run scores: [{"month": "YYYY-MM", "attempt": ... or None}, ...].

    The month asked for (the ``month`` param of a manual run) if any. Else the months of the
    Asset events that triggered the run (several when publishes came faster than the runs, e.g.
    a backfill), each with the attempt that published it, and with each, the ``published``
    months up to ``horizon`` after it: a backfill of M changed the forecasts for months whose
    actuals are already in, so their scores are redone (with their own published attempt).
    Else, for a manual run without either, the newest month published. Oldest first.
    """
    if requested:
        return [{"month": str(pd.Period(requested, "M")), "attempt": None}]
    jobs: dict[str, str | None] = {}
    for extra in event_extras:
        if extra.get("month"):
            month = pd.Period(extra["month"], "M")
            jobs[str(month)] = extra.get("attempt")  # the newest publish of a month wins
            for later in published:
                if month < pd.Period(later, "M") <= month + horizon:
                    jobs.setdefault(later, None)
    if not jobs and published:
        jobs[published[-1]] = None
    if not jobs:
        raise DataError("nothing to score: no month given, no Asset event named one and nothing is published")
    return [{"month": month, "attempt": jobs[month]} for month in sorted(jobs)]


def published_months(config: Config) -> list[str]:
    """The months with a published attempt under data_dir, oldest first."""
    return paths.published_months(config)
