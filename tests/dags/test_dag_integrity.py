"""Every DAG file imports cleanly, quickly, and follows the house rules."""

from __future__ import annotations

import time

import pytest

from forecasting.core.names import (
    DAG_IDS,
    FORECAST_DAG,
    FORECAST_STAGES,
    MONITORING_DAG,
    MONITORING_STAGES,
    SCENARIO_STAGES,
    SCENARIOS_DAG,
    STAGES,
)
from tests.helpers.paths import REPO


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"monthly_forecast", "forecast_monitoring", "forecast_scenarios"} == set(DAG_IDS)
    assert set(DAG_IDS) <= set(dagbag.dags)


def test_every_dag_has_tags_owner_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert all(task.owner not in ("", "airflow") for task in dag.tasks), dag_id


def test_every_task_retries_at_least_twice(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries}"


def test_monthly_forecast_reads_like_the_pipeline(dagbag):
    dag = dagbag.dags[FORECAST_DAG]
    order = list(FORECAST_STAGES)
    assert order[0] == "extract" and order[-1] == "publish"
    assert set(dag.task_ids) == set(order)
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert dag.max_active_runs >= 1


def test_force_model_version_takes_a_model_a_baseline_or_a_blend(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    param = dagbag.dags[FORECAST_DAG].params.get_param("force_model_version")
    for good in (None, "2024-11-0123456789", "baseline:auto_ets", "blend:2024-11-0123456789+auto_ets"):
        assert param.resolve(good) == good
    for bad in (
        "latest",
        "baseline:",
        "blend:2024-11-0123456789",
        "blend:x+auto_ets",
        "2024-11-0123456789+theta",
    ):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_publish_updates_the_asset_that_forecast_monitoring_is_scheduled_on(dagbag):
    """Data-aware scheduling: each publish starts the monitoring of the month it published."""
    from airflow.sdk import Asset

    publish = dagbag.dags[FORECAST_DAG].get_task("publish")
    assert [outlet.uri for outlet in publish.outlets] == ["x-forecast://forecasts"]  # the demo's table
    monitoring = dagbag.dags[MONITORING_DAG]
    assert list(monitoring.timetable.asset_condition.objects) == [Asset("x-forecast://forecasts")]
    assert set(monitoring.task_ids) == {"months_published", "realised_accuracy", "drift", "check_alerts"}
    assert "realised_accuracy" in monitoring.get_task("months_published").downstream_task_ids
    assert {"realised_accuracy", "drift"} <= monitoring.get_task("check_alerts").upstream_task_ids
    assert "month" in monitoring.params


def test_forecast_scenarios_follows_the_asset_and_reads_like_its_diagram(dagbag):
    """months_published -> forecast_scenarios -> publish_scenarios, on every publish or by hand."""
    from airflow.sdk import Asset

    scenarios = dagbag.dags[SCENARIOS_DAG]
    assert list(scenarios.timetable.asset_condition.objects) == [Asset("x-forecast://forecasts")]
    order = ["months_published", *SCENARIO_STAGES]
    assert set(scenarios.task_ids) == set(order)
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert scenarios.get_task(upstream).downstream_task_ids == {downstream}
    assert "month" in scenarios.params


def test_forecast_scenarios_skips_without_a_scenarios_section(dagbag, monkeypatch):
    """The demo config has no plans.scenarios: the first task skips (and with it the rest)."""
    from airflow.sdk.exceptions import AirflowSkipException

    monkeypatch.setenv("FORECAST_CONFIG", str(REPO / "config" / "demo.yaml"))
    task = dagbag.dags[SCENARIOS_DAG].get_task("months_published")
    with pytest.raises(AirflowSkipException, match="no plans.scenarios section"):
        task.python_callable(params={"month": "2024-12"}, triggering_asset_events=None)


def test_the_asset_is_named_after_the_configs_predictions_table(tmp_path):
    from forecasting.core.config import predictions_asset_uri

    config = tmp_path / "forecast.yaml"
    config.write_text("predictions: {url: 'sqlite:///${NOT_SET}', table: demand_forecasts}\n")
    assert predictions_asset_uri(config) == "x-forecast://demand_forecasts"  # no ${VAR} needed
    config.write_text("predictions: {url: 'sqlite:///x.db'}\n")
    assert predictions_asset_uri(config) == "x-forecast://forecasts"  # the default table
    # A config that cannot be read still parses (its tasks say what is wrong when they run).
    assert predictions_asset_uri(tmp_path / "missing.yaml") == "x-forecast://forecasts"


def test_parsing_the_dags_folder_is_fast(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    DagBag(dag_folder=str(REPO / "dags"))  # warm the import caches
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    elapsed = time.perf_counter() - started
    assert not bag.import_errors
    assert elapsed < 2.0, f"parsing dags/ took {elapsed:.2f}s"


@pytest.mark.parametrize("name", ["monthly_forecast.py", "forecast_monitoring.py", "forecast_scenarios.py"])
def test_dag_file_imports_no_heavy_libraries(name):
    """The scheduler parses DAG files often: pandas, GX, Feast and XGBoost stay inside tasks."""
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('pandas', 'great_expectations', 'feast', 'xgboost', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / name)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", f"heavy imports at parse time: {out.stdout.strip()}"


def test_every_stage_name_is_a_stage_function():
    """forecasting.core.names lists the stages: monthly_forecast's are functions of
    forecasting.orchestration.pipeline, the DAGs' that a publish starts of after_publish."""
    from forecasting.orchestration import after_publish, pipeline

    assert STAGES == (*FORECAST_STAGES, *MONITORING_STAGES, *SCENARIO_STAGES)
    assert all(callable(getattr(pipeline, stage, None)) for stage in FORECAST_STAGES)
    assert all(
        callable(getattr(after_publish, stage, None)) for stage in (*MONITORING_STAGES, *SCENARIO_STAGES)
    )


def test_names_module_imports_nothing_heavy():
    """DAG files, plugins and benchmark drivers import forecasting.core.names at no cost."""
    import subprocess
    import sys

    code = (
        "import sys, forecasting.core.names; "
        "heavy = [m for m in ('pandas', 'numpy', 'sqlalchemy', 'feast', 'xgboost', 'airflow', 'yaml') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"forecasting.core.names imports {out.stdout.strip()}"
