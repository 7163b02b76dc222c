"""
### What-if scenarios

Runs whenever `monthly_forecast` publishes (scheduled on the predictions table's Asset, like
`forecast_monitoring`), for the month M that was published, or by hand with a `month` (YYYY-MM):

months_published → forecast_scenarios → publish_scenarios

1. **forecast_scenarios** reads the config's `plans.scenarios` (alternative plans: a
   `scenario` column, the entity columns, the month and some or all of the planned
   covariates), checks them with Great Expectations (fails closed, naming each bad input:
   unknown entities, duplicates, text where a number belongs, ...), and forecasts M+1..M+horizon
   under each scenario and under the base plan (scenario `base`) with the model M's run
   published, with its p10/p90 bands. A scenario overrides the base plan (the plans as they
   stood at the end of M) for the entities, months and covariates it gives, and nothing else.
2. **publish_scenarios** replaces M's rows of `<table>_scenarios` in one transaction:
   uplift = scenario − base is one SQL query (`sql/scenario_uplift.sql`).

A deployment without `plans.scenarios` skips every task (months_published raises
AirflowSkipException, which skips the rest): nothing to forecast, and the run says so. A month
whose published forecaster is a baseline fails forecast_scenarios at once: a baseline reads no
plans, so no scenario could change its forecasts; so does a blend, half of whose forecast is a
baseline's.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from forecasting.core.names import SCENARIOS_DAG
from forecasting.orchestration.dag_defaults import default_args, month_param, predictions_asset

# The Asset that monthly_forecast's publish task updates (the same URI, from the same config).
PREDICTIONS = predictions_asset()


@dag(
    dag_id=SCENARIOS_DAG,
    schedule=[PREDICTIONS],
    start_date=pendulum.datetime(1970, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(hours=1)),
    tags=["forecasting", "scenarios", "assets"],
    doc_md=__doc__,
    params={
        "month": Param(
            None,
            **month_param(
                "Forecast the scenarios of this month's published run. Empty: the months of "
                "the Asset events that triggered the run (for a manual run, the newest month published)."
            ),
        ),
    },
)
def what_if_scenarios():
    @task
    def months_published(params=None, triggering_asset_events=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from forecasting.core.config import load_config
        from forecasting.scenarios.publish import months_to_forecast
        from forecasting.scenarios.read import scenarios_configured

        config = load_config()
        if not scenarios_configured(config):
            raise AirflowSkipException(
                f"{config.path} has no plans.scenarios section: no scenarios to forecast"
            )
        extras = [event.extra for events in (triggering_asset_events or {}).values() for event in events]
        return months_to_forecast(config, params.get("month"), extras)

    @task
    def forecast_scenarios(job: dict, run_id=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("forecast_scenarios", job["month"], run_id, job["attempt"])

    @task
    def publish_scenarios(forecasts: dict, run_id=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("publish_scenarios", forecasts["month"], run_id, forecasts["attempt"])

    jobs = months_published()
    publish_scenarios.expand(forecasts=forecast_scenarios.expand(job=jobs))


what_if_scenarios()
