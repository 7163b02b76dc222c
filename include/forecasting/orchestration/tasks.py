"""What an Airflow task of the DAG does around a pipeline stage: fail at once when retrying
cannot help (bad config, bad data, a database that says no), retry otherwise."""

from __future__ import annotations

from typing import Any


def run_stage(stage: str, *args: Any, **kwargs: Any) -> dict:
    """Run the stage function ``<stage>(*args, **kwargs)`` (forecasting.orchestration.pipeline for
    monthly_forecast's, forecasting.orchestration.after_publish for the others); a permanent error
    fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from forecasting.core import names
    from forecasting.core.errors import is_permanent
    from forecasting.orchestration import after_publish, pipeline

    if stage not in names.STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    stages = pipeline if stage in names.FORECAST_STAGES else after_publish
    try:
        return getattr(stages, stage)(*args, **kwargs)
    except Exception as err:
        if is_permanent(err):
            raise AirflowFailException(f"{type(err).__name__}: {err}") from err
        raise
