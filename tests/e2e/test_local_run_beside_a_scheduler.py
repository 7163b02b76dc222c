"""`make month` while `make ui` runs: a scheduler of the usual kind (it makes scheduled runs) and an
api-server of the test's own are up, monthly_forecast is paused.

Before (issue 23), `make month` unpaused monthly_forecast for its run, and the scheduler at once
started its own scheduled run of the latest month; and a month run through `make month` had only
itself scored, while a backfill through the Asset re-scored the later published months too.

Here: months A, then B (= A + 1) are published (the pipeline's stages, in this process), then A is
run again through `python -m forecasting.orchestration.localrun` beside the scheduler.
monthly_forecast stays paused and the scheduler makes no run of it; the publish's Asset event
starts forecast_monitoring, as in production, and it re-scores B (whose forecasts made as of A
the re-run changed) with the re-run's model.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers.airflow_env import BIN, airflow_env
from tests.helpers.config import demo_config_dict

pytestmark = pytest.mark.slow


def rows(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def publish_month(month: str, config) -> None:
    from forecasting.orchestration import pipeline

    run_id = f"manual__{month}"
    attempt = pipeline.extract(month, run_id, config)["attempt"]
    for stage in ("validate", "build_features", "register_features"):
        getattr(pipeline, stage)(month, attempt, config)
    model_dir = pipeline.train(month, attempt, config)["model_dir"]
    decided = pipeline.evaluate(month, attempt, model_dir, config)
    pipeline.predict(month, attempt, model_dir, config, decided["forecaster"])
    pipeline.check_forecasts(month, attempt, config)
    pipeline.publish(month, attempt, model_dir, run_id, config)


def wait_until_scheduling(env: dict, processes: list, folder: Path, timeout: float = 300) -> None:
    """Until the scheduler's job is alive (as `make ui`'s is when someone types `make month`)."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            assert process.poll() is None, (folder / "scheduler.log").read_text()[-3000:]
        check = subprocess.run(
            [BIN / "airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"],
            env=env,
            capture_output=True,
        )
        if check.returncode == 0:
            return
        assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()[-3000:]
        time.sleep(2)


@pytest.fixture(scope="module")
def beside_a_scheduler(tmp_path_factory):
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import generate_sales, seed_source_database
    from forecasting.orchestration.localrun import api_server_settings, free_port, fresh_api_secrets

    folder = tmp_path_factory.mktemp("beside-a-scheduler")
    month_b = pd.Period("2024-12", "M")
    raw = demo_config_dict(folder)
    raw["model"]["num_boost_round"] = 100
    raw["horizon"] = 2
    config_path = folder / "forecast.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    sales = generate_sales(stores=3, items=6, months=36, end_month=str(month_b), seed=5)
    seed_source_database(config.source.database.url, sales, table=config.source.table)

    for month in (month_b - 1, month_b):  # published before, however they were run
        publish_month(str(month), config)

    home = folder / "airflow"
    home.mkdir()
    port = free_port()
    env = airflow_env(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        FORECAST_CONFIG=str(config_path),
        **fresh_api_secrets(),
        **api_server_settings(port),
    )
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([BIN / "airflow", "dags", "reserialize"], env=env, check=True, capture_output=True)
    logs, processes = [], []
    try:
        for command in (["api-server", "--port", str(port)], ["scheduler"]):  # as make ui's
            logs.append(open(folder / f"{command[0]}.log", "wb"))  # noqa: SIM115 (closed below)
            processes.append(
                subprocess.Popen(
                    [BIN / "airflow", *command],
                    env=env,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_until_scheduling(env, processes, folder)
        result = subprocess.run(
            [sys.executable, "-m", "forecasting.orchestration.localrun", str(month_b - 1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        for process in processes:
            assert process.poll() is None, (folder / "scheduler.log").read_text()[-3000:]
        yield {"home": home, "config": config, "a": str(month_b - 1), "b": str(month_b), "result": result}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def test_the_month_runs_through_the_running_scheduler_and_publishes(beside_a_scheduler):
    result = beside_a_scheduler["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "A scheduler is running for this AIRFLOW_HOME" in result.stdout
    assert "of forecast_monitoring (started by the publish's Asset event)" in result.stdout


def test_monthly_forecast_stays_paused_and_the_scheduler_makes_no_run_of_its_own(beside_a_scheduler):
    db = beside_a_scheduler["home"] / "airflow.db"
    assert rows(db, "SELECT is_paused FROM dag WHERE dag_id = 'monthly_forecast'") == [(1,)]
    runs = rows(db, "SELECT run_type, state FROM dag_run WHERE dag_id = 'monthly_forecast'")
    assert runs == [("manual", "success")], runs


def test_the_rerun_of_a_month_rescores_the_later_month_as_the_asset_path_does(beside_a_scheduler):
    from forecasting.core.names import ACCURACY, RUNS, relation_name
    from forecasting.publishing.query import run_query

    db = beside_a_scheduler["home"] / "airflow.db"
    a, b = beside_a_scheduler["a"], beside_a_scheduler["b"]
    monitoring = rows(
        db, "SELECT run_id, run_type FROM dag_run WHERE dag_id = 'forecast_monitoring' ORDER BY id"
    )
    assert [t for _, t in monitoring] == ["asset_triggered"], monitoring
    # A's re-run scored A and B: one mapped realised_accuracy per month.
    scored = rows(
        db,
        "SELECT map_index, state FROM task_instance WHERE dag_id = 'forecast_monitoring' AND run_id = ? "
        "AND task_id = 'realised_accuracy' ORDER BY map_index",
        monitoring[-1][0],
    )
    assert scored == [(0, "success"), (1, "success")], scored
    config = beside_a_scheduler["config"]
    accuracy = run_query(
        config,
        f"SELECT run_month, model_version FROM {relation_name(config.predictions.table, ACCURACY)} "
        f"WHERE forecast_month = '{b}-01'",
    )
    assert set(accuracy["run_month"].astype(str).str[:7]) == {a}, accuracy
    # Scored with A's forecasts as published last (the re-run's model).
    runs = run_query(
        config, f"SELECT run_month, model_version FROM {relation_name(config.predictions.table, RUNS)}"
    )
    (version,) = runs[runs["run_month"].astype(str).str.startswith(a)]["model_version"]
    assert set(accuracy["model_version"]) == {version}
