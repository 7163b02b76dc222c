"""Run monthly_forecast for one month on this machine as a real Airflow run, then print its summary.

    python -m forecasting.orchestration.localrun [YYYY-MM]        # default: the latest complete month (UTC)

``make run`` and ``make month`` call this. The run is made the way the UI's Trigger button makes
one: a manual run with the month as its ``month`` param and no logical date, so it never takes
the data interval (the slot) of a run the scheduler makes itself, and unpausing the DAG later
lets the scheduler run the latest complete month as usual.

monthly_forecast stays paused: a scheduler queues no task of a paused DAG, and unpausing it let
``make ui``'s scheduler start its own scheduled run of the latest month at once. So this process
schedules its run's tasks itself and hands them to a LocalExecutor (``drive``), each task in its
own supervised process, its log where the UI reads it.

forecast_monitoring and forecast_scenarios are unpaused (they have no schedule but the
predictions Asset): the publish's Asset event starts them as in production, so the month is
scored, and the later published months whose forecasts it changed re-scored, whichever way it
was run. The summary prints the realised accuracy; scenarios run when the config has
``plans.scenarios``.

If no scheduler is running for this AIRFLOW_HOME, one is started for the length of the run,
with an api-server (the Execution API the tasks report to), and stopped afterwards. If one is
running (``make ui``), the run is triggered through its api-server.
The exit status is 0 when the run published, 1 when it failed (the summary says where and why).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from forecasting.core.months import month_of
from forecasting.core.names import ASSET_DAGS, FORECAST_DAG, SCENARIOS_DAG

STARTUP_TIMEOUT = 300  # a fresh api-server and scheduler on a busy 2-core machine
RUN_TIMEOUT = 4 * 3600
POLL_SECONDS = 2.0


def latest_complete_month(now: datetime | None = None) -> str:
    return str(pd.Period(now or datetime.now(UTC), "M") - 1)


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on now (held together while chosen: never one twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def api_server_settings(port: int) -> dict[str, str]:
    """An api-server on 127.0.0.1:``port`` whose Execution API the tasks call, and the log and
    health servers on free ports (never another Airflow's running beside it)."""
    worker_logs, trigger_logs, health = free_ports(3)
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health),
    }


def fresh_api_secrets() -> dict[str, str]:
    """New keys for the api-server to sign the tasks' tokens with; its scheduler must share them."""
    return {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(48),
    }


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def scheduler_running() -> bool:
    """Whether a scheduler of this AIRFLOW_HOME's metadata DB is alive on this machine."""
    check = subprocess.run(
        ["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"],
        capture_output=True,
        text=True,
    )
    return check.returncode == 0


class Api:
    """The api-server's REST API, with the token the simple auth manager hands out locally."""

    def __init__(self, base_url: str):
        import httpx

        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=30)

    def wait_until_up(self, timeout: float, alive: Callable[[], None]) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                if self.http.get("/api/v2/monitor/health").is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Airflow's api-server at {self.http.base_url} did not start in {timeout} s"
                )
            time.sleep(1)
        response = self.http.get("/auth/token")  # all-admins mode (the Makefile's local setting)
        response.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def get(self, path: str, **params: Any) -> dict:
        response = self.http.get(f"/api/v2{path}", params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        response = self.http.request(method, f"/api/v2{path}", json=body)
        if not response.is_success:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def wait_for_dag(self, timeout: float, alive: Callable[[], None], dag_id: str = FORECAST_DAG) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                return self.get(f"/dags/{dag_id}")
            except httpx.HTTPStatusError as err:
                if err.response.status_code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1)


@contextmanager
def local_airflow(log_folder: Path) -> Iterator[Api]:
    """An api-server and a scheduler (LocalExecutor) for this AIRFLOW_HOME, stopped (their
    process groups only) when the block ends. The scheduler starts the runs the Asset events call
    for (monitoring, scenarios), as in production; monthly_forecast stays paused (``run`` schedules
    its run from this process), so it makes no scheduled run of it."""
    port = free_port()
    settings = {
        # The api-server signs the tasks' tokens; all share the keys (the environment's, if set).
        **fresh_api_secrets(),
        **os.environ,
        **api_server_settings(port),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
    saved = dict(os.environ)
    # This process runs tasks too (run() of a paused DAG): the same keys, the same api-server.
    os.environ.update(settings)
    env = dict(os.environ)
    log_folder.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    with ExitStack() as stack:
        stack.callback(os.environ.update, saved)
        stack.callback(os.environ.clear)
        stack.callback(stop, processes)
        for command in (["api-server", "--port", str(port)], ["scheduler"], ["dags", "reserialize"]):
            log = stack.enter_context(open(log_folder / f"{command[0]}.log", "wb"))
            processes.append(
                subprocess.Popen(
                    ["airflow", *command],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        api, scheduler, reserialize = processes

        def alive() -> None:
            for process, name in ((api, "api-server"), (scheduler, "scheduler")):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited with {process.returncode}; see {log_folder / f'{name}.log'}"
                    )

        client = Api(f"http://127.0.0.1:{port}")
        stack.callback(client.http.close)
        client.wait_until_up(STARTUP_TIMEOUT, alive)
        if reserialize.wait(STARTUP_TIMEOUT) != 0:  # the DAG file, parsed into the metadata DB
            raise RuntimeError(f"airflow dags reserialize failed; see {log_folder / 'dags.log'}")
        yield client


def stop(processes: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM to each process group this module started, SIGKILL to what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.3)


def run(api: Api, month: str, out=sys.stdout, dag_id: str = FORECAST_DAG) -> tuple[str, str]:
    """Trigger the month as a manual run of ``dag_id`` and follow it; returns (run_id, final state).

    A paused DAG stays paused: a scheduler queues no task of a paused DAG, and unpausing it lets
    a scheduler that makes scheduled runs (``make ui``'s) start one of its own at once. So this
    process schedules the run's tasks itself (``drive``), with the LocalExecutor, the way
    ``dag.test(use_executor=True)`` does; the scheduler leaves the run alone (a paused DAG's).
    """
    dag = api.wait_for_dag(STARTUP_TIMEOUT, lambda: None, dag_id)
    created = api.send("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {"month": month}})
    run_id = created["dag_run_id"]
    print(f"Run {run_id} of {dag_id} (month {month}):", file=out, flush=True)
    if not dag["is_paused"]:  # the running scheduler runs it
        return run_id, follow(api, run_id, out, dag_id)
    driver = Driver(dag_id, run_id)
    driver.start()
    try:
        return run_id, follow(api, run_id, out, dag_id, driver.check)
    finally:
        driver.stop()


class Driver(threading.Thread):
    """Schedules one run's tasks from this process and sends them to a LocalExecutor of its own
    (its processes run each task as a scheduler's do: supervised, logging where the UI reads)."""

    def __init__(self, dag_id: str, run_id: str):
        super().__init__(name=f"drive {dag_id} {run_id}", daemon=True)
        self.dag_id, self.run_id = dag_id, run_id
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(
                f"scheduling {self.dag_id} {self.run_id} failed: {self.error!r}"
            ) from self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)

    def run(self) -> None:
        try:
            drive(self.dag_id, self.run_id, self.stopping)
        except BaseException as err:  # reported to the thread that follows the run
            self.error = err


def drive(dag_id: str, run_id: str, stopping: threading.Event) -> None:
    """dag.test(use_executor=True)'s loop over an existing run: mark the run running, then
    until it ends, queue each task instance that may run and hand the executor's events back."""
    from airflow.executors import workloads
    from airflow.executors.base_executor import ExecutorLoader
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    from forecasting.orchestration.warm_up import import_task_modules, preload_switched_on

    executor = ExecutorLoader.get_default_executor()
    if preload_switched_on():  # as forecast_task_preload does in a scheduler, before the forks
        import_task_modules()
    executor.start()
    bag = DBDagBag()
    try:
        with create_session() as session:
            while not stopping.is_set():
                session.expire_all()
                dag_run = session.scalars(
                    select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                ).one()
                if dag_run.state == DagRunState.QUEUED:  # a scheduler starts only an unpaused DAG's
                    dag_run.state = DagRunState.RUNNING
                    session.commit()
                if dag_run.state != DagRunState.RUNNING:
                    return
                dag_run.dag = bag.get_dag_for_run(dag_run=dag_run, session=session)
                schedulable, _ = dag_run.update_state(session=session)
                for ti in schedulable:
                    if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                        ti.try_number += 1
                    ti.state = TaskInstanceState.SCHEDULED
                session.commit()
                for ti in dag_run.get_task_instances(state=[TaskInstanceState.SCHEDULED], session=session):
                    if executor.has_task(ti):
                        continue
                    executor.queue_workload(
                        workloads.ExecuteTask.make(ti, generator=executor.jwt_generator), session=session
                    )
                    ti.state = TaskInstanceState.QUEUED
                    session.commit()
                executor.heartbeat()
                session.expire_all()
                SchedulerJobRunner.process_executor_events(
                    executor=executor, job_id=None, scheduler_dag_bag=bag, session=session
                )
                session.commit()
                stopping.wait(1)
    finally:
        executor.end()


def follow_asset_runs(api: Api, run_id: str, out=sys.stdout, scenarios: bool = False) -> str:
    """The runs of the Asset's DAGs that ``run_id``'s publish started (forecast_monitoring's
    scores the month and re-scores the later published months whose forecasts it changed, as in
    production), followed to their end; their final state (failed if any failed). A paused one
    runs nothing: it is named, and the state is failed."""
    state = "success"
    for dag_id in ASSET_DAGS:
        if dag_id == SCENARIOS_DAG and not scenarios:
            continue
        if api.get(f"/dags/{dag_id}")["is_paused"]:
            print(f"{dag_id} is paused: it did not follow the publish (unpause it)", file=out, flush=True)
            state = "failed"
            continue
        started = asset_run_of(api, dag_id, run_id)
        print(f"Run {started} of {dag_id} (started by the publish's Asset event):", file=out, flush=True)
        if follow(api, started, out, dag_id) != "success":
            state = "failed"
    return state


def asset_run_of(api: Api, dag_id: str, source_run_id: str, timeout: float = STARTUP_TIMEOUT) -> str:
    """The id of the run of ``dag_id`` that consumed an Asset event of ``source_run_id``."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        runs = api.get(f"/dags/{dag_id}/dagRuns", run_type="asset_triggered", order_by="-run_after", limit=20)
        for candidate in runs["dag_runs"]:
            path = f"/dags/{dag_id}/dagRuns/{quote(candidate['dag_run_id'], safe='')}/upstreamAssetEvents"
            try:
                events = api.get(path)["asset_events"]
            except httpx.HTTPStatusError as err:  # a run just made may answer 500 until it is whole
                if err.response.status_code < 500 or time.monotonic() > deadline:
                    raise
                continue
            if any(e.get("source_run_id") == source_run_id for e in events):
                return candidate["dag_run_id"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run of {dag_id} followed the publish of {source_run_id} in {timeout} s")
        time.sleep(POLL_SECONDS)


def run_and_monitor(api: Api, month: str, out=sys.stdout, scenarios: bool = False) -> tuple[str, str]:
    """The month's forecast run and, once it published, the runs of forecast_monitoring and
    (``scenarios``: the config has ``plans.scenarios``) forecast_scenarios its Asset event
    started; returns the forecast run's id and the final state of them all (failed if any failed)."""
    unpause_asset_dags(api)
    run_id, state = run(api, month, out)
    if state != "success":
        return run_id, state
    return run_id, follow_asset_runs(api, run_id, out, scenarios)


def unpause_asset_dags(api: Api) -> None:
    """forecast_monitoring and forecast_scenarios follow every publish (they have no schedule of
    their own): unpaused, so a scheduler starts them on the Asset event whoever ran the month."""
    for dag_id in ASSET_DAGS:
        if api.wait_for_dag(STARTUP_TIMEOUT, lambda: None, dag_id)["is_paused"]:
            api.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})


def scenarios_configured() -> bool:
    """Whether the deployment's config has ``plans.scenarios`` (a config that cannot be read:
    no; the forecast run says what is wrong with it)."""
    from forecasting.core.config import ConfigError, load_config
    from forecasting.scenarios.read import scenarios_configured as configured

    try:
        return configured(load_config())
    except ConfigError:
        return False


def follow(
    api: Api, run_id: str, out, dag_id: str = FORECAST_DAG, alive: Callable[[], None] = lambda: None
) -> str:
    """Print each task as it ends; return the run's final state (``alive`` raises if whatever
    runs it stopped)."""
    reported: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT
    path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    while True:
        alive()
        state = api.get(path)["state"]
        for ti in sorted(
            api.get(f"{path}/taskInstances")["task_instances"], key=lambda t: t["start_date"] or "~"
        ):
            # A mapped task has one instance per index (the monitoring's months).
            name = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            if name not in reported and ti["state"] in (
                "success",
                "failed",
                "upstream_failed",
                "skipped",
            ):
                reported.add(name)
                took = f"{ti['duration']:.1f} s" if ti.get("duration") else ""
                print(f"  {name:<18} {ti['state']:<16} {took}", file=out, flush=True)
        if state in ("success", "failed"):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {RUN_TIMEOUT} s")
        time.sleep(POLL_SECONDS)


def existing_api() -> Api:
    """The api-server of the scheduler already running (make ui), as Airflow's config names it."""
    base = (
        os.environ.get("AIRFLOW__API__BASE_URL")
        or f"http://localhost:{os.environ.get('AIRFLOW__API__PORT', '8080')}"
    )
    api = Api(base)
    api.wait_until_up(30, lambda: None)
    return api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.orchestration.localrun",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("month", nargs="?", help="month M, YYYY-MM (default: the latest complete month)")
    args = parser.parse_args(argv)
    try:
        month = str(month_of(args.month)) if args.month else latest_complete_month()
    except ValueError as err:  # MonthOutOfRange (2999-01) too, as the DAG's param refuses it
        parser.error(str(err))
    if args.month and month != args.month:
        parser.error(f"month must be YYYY-MM, got {args.month!r}")
    config = os.environ.get("FORECAST_CONFIG", "config/demo.yaml")
    print(f"Running {FORECAST_DAG} for {month} (config {config}, AIRFLOW_HOME {airflow_home()})", flush=True)

    started = time.monotonic()
    scenarios = scenarios_configured()
    if scheduler_running():
        print("A scheduler is running for this AIRFLOW_HOME: triggering the run through it.", flush=True)
        run_id, state = run_and_monitor(existing_api(), month, scenarios=scenarios)
    else:
        logs = airflow_home() / "logs" / "local-runs" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{month}"
        print(f"Starting an api-server and a scheduler for the run (their logs: {logs})", flush=True)
        with local_airflow(logs) as api:
            # This scheduler would make an unpaused monthly_forecast's scheduled runs: paused
            # while it runs, unpaused again once it stopped (killed meanwhile: left paused).
            unpause_after = not api.wait_for_dag(STARTUP_TIMEOUT, lambda: None)["is_paused"]
            if unpause_after:
                api.send("PATCH", f"/dags/{FORECAST_DAG}", {"is_paused": True})
            run_id, state = run_and_monitor(api, month, scenarios=scenarios)
        if unpause_after:
            subprocess.run(["airflow", "dags", "unpause", FORECAST_DAG], capture_output=True, check=False)
    print(
        f"{state} in {time.monotonic() - started:.0f} s; task logs: `make ui`, or {airflow_home() / 'logs'}\n"
    )

    from forecasting.orchestration.summary import RunNotFound
    from forecasting.orchestration.summary import main as summary

    try:
        status = summary([month, "--run-id", run_id])
    except RunNotFound as missing:  # it failed before extract began an attempt
        print(missing.code)
        print_failed_task_logs(run_id)
        return 1
    # Where to look next (ASCII: a terminal may not print an arrow).
    print(
        "  In Airflow: `make ui`, then Browse > Forecasts "
        "(the forecast by level, what changed, each entity's chart, the scenarios)"
    )
    return 0 if state == "success" and status == 0 else 1


def print_failed_task_logs(run_id: str, lines: int = 25) -> None:
    """The end of each failed task's log (Airflow writes JSON lines), as plain text."""
    import json

    folder = airflow_home() / "logs" / f"dag_id={FORECAST_DAG}" / f"run_id={run_id}"
    for log in sorted(folder.glob("task_id=*/attempt=*.log")):
        events = []
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                events.append(line)
                continue
            events.append(f"{record.get('level', ''):<7} {record.get('event', '')}")
            events += [f"  {e['exc_type']}: {e['exc_value']}" for e in record.get("error_detail") or []]
        if any(e.startswith("error") for e in events):
            print(f"--- {log} ---", *events[-lines:], sep="\n")


if __name__ == "__main__":
    sys.exit(main())
