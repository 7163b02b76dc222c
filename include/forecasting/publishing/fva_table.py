"""``<table>_fva`` (the forecast value added's waterfall, forecasting.monitoring.value_added) and
the predictions table's columns it reads, declared for ``forecasting.publishing.tables`` (which
holds every table of the predictions database)."""

from __future__ import annotations

import sqlalchemy as sa

from forecasting.core.names import FVA, relation_name
from forecasting.modeling.forecaster import MODEL_FORECAST, STATISTICAL_FORECAST

# The waterfall's steps, in order: each one's value added is the WAPE it takes off the step before.
STEPS = ("naive", "statistical", "model", "published", "final")


def step_forecast_columns() -> list[sa.Column]:
    """The predictions table's forecasts of the statistical and the model step (the naive step's
    is made again when the row is scored: it is read off the history)."""
    return [
        sa.Column(
            STATISTICAL_FORECAST,
            sa.Float,
            comment="the statistical forecaster's forecast (monitoring.fva_statistical; NULL: none made)",
        ),
        sa.Column(
            MODEL_FORECAST,
            sa.Float,
            comment="the XGBoost model's own forecast: the published model's, alone or in its blend, or the "
            "run's challenger when the gate published baselines (NULL: none made)",
        ),
    ]


def declare_fva(metadata: sa.MetaData, table: str) -> sa.Table:
    name = relation_name(table, FVA)
    steps = ", ".join(STEPS)
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "forecast_month", sa.Date, nullable=False, comment="the month forecast, whose actuals are in"
        ),
        sa.Column("run_month", sa.Date, nullable=False, comment="the month whose run made the forecasts"),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column(
            "segment_column",
            sa.String(64),
            nullable=False,
            comment="'(all)': every entity; monitoring.segment, demand_class, or planner (the rows each "
            "planner's overrides changed)",
        ),
        sa.Column("segment", sa.String(255), nullable=False, comment="the segment's value, or '(all)'"),
        sa.Column("step", sa.String(16), nullable=False, comment=steps),
        sa.Column("step_order", sa.Integer, nullable=False, comment="1 (naive) to 5 (final)"),
        sa.Column("forecaster", sa.String(80), comment="what made the step's forecasts"),
        sa.Column("model_version", sa.String(80), nullable=False, comment="the forecaster the run published"),
        sa.Column("forecasts", sa.Integer, nullable=False, comment="rows compared, the same for every step"),
        sa.Column("overridden", sa.Integer, nullable=False, comment="of those, rows an override changed"),
        sa.Column("actual_sum", sa.Float, nullable=False),
        sa.Column("forecast_sum", sa.Float, nullable=False),
        sa.Column("wape", sa.Float, comment="sum |forecast - actual| / sum actual (null: nothing sold)"),
        sa.Column("bias_pct", sa.Float, comment="sum of forecast - actual over sum of actual"),
        sa.Column(
            "value_added", sa.Float, comment="the step before's WAPE - this WAPE (> 0: the step helped)"
        ),
        sa.Column("value_added_vs_naive", sa.Float, comment="the naive step's WAPE - this WAPE"),
        sa.Column("run_id", sa.String(250), comment="the run that scored them"),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "forecast_month", "run_month", "horizon", "segment_column", "segment", "step", name=f"{name}_pkey"
        ),
        info={"doc": "Forecast value added: naive, statistical, model, published, final, on the same rows."},
    )
