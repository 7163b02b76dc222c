"""The names the DAGs, plugins, run notes, tests and benchmarks share: DAG ids, stages, the Asset
and the names of the predictions database's tables.

Pure constants and string rules, with no imports beyond the standard library, so that DAG files,
Airflow plugins and benchmark drivers can read them without loading pandas or the library.
"""

from __future__ import annotations

# The three DAGs' ids (each is also its file's name under dags/).
FORECAST_DAG = "monthly_forecast"
MONITORING_DAG = "forecast_monitoring"
SCENARIOS_DAG = "forecast_scenarios"
DAG_IDS = (FORECAST_DAG, MONITORING_DAG, SCENARIOS_DAG)
# The DAGs scheduled on the predictions Asset (each run consumes publish events).
ASSET_DAGS = (MONITORING_DAG, SCENARIOS_DAG)

# monthly_forecast's stages, in the order its tasks run (each task is named after its stage).
FORECAST_STAGES = (
    "extract",
    "validate",
    "build_features",
    "register_features",
    "train",
    "evaluate",
    "predict",
    "check_forecasts",
    "publish",
)
# forecast_monitoring's stages, after a publish: realised accuracy, drift, then alerts.
MONITORING_STAGES = ("monitor", "drift", "alerts")
# forecast_scenarios's stages, after a publish (config plans.scenarios).
SCENARIO_STAGES = ("forecast_scenarios", "publish_scenarios")
# Every stage function of forecasting.orchestration.pipeline, each a result file per attempt.
STAGES = (*FORECAST_STAGES, *MONITORING_STAGES, *SCENARIO_STAGES)

# Airflow skips the semantic checks of URI schemes that start with "x-" (the custom ones).
PREDICTIONS_ASSET_SCHEME = "x-forecast"


def predictions_asset_uri_for(table: str) -> str:
    """The Airflow Asset URI of a predictions table: ``x-forecast://<table>``."""
    return f"{PREDICTIONS_ASSET_SCHEME}://{table}"


# The suffixes of the tables and views beside the predictions table (config predictions.table):
# <table>_<suffix>. Their columns: forecasting.publishing.tables.
RUNS = "runs"
LATEST = "latest"  # a view
MODELS = "models"
ACCURACY = "accuracy"
ERRORS = "errors"
FVA = "fva"  # the forecast value added's waterfall
TRACKING_SIGNAL = "tracking_signal"  # a view
DRIFT = "drift"
ALERTS = "alerts"
SCENARIOS = "scenarios"
SCENARIO_TOTALS = "scenario_totals"  # the Scenarios page's totals, groups and movers per publication
DRIVERS = "drivers"
REVISIONS = "revisions"  # a view
CHURN = "churn"  # a view
LEVELS = "levels"  # the hierarchy's levels (config hierarchy)
LEVELS_LATEST = "levels_latest"  # a view
LEVEL_ERRORS = "level_errors"  # each level group's realised error (forecasting.monitoring.level_accuracy)
OVERRIDES = "overrides"  # planners' adjustments, versioned: the audit trail (docs/publishing.md)
OVERRIDE_OUTCOMES = "override_outcomes"  # what each run did with each active override
PUBLISH_LOCK = "publish_lock"  # PostgreSQL only: publish's row locks, the pipeline's alone


def relation_name(table: str, suffix: str = "") -> str:
    """``<table>_<suffix>``, or the predictions table itself for no suffix."""
    return f"{table}_{suffix}" if suffix else table


# The years a run's month M may be in: those whose every instant pandas' nanosecond timestamps
# hold (pd.Timestamp.min is in 1677, .max in 2262); core.months checks them, and the DAGs'
# month param ("YYYY-MM") takes only them, by this pattern (here, for DAG files: no pandas).
FIRST_YEAR, LAST_YEAR = 1678, 2261
MONTH_PATTERN = r"^(167[89]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])$"
