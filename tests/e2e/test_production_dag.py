"""The whole monthly_forecast DAG run the way production runs it, on the real servers.

`airflow standalone` (api-server, scheduler with the LocalExecutor, dag-processor, triggerer)
runs in a subprocess with its metadata DB in PostgreSQL, with config/production.yaml as the
deployment: sales read from PostgreSQL, Feast's SQL registry in PostgreSQL, the online store
in Redis, forecasts published to PostgreSQL through the Airflow connection predictions_db.
Nothing runs in this process: the test only talks to the REST API and reads the databases.

1. The DAG is unpaused through the REST API, and the scheduler's own run for the latest
   complete month M runs every task in task processes that the LocalExecutor starts.
2. A manual run of the same month ({"month": M}, no logical date) leaves identical forecasts.

Servers as in test_production.py: FORECAST_TEST_POSTGRES_URL (a user that may create
databases), FORECAST_TEST_REDIS and FORECAST_TEST_REDIS_DB. The test is skipped, saying which,
only when a server does not answer. It creates its own databases (Airflow's metadata DB, the
source, the predictions and the Feast registry: forecast_test_*), Feast keys in Redis under a
random project and a fresh AIRFLOW_HOME, and removes them all afterwards, failed or not.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from forecasting.core.months import month_of, month_start
from forecasting.core.names import FORECAST_DAG, FORECAST_STAGES
from forecasting.orchestration.localrun import api_server_settings, free_port, fresh_api_secrets
from forecasting.publishing.postgres import temporary_database
from tests.helpers.airflow_env import BIN, airflow_env
from tests.helpers.paths import REPO
from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, feast_keys, query

pytestmark = pytest.mark.slow  # runs the whole DAG

DAG_ID = FORECAST_DAG
TASKS = set(FORECAST_STAGES)
KEYS = ["store_id", "item_id"]
SIZE = {"stores": 6, "items": 25, "months": 48}

# Generous for a loaded 2-core machine; each is a limit, not a wait.
STARTUP_TIMEOUT = 240  # migrating a fresh metadata DB and starting four Airflow processes
PARSE_TIMEOUT = 180  # until the dag-processor has serialized the DAG
RUN_TIMEOUT = 420  # one DAG run, eight tasks
STOP_TIMEOUT = 30


# --- servers -------------------------------------------------------------------------------


def wait_for(
    what: str, check: Callable[[], object], timeout: float, alive: Callable[[], None], interval: float = 2.0
):
    """Poll ``check`` until it returns something truthy; ``alive`` raises if waiting is pointless."""
    import httpx

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        alive()
        try:
            result = check()
        except httpx.HTTPError as err:  # not up yet: connection refused, 404, ...
            last_error = err
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last error: {last_error!r})")


# --- the standalone Airflow ----------------------------------------------------------------


def session_processes(sid: int) -> list[int]:
    """Every process of the session the standalone leads, however deep (task runners get process
    groups of their own, but stay in the session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def stop_standalone(process: subprocess.Popen) -> None:
    """SIGTERM to every process of the standalone's session (each component shuts down
    cleanly on it), SIGKILL to whatever is left after STOP_TIMEOUT."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_processes(process.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            process.poll()  # reap the standalone itself (its children go to init)
            if not session_processes(process.pid):
                return
            time.sleep(0.5)
    process.wait(timeout=STOP_TIMEOUT)


def tail(path: Path, lines: int = 60) -> str:
    if not path.is_file():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return f"--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def task_log(path: Path, lines: int = 40) -> str:
    """A task's log (JSON lines) as text: time, level, message, and any exception with its frames."""
    if not path.is_file():
        return f"({path} does not exist)"
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        out.append(f"{record.get('timestamp', '')[11:19]} {record.get('level', ''):<7} {record.get('event')}")
        for error in record.get("error_detail") or []:
            # The repo's frames and the innermost one: where it went wrong, without the plumbing.
            frames = [f for f in error["frames"][:-1] if "/site-packages/" not in f["filename"]]
            out += [
                f"    {f['filename']}:{f['lineno']} in {f['name']}" for f in [*frames, *error["frames"][-1:]]
            ]
            out.append(f"  {error['exc_type']}: {error['exc_value']}")
    return f"--- {path} ---\n" + "\n".join(out[-lines:])


class Airflow:
    """The standalone's REST API, and what it writes to disk."""

    def __init__(self, home: Path, port: int, process: subprocess.Popen, log: Path):
        import httpx

        self.home, self.process, self.log = home, process, log
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {self.process.returncode}\n{tail(self.log)}")

    def login(self) -> None:
        response = self.http.get("/auth/token")  # all-admins mode: a token without credentials
        response.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def get(self, path: str, **params) -> dict:
        response = self.http.get(f"/api/v2{path}", params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        response = self.http.request(method, f"/api/v2{path}", json=body)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def runs(self) -> list[dict]:
        return self.get(f"/dags/{DAG_ID}/dagRuns", order_by="run_after")["dag_runs"]

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances")["task_instances"]

    def task_log_path(self, run_id: str, task_id: str, try_number: int) -> Path:
        return (
            self.home
            / "logs"
            / f"dag_id={DAG_ID}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / f"attempt={try_number}.log"
        )

    def wait_for_run(self, run_id: str) -> list[dict]:
        """Wait until the run ends; fail at once, with the task's log, when a task fails or
        would be retried (the pipeline is deterministic: a retry means something is wrong)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            self.alive()
            state = self.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")["state"]
            tis = self.task_instances(run_id)
            bad = [
                ti
                for ti in tis
                if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti["try_number"] > 0
            ]
            if bad or state == "failed":
                self.fail(run_id, tis, bad)
            if state == "success":
                return tis
            if time.monotonic() > deadline:
                self.fail(
                    run_id,
                    tis,
                    [ti for ti in tis if ti["state"] not in ("success", None)],
                    f"still {state} after {RUN_TIMEOUT} s",
                )
            time.sleep(3)

    def fail(self, run_id: str, tis: list[dict], culprits: list[dict], why: str = "failed") -> None:
        report = [f"DAG run {run_id} {why}. Task instances:", describe(tis), tail(self.log, 40)]
        for ti in culprits:
            report.append(task_log(self.task_log_path(run_id, ti["task_id"], max(ti["try_number"], 1))))
        pytest.fail("\n\n".join(report), pytrace=False)


def describe(tis: list[dict]) -> str:
    return "\n".join(
        f"  {ti['task_id']:<18} {ti['state']!s:<15} try {ti['try_number']}"
        f"  pid {ti.get('pid')}  {ti.get('hostname')}"
        for ti in tis
    )


def production_config(folder: Path, project: str) -> Path:
    """config/production.yaml with its ${VAR}s kept (the Airflow processes fill them in from
    their environment, as in docker-compose.yml), its own Feast project (its own keys in Redis)
    and fewer boosting rounds, to keep the test quick."""
    raw = yaml.safe_load((REPO / "config" / "production.yaml").read_text())
    raw["feature_store"]["project"] = project
    raw.setdefault("model", {})["num_boost_round"] = 300
    path = folder / "production.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def month_under_test() -> pd.Period:
    """The latest complete month, M of the run the scheduler creates once the DAG is unpaused.

    Near the end of a month, wait for the next one to begin: a month boundary passing mid-test
    would make the scheduler create a second run (for a month without data) behind the first.
    """
    now = pd.Timestamp.now(tz="UTC")
    end = (month_of(now) + 1).to_timestamp().tz_localize("UTC")
    if end - now < pd.Timedelta(minutes=20):
        print(f"The month ends at {end:%Y-%m-%d %H:%M} UTC: waiting for it to begin the test")
        time.sleep((end - now).total_seconds() + 5)
    return month_of(pd.Timestamp.now(tz="UTC")) - 1


def read_forecasts(url: str) -> pd.DataFrame:
    return query(url, "SELECT * FROM forecasts ORDER BY run_month, store_id, item_id, horizon")


@pytest.fixture(scope="module")
def production_dag(postgres_server, redis_client, tmp_path_factory) -> Iterator[SimpleNamespace]:
    from forecasting.datasets.synthetic import generate_sales, seed_source_database

    folder = tmp_path_factory.mktemp("production-dag")
    project = f"forecast_test_{secrets.token_hex(4)}"
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(temporary_database(postgres_server, prefix=f"forecast_test_{name}"))
            for name in ("airflow", "source", "predictions", "registry")
        }
        stack.callback(lambda: (keys := feast_keys(redis_client, project)) and redis_client.delete(*keys))

        # Unpausing makes the scheduler create its run for the latest complete interval
        # (catchup=False): M = last month. The sales end with M, so that scheduled run, the one
        # production makes every month, is the run under test, and the manual run re-runs M.
        # Sales ending in a fixed month (2024-12) would make the scheduled run fail for lack of
        # data: triggering first while paused only postpones it until the manual run ends
        # (max_active_runs=1), and [scheduler] use_job_schedule=False is not how production runs.
        month = month_under_test()
        sales = generate_sales(**SIZE, end_month=month, seed=7)
        seed_source_database(urls["source"], sales)

        home = folder / "airflow"
        home.mkdir()
        api_port = free_port()
        pg = sa.make_url(urls["airflow"])
        env = airflow_env(  # nothing from the caller's Airflow
            home,
            **api_server_settings(api_port),
            **fresh_api_secrets(),
            **{
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # The metadata DB through psycopg2, as in docker-compose.yml.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.set(
                    drivername="postgresql+psycopg2"
                ).render_as_string(False),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # The deployment, as docker-compose.yml gives it to every Airflow process.
                "FORECAST_CONFIG": str(production_config(folder, project)),
                "FORECAST_DATA_DIR": str(folder / "forecast-data"),
                "SOURCE_DB_URL": urls["source"],
                "FEAST_REGISTRY_URL": urls["registry"],
                "REDIS_HOST": REDIS_HOST,
                "REDIS_PORT": REDIS_PORT,
                "FEAST_REDIS_DB": str(REDIS_DB),
                "DASK_SCHEDULER": "",
                "AIRFLOW_CONN_PREDICTIONS_DB": sa.make_url(urls["predictions"])
                .set(drivername="postgresql")
                .render_as_string(False),
            },
        )
        log = folder / "standalone.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(BIN / "airflow"), "standalone"],
                env=env,
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(stop_standalone, process)
        airflow = Airflow(home, api_port, process, log)
        stack.callback(airflow.http.close)

        try:
            started = time.monotonic()
            wait_for(
                "the api-server",
                lambda: airflow.http.get("/api/v2/monitor/health").is_success,
                STARTUP_TIMEOUT,
                airflow.alive,
            )
            airflow.login()

            def parsed():
                errors = airflow.get("/importErrors")["import_errors"]
                assert not errors, f"import errors: {errors}"
                return airflow.get(f"/dags/{DAG_ID}")

            dag = wait_for(f"{DAG_ID} parsed", parsed, PARSE_TIMEOUT, airflow.alive)
            assert dag["is_paused"], "the DAG should start paused (DAGS_ARE_PAUSED_AT_CREATION)"
            parsed_at = time.monotonic()

            # 1. Unpaused, the scheduler creates and runs its run for month M.
            airflow.send("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
            scheduled = wait_for(
                "the scheduled run",
                lambda: [r for r in airflow.runs() if r["run_type"] == "scheduled"],
                120,
                airflow.alive,
            )
            assert len(scheduled) == 1, scheduled
            scheduled = scheduled[0]
            assert month_of(scheduled["data_interval_start"]) == month, scheduled
            first_tis = airflow.wait_for_run(scheduled["dag_run_id"])
            first = read_forecasts(urls["predictions"])
            first_done = time.monotonic()

            # 2. The same month again, by hand: no logical date, the month as a param.
            manual = airflow.send(
                "POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"month": str(month)}}
            )
            second_tis = airflow.wait_for_run(manual["dag_run_id"])
            second = read_forecasts(urls["predictions"])
            runs = airflow.runs()
        except Exception:  # a failed run has reported already (pytest.fail is no Exception)
            print(tail(log, 80))
            raise
        print(
            f"\nAirflow up and {DAG_ID} parsed in {parsed_at - started:.0f} s, scheduled run "
            f"{first_done - parsed_at:.0f} s, manual run {time.monotonic() - first_done:.0f} s"
        )
        for name, tis in ((scheduled["dag_run_id"], first_tis), (manual["dag_run_id"], second_tis)):
            print(f"{name}:\n{describe(tis)}")

        yield SimpleNamespace(
            month=month,
            sales=sales,
            project=project,
            urls=urls,
            folder=folder,
            env=env,
            scheduled=scheduled,
            manual=manual,
            runs=runs,
            task_instances={scheduled["dag_run_id"]: first_tis, manual["dag_run_id"]: second_tis},
            first=first,
            second=second,
            log=log,
        )


@pytest.fixture
def config(production_dag, monkeypatch):
    """The deployment's config as the Airflow processes load it (same file, same environment)."""
    from forecasting.core.config import load_config

    for key in (
        "FORECAST_DATA_DIR",
        "SOURCE_DB_URL",
        "FEAST_REGISTRY_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "FEAST_REDIS_DB",
        "DASK_SCHEDULER",
    ):
        monkeypatch.setenv(key, production_dag.env[key])
    return load_config(production_dag.env["FORECAST_CONFIG"])


# --- the tests -----------------------------------------------------------------------------


def test_every_task_of_both_runs_succeeded_first_time_in_its_own_process(production_dag):
    run = production_dag
    assert [(r["run_type"], r["state"]) for r in run.runs] == [
        ("scheduled", "success"),
        ("manual", "success"),
    ]
    assert run.manual["conf"] == {"month": str(run.month)} and run.manual["logical_date"] is None
    for run_id, tis in run.task_instances.items():
        assert {ti["task_id"] for ti in tis} == TASKS, run_id
        assert all(ti["state"] == "success" and ti["try_number"] == 1 for ti in tis), describe(tis)
        # Run by the LocalExecutor in task processes of their own, not in this process (dag.test).
        pids = [ti["pid"] for ti in tis]
        assert None not in pids and os.getpid() not in pids and len(set(pids)) == len(TASKS), describe(tis)


def test_the_metadata_db_is_postgres_and_the_scheduler_ran_the_tasks_with_the_local_executor(production_dag):
    run = production_dag
    url = run.urls["airflow"]
    assert sa.make_url(url).get_backend_name() == "postgresql"
    runs = query(url, "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :d ORDER BY id", d=DAG_ID)
    assert runs.values.tolist() == [
        [run.scheduled["dag_run_id"], "scheduled", "success"],
        [run.manual["dag_run_id"], "manual", "success"],
    ]
    tis = query(
        url,
        """SELECT ti.task_id, ti.state, ti.try_number, job.job_type
                        FROM task_instance ti LEFT JOIN job ON job.id = ti.queued_by_job_id
                        WHERE ti.dag_id = :d""",
        d=DAG_ID,
    )
    assert len(tis) == 2 * len(TASKS) and set(tis["state"]) == {"success"}
    assert set(tis["job_type"]) == {"SchedulerJob"}  # queued by the scheduler (dag.test has no job)
    log = run.log.read_text(errors="replace")
    assert "Loaded executor: :LocalExecutor:" in log
    # Task processes report to the api-server's Execution API, as production workers do.
    assert "path=/execution/task-instances/" in log


def test_predictions_in_postgres_one_per_active_entity_and_horizon(production_dag, config):
    run = production_dag
    forecasts = run.first
    assert (pd.to_datetime(forecasts["run_month"]).dt.to_period("M") == run.month).all()
    active = run.sales[pd.to_datetime(run.sales["month"]).dt.to_period("M") == run.month]
    expected = set(zip(active["store_id"], active["item_id"], strict=True))
    assert len(forecasts) == len(expected) * config.horizon
    for h in range(1, config.horizon + 1):
        rows = forecasts[forecasts["horizon"] == h]
        assert set(zip(rows["store_id"], rows["item_id"], strict=True)) == expected, h
        assert (pd.to_datetime(rows["forecast_month"]).dt.to_period("M") == run.month + h).all(), h
    assert (forecasts["prediction"] >= 0).all() and forecasts["prediction"].gt(0).mean() > 0.9
    assert forecasts["run_id"].unique().tolist() == [run.scheduled["dag_run_id"]]
    runs = query(run.urls["predictions"], "SELECT * FROM forecasts_runs")
    assert runs["run_month"].tolist() == [month_start(run.month).date()]
    assert runs["run_id"].tolist() == [run.manual["dag_run_id"]]  # the re-run replaced it
    assert runs["forecasts"].tolist() == [len(forecasts)]


def test_rerunning_the_month_by_hand_leaves_identical_predictions(production_dag):
    run = production_dag
    stable = [c for c in run.first.columns if c not in ("run_id", "created_at")]
    pd.testing.assert_frame_equal(run.first[stable], run.second[stable])
    assert run.second["run_id"].unique().tolist() == [run.manual["dag_run_id"]]
    assert run.second["created_at"].min() > run.first["created_at"].max()


def test_feast_registry_in_postgres_lists_the_feature_view(production_dag, config):
    from forecasting.features import store

    run = production_dag
    views = query(
        run.urls["registry"],
        "SELECT feature_view_name FROM feature_views WHERE project_id = :p",
        p=run.project,
    )
    assert views["feature_view_name"].tolist() == [store.FEATURE_VIEW]
    services = query(
        run.urls["registry"],
        "SELECT feature_service_name FROM feature_services WHERE project_id = :p",
        p=run.project,
    )
    assert services["feature_service_name"].tolist() == [store.FEATURE_SERVICE]
    assert [v.name for v in store.feature_store(config).list_feature_views()] == [store.FEATURE_VIEW]


def test_online_features_in_redis_equal_the_offline_features_of_the_month(
    production_dag, config, redis_client
):
    from forecasting.core import paths
    from forecasting.features import store
    from forecasting.features.catalogue import feature_names

    run = production_dag
    offline = pd.read_parquet(paths.feature_table(config) / f"{run.month}.parquet")
    online = store.online_features(config, offline[KEYS])
    offline[KEYS] = offline[KEYS].astype(str)
    online[KEYS] = online[KEYS].astype(str)
    merged = offline.merge(online, on=KEYS, suffixes=("_offline", "_online"), validate="one_to_one")
    assert len(merged) == len(offline) > 0
    for name in feature_names(config):
        a, b = merged[f"{name}_offline"], merged[f"{name}_online"]
        if pd.api.types.is_numeric_dtype(a):
            assert np.allclose(a.astype(float), b.astype(float), equal_nan=True), name
        else:
            assert (a.astype(str) == b.astype(str)).all(), name
    assert len(feast_keys(redis_client, run.project)) == len(offline)
