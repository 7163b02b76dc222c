"""Plans: planned covariates of future months (a price change, a promotion, a feature ad), the
known-future features of a forecast.

A plans table holds one row per entity, month and *revision*: what was planned for that month
from ``planned_at`` on. A training row (entity, origin o, horizon h) gets the values planned for
its target month o + h *as the plan stood at the end of o* (the revision with the latest
``planned_at`` at or before it), never the realised values and never a later revision: a
backtest that read those would leak. The forecasts of M get the plans for M + h as they stood at
the end of M.

The point-in-time choice is Feast's: the validated plans become a feature view of their own
(``store.PLAN_VIEW``), keyed by the entity columns and the target month (``PLAN_MONTH``),
stamped with ``planned_at``, and the training rows ask it as of their origin, as they ask the
sales features. Its offline table has one parquet file per target month (``paths.plan_table``).

Stages: extract reads the plans as they stood at the end of M (``extract.extract_plans``,
into the attempt's ``plans.parquet``); validate checks them (``validate.validate_plans``) and
writes them to the offline table (``write_plan_features``); the dataset joins them
(``dataset.retrieve``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import FILL_EMPTY, Config
from forecasting.core.months import month_end
from forecasting.data.panel import key_text
from forecasting.features.catalogue import CREATED, TIMESTAMP

log = logging.getLogger(__name__)

# Feast's join key of the plans: the month a plan is for, "YYYY-MM".
PLAN_MONTH = "target_month"


def latest_plans(plans: pd.DataFrame, config: Config, as_of: pd.Timestamp) -> pd.DataFrame:
    """The plans as they stood at ``as_of`` (naive UTC): per entity and month, the revision with
    the latest ``planned_at`` at or before it (what Feast's point-in-time join picks)."""
    pl = config.plans
    assert pl is not None
    known = plans[plans[pl.planned_at] <= as_of]
    keys = [*pl.entity_columns, pl.month_column]
    return (
        known.sort_values(pl.planned_at, kind="stable")
        .drop_duplicates(keys, keep="last")
        .sort_values(keys, kind="stable")
        .reset_index(drop=True)
    )


def feature_rows(plans: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Validated plans as rows of the plans' offline table: the entity keys as text (Feast's,
    like the panel's), ``PLAN_MONTH``, each ``plan_<covariate>`` as float32, and ``planned_at``
    as the event timestamp (UTC, microseconds, as the sales features are stored)."""
    pl = config.plans
    assert pl is not None
    out = pd.DataFrame({k: key_text(plans[k]) for k in pl.entity_columns})
    out[PLAN_MONTH] = plans[pl.month_column].dt.strftime("%Y-%m").to_numpy()
    for covariate, name in zip(pl.covariates, pl.feature_names, strict=True):
        out[name] = plans[covariate].to_numpy(dtype=np.float32)
    stamps = pd.DatetimeIndex(plans[pl.planned_at]).tz_localize("UTC").astype("datetime64[us, UTC]")
    out[TIMESTAMP] = stamps
    out[CREATED] = stamps
    return out


@dataclass
class PlanBuild:
    files: int
    rows: int  # revisions in the files written
    first_month: str
    last_month: str


def write_plan_features(plans: pd.DataFrame, config: Config, month: pd.Period) -> PlanBuild:
    """Write the plans known at the end of M into the plans' offline table, one file per target
    month.

    A file keeps the revisions stamped after the end of M that a later month's run wrote (this
    run cannot know them, and Feast's point-in-time join never hands them to a row of an origin
    before them); every revision up to the end of M is this run's. So a backfill of an earlier
    month takes nothing away that a later month's forecasts read, and running M again writes the
    same files.
    """
    rows = feature_rows(plans, config)
    folder = paths.plan_table(config)
    known_at = pd.Timestamp(month_end(month)).tz_localize("UTC")
    months = sorted(rows[PLAN_MONTH].unique())
    for target in months:
        mine = rows[rows[PLAN_MONTH] == target]
        path = paths.plan_file(config, target)
        if path.is_file():
            kept = pd.read_parquet(path)
            later = kept[kept[TIMESTAMP] > known_at]
            if len(later) and list(kept.columns) != list(mine.columns):
                # Written under other plans settings (other covariates): not this view's rows.
                log.warning("%s: dropping %d later revisions of other columns", path, len(later))
            elif len(later):
                mine = pd.concat([mine, later.astype(mine.dtypes.to_dict())], ignore_index=True)
        order = [*config.source.entity_columns, TIMESTAMP]
        paths.write_parquet_atomically(mine.sort_values(order, kind="stable").reset_index(drop=True), path)
    result = PlanBuild(
        files=len(months),
        rows=len(rows),
        first_month=months[0] if months else "",
        last_month=months[-1] if months else "",
    )
    log.info(
        "Wrote %d plan revisions for %d target months (%s..%s) to %s",
        result.rows,
        result.files,
        result.first_month,
        result.last_month,
        folder,
    )
    return result


def fill(values: pd.DataFrame, config: Config, columns: dict[str, list[str]]) -> pd.DataFrame:
    """Apply ``plans.fill`` in place: where covariate c has no plan, each column of
    ``columns[c]`` gets its constant (``empty``: left missing)."""
    pl = config.plans
    assert pl is not None
    for covariate, rule in pl.fill.items():
        if rule == FILL_EMPTY:
            continue
        for column in columns.get(covariate, []):
            values[column] = values[column].fillna(np.float32(rule))
    return values
