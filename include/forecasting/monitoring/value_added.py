"""Forecast value added (FVA): what each step of the forecasting process took off the error.

Once a month's actuals are in, every forecast published for it is scored at each step of the
process that made it, on the same rows (``<table>_fva``, written with ``<table>_accuracy`` by
forecasting.monitoring.accuracy):

1. ``naive``: the seasonal naive forecast (the month a year before, as of the run's month),
   made again from the history when the row is scored, as ``<table>_accuracy``'s naive ones;
2. ``statistical``: ``monitoring.fva_statistical``'s forecast (Theta by default), made at
   predict for every published row (the predictions table's ``statistical_forecast``);
3. ``model``: the XGBoost model's own forecast (``model_forecast``): the published model's, or
   its part of a blend; the run's challenger when the gate published baselines;
4. ``published``: what the run published (``prediction``: after the gate, a blend and the
   hierarchy's reconciliation);
5. ``final``: after the planners' overrides (``final``, where the predictions table has it).

Each step's ``value_added`` is the WAPE the step before it had minus its own (> 0: the step
helped), ``value_added_vs_naive`` the naive step's minus its own. Rows are per forecast month,
run month and horizon, over every entity (``segment_column`` '(all)'), per value of
``monitoring.segment``, per demand class as of the run (``demand_class``), and per planner over
the rows each planner's overrides changed (``planner``: whose overrides helped). A step without
a forecast of the rows (published before this release, or ``fva_statistical: null``) has no row.

The overrides (issue 25 item 2) add ``final`` and ``override_id`` to the predictions table and
the audit trail ``<table>_overrides``: :func:`final_column` and :func:`with_planner` are the one
place that reads them, and fall back to ``prediction`` and no planner while they are not there.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.names import OVERRIDE_OUTCOMES, OVERRIDES, relation_name
from forecasting.modeling.baselines.naive import SeasonalNaive
from forecasting.modeling.forecaster import MODEL_FORECAST, STATISTICAL_FORECAST, model_version, parse
from forecasting.modeling.scoring import metrics
from forecasting.monitoring.coverage import ALL
from forecasting.publishing.fva_table import STEPS

# --- what the overrides add to the predictions table (the one place that names them) -----------
FINAL = "final"  # the forecast after planner overrides; equal to prediction where none applied
OVERRIDE_ID = "override_id"  # the override that made a row's final (NULL: none)
OVERRIDDEN_BY = "overridden_by"  # who made it, if the predictions table names them itself
OVERRIDE_AUTHOR = "created_by"  # who recorded an override's version, in <table>_overrides

PLANNER = "planner"  # the FVA's segment_column of the per-planner rows (and the scored column)
DEMAND_CLASS = "demand_class"
NAIVE = SeasonalNaive.name  # the naive step
# Each step's column among the scored rows (accuracy.score names the naive one ``_naive_<name>``).
STEP_COLUMNS = dict(
    zip(STEPS, (f"_naive_{NAIVE}", STATISTICAL_FORECAST, MODEL_FORECAST, "prediction", FINAL), strict=True)
)
GROUP = ["forecast_month", "run_month", "horizon", "segment_column", "segment"]


def final_column(columns: Collection[str]) -> str:
    """The predictions table's forecast after the planners' overrides: ``final`` where the table
    has it, else ``prediction`` (no override can have applied)."""
    return FINAL if FINAL in columns else "prediction"


def with_planner(
    conn: sa.Connection, predictions: sa.Table, table: str
) -> tuple[sa.FromClause, sa.ColumnElement]:
    """What to select the scored rows from, and who made each row's override: the predictions
    table's own ``overridden_by``, else the ``created_by`` of the override's version the row's run
    applied (``<table>_override_outcomes`` names it, ``<table>_overrides`` holds it); NULL where no
    override applied or no planner can be named."""
    if OVERRIDDEN_BY in predictions.c:
        return predictions, predictions.c[OVERRIDDEN_BY]
    names = relation_name(table, OVERRIDES), relation_name(table, OVERRIDE_OUTCOMES)
    inspector = sa.inspect(conn)
    if OVERRIDE_ID in predictions.c and all(inspector.has_table(n, schema=predictions.schema) for n in names):
        metadata = sa.MetaData(schema=predictions.schema)
        overrides, outcomes = (sa.Table(n, metadata, autoload_with=conn) for n in names)
        joined = predictions.outerjoin(
            outcomes,
            (predictions.c[OVERRIDE_ID] == outcomes.c[OVERRIDE_ID])
            & (predictions.c.run_month == outcomes.c.run_month),
        ).outerjoin(
            overrides,
            (outcomes.c[OVERRIDE_ID] == overrides.c[OVERRIDE_ID])
            & (outcomes.c.version == overrides.c.version),
        )
        return joined, overrides.c[OVERRIDE_AUTHOR]
    return predictions, sa.null()


def segments(
    frame: pd.DataFrame, segment_column: str | None, segment: np.ndarray | None
) -> list[pd.DataFrame]:
    """The scored rows once per kind of segment: every entity, the ``monitoring.segment``'s
    values, the demand classes, and each planner's overridden rows."""
    parts = [frame.assign(segment_column=ALL, segment=ALL)]
    if segment_column is not None and segment is not None:
        parts.append(frame.assign(segment_column=segment_column, segment=segment))
    classified = frame[DEMAND_CLASS].notna()
    if classified.any():
        parts.append(frame[classified].assign(segment_column=DEMAND_CLASS, segment=frame[DEMAND_CLASS]))
    named = frame[PLANNER].notna()
    if named.any():
        parts.append(frame[named].assign(segment_column=PLANNER, segment=frame[PLANNER].astype(str)))
    return parts


def waterfall(parts: list[pd.DataFrame], statistical: str | None) -> pd.DataFrame:
    """The FVA rows of the scored rows (``parts``: from ``segments``), one per group and step."""
    rows = [
        row
        for part in parts
        for group, scored in part.groupby(GROUP, sort=True)
        for row in _steps(dict(zip(GROUP, group, strict=True)), scored, statistical)
    ]
    return pd.DataFrame(rows)


def _steps(identity: dict, scored: pd.DataFrame, statistical: str | None) -> list[dict]:
    """One group's steps, each scored on the rows every step present forecast."""
    present = [s for s in STEPS if scored[STEP_COLUMNS[s]].notna().any()]
    rows = scored[scored[[STEP_COLUMNS[s] for s in present]].notna().all(axis=1)]
    if rows.empty:
        return []
    actual = rows["actual"].to_numpy(dtype=float)
    published = str(rows["model_version"].iloc[0])
    final = rows[FINAL].to_numpy(dtype=float)
    changed = np.isfinite(final) & (final != rows["prediction"].to_numpy(dtype=float))
    overridden = int((changed | rows[PLANNER].notna().to_numpy()).sum())
    out: list[dict] = []
    wapes: dict[str, float] = {}
    for step in present:
        forecast = rows[STEP_COLUMNS[step]].to_numpy(dtype=float)
        scores = metrics(actual, forecast)
        wapes[step] = scores["wape"]
        before = wapes[out[-1]["step"]] if out else math.nan
        out.append(
            {
                **identity,
                "step": step,
                "step_order": STEPS.index(step) + 1,
                "forecaster": _forecaster(step, published, statistical),
                "model_version": published,
                "forecasts": len(rows),
                "overridden": overridden,
                "actual_sum": float(actual.sum()),
                "forecast_sum": float(forecast.sum()),
                "wape": scores["wape"],
                "bias_pct": scores["bias_pct"],
                "value_added": before - scores["wape"],
                "value_added_vs_naive": wapes.get("naive", math.nan) - scores["wape"],
            }
        )
    return out


def _forecaster(step: str, published: str, statistical: str | None) -> str | None:
    """What made a step's forecasts (the model step's: the published model, else the run's challenger)."""
    if step == "naive":
        return NAIVE
    if step == "statistical":
        return statistical
    if step == "model":
        try:
            return model_version(parse(published)) or "challenger"
        except ValueError:
            return None
    return published if step == "published" else "overrides"
