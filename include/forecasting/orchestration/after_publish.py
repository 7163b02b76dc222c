"""The stages of the two DAGs that each publish of month M starts (its Airflow Asset event),
with plain inputs and JSON-ready outputs, recorded in M's published attempt like the monthly
forecast's (forecasting.orchestration.stage).

``forecast_monitoring``: ``monitor`` scores the forecasts published for M against M's actuals
(forecasting.monitoring.accuracy), ``drift`` compares M's data with the model's training window
(forecasting.monitoring.drift), ``alerts`` raises the alerts they call for
(forecasting.monitoring.alert_checks). ``forecast_scenarios``: ``forecast_scenarios`` forecasts
M's what-if scenarios and ``publish_scenarios`` publishes them (forecasting.scenarios).
"""

from __future__ import annotations

import pandas as pd

from forecasting.core import names, paths
from forecasting.core.compute import client_for
from forecasting.core.config import Config, load_config
from forecasting.orchestration.stage import published_attempt, read_snapshot, record, running


def monitor(
    month: str, run_id: str | None = None, attempt: str | None = None, config: Config | None = None
) -> dict:
    """Score every forecast published for M against M's actuals (realised accuracy), from the
    snapshot of ``attempt`` (default: M's published attempt, whose folder gets ``monitor.json``)."""
    from forecasting.monitoring.accuracy import realised_accuracy

    config = config or load_config()
    attempt = published_attempt(config, month, attempt)
    with running("monitor", month, attempt, config) as (config, m):
        scored = realised_accuracy(read_snapshot(config, m, attempt), config, m, run_id=run_id)
        accuracy, errors, tracking, fva = scored.tables
        result = {
            "run_id": run_id,
            "forecasts_scored": scored.forecasts,
            "accuracy_rows": scored.accuracy_rows,
            "segment_column": scored.scores.segment_column,
            "overall": scored.scores.overall(),
            "levels": scored.scores.by_level(),
            "tables": {"accuracy": accuracy, "errors": errors, "tracking_signal": tracking, "fva": fva},
        }
        return record(config, m, attempt, "monitor", result)


def drift(
    month: str, run_id: str | None = None, attempt: str | None = None, config: Config | None = None
) -> dict:
    """Compare M's feature rows and actuals with the training window of the model whose forecasts
    M's run published, and M's entities with M-1's, into ``<table>_drift``."""
    from forecasting.monitoring.drift import record_drift

    config = config or load_config()
    attempt = published_attempt(config, month, attempt)
    with running("drift", month, attempt, config) as (config, m):
        published = paths.read_json(paths.stage_result(config, m, attempt, "publish"))
        report = record_drift(read_snapshot(config, m, attempt), config, m, published, run_id=run_id)
        rows = report.records()
        result = {
            "run_id": run_id,
            "model_version": report.model_version,
            "table": report.table,
            "drifted": report.drifted,
            "rows": rows,
        }
        return record(config, m, attempt, "drift", result)


def alerts(
    month: str,
    run_id: str | None = None,
    attempt: str | None = None,
    config: Config | None = None,
    dag_id: str = names.MONITORING_DAG,
) -> dict:
    """Raise the alerts M's realised accuracy (``<table>_accuracy``) and drift (this attempt's
    drift.json) call for: logged, written to ``<table>_alerts`` and sent by the config's
    notifiers."""
    from forecasting.monitoring.alert_checks import check_month

    config = config or load_config()
    attempt = published_attempt(config, month, attempt)
    with running("alerts", month, attempt, config) as (config, m):
        drifted = paths.stage_result(config, m, attempt, "drift")
        found = check_month(
            config,
            m,
            paths.read_json(drifted) if drifted.is_file() else None,
            dag_id=dag_id,
            run_id=run_id,
        )
        return record(config, m, attempt, "alerts", {"run_id": run_id, **found})


def forecast_scenarios(
    month: str, run_id: str | None = None, attempt: str | None = None, config: Config | None = None
) -> dict:
    """Forecast M's what-if scenarios (and the base plan) with the model M's published attempt
    published, into that attempt's ``scenarios.parquet`` (forecasting.scenarios)."""
    from forecasting.scenarios.forecast import NoScenariosForecaster, forecast_scenarios
    from forecasting.scenarios.publish import table_name, withdraw_scenarios
    from forecasting.scenarios.read import forecasts_path

    config = config or load_config()
    attempt = published_attempt(config, month, attempt)
    with (
        running("forecast_scenarios", month, attempt, config) as (config, m),
        client_for(config) as client,
    ):
        # A failed re-run leaves nothing for publish_scenarios to publish again.
        paths.stage_result(config, m, attempt, "forecast_scenarios").unlink(missing_ok=True)
        path = forecasts_path(config, m, attempt)
        path.unlink(missing_ok=True)
        try:
            made = forecast_scenarios(config, m, attempt, client)
        except NoScenariosForecaster as refused:
            # Scenario rows an earlier publish of M left would answer "what if" about forecasts
            # that are no longer M's: withdrawn, so the table never disagrees with the forecasts.
            withdrawn = withdraw_scenarios(config, m)
            if withdrawn:
                made_by = ", ".join(f"{n:,} of {version}" for version, n in withdrawn.items())
                raise NoScenariosForecaster(
                    f"{refused} Withdrew {m}'s earlier scenario rows from {table_name(config)} "
                    f"({made_by}): they were not of the forecasts now published."
                ) from refused
            raise
        paths.write_parquet_atomically(made.frame, path)
        result = {"run_id": run_id, "forecasts": str(path), **made.summary()}
        return record(config, m, attempt, "forecast_scenarios", result)


def publish_scenarios(
    month: str, run_id: str | None = None, attempt: str | None = None, config: Config | None = None
) -> dict:
    """Replace M's rows of ``<table>_scenarios`` with what forecast_scenarios made, in one transaction."""
    from forecasting.scenarios.publish import publish_scenarios as publish

    config = config or load_config()
    attempt = published_attempt(config, month, attempt)
    with running("publish_scenarios", month, attempt, config) as (config, m):
        made = paths.read_json(paths.stage_result(config, m, attempt, "forecast_scenarios"))
        frame = pd.read_parquet(made["forecasts"])
        published = publish(
            frame,
            config,
            m,
            model_version=made["model_version"],
            run_id=run_id or made.get("run_id") or attempt,
        )
        result = {
            "run_id": run_id,
            "table": published.table,
            "url": published.url,
            "rows": published.rows,
            "replaced": published.replaced,
            "scenarios": published.scenarios,
            "model_version": made["model_version"],
        }
        return record(config, m, attempt, "publish_scenarios", result)
