"""Check month M's forecasts with Great Expectations before they are published, fail closed.

The input checkpoint (``forecasting.data.validate``) keeps bad data out of the model; this one keeps
bad forecasts out of the predictions table, whatever made them (a model, the champion, a
baseline). One suite over the forecasts of M:

* every prediction present, finite and ≥ 0; p10 and p90 (where calibrated) too, with
  p10 ≤ prediction ≤ p90;
* exactly one row per entity active in M and horizon 1..horizon (no entity missing, none extra,
  no duplicate);
* no forecast above ``validation.forecast_max_to_history_max`` times the entity's largest month
  in the snapshot (or 1 unit, if it never sold more): a forecast 50 times anything the item ever
  sold is a bug, not a plan;
* as many rows as the previous published run, within ``validation.row_count_tolerance``.

A failure raises ``DataValidationError`` naming each failed expectation, after the Data
Docs are built into the attempt's ``forecast_docs/`` (beside the snapshot's ``data_docs/``), and
the publish task does not run: the table keeps what it had.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_index, month_of
from forecasting.core.names import RUNS, relation_name
from forecasting.data.checkpoint import (
    FINITE,
    DataValidationError,
    ValidationReport,
    copy_on_write,
    failure_of,
    in_suite_order,
    quiet_gx_logging,
    run_checkpoint,
)
from forecasting.data.panel import build_panel
from forecasting.modeling.predict import active_entities

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

# Added to the validated batch: each prediction over its entity's largest month in the snapshot.
TO_HISTORY_MAX = "prediction_to_history_max"


def check_forecasts(
    forecasts: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    docs_dir: Path,
    previous: tuple[str, int] | None = None,
) -> ValidationReport:
    """Validate M's forecasts; ``previous``: (run month, rows) of the last run published before
    M, if any. Raises DataValidationError (after building the Data Docs) if any check fails."""
    month = month_of(month)
    docs_dir = Path(docs_dir).resolve()
    panel = build_panel(snapshot, config, sales_only=True)
    active = len(active_entities(panel, month_index(month)))
    batch = forecasts.copy(deep=False)
    batch[TO_HISTORY_MAX] = batch["prediction"] / _history_max(batch, panel, config)
    with quiet_gx_logging(), copy_on_write():
        expectations = build_expectations(config, month, active, previous)
        report = _checked(batch, expectations, month, docs_dir, "forecasts")
    log.info("Forecasts of %s passed %d checks (%d rows)", month, report.expectations, report.rows)
    return report


def _history_max(forecasts: pd.DataFrame, panel, config: Config) -> np.ndarray:
    """Each forecast row's entity's largest month in the snapshot, at least 1 unit (NaN for an
    entity the snapshot does not hold: no history to forecast from)."""
    keys = config.source.entity_columns
    largest = np.nanmax(np.where(panel.observed, panel.sales, np.nan), axis=1, initial=0.0)
    index = panel.keys.assign(_largest=np.maximum(largest, 1.0))
    found = forecasts[keys].astype(str).merge(index, on=keys, how="left")
    return found["_largest"].to_numpy(dtype=float)


def _value_expectations() -> list[Expectation]:
    """What every published forecast row must hold, the entities' and the levels': a finite,
    non-negative prediction inside its p10-p90 band (where it has one)."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="prediction"),
        gxe.ExpectColumnValuesToBeBetween(column="prediction", min_value=0, max_value=FINITE),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=FINITE) for c in ("p10", "p90")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="prediction", column_B="p10", or_equal=True, ignore_row_if="either_value_is_missing"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="p90", column_B="prediction", or_equal=True, ignore_row_if="either_value_is_missing"
        ),
    ]


def build_expectations(
    config: Config, month: pd.Period, active: int, previous: tuple[str, int] | None
) -> list[Expectation]:
    import great_expectations.expectations as gxe

    horizons = list(range(1, config.horizon + 1))
    limit = config.validation.forecast_max_to_history_max
    expectations: list[Expectation] = [
        *_value_expectations(),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=[*config.source.entity_columns, "horizon"], notes="One row per entity and horizon."
        ),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="horizon", value_set=horizons),
        gxe.ExpectTableRowCountToEqual(
            value=active * len(horizons),
            notes=f"One row per entity active in {month} ({active}) and horizon (1..{config.horizon}).",
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column=TO_HISTORY_MAX, notes="Every forecast entity has a history in the snapshot."
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=TO_HISTORY_MAX,
            max_value=limit,
            notes=f"No forecast above {limit:g} times its entity's largest month in the snapshot.",
        ),
    ]
    if previous is not None and previous[1] > 0:
        run_month, rows = previous
        tolerance = config.validation.row_count_tolerance
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=max(0, math.ceil((1 - tolerance) * rows)),
                max_value=math.floor((1 + tolerance) * rows),
                notes=f"Within {tolerance:.0%} of the {rows} forecasts published for {run_month}.",
                meta={"previous_month": run_month, "previous_rows": rows},
            )
        )
    return expectations


# Added to the validated batch of the levels: each level's gap to the sum of its entities'
# forecasts, relative to that sum (at least 1 unit).
COHERENCE_GAP = "coherence_gap"
COHERENCE_TOLERANCE = 1e-6


def check_levels(
    levels: pd.DataFrame,
    forecasts: pd.DataFrame,
    members: pd.DataFrame,
    config: Config,
    month: pd.Period,
    docs_dir: Path,
) -> ValidationReport:
    """Validate M's forecasts of the hierarchy's levels (config hierarchy) against the entities'
    forecasts: each level's prediction is the sum of its entities' (within COHERENCE_TOLERANCE,
    relative), every prediction and bound finite and ≥ 0 with p10 ≤ prediction ≤ p90, one row per
    group and horizon, every configured level present. ``members``: each forecast row's level
    columns as text. Raises DataValidationError (after building the Data Docs) if any fails."""
    import great_expectations.expectations as gxe

    from forecasting.modeling.hierarchy import bottom_sums, level_name

    assert config.hierarchy is not None
    month = month_of(month)
    docs_dir = Path(docs_dir).resolve()
    bottom = pd.concat(
        [members.reset_index(drop=True), forecasts[["horizon", "prediction"]].reset_index(drop=True)], axis=1
    )
    batch = levels.reset_index(drop=True).copy()
    sums = bottom_sums(bottom, batch)
    batch[COHERENCE_GAP] = np.abs(batch["prediction"].to_numpy(dtype=float) - sums) / np.maximum(
        np.abs(sums), 1.0
    )
    names = [level_name(level) for level in config.hierarchy.levels]
    expectations: list[Expectation] = [
        *_value_expectations(),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["level", "level_key", "horizon"], notes="One row per level, group and horizon."
        ),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="level", value_set=names),
        gxe.ExpectColumnValuesToBeBetween(
            column=COHERENCE_GAP,
            min_value=0,
            max_value=COHERENCE_TOLERANCE,
            notes="Coherent: each level's prediction is the sum of its entities' forecasts.",
        ),
    ]
    with quiet_gx_logging(), copy_on_write():
        report = _checked(batch, expectations, month, docs_dir, "levels")
    log.info("Levels' forecasts of %s passed %d checks (%d rows)", month, report.expectations, report.rows)
    return report


def _checked(
    batch: pd.DataFrame, expectations: list, month: pd.Period, docs_dir, what: str
) -> ValidationReport:
    """Run ``expectations`` over ``batch`` (Data Docs in ``docs_dir``); the report, or
    DataValidationError naming every failure."""
    result = run_checkpoint(batch, expectations, month, docs_dir, what=what)
    (suite_result,) = result.run_results.values()
    (definition,) = result.checkpoint_config.validation_definitions
    index = paths.docs_index(docs_dir)
    report = ValidationReport(
        success=bool(result.success),
        month=str(month),
        rows=len(batch),
        rows_in_month=len(batch),
        expectations=int(suite_result.statistics["evaluated_expectations"]),
        failures=[
            failure_of(r, batch)
            for r in in_suite_order(suite_result.results, definition.suite)
            if not r.success
        ],
        data_docs=str(index) if index.is_file() else None,
    )
    if not report.success:
        raise DataValidationError(report)
    return report


def previous_run(config: Config, month: pd.Period) -> tuple[str, int] | None:
    """(run month, forecasts) of the newest run published before M, from ``<table>_runs``;
    None when there is none yet (or no table)."""
    import sqlalchemy as sa

    from forecasting.core.db import make_engine
    from forecasting.core.months import month_start

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            name = relation_name(config.predictions.table, RUNS)
            schema = config.predictions.database.schema
            if not sa.inspect(conn).has_table(name, schema=schema):
                return None
            runs = sa.Table(name, sa.MetaData(schema=schema), autoload_with=conn)
            row = conn.execute(
                sa.select(runs.c.run_month, runs.c.forecasts)
                .where(runs.c.run_month < month_start(month).date())
                .order_by(runs.c.run_month.desc())
                .limit(1)
            ).first()
    finally:
        engine.dispose()
    return None if row is None else (str(pd.Timestamp(row[0]).to_period("M")), int(row[1]))
