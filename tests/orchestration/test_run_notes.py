"""The month on every run (forecasting.orchestration.run_notes and the forecast_run_notes plugin).

What the note says, worked out by hand for each way a run gets its month; then a real Airflow
(api-server and scheduler with the plugins folder, in a fresh AIRFLOW_HOME): the scheduler's
own run, a manual run with a logical date (so a data interval), a manual run with the `month`
param and a note of its own, and forecast_monitoring runs from the `month` param and from an
Asset event; each run's note, read back through the REST API, names its month.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from urllib.parse import quote

import pandas as pd
import pytest

from forecasting.orchestration.run_notes import months_of_run, note_with_months
from tests.helpers.airflow_env import BIN, airflow_env
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO

# --- what the note says ---------------------------------------------------------------------


def _never_read() -> list[str]:
    raise AssertionError("the published months were read although the run names its month")


def test_a_forecast_run_is_for_its_month_param_else_its_data_interval_else_the_month_before():
    # the month asked for wins over the data interval
    assert months_of_run(
        "monthly_forecast", {"month": "2024-03"}, datetime(2026, 10, 1, tzinfo=UTC), None
    ) == ["2024-03"]
    # a scheduled run on 2026-11-01 covers [2026-10-01, 2026-11-01): October
    assert months_of_run(
        "monthly_forecast", {}, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    ) == ["2026-10"]
    # a manual run without either: the month before it was triggered (an empty param is none)
    assert months_of_run(
        "monthly_forecast", {"month": None}, None, datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
    ) == ["2026-10"]
    assert months_of_run("monthly_forecast", None, None, datetime(2026, 1, 5, tzinfo=UTC)) == ["2025-12"]


def test_a_monitoring_run_is_for_its_month_param_else_its_events_months_else_the_newest_published():
    events = [{"month": "2024-05", "attempt": "a"}, {"month": "2024-04", "attempt": "b"}, {}]
    assert months_of_run("forecast_monitoring", {"month": "2024-02"}, None, None, events, _never_read) == [
        "2024-02"
    ]
    # several publishes before the run started: each month, oldest first, without the later
    # months the run re-scores along with them
    assert months_of_run("forecast_monitoring", {}, None, None, events, _never_read) == ["2024-04", "2024-05"]
    # forecast_scenarios follows the same Asset: the same months as monitoring
    assert months_of_run("forecast_scenarios", {}, None, None, events, _never_read) == ["2024-04", "2024-05"]
    assert months_of_run("forecast_scenarios", {"month": "2024-02"}, None, None, events, _never_read) == [
        "2024-02"
    ]
    assert months_of_run("forecast_monitoring", {}, None, None, [], lambda: ["2024-01", "2024-03"]) == [
        "2024-03"
    ]
    assert months_of_run("some_other_dag", {"month": "2024-02"}, None, None) == []


def test_the_note_names_the_months_first_and_keeps_what_a_person_wrote():
    assert note_with_months(None, ["2026-10"]) == "month=2026-10"
    assert note_with_months("", ["2024-04", "2024-05"]) == "month=2024-04,2024-05"
    assert note_with_months("re-run after fixing the source", ["2024-03"]) == (
        "month=2024-03\n\nre-run after fixing the source"
    )
    # written already (when the run started, or by a person): left as it is
    assert note_with_months("month=2024-03\n\nre-run", ["2024-03"]) is None
    assert note_with_months("month=2024-02", ["2024-03"]) is None
    assert note_with_months("anything", []) is None


def test_a_forecast_run_that_published_says_how_many_overrides_it_applied_and_refused(tmp_path, monkeypatch):
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.orchestration.run_notes import note_with_line, overrides_line, published_result

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    run_id = "scheduled__2024-12-01T00:00:00+00:00"
    refusal = "typo: store_id 9, item_id 9 has no forecast in this run"
    overrides = {"applied": 2, "refused": 1, "adjusted_forecasts": 5, "refusals": [refusal]}
    attempt = paths.new_attempt(run_id)
    result = paths.stage_result(config, pd.Period("2024-11", "M"), attempt, "publish")
    paths.write_json_atomically({"run_id": run_id, "overrides": overrides}, result)
    published = published_result("2024-11", run_id)
    assert published is not None and published["overrides"] == overrides
    assert published_result("2024-11", "manual__other") is None  # another run of the month
    line = overrides_line(published)
    assert line == f"overrides: 2 applied, 1 refused ({refusal})"
    assert note_with_line("month=2024-11", line) == f"month=2024-11\n{line}"
    assert note_with_line(f"month=2024-11\n{line}", line) is None  # written already
    assert overrides_line({"run_id": run_id}) is None  # published before overrides existed
    many = {**overrides, "refused": 40, "refusals": [refusal] * 40}
    assert len(overrides_line({"overrides": many})) == 600  # Airflow keeps a note in 1,000 characters


# --- in a real Airflow ----------------------------------------------------------------------


@pytest.fixture
def airflow(tmp_path) -> Iterator:
    """An api-server and a scheduler (LocalExecutor, scheduling as in production) with this
    repository's DAGs and plugins, in a fresh AIRFLOW_HOME; the source has no data, so the runs'
    tasks would fail: the test marks each run failed once its note is read."""
    from forecasting.orchestration.localrun import (
        Api,
        api_server_settings,
        free_port,
        fresh_api_secrets,
        stop,
    )

    config = write_config(tmp_path / "deployment", demo_config_dict(tmp_path / "deployment"))
    port = free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    env = airflow_env(
        home,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        FORECAST_CONFIG=str(config),
        **api_server_settings(port),
        **fresh_api_secrets(),
    )
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    processes: list[subprocess.Popen] = []
    with ExitStack() as stack:
        # the runs are marked failed while their tasks run: no need to wait 30 s for a graceful end
        stack.callback(stop, processes, 5)
        for command in (["api-server", "--port", str(port)], ["scheduler"], ["dags", "reserialize"]):
            log = stack.enter_context(open(tmp_path / f"{command[0]}.log", "wb"))
            processes.append(
                subprocess.Popen(
                    [BIN / "airflow", *command],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def alive() -> None:
            for process, name in zip(processes[:2], ("api-server", "scheduler"), strict=True):
                if process.poll() is not None:
                    log = (tmp_path / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"airflow {name} exited with {process.returncode}:\n{log}")

        api = Api(f"http://127.0.0.1:{port}")
        stack.callback(api.http.close)
        api.wait_until_up(180, alive)
        assert processes[2].wait(180) == 0, (tmp_path / "dags.log").read_text()[-3000:]
        api.wait_for_dag(60, alive, "monthly_forecast")
        api.wait_for_dag(60, alive, "forecast_monitoring")
        yield api, alive


def _notes_once_started(api, alive, dag_id: str, expected: int, timeout: float = 240) -> dict[str, dict]:
    """Each run of dag_id as the REST API shows it, once ``expected`` runs have each started and
    have a note. A started run is then marked failed, so the next (max_active_runs=1) starts."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        runs = {r["dag_run_id"]: r for r in api.get(f"/dags/{dag_id}/dagRuns")["dag_runs"]}
        for run_id, run in runs.items():
            if run["state"] == "running" and run["note"]:
                api.send("PATCH", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", {"state": "failed"})
        started = [r for r in runs.values() if r["state"] != "queued"]
        if len(runs) >= expected and all(r["note"] for r in started) and len(started) == len(runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs of {dag_id} without a note: {runs}")
        time.sleep(1)


@pytest.mark.slow
def test_every_run_names_its_month_in_its_note(airflow):
    from forecasting.orchestration.localrun import latest_complete_month

    api, alive = airflow
    manual = api.send(
        "POST",
        "/dags/monthly_forecast/dagRuns",
        {"logical_date": None, "conf": {"month": "2024-03"}, "note": "re-run after fixing the source"},
    )["dag_run_id"]
    # a logical date gives the run a data interval, as the scheduler's runs and backfills have:
    # 2024-06-01 closes [2024-05-01, 2024-06-01)
    interval = api.send(
        "POST", "/dags/monthly_forecast/dagRuns", {"logical_date": "2024-06-01T00:00:00Z", "conf": {}}
    )
    # unpaused, the scheduler makes its own run for the latest complete month (catchup=False)
    api.send("PATCH", "/dags/monthly_forecast", {"is_paused": False})
    runs = _notes_once_started(api, alive, "monthly_forecast", expected=3)
    scheduled = [r for r in runs.values() if r["run_type"] == "scheduled"]
    assert len(scheduled) == 1, runs
    assert scheduled[0]["note"] == f"month={latest_complete_month()}"
    assert scheduled[0]["data_interval_start"].startswith(latest_complete_month())
    assert runs[interval["dag_run_id"]]["data_interval_start"].startswith("2024-05-01")
    assert runs[interval["dag_run_id"]]["note"] == "month=2024-05"
    assert runs[manual]["note"] == "month=2024-03\n\nre-run after fixing the source"

    # forecast_monitoring: a manual run for a month, and the run publish's Asset event starts
    api.send("PATCH", "/dags/forecast_monitoring", {"is_paused": False})
    by_param = api.send(
        "POST", "/dags/forecast_monitoring/dagRuns", {"logical_date": None, "conf": {"month": "2024-02"}}
    )["dag_run_id"]
    (asset,) = api.get("/assets", uri_pattern="x-forecast://")["assets"]
    api.send(
        "POST", "/assets/events", {"asset_id": asset["id"], "extra": {"month": "2024-04", "attempt": "x"}}
    )
    runs = _notes_once_started(api, alive, "forecast_monitoring", expected=2)
    assert runs[by_param]["note"] == "month=2024-02"
    (from_event,) = [r for r in runs.values() if r["run_type"] == "asset_triggered"]
    assert from_event["note"] == "month=2024-04"


@pytest.mark.slow
def test_a_dag_test_run_gets_its_note_when_it_ends(airflow_db, tmp_path):
    """`airflow dags test` (dag.test()) makes its run without the scheduler: the note is written
    when the run ends, through a session of its own (dag.test's run is not bound to one)."""
    import sqlite3

    from tests.helpers.forecasts_view_data import RUN_MONTHS, build_deployment

    config = build_deployment(tmp_path / "deployment")  # published months to score
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "FORECAST_CONFIG": str(config.path),
    }
    month = RUN_MONTHS[-1]
    done = subprocess.run(
        [BIN / "airflow", "dags", "test", "forecast_monitoring", "-c", f'{{"month": "{month}"}}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Whether it succeeds or fails on these hand-made files, the run ends and gets its note then.
    with sqlite3.connect(airflow_db / "airflow.db") as db:
        ((state, note),) = db.execute(
            "SELECT r.state, n.content FROM dag_run r LEFT JOIN dag_run_note n ON n.dag_run_id = r.id "
            "WHERE r.dag_id = 'forecast_monitoring' AND r.conf LIKE ? ORDER BY r.id DESC LIMIT 1",
            (f"%{month}%",),
        ).fetchall()
    assert state in ("success", "failed"), (done.stdout + done.stderr)[-3000:]
    assert note == f"month={month}", (done.stdout + done.stderr)[-3000:]
