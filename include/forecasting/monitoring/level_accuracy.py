"""Realised accuracy of the hierarchy's levels (config ``hierarchy``), scored as the entities' are.

Every level forecast published for month M (``<table>_levels``, made by the runs of M-1 ...
M-horizon) is compared with its group's actual total in M: the sum of M's sales of every entity
the group holds now, new items included, since that is the total the planners planned. The
naive baselines forecast the same group series (each month the sum of its members' sales, as
the hierarchy's aggregate forecaster saw it) as of the forecast's run month.

Each group's forecast and actual go into ``<table>_level_errors``; the rows of each level join
``<table>_accuracy`` with ``segment_column = 'level'`` and ``segment`` the
level's name (``total``, ``region``, ``region,category``...): ``forecasts`` counts the level's
groups, WAPE is over the groups' totals, and the coverage columns say how often the level's own
p10-p90 held its actual (forecasting.monitoring.accuracy makes and writes them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.months import month_index, month_start
from forecasting.data.panel import Panel
from forecasting.modeling import hierarchy
from forecasting.modeling.baselines import naive_forecasts
from forecasting.publishing import tables

SEGMENT_COLUMN = "level"  # the accuracy rows' segment_column for a level's rows
ERROR_COLUMNS = ["level", "level_key", "forecast_month", "run_month", "horizon", "model_version"]
ERROR_COLUMNS += ["actual", "prediction", "p10", "p90", "error"]
LEVEL_COLUMNS = ["level", "level_key", "run_month", "horizon", "model_version", "prediction", "p10", "p90"]


def published_levels(conn: sa.Connection, config: Config, month: pd.Period) -> pd.DataFrame:
    """The rows of ``<table>_levels`` for forecast_month = M (none without a hierarchy or before
    the first publish of one)."""
    if config.hierarchy is None:
        return pd.DataFrame(columns=LEVEL_COLUMNS)
    levels = tables.for_config(config).levels
    if not sa.inspect(conn).has_table(levels.name, schema=levels.schema):
        return pd.DataFrame(columns=LEVEL_COLUMNS)
    query = (
        sa.select(*(levels.c[c] for c in LEVEL_COLUMNS))
        .where(levels.c.forecast_month == month_start(month).date())
        .order_by(levels.c.run_month, levels.c.level, levels.c.level_key, levels.c.horizon)
    )
    return pd.DataFrame(conn.execute(query).all(), columns=LEVEL_COLUMNS)


def level_rows(
    levels: pd.DataFrame,
    panel: Panel,
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    baselines: list[str],
) -> pd.DataFrame:
    """One row per published level forecast of M with what an accuracy row is made of: the
    group's ``actual``, the ``prediction``, each naive baseline's forecast of the group series
    (``_naive_<name>``), p10 and p90; ``segment_column`` 'level', ``segment`` the level's name.
    A group none of today's entities belongs to sold nothing (0)."""
    if levels.empty or config.hierarchy is None:
        return pd.DataFrame()
    members = hierarchy.level_members(snapshot, config, panel.keys)
    built = hierarchy.structure(members, config.hierarchy.levels)
    groups = hierarchy.aggregate_panel(panel, np.arange(len(members)), built.summing)
    index = built.series[["level", "level_key"]].reset_index(names="_series")
    found = levels.merge(index, on=["level", "level_key"], how="left")
    known = found["_series"].notna().to_numpy()
    series = found["_series"].fillna(0).to_numpy(dtype=np.int64)
    origin = month_index(pd.PeriodIndex(pd.to_datetime(found["run_month"]), freq="M")).to_numpy()
    horizon = found["horizon"].to_numpy(dtype=np.int64)

    actual = np.zeros(len(found))
    col = groups.column(month_index(month))
    actual[known] = np.nan_to_num(groups.sales[series[known], col], nan=0.0)
    rows = pd.DataFrame(
        {
            "forecast_month": month_start(month).date(),
            "run_month": found["run_month"].to_numpy(),
            "horizon": horizon,
            "model_version": found["model_version"].to_numpy(),
            "segment_column": SEGMENT_COLUMN,
            "segment": found["level"].to_numpy(),
            "level_key": found["level_key"].to_numpy(),
            "actual": actual,
            "prediction": found["prediction"].to_numpy(dtype=float),
            "p10": pd.to_numeric(found["p10"]).to_numpy(dtype=float),
            "p90": pd.to_numeric(found["p90"]).to_numpy(dtype=float),
        }
    )
    made = naive_forecasts(groups, series[known], origin[known], horizon[known])
    for name in baselines:
        values = np.zeros(len(found))
        values[known] = np.nan_to_num(made[name], nan=0.0)  # no history at the origin: nothing known sold
        rows[f"_naive_{name}"] = values
    return rows


def level_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``<table>_level_errors`` of what ``level_rows`` made."""
    if rows.empty:
        return pd.DataFrame(columns=ERROR_COLUMNS)
    errors = rows.rename(columns={"segment": "level"})
    return errors.assign(error=errors["prediction"] - errors["actual"])[ERROR_COLUMNS]
