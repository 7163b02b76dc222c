"""Whether the published p10-p90 intervals keep covering, and what the next bands learn.

* Realised coverage: every row of ``<table>_accuracy`` (per forecast month, run, horizon and
  segment) counts its forecasts published with an interval (``interval_forecasts``) and the
  shares of their actuals inside ``[p10, p90]`` (``coverage``, 0.8 the goal), below p10 and
  above p90: :func:`interval_coverage`, called by forecasting.monitoring.accuracy.
* The alert: a horizon's coverage over every entity outside ``monitoring.intervals``'
  ``min_coverage``..``max_coverage`` (default 0.70..0.90) in each of its last ``months``
  (default 2) scored months up to M (:func:`coverage_outside_band`, raised by
  forecasting.monitoring.alerts).
* Recalibration: :func:`realised_errors` reads the published forecasts' errors of the last
  ``monitoring.intervals.realised_months`` scored months before M (``<table>_errors``), which
  the run of M pools with its holdout's when it calibrates the bands
  (forecasting.modeling.intervals): errors that widened in production widen the next run's bands.
  With a hierarchy, each level's bands pool its own groups' realised errors the same way
  (:func:`realised_level_errors`, from ``<table>_level_errors``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.core.months import month_start
from forecasting.publishing import tables

ALL = "(all)"  # segment_column and segment of the monitoring rows over every entity
COVERAGE_COLUMNS = ["interval_forecasts", "coverage", "below_p10", "above_p90"]


def interval_coverage(actual: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> dict[str, float | int]:
    """How many rows have an interval, and the shares of those whose actual falls inside it,
    below it and above it (NaN: none has one)."""
    actual, p10, p90 = (np.asarray(a, dtype=float) for a in (actual, p10, p90))
    known = np.isfinite(p10) & np.isfinite(p90)
    n = int(known.sum())
    if not n:
        return {"interval_forecasts": 0, "coverage": np.nan, "below_p10": np.nan, "above_p90": np.nan}
    below, above = actual[known] < p10[known], actual[known] > p90[known]
    return {
        "interval_forecasts": n,
        "coverage": float((~below & ~above).mean()),
        "below_p10": float(below.mean()),
        "above_p90": float(above.mean()),
    }


def _declared(config: Config) -> tables.Tables:
    return tables.for_config(config, {k: object for k in config.source.entity_columns})


def _rows(config: Config, table: sa.Table, query: sa.Select) -> list:
    """The rows of ``query`` over ``table``: none while the table does not exist."""
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table.name, schema=table.schema):
                return []
            return list(conn.execute(query).all())
    finally:
        engine.dispose()


def realised_errors(config: Config, month: pd.Period, months: int | None = None) -> pd.DataFrame:
    """What the run of M pools with its holdout when it calibrates its bands: the published
    forecasts' errors of the ``months`` (default ``monitoring.intervals.realised_months``)
    forecast months before M: forecast_month, horizon, forecast (the published prediction) and
    actual, one row per entity, month and horizon (none: 0 months, or nothing scored yet).

    Before M only: M's own forecasts are scored after M's publish, so a re-run or a backfill of
    M reads what the run of M read."""
    months = config.monitoring.intervals.realised_months if months is None else months
    columns = ["forecast_month", "horizon", "forecast", "actual"]
    if months <= 0:
        return pd.DataFrame(columns=columns)
    first, last = month_start(month - months).date(), month_start(month - 1).date()
    errors = _declared(config).errors
    query = (
        sa.select(*(errors.c[c] for c in ("forecast_month", "horizon", "prediction", "actual")))
        .where(errors.c.forecast_month >= first, errors.c.forecast_month <= last)
        .order_by(errors.c.forecast_month, errors.c.horizon)
    )
    found = _rows(config, errors, query)
    return pd.DataFrame([tuple(r) for r in found], columns=columns)


def realised_level_errors(config: Config, month: pd.Period, months: int | None = None) -> pd.DataFrame:
    """``realised_errors`` of the hierarchy's levels: each level group's published forecasts of
    the ``months`` forecast months before M against its actual total (``<table>_level_errors``),
    with a ``level`` column; each level's bands pool its own."""
    months = config.monitoring.intervals.realised_months if months is None else months
    columns = ["level", "forecast_month", "horizon", "forecast", "actual"]
    if months <= 0 or config.hierarchy is None:
        return pd.DataFrame(columns=columns)
    first, last = month_start(month - months).date(), month_start(month - 1).date()
    errors = _declared(config).level_errors
    query = (
        sa.select(*(errors.c[c] for c in ("level", "forecast_month", "horizon", "prediction", "actual")))
        .where(errors.c.forecast_month >= first, errors.c.forecast_month <= last)
        .order_by(errors.c.level, errors.c.forecast_month, errors.c.horizon)
    )
    found = _rows(config, errors, query)
    return pd.DataFrame([tuple(r) for r in found], columns=columns)


def coverage_by_month(config: Config, month: pd.Period, months: int) -> dict[int, dict[str, dict]]:
    """Per horizon and forecast month ("YYYY-MM", the last ``months`` up to M): the realised
    coverage over every entity, runs and models of a month pooled by their interval counts."""
    first, last = month_start(month - (months - 1)).date(), month_start(month).date()
    accuracy = _declared(config).accuracy
    query = sa.select(*(accuracy.c[c] for c in ("forecast_month", "horizon", *COVERAGE_COLUMNS))).where(
        accuracy.c.segment_column == ALL,
        accuracy.c.forecast_month >= first,
        accuracy.c.forecast_month <= last,
        accuracy.c.interval_forecasts > 0,
    )
    found = _rows(config, accuracy, query)
    pooled: dict[int, dict[str, dict]] = {}
    for row in found:
        entry = pooled.setdefault(int(row.horizon), {}).setdefault(
            str(row.forecast_month)[:7], {"n": 0, "inside": 0.0, "below": 0.0, "above": 0.0}
        )
        n = int(row.interval_forecasts)
        entry["n"] += n
        entry["inside"] += n * float(row.coverage)
        entry["below"] += n * float(row.below_p10)
        entry["above"] += n * float(row.above_p90)
    return {
        h: {
            m: {
                "coverage": e["inside"] / e["n"],
                "below_p10": e["below"] / e["n"],
                "above_p90": e["above"] / e["n"],
                "forecasts": e["n"],
            }
            for m, e in by_month.items()
        }
        for h, by_month in pooled.items()
    }


def coverage_outside_band(config: Config, month: pd.Period) -> list[dict]:
    """Per horizon whose realised coverage was outside ``monitoring.intervals``' band in each of
    the last ``months`` months up to M: the alert's metric, subject, value (M's coverage),
    threshold (the bound it is past) and message."""
    watch = config.monitoring.intervals
    if watch.months <= 0:
        return []
    wanted = [str(month - k) for k in range(watch.months - 1, -1, -1)]
    out = []
    for horizon, by_month in sorted(coverage_by_month(config, month, watch.months).items()):
        streak = [by_month.get(m) for m in wanted]
        if not all(
            s is not None and not watch.min_coverage <= s["coverage"] <= watch.max_coverage for s in streak
        ):
            continue
        now = by_month[str(month)]
        low = now["coverage"] < watch.min_coverage
        bound = watch.min_coverage if low else watch.max_coverage
        history = "; ".join(
            f"{m} {s['coverage']:.0%} ({s['below_p10']:.0%} below p10, {s['above_p90']:.0%} above p90)"
            for m, s in zip(wanted, streak, strict=True)
            if s is not None
        )
        learns = "; the next run's bands pool the latest realised errors" if watch.realised_months else ""
        why = f"{'too narrow' if low else 'wider than needed'}{learns}"
        out.append(
            {
                "metric": "p10_p90_coverage",
                "subject": f"horizon {horizon}",
                "value": now["coverage"],
                "threshold": bound,
                "message": f"The p10-p90 intervals of the horizon-{horizon} forecasts held "
                f"{'less' if low else 'more'} than monitoring.intervals' "
                f"{'min' if low else 'max'}_coverage {bound:.0%} of the actuals {watch.months} month(s) in a "
                f"row: {history}. The intervals are {why}.",
            }
        )
    return out
