"""
### Forecast monitoring

Runs whenever `monthly_forecast` publishes (it is scheduled on the predictions table's Asset),
for the month M that was published (the Asset event's extra), and scores every forecast
published for M, made by the runs of M-1 ... M-horizon, against M's actuals:

- `<table>_accuracy`: WAPE, MAE and bias per run month, horizon and model (and per segment),
  beside the naive baselines made as of the same origin, and the forecast value added over
  the best of them (`fva`);
- `<table>_errors`: actual, prediction and error per entity, month and horizon, and the view
  `<table>_tracking_signal` of each entity's persistent over- or under-forecasting.

Beside it, **drift** compares M's feature rows and actuals with the training window of the model
whose forecasts were published (PSI and a Kolmogorov-Smirnov test per feature and for the target),
and the shares of new and vanished entities: `<table>_drift`. Then **check_alerts** raises the
alerts they call for (realised WAPE above `alerts.max_wape` or worse than the best naive
forecast N months in a row, drift above the thresholds) through the config's notifiers, into
`<table>_alerts`. A task that fails for good raises an alert too (in all three DAGs).

A backfill of M also re-scores the months up to M+horizon that are published already (their
actuals are in, and M's forecasts for them changed). Re-running a month replaces its rows.
Trigger it with a `month` (YYYY-MM) to score one month again (it needs that month's published
run, whose snapshot holds the actuals).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from forecasting.core.names import MONITORING_DAG
from forecasting.orchestration.dag_defaults import default_args, month_param, predictions_asset

# The Asset that monthly_forecast's publish task updates (the same URI, from the same config).
PREDICTIONS = predictions_asset()


@dag(
    dag_id=MONITORING_DAG,
    schedule=[PREDICTIONS],
    start_date=pendulum.datetime(1970, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(hours=1)),
    tags=["forecasting", "monitoring", "assets"],
    doc_md=__doc__,
    params={
        "month": Param(
            None,
            **month_param(
                "Score the forecasts published for this month. Empty: the months of the "
                "Asset events that triggered the run (for a manual run, the newest month published)."
            ),
        ),
    },
)
def forecast_monitoring():
    @task
    def months_published(params=None, triggering_asset_events=None) -> list[dict]:
        from forecasting.core.config import load_config
        from forecasting.monitoring.accuracy import months_to_score, published_months

        config = load_config()
        extras = [event.extra for events in (triggering_asset_events or {}).values() for event in events]
        return months_to_score(params.get("month"), extras, published_months(config), config.horizon)

    @task
    def realised_accuracy(job: dict, run_id=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("monitor", job["month"], run_id, job["attempt"])

    @task
    def drift(job: dict, run_id=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("drift", job["month"], run_id, job["attempt"])

    @task
    def check_alerts(job: dict, run_id=None, dag=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("alerts", job["month"], run_id, job["attempt"], dag_id=dag.dag_id)

    jobs = months_published()
    # Realised accuracy and drift of each month, side by side; then the alerts they call for.
    [realised_accuracy.expand(job=jobs), drift.expand(job=jobs)] >> check_alerts.expand(job=jobs)


forecast_monitoring()
