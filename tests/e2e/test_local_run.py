"""`make run` / `make month` (python -m forecasting.orchestration.localrun) make a real run that leaves the
scheduler's slots alone.

Before, they ran `airflow dags test` with the logical date of the scheduler's own run for the next
month: unpausing the DAG afterwards left the scheduler logging "run already exists" once a second
with next_dagrun stuck, the runs had no task logs in the UI, a duration of weeks and user dag_test.

Here, in a fresh AIRFLOW_HOME with its own SQLite metadata DB: the local run of the latest
complete month M succeeds as a manual run without a logical date, its tasks ran in processes of
their own and wrote their logs where the UI reads them; then the DAG is unpaused under a
scheduler of the usual kind, which creates its own run for M at once.
"""

from __future__ import annotations

import json
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

from forecasting.core.names import FORECAST_DAG, FORECAST_STAGES
from tests.helpers.airflow_env import BIN, airflow_env
from tests.helpers.config import demo_config_dict

pytestmark = pytest.mark.slow

TASKS = list(FORECAST_STAGES)


def rows(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import generate_sales, seed_source_database
    from forecasting.orchestration.localrun import latest_complete_month

    folder = tmp_path_factory.mktemp("local-run")
    month = latest_complete_month()
    raw = demo_config_dict(folder)
    raw["model"]["num_boost_round"] = 200
    config_path = folder / "forecast.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    sales = generate_sales(stores=4, items=10, months=40, end_month=month, seed=5)
    seed_source_database(config.source.database.url, sales, table=config.source.table)

    home = folder / "airflow"
    env = airflow_env(
        home, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True", FORECAST_CONFIG=str(config_path)
    )
    home.mkdir()
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "forecasting.orchestration.localrun"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    took = time.monotonic() - started
    print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
    return {"month": month, "home": home, "env": env, "config": config, "result": result, "took": took}


def test_the_local_run_publishes_the_month_and_prints_its_summary(local_run):
    result = local_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Running monthly_forecast for {local_run['month']}" in result.stdout
    assert f"Monthly forecast for {local_run['month']}" in result.stdout
    assert "Published" in result.stdout and "The model beats the best baseline" in result.stdout
    assert "In Airflow: `make ui`, then Browse > Forecasts" in result.stdout  # where to look next
    for task in TASKS:
        assert f"  {task:<18} success" in result.stdout
    # Then the month's monitoring, started by publish's Asset event as in production: nothing was
    # published for M before, so nothing is scored yet.
    assert "of forecast_monitoring (started by the publish's Asset event)" in result.stdout
    assert f"  {'realised_accuracy[0]':<18} success" in result.stdout
    assert f"Realised accuracy: no forecast was published for {local_run['month']}" in result.stdout


def test_it_is_a_manual_run_without_a_logical_date_whose_tasks_logged_like_any_other(local_run):
    db = local_run["home"] / "airflow.db"
    ((run_id, run_type, logical_date, start, end, conf, triggered_by),) = rows(
        db,
        "SELECT run_id, run_type, logical_date, start_date, end_date, conf, triggered_by FROM dag_run "
        "WHERE dag_id = 'monthly_forecast'",
    )
    assert run_type == "manual" and logical_date is None and triggered_by != "TEST"
    assert "month" in str(conf) and local_run["month"] in str(conf)
    duration = pd.Timestamp(end) - pd.Timestamp(start)
    assert pd.Timedelta(0) < duration < pd.Timedelta(seconds=local_run["took"])
    tis = rows(db, "SELECT task_id, state, pid, hostname FROM task_instance WHERE run_id = ?", run_id)
    assert sorted(t[0] for t in tis) == sorted(TASKS) and {t[1] for t in tis} == {"success"}
    assert len({t[2] for t in tis}) == len(TASKS)  # each task in a process of its own
    for task in TASKS:
        log = (
            local_run["home"]
            / "logs"
            / "dag_id=monthly_forecast"
            / f"run_id={run_id}"
            / f"task_id={task}"
            / "attempt=1.log"
        )
        events = [
            json.loads(line).get("event", "") for line in log.read_text().splitlines() if line.startswith("{")
        ]
        assert events, f"no log for {task}"
    publish_log = (log.parent.parent / "task_id=publish" / "attempt=1.log").read_text()
    assert "Published" in publish_log


def test_it_leaves_monthly_forecast_paused_and_the_dags_that_follow_its_publishes_unpaused(local_run):
    # Unpausing monthly_forecast (as the README says) is then all it takes for monitoring and
    # scenarios to follow each month; before, they stayed paused and never ran (issue 23).
    db = local_run["home"] / "airflow.db"
    paused = dict(rows(db, "SELECT dag_id, is_paused FROM dag"))
    assert paused == {"monthly_forecast": 1, "forecast_monitoring": 0, "forecast_scenarios": 0}
    ((run_type, conf),) = rows(db, "SELECT run_type, conf FROM dag_run WHERE dag_id = 'forecast_monitoring'")
    assert run_type == "asset_triggered" and "month" not in str(conf or "")
    assert not rows(
        db, "SELECT run_id FROM dag_run WHERE dag_id = 'monthly_forecast' AND run_type = 'scheduled'"
    )


def test_the_scheduler_imported_the_task_modules_once_for_every_task(local_run):
    # forecast_task_preload: the scheduler imports them before its LocalExecutor forks the
    # workers the tasks are forked from; a task, inheriting them, does not import them again.
    (scheduler_log,) = (local_run["home"] / "logs" / "local-runs").glob("*/scheduler.log")
    said = [
        line
        for line in scheduler_log.read_text().splitlines()
        if "Imported the forecast tasks' modules" in line
    ]
    assert len(said) == 1, said
    assert "could not import" not in scheduler_log.read_text()


def test_unpausing_afterwards_lets_the_scheduler_create_its_own_run_for_the_month(local_run):
    home, env = local_run["home"], local_run["env"]
    db = home / "airflow.db"
    assert rows(db, "SELECT is_paused FROM dag WHERE dag_id = 'monthly_forecast'") == [(1,)]  # as it was
    log = home / "scheduler-after-local-run.log"
    with open(log, "wb") as out:
        scheduler = subprocess.Popen(
            [BIN / "airflow", "scheduler"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        subprocess.run(
            [BIN / "airflow", "dags", "unpause", FORECAST_DAG], env=env, check=True, capture_output=True
        )
        deadline = time.monotonic() + 240
        scheduled = []
        while not scheduled and time.monotonic() < deadline:
            assert scheduler.poll() is None, log.read_text()[-3000:]
            scheduled = rows(
                db,
                "SELECT run_id, data_interval_start FROM dag_run "
                "WHERE dag_id = 'monthly_forecast' AND run_type = 'scheduled'",
            )
            time.sleep(2)
        subprocess.run([BIN / "airflow", "dags", "pause", FORECAST_DAG], env=env, capture_output=True)
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        try:
            scheduler.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(scheduler.pid, signal.SIGKILL)
    assert len(scheduled) == 1, f"the scheduler created no run of its own:\n{log.read_text()[-3000:]}"
    ((_, interval_start),) = scheduled
    assert str(pd.Period(pd.Timestamp(interval_start), "M")) == local_run["month"]
    assert "already exists" not in log.read_text()
