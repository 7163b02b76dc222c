"""What the three DAGs share: their tasks' defaults, the schema of their ``month`` param and the
predictions table's Asset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

from forecasting.core.config import predictions_asset_uri
from forecasting.core.names import MONTH_PATTERN
from forecasting.monitoring.task_failure import on_task_failure


def default_args(execution_timeout: timedelta) -> dict[str, Any]:
    """Every task's defaults: its owner, retries, a time limit and the failure alert."""
    return {
        "owner": "forecasting",
        # Only errors that may pass by themselves are retried (a dropped connection, a timeout);
        # bad config or data fails at once (forecasting.core.errors).
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        # No task may hang a run forever (a lock it waits for, a stuck database).
        "execution_timeout": execution_timeout,
        # A task that failed for good goes to the config's alerts.notifiers and <table>_alerts.
        "on_failure_callback": on_task_failure,
    }


def month_param(description: str) -> dict[str, Any]:
    """The keyword arguments of the ``month`` Param after its default (None: not given)."""
    return {
        "type": ["null", "string"],
        "pattern": MONTH_PATTERN,
        "title": "Month M (YYYY-MM)",
        "description": description,
    }


def predictions_asset() -> Asset:
    """The predictions table as an Asset (``x-forecast://<table>``, the config's table): the one
    that monthly_forecast's publish task updates and forecast_monitoring and forecast_scenarios
    are scheduled on."""
    return Asset(predictions_asset_uri())
