"""The Forecasts view's modules are imported when its app starts (its lifespan, which Airflow's
api-server enters), in a thread, so the first page after a restart does not pay for them
(benchmarks/ui_load.py: the first overview's server time went from 2.6 s to 0.05 s)."""

from __future__ import annotations

import json
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
