"""
### Monthly demand forecast

Once a month, for the month that just ended (M, taken from the run's data interval):

extract → validate → build_features → register_features → train → evaluate → predict →
check_forecasts → publish

M can also be given when triggering (the `month` param, YYYY-MM), e.g. to re-run a month.

1. **extract** the history window ending at M from the source database into a raw snapshot.
2. **validate** it with Great Expectations; bad data fails here, naming each failed
   expectation, and nothing downstream runs (Data Docs path in the log).
3. **build_features** (lags, rolling means and deviations, calendar, covariates, attributes)
   into Feast's offline table; **register_features** applies the Feast definitions and
   materializes M into the online store.
4. **train** XGBoost on a point-in-time-correct training set retrieved from Feast: the
   *challenger*.
5. **evaluate** it on the last held-out months against the naive baselines, AutoETS and Theta
   and the *champion* (scored on the same rows), and decide who forecasts M: the challenger
   (promoted), the champion, the blend of the challenger and the best baseline (when only the
   blend beats that baseline), or the best baseline. The decision goes into the model registry
   (`<table>_models`; override with `python -m forecasting.registry.models promote|reject`).
6. **predict** M+1..M+horizon for every active entity with that forecaster, with p10/p90;
   **check_forecasts** with Great Expectations (finite, ≥ 0, one row per active entity and
   horizon, none far above the entity's history, row count near the last run's; fails closed);
   **publish** them to the predictions table in one transaction: re-running M replaces M's rows.
   Publishing updates the predictions table's Asset (`x-forecast://<table>`, with M in the
   event's extra), which starts the `forecast_monitoring` DAG: the realised accuracy of the
   forecasts that M's actuals settle.

The deployment is chosen by the `FORECAST_CONFIG` environment variable (docs/configuration.md).
Backfill with `airflow backfill create --dag-id monthly_forecast --from-date ... --to-date ...`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from forecasting.core.names import FORECAST_DAG
from forecasting.orchestration.dag_defaults import default_args, month_param, predictions_asset

# Heavy libraries (pandas, GX, Feast, XGBoost) are imported inside the tasks: the scheduler
# parses this file often and must not pay for them.

# The predictions table, as the Asset that publish updates and forecast_monitoring follows.
PREDICTIONS = predictions_asset()


@dag(
    dag_id=FORECAST_DAG,
    # Runs at midnight UTC on the 1st, for the month that just ended: the run of
    # 2025-01-01 has the data interval [2024-12-01, 2025-01-01), so M = 2024-12.
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    # Tasks only run for intervals after start_date, and backfills may reach back as far as the
    # sales history does (Dominick's is 1990-1992). catchup=False keeps the scheduler from
    # creating those old runs by itself.
    start_date=pendulum.datetime(1970, 1, 1, tz="UTC"),
    catchup=False,
    # Runs share the Feast registry, the online store and the offline feature table. Publishing
    # is safe concurrently (tested on PostgreSQL), concurrent Feast applies and materializations
    # are not tested yet: so a backfill runs its months one at a time.
    max_active_runs=1,
    # Retries for errors that may pass by themselves, a 2-hour limit per task, the failure alert.
    default_args=default_args(execution_timeout=timedelta(hours=2)),
    tags=["forecasting", "ml", "feast", "great-expectations", "xgboost"],
    doc_md=__doc__,
    params={
        "month": Param(
            None,
            **month_param(
                "The month whose data to forecast from. Empty: the run's data interval "
                "(for a manual run without one, the month before the run)."
            ),
        ),
        "force_model_version": Param(
            None,
            type=["null", "string"],
            pattern=r"^([0-9]{4}-[0-9]{2}-[0-9a-f]{10}|baseline:[a-z0-9_]+"
            r"|blend:[0-9]{4}-[0-9]{2}-[0-9a-f]{10}\+[a-z0-9_]+)$",
            title="Force a forecaster",
            description="Publish this registered model version (or baseline:<name>, or "
            "blend:<version>+<baseline>) for M instead "
            "of the gate's choice; recorded in the registry with who triggered the run. Empty: "
            "the gate decides.",
        ),
    },
)
def monthly_forecast():
    # Each task runs one stage of forecasting.orchestration.pipeline (see forecasting.orchestration.tasks.run_stage: errors
    # that a retry cannot heal fail the task at once). extract starts an attempt, a folder of its
    # own that every later stage is handed, so no attempt overwrites another's files.

    @task
    def extract(params=None, data_interval_start=None, dag_run=None, run_id=None) -> dict:
        from forecasting.core.months import month_to_run
        from forecasting.orchestration.tasks import run_stage

        # M comes from the run (its month param or data interval), never from the wall clock;
        # every later task takes it from here.
        month = month_to_run(params.get("month"), data_interval_start, dag_run.run_after)
        return run_stage("extract", month, run_id)

    @task
    def validate(snapshot: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("validate", snapshot["month"], snapshot["attempt"])

    @task
    def build_features(validation: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("build_features", validation["month"], validation["attempt"])

    @task
    def register_features(features: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("register_features", features["month"], features["attempt"])

    @task
    def train(registered: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage("train", registered["month"], registered["attempt"])

    @task
    def evaluate(model: dict, params=None, dag_run=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        # The gate: the result names the forecaster of M (challenger, champion or baseline).
        return run_stage(
            "evaluate",
            model["month"],
            model["attempt"],
            model["model_dir"],
            force_model_version=params.get("force_model_version"),
            forced_by=getattr(dag_run, "triggering_user_name", None),
        )

    @task
    def predict(evaluation: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        return run_stage(
            "predict",
            evaluation["month"],
            evaluation["attempt"],
            evaluation["model_dir"],
            forecaster=evaluation["forecaster"],
        )

    @task
    def check_forecasts(forecasts: dict) -> dict:
        from forecasting.orchestration.tasks import run_stage

        # Fails closed, naming each failed check: publish does not run, the table keeps its rows.
        return run_stage("check_forecasts", forecasts["month"], forecasts["attempt"])

    @task(outlets=[PREDICTIONS])
    def publish(model: dict, forecasts: dict, run_id=None, outlet_events=None) -> dict:
        from forecasting.orchestration.tasks import run_stage

        published = run_stage("publish", forecasts["month"], forecasts["attempt"], model["model_dir"], run_id)
        # The month goes with the Asset event: forecast_monitoring scores what M's actuals settle.
        outlet_events[PREDICTIONS].extra = {
            "month": forecasts["month"],
            "attempt": forecasts["attempt"],
            "run_id": run_id,
            "rows": published["rows"],
        }
        return published

    snapshot = extract()
    validation = validate(snapshot)
    features = build_features(validation)
    model = train(register_features(features))
    forecasts = predict(evaluate(model))  # with the forecaster the gate chose
    publish(model, check_forecasts(forecasts))


monthly_forecast()
