"""What every stage function of the three DAGs does around its work: load the config and M,
hold its attempt's folder while it runs (``paths.hold_lease``: not pruned), record what it
returned as ``<stage>.json`` or why it failed as ``<stage>.failed.json`` (read by
forecasting.orchestration.summary and the UI), and read the attempt's source snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, load_config
from forecasting.core.months import month_of


@contextmanager
def running(name: str, month: str, attempt: str, config: Config | None) -> Iterator[tuple[Config, pd.Period]]:
    """Load the config and M; if the stage fails, record why beside the attempt's files."""
    config = config or load_config()
    m = month_of(month)
    paths.stage_failure(config, m, attempt, name).unlink(missing_ok=True)
    try:
        with paths.hold_lease(paths.run_dir(config, m, attempt), name):  # its files are not pruned
            yield config, m
    except Exception as err:
        from forecasting.core.errors import is_permanent

        failure = {
            "stage": name,
            "month": str(m),
            "attempt": attempt,
            "error": type(err).__name__,
            "message": str(err),
            "permanent": is_permanent(err),
        }
        report = getattr(err, "report", None)  # a failed validation names every expectation
        if report is not None:
            failure["failures"] = report.failures
            failure["data_docs"] = report.data_docs
        paths.write_json_atomically(failure, paths.stage_failure(config, m, attempt, name))
        if failure["permanent"]:  # no retry will come: the attempt is over
            paths.release_lease(paths.run_dir(config, m, attempt))
        raise


def record(config: Config, month: pd.Period, attempt: str, stage: str, result: dict) -> dict:
    result = {"month": str(month), "attempt": attempt, **result}
    paths.write_json_atomically(result, paths.stage_result(config, month, attempt, stage))
    return result


def read_snapshot(config: Config, month: pd.Period, attempt: str) -> pd.DataFrame:
    return pd.read_parquet(paths.existing(paths.snapshot(config, month, attempt)))


def read_sales(config: Config, month: pd.Period, attempt: str) -> pd.DataFrame:
    """The snapshot's entity, time and target columns: all that a stage building the sales-only
    panel reads (the whole snapshot's text columns are most of the reading; docs/benchmarks.md)."""
    src = config.source
    columns = [*src.entity_columns, src.time_column, src.target_column]
    return pd.read_parquet(paths.existing(paths.snapshot(config, month, attempt)), columns=columns)


def published_attempt(config: Config, month: str, attempt: str | None) -> str:
    """``attempt``, else M's published attempt (the monitoring's stages read its snapshot)."""
    from forecasting.core.errors import DataError

    if attempt is not None:
        return attempt
    published = paths.published_attempt(config, month_of(month))
    if published is None:
        raise DataError(
            f"no published run of {month_of(month)} under {paths.month_dir(config, month_of(month))}: "
            f"run monthly_forecast for {month_of(month)} first, its actuals come with it"
        )
    return published.name
