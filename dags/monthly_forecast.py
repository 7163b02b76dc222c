"""
### Monthly demand forecast

Once a month, for the month that just ended (M, taken from the run's data interval):

extract → validate → build_features → register_features → train → evaluate → predict → publish

M can also be given when triggering (the `month` param, YYYY-MM), e.g. to re-run a month.

1. **extract** the history window ending at M from the source database into a raw snapshot.
2. **validate** it with Great Expectations; bad data fails here, naming each failed
   expectation, and nothing downstream runs (Data Docs path in the log).
3. **build_features** (lags, rolling means and deviations, calendar, covariates, attributes)
   into Feast's offline table; **register_features** applies the Feast definitions and
   materializes M into the online store.
4. **train** XGBoost on a point-in-time-correct training set retrieved from Feast.
5. **evaluate** it on the last held-out months against naive baselines.
6. **predict** M+1..M+horizon for every active entity and **publish** them to the
   predictions table in one transaction: re-running M replaces M's rows.

The deployment is chosen by the `FORECAST_CONFIG` environment variable (see the README).
Backfill with `airflow backfill create --dag-id monthly_forecast --from-date ... --to-date ...`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

# Heavy libraries (pandas, GX, Feast, XGBoost) are imported inside the tasks: the scheduler
# parses this file often and must not pay for them.


@dag(
    dag_id="monthly_forecast",
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
    default_args={"owner": "forecasting", "retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["forecasting", "ml", "feast", "great-expectations", "xgboost"],
    doc_md=__doc__,
    params={
        "month": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
            title="Month M (YYYY-MM)",
            description="The month whose data to forecast from. Empty: the run's data interval "
            "(for a manual run without one, the month before the run).",
        )
    },
)
def monthly_forecast():
    @task
    def extract(params=None, data_interval_start=None, dag_run=None) -> dict:
        from forecasting import pipeline
        from forecasting.months import month_to_run

        # M comes from the run (its month param or data interval), never from the wall clock;
        # every later task takes it from here.
        return pipeline.extract(month_to_run(params.get("month"), data_interval_start, dag_run.run_after))

    @task
    def validate(snapshot: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from forecasting import pipeline
        from forecasting.validate import DataValidationError

        try:
            return pipeline.validate(snapshot["month"])
        except DataValidationError as err:
            # Bad data does not get better by retrying: fail now, naming what failed.
            raise AirflowFailException(str(err)) from err

    @task
    def build_features(validation: dict) -> dict:
        from forecasting import pipeline

        return pipeline.build_features(validation["month"])

    @task
    def register_features(features: dict) -> dict:
        from forecasting import pipeline

        return pipeline.register_features(features["month"])

    @task
    def train(registered: dict) -> dict:
        from forecasting import pipeline

        return pipeline.train(registered["month"])

    @task
    def evaluate(model: dict) -> dict:
        from forecasting import pipeline

        return pipeline.evaluate(model["month"], model["model_dir"])

    @task
    def predict(model: dict, evaluation: dict) -> dict:
        from forecasting import pipeline

        return pipeline.predict(model["month"], model["model_dir"])

    @task
    def publish(model: dict, forecasts: dict, run_id=None) -> dict:
        from forecasting import pipeline

        return pipeline.publish(model["month"], model["model_dir"], run_id)

    snapshot = extract()
    validation = validate(snapshot)
    features = build_features(validation)
    model = train(register_features(features))
    evaluation = evaluate(model)
    forecasts = predict(model, evaluation)
    publish(model, forecasts)


monthly_forecast()
