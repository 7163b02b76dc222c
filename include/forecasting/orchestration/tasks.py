"""What an Airflow task of the DAG does around a pipeline stage: fail at once when retrying
cannot help (bad config, bad data, a database that says no), retry otherwise."""

from __future__ import annotations

from typing import Any


def run_stage(stage: str, *args: Any, **kwargs: Any) -> dict:
    """Run ``forecasting.orchestration.pipeline.<stage>(*args, **kwargs)``; a permanent error fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from forecasting.core.errors import is_permanent
    from forecasting.orchestration import pipeline

    if stage not in pipeline.STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    try:
        return getattr(pipeline, stage)(*args, **kwargs)
    except Exception as err:
        if is_permanent(err):
            raise AirflowFailException(f"{type(err).__name__}: {err}") from err
        raise
