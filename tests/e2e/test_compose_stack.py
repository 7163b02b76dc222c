"""The production stack as containers: docker-compose.yml run end to end, no mocks.

The project's image is built from the real Dockerfile (on a Debian bookworm base made here with
debootstrap, since no registry image can be pulled: tests/helpers/docker_stack.py) and every
Airflow service of docker-compose.yml (airflow-init, api-server, scheduler, dag-processor,
triggerer, Celery worker) runs from it with its command, environment, volumes and start order,
under a Docker daemon this test starts and stops. deploy/compose.hostnet.yml, layered on top,
puts the containers on the host's network (no bridge networks here), moves Airflow's ports off
the machine's own, and lets the machine's PostgreSQL and Redis stand in for the postgres and
redis services (databases, roles and Redis dbs of this run's own; deploy/postgres/init.sh
prepares them as the postgres image would).

Through the REST API, as a user: the latest complete month M is triggered and published to
PostgreSQL, the publish's Asset event runs forecast_monitoring, the analyst role reads and may
not write, the Forecasts view answers through the api-server, a three-month `airflow backfill
create` (in the scheduler's container) adds M-3..M-1 with nothing duplicated or lost, and
`docker compose down` keeps the named volumes. Each phase's time is printed and written to
$FORECAST_DOCKER_ROOT/stack-times.json; docs/deploy.md has the figures.

Needs root (for dockerd and debootstrap; scripts/ensure_docker.sh installs docker.io,
debootstrap and Docker Compose if missing) and the test PostgreSQL and Redis of
test_production.py. Skipped, saying why, only where the platform cannot run them, never in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from types import SimpleNamespace
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.months import month_of, month_start
from forecasting.core.names import FORECAST_DAG, MONITORING_DAG
from forecasting.orchestration.localrun import free_ports
from tests.helpers import docker_stack
from tests.helpers.paths import REPO
from tests.helpers.servers import ADMIN_URL, REDIS_HOST, REDIS_PORT, query

pytestmark = pytest.mark.slow  # builds images and runs the whole stack

SIZE = {"stores": 5, "items": 20, "months": 48}
HORIZON = 3  # config/production.yaml's horizon
AIRFLOW_SERVICES = [
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]
NAMED_VOLUMES = ["airflow-logs", "airflow-auth", "forecast-data"]
BACKFILL_MONTHS = 3
# Redis databases of this test (FORECAST_TEST_REDIS_DB, 15, is test_production.py's).
BROKER_DB, FEAST_DB = 12, 13
# Limits, not waits, for a loaded 2-core machine.
STARTUP_TIMEOUT = 900  # migrating the metadata DB, then four Airflow processes and a worker
PARSE_TIMEOUT = 600
RUN_TIMEOUT = 1800  # one month: eight tasks on one Celery worker (over 15 min at load 30 on 2 cores)
# How often a run's state is asked for: a task of this stack takes seconds, and every 10 s left
# up to 10 s idle after each of the five runs.
RUN_POLL = 3
COMPOSE_FILES = ["-f", "docker-compose.yml", "-f", "deploy/compose.hostnet.yml"]


def wait_for(what: str, check: Callable[[], object], timeout: float, interval: float = 3) -> object:
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while True:
        try:
            found = check()
        except Exception as err:  # not up yet, or a failed assertion: reported at the deadline
            found, error = None, err
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s (last error: {error!r})")
        time.sleep(interval)


class Stack:
    """One compose project: its CLI, its REST API and its databases."""

    def __init__(self, project: str, env: dict[str, str], api_port: int, urls: dict[str, str]):
        import httpx

        self.project, self.env, self.urls = project, env, urls
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60)
        self.times: dict[str, float] = {}

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["docker", "compose", "--project-name", self.project, *COMPOSE_FILES, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"docker compose {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail=60", check=False).stdout

    def login(self, user: str, password: str) -> None:
        response = self.http.post("/auth/token", json={"username": user, "password": password})
        assert response.status_code == 201, response.text
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def get(self, path: str, **params) -> dict:
        response = self.http.get(f"/api/v2{path}", params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        response = self.http.request(method, f"/api/v2{path}", json=body)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def poll(self, path: str) -> dict:
        """GET, waiting out an api-server too busy to answer in time (one worker, a loaded machine)."""
        import httpx

        for _ in range(10):
            try:
                return self.get(path)
            except httpx.TransportError:
                time.sleep(10)
        return self.get(path)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after")["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str) -> dict:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        deadline = time.monotonic() + RUN_TIMEOUT
        while (run := self.poll(path))["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                break
            time.sleep(RUN_POLL)
        if run["state"] != "success":
            tis = self.get(f"{path}/taskInstances")["task_instances"]
            states = "\n".join(f"  {ti['task_id']:<18} {ti['state']} try {ti['try_number']}" for ti in tis)
            pytest.fail(f"{dag_id} {run_id}: {run['state']}\n{states}\n{self.logs()}", pytrace=False)
        return run

    def timed(self, phase: str, started: float) -> None:
        self.times[phase] = round(time.monotonic() - started, 1)


# --- the servers' databases of this run ----------------------------------------------------


def prepare_postgres(stack: ExitStack, run: str) -> dict[str, str]:
    """What the postgres service's first start makes, on the machine's server: Airflow's
    metadata database and its owner, then deploy/postgres/init.sh (the predictions and Feast
    registry databases, the forecast and analyst roles). Everything is dropped afterwards."""
    names = {
        "POSTGRES_USER": f"{run}_airflow",
        "AIRFLOW_DB": f"{run}_airflow",
        "FORECAST_DB_USER": f"{run}_forecast",
        "ANALYST_ROLE": f"{run}_analyst",
        "HOSTNET_PREDICTIONS_DB": f"{run}_predictions",
        "HOSTNET_REGISTRY_DB": f"{run}_feast_registry",
    }
    passwords = {key: secrets.token_hex(12) for key in ("POSTGRES_PASSWORD", "FORECAST_DB_PASSWORD")}
    passwords["ANALYST_PASSWORD"] = secrets.token_hex(12)
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    stack.callback(admin.dispose)

    def drop() -> None:
        with admin.connect() as conn:
            for key in ("AIRFLOW_DB", "HOSTNET_PREDICTIONS_DB", "HOSTNET_REGISTRY_DB"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{names[key]}" WITH (FORCE)')
            for key in ("ANALYST_ROLE", "FORECAST_DB_USER", "POSTGRES_USER"):
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{names[key]}"')

    stack.callback(drop)
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"CREATE ROLE \"{names['POSTGRES_USER']}\" LOGIN PASSWORD '{passwords['POSTGRES_PASSWORD']}'"
        )
        conn.exec_driver_sql(f'CREATE DATABASE "{names["AIRFLOW_DB"]}" OWNER "{names["POSTGRES_USER"]}"')
    server = sa.make_url(ADMIN_URL)
    subprocess.run(
        ["bash", str(REPO / "deploy" / "postgres" / "init.sh")],
        env={
            **os.environ,
            "PGHOST": server.host or "127.0.0.1",
            "PGPORT": str(server.port or 5432),
            "POSTGRES_USER": server.username or "postgres",  # the server's superuser runs it
            "POSTGRES_DB": server.database or "postgres",
            "FORECAST_DB_USER": names["FORECAST_DB_USER"],
            "FORECAST_DB_PASSWORD": passwords["FORECAST_DB_PASSWORD"],
            "ANALYST_ROLE": names["ANALYST_ROLE"],
            "ANALYST_PASSWORD": passwords["ANALYST_PASSWORD"],
            "PREDICTIONS_DB": names["HOSTNET_PREDICTIONS_DB"],
            "FEAST_REGISTRY_DB": names["HOSTNET_REGISTRY_DB"],
            "PRIVATE_DBS": names["AIRFLOW_DB"],  # a shared server: close only this run's
        },
        check=True,
        capture_output=True,
    )
    return {**names, **passwords}


def server_url(settings: dict[str, str], user: str, password: str, database: str) -> str:
    server = sa.make_url(ADMIN_URL)
    return sa.URL.create(
        "postgresql+psycopg",
        username=settings[user],
        password=settings[password],
        host=server.host or "127.0.0.1",
        port=server.port or 5432,
        database=settings[database],
    ).render_as_string(hide_password=False)


def flush_redis_dbs() -> None:
    import redis

    for db in (BROKER_DB, FEAST_DB):
        client = redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT), db=db)
        client.flushdb()
        client.close()


# --- the stack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_platform() -> None:
    """docker.io, debootstrap and Docker Compose (installed if missing), or a skip saying why
    the platform cannot have them; in CI that is a failure, never a skip."""
    if os.geteuid() != 0:
        reason = "the compose-stack test needs root (dockerd, debootstrap)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        docker_stack.ensure_docker()
    except docker_stack.DockerUnavailable as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))


def compose_env(settings: dict[str, str], image: str, base: str, ports: list[int]) -> dict[str, str]:
    """The variables docker-compose.yml and deploy/compose.hostnet.yml read (what .env holds)."""
    api, health, worker_logs, trigger_logs = ports
    server = sa.make_url(ADMIN_URL)
    return {
        **os.environ,
        **docker_stack.DOCKER_ENV,
        **{k: v for k, v in settings.items()},
        "FORECAST_IMAGE": image,
        "HOSTNET_BASE_IMAGE": base,
        "HOSTNET_API_PORT": str(api),
        "HOSTNET_HEALTH_PORT": str(health),
        "HOSTNET_WORKER_LOG_PORT": str(worker_logs),
        "HOSTNET_TRIGGER_LOG_PORT": str(trigger_logs),
        "HOSTNET_POSTGRES_PORT": str(server.port or 5432),
        "HOSTNET_REDIS_PORT": REDIS_PORT,
        "HOSTNET_BROKER_DB": str(BROKER_DB),
        "HOSTNET_FEAST_DB": str(FEAST_DB),
        "SOURCE_DB_URL": server_url(
            settings, "FORECAST_DB_USER", "FORECAST_DB_PASSWORD", "HOSTNET_PREDICTIONS_DB"
        ).replace(f"@{server.host or '127.0.0.1'}:", "@postgres:"),
        "AIRFLOW_ADMIN_USER": "admin",
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_hex(12),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(32),
    }


def build_images(times: dict[str, float]) -> tuple[str, str]:
    started = time.monotonic()
    base, built = docker_stack.base_image()
    times["base image" + (" (built)" if built else " (cached)")] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    image, built = docker_stack.project_image(base)
    times["project image" + (" (built)" if built else " (cached)")] = round(time.monotonic() - started, 1)
    return base, image


@pytest.fixture(scope="module")
def compose_stack(docker_platform, postgres_server, redis_client) -> Iterator[SimpleNamespace]:
    from forecasting.datasets.synthetic import generate_sales, seed_source_database

    run = f"forecast_stack_{secrets.token_hex(4)}"
    month = month_of(pd.Timestamp.now(tz="UTC")) - 1  # the latest complete month
    times: dict[str, float] = {}
    with ExitStack() as stack:
        started = time.monotonic()
        stack.enter_context(docker_stack.docker_daemon())
        times["dockerd start"] = round(time.monotonic() - started, 1)
        base, image = build_images(times)

        started = time.monotonic()
        settings = prepare_postgres(stack, run)
        urls = {
            "predictions": server_url(
                settings, "FORECAST_DB_USER", "FORECAST_DB_PASSWORD", "HOSTNET_PREDICTIONS_DB"
            ),
            "analyst": server_url(settings, "ANALYST_ROLE", "ANALYST_PASSWORD", "HOSTNET_PREDICTIONS_DB"),
        }
        flush_redis_dbs()
        stack.callback(flush_redis_dbs)
        sales = generate_sales(**SIZE, end_month=month, seed=7)
        seed_source_database(urls["predictions"], sales)
        times["databases and sales"] = round(time.monotonic() - started, 1)

        env = compose_env(settings, image, base, free_ports(4))
        s = Stack(run, env, int(env["HOSTNET_API_PORT"]), urls)
        s.times = times
        stack.callback(s.http.close)
        stack.callback(s.compose, "down", "--volumes", "--timeout", "30", check=False)
        try:
            observed = exercise(s, month, sales)
        except BaseException:
            print(s.logs())
            raise
        finally:
            print(f"\ncompose stack phases (s): {json.dumps(times)}")
            (docker_stack.ROOT / "stack-times.json").write_text(json.dumps(times, indent=1) + "\n")
        yield SimpleNamespace(month=month, sales=sales, urls=urls, times=times, settings=settings, **observed)


def exercise(s: Stack, month: pd.Period, sales: pd.DataFrame) -> dict[str, object]:
    """Every phase against the running stack, each timed; what was seen, for the tests."""
    observed: dict[str, object] = {}
    observed["services"] = start(s)
    observed["run"], observed["first"] = run_month(s, month)
    observed["monitoring"] = monitoring_run(s)
    observed.update(as_users(s))
    observed["backfill"], observed["after_backfill"] = backfill(s, month)
    observed["volumes"] = down(s)
    return observed


def start(s: Stack) -> dict[str, dict]:
    """`docker compose up -d` (airflow-init first, the worker once the api-server is healthy),
    then the REST API, logged in as the admin, with the DAGs parsed."""
    started = time.monotonic()
    s.compose("up", "--detach", "--no-build", timeout=STARTUP_TIMEOUT)
    wait_for("the api-server", lambda: s.http.get("/api/v2/monitor/health").is_success, STARTUP_TIMEOUT)
    s.timed("compose up", started)
    s.login(s.env["AIRFLOW_ADMIN_USER"], s.env["AIRFLOW_ADMIN_PASSWORD"])
    started = time.monotonic()

    def parsed() -> bool:
        errors = s.get("/importErrors")["import_errors"]
        assert not errors, f"import errors: {errors}"
        return all(s.http.get(f"/api/v2/dags/{dag}").is_success for dag in (FORECAST_DAG, MONITORING_DAG))

    wait_for("the DAGs parsed", parsed, PARSE_TIMEOUT)
    s.timed("DAGs parsed", started)
    listed = s.compose("ps", "--all", "--format", "json").stdout
    # One JSON object a line (older Compose v2 releases: one array).
    parsed_lines = [json.loads(line) for line in listed.splitlines() if line.strip()]
    containers = [c for item in parsed_lines for c in (item if isinstance(item, list) else [item])]
    return {c["Service"]: c for c in containers}


def run_month(s: Stack, month: pd.Period) -> tuple[dict, pd.DataFrame]:
    """Trigger monthly_forecast for M as a user re-running a month does (the month param; a manual
    run's data interval is the month before its logical date, so M's start would run M-1) and
    unpause it, with forecast_monitoring unpaused to follow the publish; wait for the run."""
    started = time.monotonic()
    s.send("PATCH", f"/dags/{MONITORING_DAG}", {"is_paused": False})
    logical_date = month_start(month + 1).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"logical_date": logical_date, "conf": {"month": str(month)}}
    triggered = s.send("POST", f"/dags/{FORECAST_DAG}/dagRuns", body)
    s.send("PATCH", f"/dags/{FORECAST_DAG}", {"is_paused": False})
    run = s.wait_for_run(FORECAST_DAG, triggered["dag_run_id"])
    s.timed("monthly_forecast run", started)
    return run, read_forecasts(s.urls["predictions"])


def monitoring_run(s: Stack) -> dict:
    started = time.monotonic()
    asset_runs = wait_for(
        "forecast_monitoring started by the Asset event",
        lambda: [r for r in s.runs(MONITORING_DAG) if r["run_type"] == "asset_triggered"],
        300,
    )
    run = s.wait_for_run(MONITORING_DAG, asset_runs[0]["dag_run_id"])
    s.timed("forecast_monitoring run", started)
    return run


def as_users(s: Stack) -> dict[str, object]:
    """The analyst's SQL session, and the Forecasts view through the api-server."""
    import psycopg

    analyst = sa.create_engine(s.urls["analyst"])
    try:
        with analyst.connect() as conn:
            analyst_rows = conn.exec_driver_sql("SELECT count(*) FROM forecasts").scalar()
            try:
                conn.exec_driver_sql("DELETE FROM forecasts")
                refused = None
            except sa.exc.ProgrammingError as err:
                refused = err.orig
                conn.rollback()
    finally:
        analyst.dispose()
    overview = wait_for("the Forecasts view", lambda: s.http.get("/forecast-quality/"), 300)
    runs = s.http.get("/forecast-quality/runs")  # the engineers' page: every month's runs
    return {
        "analyst_rows": analyst_rows,
        "analyst_write_refused": isinstance(refused, psycopg.errors.InsufficientPrivilege),
        "overview": (overview.status_code, overview.text),
        "view": (runs.status_code, runs.text),
    }


def backfill(s: Stack, month: pd.Period) -> tuple[list[dict], pd.DataFrame]:
    """`airflow backfill create` for the three months before M, in the scheduler's container."""
    started = time.monotonic()
    first, last = month - BACKFILL_MONTHS, month - 1
    s.compose(
        "exec",
        "-T",
        "airflow-scheduler",
        "airflow",
        "backfill",
        "create",
        "--dag-id",
        FORECAST_DAG,
        "--from-date",
        month_start(first).strftime("%Y-%m-%d"),
        "--to-date",
        month_start(last).strftime("%Y-%m-%d"),
        timeout=300,
    )
    runs = wait_for(
        "the backfill's runs",
        lambda: [r for r in s.runs(FORECAST_DAG) if r["run_type"] == "backfill"],
        120,
    )
    assert len(runs) == BACKFILL_MONTHS, runs
    done = [s.wait_for_run(FORECAST_DAG, r["dag_run_id"]) for r in runs]
    s.timed("backfill of 3 months", started)
    return done, read_forecasts(s.urls["predictions"])


def down(s: Stack) -> dict[str, list[str]]:
    """`docker compose down`; then the project's volumes and what the forecast-data one holds."""
    started = time.monotonic()
    s.compose("down", "--timeout", "60")
    s.timed("compose down", started)
    label = f"label=com.docker.compose.project={s.project}"
    left = docker_stack.docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
    volumes = docker_stack.docker("volume", "ls", "--quiet", "--filter", label).stdout.split()
    volumes = [name.removeprefix(f"{s.project}_") for name in volumes]
    data = f"{s.project}_forecast-data"
    files = docker_stack.docker(
        "run",
        "--rm",
        "--network=host",
        f"--volume={data}:/data:ro",
        s.env["HOSTNET_BASE_IMAGE"],
        "find",
        "/data",
        "-name",
        "*.json",
    ).stdout.split()
    return {"containers": left, "volumes": volumes, "forecast_data_files": files}


def read_forecasts(url: str) -> pd.DataFrame:
    return query(url, "SELECT * FROM forecasts ORDER BY run_month, store_id, item_id, horizon")


# --- the tests -----------------------------------------------------------------------------


def entities(sales: pd.DataFrame, month: pd.Period) -> int:
    """Entities with sales in ``month``: each gets one forecast per horizon."""
    months = pd.to_datetime(sales["month"]).dt.to_period("M")
    return len(sales.loc[months == month, ["store_id", "item_id"]].drop_duplicates())


def test_every_airflow_service_ran_from_the_project_image_as_compose_starts_it(compose_stack):
    services = compose_stack.services
    assert set(AIRFLOW_SERVICES) <= set(services), sorted(services)
    for name in AIRFLOW_SERVICES:
        assert services[name]["Image"] == services["airflow-worker"]["Image"], name
        assert services[name]["Image"].startswith(f"{docker_stack.IMAGE_REPOSITORY}:test-"), name
    assert services["airflow-init"]["State"] == "exited" and services["airflow-init"]["ExitCode"] == 0
    for name in AIRFLOW_SERVICES[1:]:
        assert services[name]["State"] == "running", (name, services[name]["Status"])


def test_the_triggered_month_is_published_to_postgres_once_per_entity_and_horizon(compose_stack):
    first, month = compose_stack.first, compose_stack.month
    assert compose_stack.run["state"] == "success"
    assert set(pd.to_datetime(first["run_month"]).dt.to_period("M")) == {month}
    assert len(first) == entities(compose_stack.sales, month) * HORIZON
    assert not first.duplicated(["store_id", "item_id", "horizon"]).any()
    assert set(first["run_id"]) == {compose_stack.run["dag_run_id"]}
    assert first["prediction"].notna().all() and (first["p10"] <= first["p90"]).all()


def test_the_publish_asset_event_ran_the_monitoring_dag(compose_stack):
    run = compose_stack.monitoring
    assert run["run_type"] == "asset_triggered" and run["state"] == "success"


def test_the_analyst_role_reads_the_forecasts_and_may_not_change_them(compose_stack):
    assert compose_stack.analyst_rows == len(compose_stack.first)
    assert compose_stack.analyst_write_refused


def test_the_forecasts_view_answers_through_the_api_server(compose_stack):
    status, text = compose_stack.overview  # the planners' overview
    assert status == 200, text[:500]
    status, text = compose_stack.view  # the Runs page: the month and its run
    assert status == 200, text[:500]
    assert str(compose_stack.month) in text and compose_stack.run["dag_run_id"] in text


def test_a_three_month_backfill_adds_its_months_and_loses_or_duplicates_nothing(compose_stack):
    month, after, first = compose_stack.month, compose_stack.after_backfill, compose_stack.first
    assert [r["state"] for r in compose_stack.backfill] == ["success"] * BACKFILL_MONTHS
    months = pd.to_datetime(after["run_month"]).dt.to_period("M")
    assert sorted(set(months)) == [month - n for n in range(BACKFILL_MONTHS, -1, -1)]
    assert not after.duplicated(["run_month", "store_id", "item_id", "horizon"]).any()
    for m in set(months):
        assert (months == m).sum() == entities(compose_stack.sales, m) * HORIZON, m
    # M's forecasts are the triggered run's, untouched by the backfill of earlier months.
    kept = after[months == month].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first.reset_index(drop=True))
    runs = query(compose_stack.urls["predictions"], "SELECT run_month, run_id FROM forecasts_runs")
    assert len(runs) == BACKFILL_MONTHS + 1 and runs["run_month"].is_unique


def test_compose_down_removes_the_containers_and_keeps_the_named_volumes(compose_stack):
    volumes = compose_stack.volumes
    assert volumes["containers"] == []
    assert set(NAMED_VOLUMES) <= set(volumes["volumes"]), volumes["volumes"]
    assert volumes["forecast_data_files"], "the forecast-data volume is empty"
