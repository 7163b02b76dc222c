"""What the revision alerts read (forecasting.monitoring.alert_checks):

* a run that moved the total forecast more than ``monitoring.max_total_revision``: from
  ``<table>_churn`` (forecasting.publishing.revisions), over the forecasts run M made of months an
  earlier run also forecast, the change of their total against that earlier run's;
* a run that moved a hierarchy level group's forecast more than ``monitoring.max_level_revision``
  beyond what the data explains (``level_revisions``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forecasting.core.config import Config
from forecasting.core.names import CHURN, relation_name

REVISION_COLUMNS = [
    "level",
    "level_key",
    "previous_run",
    "previous",
    "now",
    "revision",
    "surprise",
    "unexplained",
]

if TYPE_CHECKING:
    import pandas as pd


def churn_of(config: Config, month: pd.Period) -> dict | None:
    """Run M's row of ``<table>_churn`` (None: the view is missing or no earlier run overlaps M's)."""
    import sqlalchemy as sa

    from forecasting.core.db import make_engine

    name, schema = relation_name(config.predictions.table, CHURN), config.predictions.database.schema
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if name not in sa.inspect(conn).get_view_names(schema=schema):
                return None
            view = sa.table(name, schema=schema)
            query = (
                sa.select(sa.text("*"))
                .select_from(view)
                .where(sa.column("run_month") == month.to_timestamp().date())
            )
            row = conn.execute(query).mappings().first()
    finally:
        engine.dispose()
    return None if row is None else dict(row)


def level_revisions(config: Config, month: pd.Period) -> pd.DataFrame:
    """Per level group, how run M moved its forecast of the months the run before it (the newest
    earlier run in ``<table>_levels``) also forecast: ``revision``, the change of their total as a
    share of that run's; ``surprise``, the share by which the group's actual of M came in off that
    run's forecast of M (``<table>_level_errors``; NaN until M is scored); ``unexplained``, the
    revision less the surprise (the revision itself without one). Empty without a hierarchy or an
    earlier run."""
    import pandas as pd
    import sqlalchemy as sa

    from forecasting.core.db import make_engine
    from forecasting.publishing import tables

    empty = pd.DataFrame(columns=REVISION_COLUMNS)
    if config.hierarchy is None:
        return empty
    declared = tables.for_config(config)
    levels, errors = declared.levels, declared.level_errors
    run = month.to_timestamp().date()
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(levels.name, schema=levels.schema):
                return empty
            previous = conn.execute(
                sa.select(sa.func.max(levels.c.run_month)).where(levels.c.run_month < run)
            ).scalar()
            if previous is None:
                return empty
            columns = [levels.c.run_month, levels.c.level, levels.c.level_key, levels.c.forecast_month]
            query = sa.select(*columns, levels.c.prediction).where(levels.c.run_month.in_([previous, run]))
            made = pd.DataFrame(
                conn.execute(query).all(),
                columns=["run_month", "level", "level_key", "forecast_month", "prediction"],
            )
            surprise = pd.DataFrame(columns=["level", "level_key", "actual", "forecast"])
            if sa.inspect(conn).has_table(errors.name, schema=errors.schema):
                query = sa.select(
                    errors.c.level, errors.c.level_key, errors.c.actual, errors.c.prediction
                ).where(errors.c.forecast_month == run, errors.c.run_month == previous)
                surprise = pd.DataFrame(
                    conn.execute(query).all(), columns=["level", "level_key", "actual", "forecast"]
                )
    finally:
        engine.dispose()
    made["run_month"] = pd.to_datetime(made["run_month"]).dt.date
    wide = made.pivot_table(
        index=["level", "level_key", "forecast_month"],
        columns="run_month",
        values="prediction",
        aggfunc="sum",
    )
    if run not in wide or previous not in wide:
        return empty
    both = wide.dropna(subset=[run, previous]).groupby(level=["level", "level_key"]).sum()
    found = pd.DataFrame(
        {"previous": both[previous].astype(float), "now": both[run].astype(float)}
    ).reset_index()
    if found.empty:
        return empty
    found["previous_run"] = str(previous)[:7]
    found["revision"] = (found["now"] - found["previous"]) / found["previous"].where(found["previous"] > 0)
    found = found.merge(surprise, on=["level", "level_key"], how="left")
    forecast = found["forecast"].astype(float)
    found["surprise"] = (found["actual"].astype(float) - forecast) / forecast.where(forecast > 0)
    found["unexplained"] = found["revision"] - found["surprise"].fillna(0.0)
    return found[REVISION_COLUMNS]
