"""The revision alert: a run that moved the total forecast more than ``monitoring.max_total_revision``.

It reads ``<table>_churn`` (forecasting.publishing.revisions): over the forecasts run M made of
months an earlier run also forecast, the change of their total against that earlier run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forecasting.core.config import Config
from forecasting.core.names import CHURN, MONITORING_DAG, relation_name

if TYPE_CHECKING:
    import pandas as pd

    from forecasting.monitoring.alerts import Alert

KIND = "revision"


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


def revision_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert if run M moved the total forecast of the overlapping months by more than
    ``monitoring.max_total_revision`` (in either direction)."""
    from forecasting.monitoring.alerts import Alert

    threshold = config.monitoring.max_total_revision
    churn = churn_of(config, month) if threshold is not None else None
    if churn is None or churn["total_revision"] is None or abs(churn["total_revision"]) <= threshold:
        return []
    moved = churn["total_revision"]
    message = (
        f"The run of {month} moved the total forecast of the {churn['revised']:,} forecasts an earlier run "
        f"also made by {moved:+.1%} (from {churn['previous_total']:,.1f} to {churn['total']:,.1f}; churn "
        f"{churn['churn']:.1%}), more than monitoring.max_total_revision {threshold:.1%}. "
        f"Per entity: {relation_name(config.predictions.table, 'revisions')}."
    )
    return [
        Alert(dag_id, str(month), KIND, "total_revision", "total forecast", moved, threshold, message, run_id)
    ]
