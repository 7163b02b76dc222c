"""The Forecasts view's modules are imported when its app starts (its lifespan, which Airflow's
api-server enters), in a thread, so the first page after a restart does not pay for them
(benchmarks/ui_load.py: the first overview's server time went from 2.6 s to 0.05 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A fresh interpreter: nothing of the pages imported yet. The app starts (TestClient enters
# its lifespan) and answers at once; the imports finish in the background.
STARTS = """
import json, sys, threading, time
from fastapi import FastAPI
from fastapi.testclient import TestClient
from forecasting.warm_up import PAGE_MODULES, warm_up

app = FastAPI(lifespan=warm_up)
before = [m for m in PAGE_MODULES if m in sys.modules]
with TestClient(app) as client:
    started = [t for t in threading.enumerate() if t.name == "forecasts-view-warm-up"]
    for thread in started:
        thread.join(120)
    print(json.dumps({"before": before, "threads": len(started), "after": [m for m in PAGE_MODULES if m in sys.modules]}))
"""


def test_the_pages_are_imported_when_the_app_starts_not_on_the_first_request():
    from forecasting.warm_up import PAGE_MODULES

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
from forecasting.warm_up import TASK_MODULES

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
    from forecasting.warm_up import PRELOAD_SWITCH, preload_wanted

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
    from conftest import REPO

    code = SCHEDULER_STARTS.format(plugins=str(REPO / "plugins"))
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    env.pop("FORECAST_PRELOAD_TASK_MODULES", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not import" not in done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"after_task_runner": [], "missing_in_task": []}
