"""What the revision alert reads (forecasting.monitoring.alerts.revision_alerts): a run that
moved the total forecast more than ``monitoring.max_total_revision``.

It reads ``<table>_churn`` (forecasting.publishing.revisions): over the forecasts run M made of
months an earlier run also forecast, the change of their total against that earlier run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forecasting.core.config import Config
from forecasting.core.names import CHURN, relation_name

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
