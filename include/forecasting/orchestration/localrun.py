"""Run monthly_forecast for one month on this machine as a real Airflow run, then print its summary.

    python -m forecasting.orchestration.localrun [YYYY-MM]        # default: the latest complete month (UTC)

``make run`` and ``make month`` call this. The run is made the way the UI's Trigger button makes
one: a manual run with the month as its ``month`` param and no logical date, so it never takes
the data interval (the slot) of a run the scheduler makes itself, and unpausing the DAG later
lets the scheduler run the latest complete month as usual. Its tasks run under a scheduler with
the LocalExecutor, each in its own process, so their logs are in the UI like any other run's.

When the month is published, the ``forecast_monitoring`` DAG runs for it too, the same way (a
manual run with ``month``): in production the publish's Asset event starts it, but this
scheduler makes no runs of its own, and the summary prints the realised accuracy it scored.
So does ``forecast_scenarios`` when the config has ``plans.scenarios`` (the summary lists them).

If no scheduler is running for this AIRFLOW_HOME, one is started for the length of the run,
with an api-server (the Execution API the tasks report to), and stopped afterwards; it creates
no scheduled runs (``use_job_schedule=False``). If one is running (``make ui``), the run is
triggered through its api-server. A paused DAG is unpaused for the run and paused again after.
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
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from forecasting.core.names import FORECAST_DAG, MONITORING_DAG, SCENARIOS_DAG

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
    """An api-server and a scheduler (LocalExecutor, no scheduled runs) for this AIRFLOW_HOME,
    stopped (their process groups only) when the block ends."""
    port = free_port()
    env = {
        # The api-server signs the tasks' tokens; both share the keys (the environment's, if set).
        **fresh_api_secrets(),
        **os.environ,
        **api_server_settings(port),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # This scheduler runs the run it is asked for and makes none of its own.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    log_folder.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    with ExitStack() as stack:
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
    """Trigger the month as a manual run of ``dag_id`` and follow it; returns (run_id, final state)."""
    dag = api.wait_for_dag(STARTUP_TIMEOUT, lambda: None, dag_id)
    was_paused = dag["is_paused"]
    if was_paused:
        api.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    try:
        created = api.send(
            "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {"month": month}}
        )
        run_id = created["dag_run_id"]
        print(f"Run {run_id} of {dag_id} (month {month}):", file=out, flush=True)
        return run_id, follow(api, run_id, out, dag_id)
    finally:
        if was_paused:
            api.send("PATCH", f"/dags/{dag_id}", {"is_paused": True})


def run_and_monitor(api: Api, month: str, out=sys.stdout, scenarios: bool = False) -> tuple[str, str]:
    """The month's forecast run and, once it published, its monitoring run and (``scenarios``:
    the config has ``plans.scenarios``) its what-if scenarios' run; returns the forecast run's id
    and the final state of them all (failed if any failed)."""
    run_id, state = run(api, month, out)
    if state != "success":
        return run_id, state
    _, monitored = run(api, month, out, MONITORING_DAG)
    if not scenarios:
        return run_id, monitored
    _, forecast = run(api, month, out, SCENARIOS_DAG)
    return run_id, monitored if monitored != "success" else forecast


def scenarios_configured() -> bool:
    """Whether the deployment's config has ``plans.scenarios`` (a config that cannot be read:
    no; the forecast run says what is wrong with it)."""
    from forecasting.core.config import ConfigError, load_config
    from forecasting.scenarios.read import scenarios_configured as configured

    try:
        return configured(load_config())
    except ConfigError:
        return False


def follow(api: Api, run_id: str, out, dag_id: str = FORECAST_DAG) -> str:
    """Print each task as it ends; return the run's final state."""
    reported: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT
    path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    while True:
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
    month = str(pd.Period(args.month, "M")) if args.month else latest_complete_month()
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
            run_id, state = run_and_monitor(api, month, scenarios=scenarios)
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
    print("  In Airflow: `make ui`, then Browse > Forecasts (each entity's history and forecasts, charted)")
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
