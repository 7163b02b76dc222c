"""The Forecasts view's modules are imported when its app starts (its lifespan, which Airflow's
api-server enters), in a thread, so the first page after a restart does not pay for them
(benchmarks/ui_load.py: the first overview's server time went from 2.6 s to 0.05 s)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A fresh interpreter: nothing of the pages imported yet. The app starts (TestClient enters
# its lifespan) and answers at once; the imports finish in the background.
STARTS = """
import json, sys, threading, time
from fastapi import FastAPI
from fastapi.testclient import TestClient
from forecasting.orchestration.warm_up import PAGE_MODULES, warm_up

app = FastAPI(lifespan=warm_up)
before = [m for m in PAGE_MODULES if m in sys.modules]
with TestClient(app) as client:
    started = [t for t in threading.enumerate() if t.name == "forecasts-view-warm-up"]
    for thread in started:
        thread.join(120)
    print(json.dumps({"before": before, "threads": len(started), "after": [m for m in PAGE_MODULES if m in sys.modules]}))
"""


def test_the_pages_are_imported_when_the_app_starts_not_on_the_first_request():
    from forecasting.orchestration.warm_up import PAGE_MODULES

    done = subprocess.run([sys.executable, "-c", STARTS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": [], "threads": 1, "after": list(PAGE_MODULES)}


# The scheduler's start, as Airflow calls the plugin's listener (a component named Job, argv of
# `airflow scheduler`, the LocalExecutor); then a task forked from it, as the LocalExecutor forks.
SCHEDULER_STARTS = """
import json, os, sys
sys.argv = [os.path.join(sys.prefix, "bin", "airflow"), "scheduler"]
sys.path.insert(0, {plugins!r})
from forecast_task_preload import _PreloadTaskModules
from forecasting.orchestration.warm_up import TASK_MODULES

class Job: ...
class TaskRunnerMarker: ...

listener = _PreloadTaskModules()
listener.on_starting(TaskRunnerMarker())  # a task runner's start: nothing
after_task_runner = [m for m in TASK_MODULES if m in sys.modules]
listener.on_starting(Job())
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the task: every module there already, before it imports anything
    os.write(write, json.dumps([m for m in TASK_MODULES if m not in sys.modules]).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({{"after_task_runner": after_task_runner, "missing_in_task": json.loads(os.read(read, 65536))}}))
"""


def test_preload_is_wanted_in_the_scheduler_with_the_local_executor_only(monkeypatch):
    from forecasting.orchestration.warm_up import PRELOAD_SWITCH, preload_wanted

    airflow = "/opt/venv/bin/airflow"
    monkeypatch.delenv(PRELOAD_SWITCH, raising=False)
    assert preload_wanted("LocalExecutor", [airflow, "scheduler"])
    assert preload_wanted("LocalExecutor,CeleryExecutor", [airflow, "scheduler", "--pid", "x"])
    assert not preload_wanted("CeleryExecutor", [airflow, "scheduler"])
    for other in ("dag-processor", "triggerer", "api-server", "standalone", "tasks"):
        assert not preload_wanted("LocalExecutor", [airflow, other])
    assert not preload_wanted("LocalExecutor", ["/usr/bin/python", "scheduler"])
    monkeypatch.setenv(PRELOAD_SWITCH, "false")
    assert not preload_wanted("LocalExecutor", [airflow, "scheduler"])


def test_the_scheduler_imports_the_task_modules_and_a_forked_task_has_them_all():
    from tests.helpers.paths import REPO

    code = SCHEDULER_STARTS.format(plugins=str(REPO / "plugins"))
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    env.pop("FORECAST_PRELOAD_TASK_MODULES", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not import" not in done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"after_task_runner": [], "missing_in_task": []}


def test_the_celery_worker_preload_follows_the_switch(monkeypatch):
    from forecasting.orchestration import celery_worker, warm_up

    called = []
    monkeypatch.setattr(warm_up, "import_task_modules", lambda: called.append(True) or 0.0)
    monkeypatch.delenv(warm_up.PRELOAD_SWITCH, raising=False)
    celery_worker.preload_task_modules(sender=None)
    assert called == [True]
    monkeypatch.setenv(warm_up.PRELOAD_SWITCH, "off")
    celery_worker.preload_task_modules(sender=None)
    assert called == [True]
    # Airflow's own settings, whole: it reads this dict instead of its default one.
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    assert celery_worker.CELERY_CONFIG == DEFAULT_CELERY_CONFIG


def test_the_dask_worker_preload_follows_the_switch(monkeypatch):
    from forecasting.orchestration import dask_worker, warm_up

    imported = []
    monkeypatch.setattr(warm_up, "import_ahead", lambda names, ahead_of: imported.append(names) or 0.0)
    monkeypatch.delenv(warm_up.PRELOAD_SWITCH, raising=False)
    dask_worker.dask_setup(worker=None)
    assert imported == [dask_worker.WORKER_MODULES]
    monkeypatch.setenv(warm_up.PRELOAD_SWITCH, "false")
    dask_worker.dask_setup(worker=None)
    assert imported == [dask_worker.WORKER_MODULES]


def test_the_dask_worker_modules_import():
    """Every module a Dask worker preloads exists (a misspelt one would only be logged there)."""
    import importlib.util

    from forecasting.orchestration.dask_worker import WORKER_MODULES

    assert [name for name in WORKER_MODULES if importlib.util.find_spec(name) is None] == []


def pool_processes(pid: int) -> list[int]:
    """The Celery pool processes of the worker ``pid``: its children titled ForkPoolWorker (not
    the helper processes Airflow forks before the worker starts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat, title = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # stat's field 4, after the command in parentheses: the parent's pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"ForkPoolWorker" in title:
                found.append(int(entry.name))
    return found


@pytest.mark.slow  # starts a real Celery worker
def test_a_celery_worker_imports_the_task_modules_before_its_pool_forks(redis_client, tmp_path):
    """``airflow celery worker`` with the deployment's settings (docker-compose.yml's
    celery_config_options) imports the task modules once; its pool process, which forks every
    task, has their native libraries mapped before it has run anything."""
    import yaml

    from forecasting.orchestration.warm_up import PRELOAD_SWITCH
    from tests.helpers.airflow_env import BIN, airflow_env
    from tests.helpers.paths import REPO
    from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    options = compose["x-airflow-common"]["environment"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    queue = f"forecast_test_{secrets.token_hex(4)}"
    before = set(redis_client.keys())
    env = airflow_env(
        tmp_path / "airflow",
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/airflow.db",
        AIRFLOW__CELERY__BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        AIRFLOW__CELERY__RESULT_BACKEND=f"db+sqlite:///{tmp_path}/celery.db",
        AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=options,
    )
    env.pop(PRELOAD_SWITCH, None)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "airflow"), "celery", "worker", "--concurrency", "1"]
            + ["--queues", queue, "--skip-serve-logs"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(1)
        text = log.read_text(errors="replace")
        assert "Imported the forecast tasks' modules in" in text and "could not import" not in text
        pool = pool_processes(worker.pid)
        assert pool, f"no pool process under the worker {worker.pid}"
        for pid in pool:
            maps = Path(f"/proc/{pid}/maps").read_text()
            # XGBoost's library, DuckDB's (Feast's offline store) and statsforecast's own.
            for library in ("libxgboost", "duckdb", "statsforecast"):
                assert library in maps, f"{library} not loaded in pool process {pid}"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        made = set(redis_client.keys()) - before
        if made:
            redis_client.delete(*made)
