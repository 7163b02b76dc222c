"""``<table>_levels`` (the hierarchy's levels, config ``hierarchy``), its
``<table>_levels_latest`` view and ``<table>_level_errors`` (their realised errors), declared for ``forecasting.publishing.tables`` (which holds every
table of the predictions database) and ``forecasting.publishing.levels`` (which writes them)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from forecasting.core.names import LEVEL_ERRORS, LEVELS, LEVELS_LATEST, relation_name
from forecasting.publishing.overrides_table import final_columns


def declare_levels(metadata: sa.MetaData, table: str, columns: Sequence[str]) -> sa.Table:
    """``<table>_levels``, with a text column per column of ``columns`` (those the levels group by)."""
    name = relation_name(table, LEVELS)
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "run_month", sa.Date, nullable=False, comment="logical month M whose data made the forecast"
        ),
        sa.Column(
            "level",
            sa.String(255),
            nullable=False,
            comment="the columns grouped by, comma-separated ('total': all)",
        ),
        sa.Column(
            "level_key",
            sa.String(1000),
            nullable=False,
            comment="the group's values of those columns, comma-separated ('total' for the total)",
        ),
        *(
            sa.Column(
                c,
                sa.String(255),
                comment=f"the group's {c} (as text; NULL where the level does not group by it)",
            )
            for c in columns
        ),
        sa.Column("forecast_month", sa.Date, nullable=False, comment="first day of the month forecast"),
        sa.Column("horizon", sa.Integer, nullable=False, comment="months ahead of run_month"),
        sa.Column(
            "prediction",
            sa.Float,
            nullable=False,
            comment="reconciled: the sum of the forecasts of the entities in the group (in <table>)",
        ),
        sa.Column(
            "p10", sa.Float, comment="10th percentile, from the level's own holdout errors (NULL: none)"
        ),
        sa.Column(
            "p90", sa.Float, comment="90th percentile, from the level's own holdout errors (NULL: none)"
        ),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *final_columns(override_id=False),
        sa.PrimaryKeyConstraint("run_month", "level", "level_key", "horizon", name=f"{name}_pkey"),
        sa.Index(f"{name}_level_month_idx", "level", "forecast_month"),
        info={
            "doc": "The forecasts of the hierarchy's levels (config hierarchy): one row per run month, level, "
            "group and horizon; each prediction is the sum of its entities' in `<table>`."
        },
    )


def declare_level_errors(metadata: sa.MetaData, table: str) -> sa.Table:
    """``<table>_level_errors``: each level group's published forecast of a month beside the
    group's actual total, once the month's actuals are in (forecasting.monitoring.level_accuracy)."""
    name = relation_name(table, LEVEL_ERRORS)
    return sa.Table(
        name,
        metadata,
        sa.Column("level", sa.String(255), nullable=False, comment="as in <table>_levels"),
        sa.Column("level_key", sa.String(1000), nullable=False, comment="as in <table>_levels"),
        sa.Column(
            "forecast_month", sa.Date, nullable=False, comment="the month forecast, whose actuals are in"
        ),
        sa.Column("run_month", sa.Date, nullable=False, comment="the month whose run made the forecast"),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column(
            "actual",
            sa.Float,
            nullable=False,
            comment="the group's sales in forecast_month: every entity in it now, new items included",
        ),
        sa.Column("prediction", sa.Float, nullable=False),
        sa.Column("p10", sa.Float),
        sa.Column("p90", sa.Float),
        sa.Column("error", sa.Float, nullable=False, comment="prediction - actual (> 0: over-forecast)"),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "forecast_month", "run_month", "level", "level_key", "horizon", name=f"{name}_pkey"
        ),
        sa.Index(f"{name}_level_month_idx", "level", "forecast_month"),
        info={
            "doc": "Realised errors of the hierarchy's levels: each group's forecast of a month beside its actual "
            "total (config hierarchy)."
        },
    )


def levels_latest_view_sql(levels: sa.Table, dialect: sa.Dialect) -> tuple[str, str]:
    """(view name, SELECT) of ``<table>_levels_latest``: per level, group and forecast month,
    the row with the newest run_month."""
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in levels.columns)
    relation = dialect.identifier_preparer.format_table(levels)
    select = (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY {quote('level')}, "
        f"{quote('level_key')}, {quote('forecast_month')} ORDER BY {quote('run_month')} DESC) AS row_rank "
        f"FROM {relation}) ranked WHERE row_rank = 1"
    )
    table = levels.name.removesuffix(f"_{LEVELS}")
    quoted = quote(relation_name(table, LEVELS_LATEST))
    return (quoted if levels.schema is None else f"{quote(levels.schema)}.{quoted}"), select
