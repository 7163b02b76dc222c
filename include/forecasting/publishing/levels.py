"""Publishing the hierarchy's levels: ``<table>_levels`` and its ``<table>_levels_latest`` view.

Written by ``forecasting.publishing.publish`` in the transaction that writes the forecasts, so a
reader never sees M's forecasts of the entities and of the levels from different runs: the
levels add up to the entities' forecasts published beside them. Re-publishing M replaces M's
rows of both.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.names import LEVELS_LATEST, relation_name
from forecasting.publishing import tables
from forecasting.publishing.levels_table import levels_latest_view_sql

LEVEL_COLUMNS = ("level", "level_key")


def levels_table(config: Config) -> sa.Table:
    return tables.for_config(config).levels


def ensure_levels_schema(conn: sa.Connection, config: Config) -> sa.Table:
    """Create ``<table>_levels`` and its view if missing; a level column the config's hierarchy
    groups by now and the table lacks is added (earlier rows: NULL), and the view made again."""
    levels = levels_table(config)
    tables.create(conn, levels)
    added = tables.add_missing_columns(conn, levels)
    view_ref, select = levels_latest_view_sql(levels, conn.dialect)
    view = relation_name(config.predictions.table, LEVELS_LATEST)
    exists = view in sa.inspect(conn).get_view_names(schema=levels.schema)
    if exists and added:  # the view lists its columns: make it show the new ones
        conn.execute(sa.text(f"DROP VIEW {view_ref}"))
    if added or not exists:
        conn.execute(sa.text(f"CREATE VIEW {view_ref} AS {select}"))
    return levels


def level_records(
    config: Config,
    levels: pd.DataFrame,
    run_month: date,
    *,
    model_version: str,
    run_id: str,
    created_at: datetime,
) -> list[dict]:
    """The rows of ``<table>_levels`` for month M: ``levels`` (reconciled forecasts, one row per
    level, group and horizon) with the run's columns; NaN bounds and the level columns outside a
    level as NULL."""
    table = levels_table(config)
    names = [
        c.name for c in table.columns if c.name not in ("run_month", "model_version", "run_id", "created_at")
    ]
    frame = levels.reindex(columns=names).astype(object)
    frame = frame.where(frame.notna(), None)
    frame = frame.assign(
        run_month=run_month, model_version=model_version, run_id=run_id, created_at=created_at
    )
    return frame.to_dict(orient="records")
