"""Modules imported ahead of time: the Forecasts view's when the api-server starts, and the
pipeline tasks' when the scheduler starts.

The view:

The pages import pandas, SQLAlchemy, pyarrow and our own modules: seconds, which the first
person to open the view after a restart of the UI would wait for (measured with
benchmarks/ui_load.py: docs/benchmarks.md). The plugin's FastAPI app runs this as its
lifespan (Airflow's api-server enters its mounted apps' lifespans), in a thread of its own, so
the server starts answering at once; a page asked for meanwhile waits for the imports it needs
(Python's import locks), never imports twice. Then the same thread reads the newest run's
numbers that the planners' pages show (forecasting.ui.plan_data: a read of every series, once
per published run), so the first person after a restart does not wait for them either.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

PAGE_MODULES = (
    "forecasting.core.config",
    "forecasting.ui.planner",
    "forecasting.ui.levels",
    "forecasting.ui.export",
    "forecasting.ui.overview",
    "forecasting.ui.explorer",
    "forecasting.ui.scenarios",
    "forecasting.ui.charts",
    "forecasting.ui.templating",
)


def import_pages() -> None:
    try:
        for name in PAGE_MODULES:
            importlib.import_module(name)
    except Exception:  # the page that needs the module will show the error; the server runs on
        log.exception("could not import the Forecasts view's modules ahead of time")
        return
    try:
        from forecasting.core.config import load_config
        from forecasting.ui.plan_data import plan_data

        plan_data(load_config())
    except Exception as err:  # no deployment yet, or nothing published: the pages say so
        log.info("did not read the newest run's numbers ahead of time: %s", err)


@asynccontextmanager
async def warm_up(app: Any) -> AsyncIterator[None]:
    threading.Thread(target=import_pages, name="forecasts-view-warm-up", daemon=True).start()
    yield


# What the pipeline's tasks import: pandas, SQLAlchemy, Great Expectations (the slowest), Feast and
# its DuckDB offline store, XGBoost, statsforecast and our own modules: seconds of imports
# (docs/benchmarks.md), which every task process pays again (validate and check_forecasts GX's).
TASK_MODULES = (
    "forecasting.orchestration.pipeline",
    "forecasting.data.extract",
    "forecasting.data.validate",
    "forecasting.features.catalogue",
    "forecasting.features.store",
    "forecasting.modeling.train",
    "forecasting.modeling.evaluate",
    "forecasting.modeling.predict",
    "forecasting.publishing.checks",
    "forecasting.publishing.publish",
    "forecasting.monitoring.accuracy",
    "forecasting.monitoring.drift",
    "forecasting.monitoring.alerts",
    "forecasting.scenarios.read",
    "forecasting.scenarios.forecast",
    "forecasting.scenarios.publish",
    "great_expectations",
    "feast",
    "feast.infra.offline_stores.duckdb",
    # The DuckDB store's queries run on ibis's DuckDB backend, which ibis imports on first use
    # (every retrieval's task would pay it).
    "ibis.backends.duckdb",
    "feast.infra.online_stores.sqlite",
    "xgboost",
    "statsforecast",
    "statsforecast.models",
)
# FORECAST_PRELOAD_TASK_MODULES=false: the scheduler imports none of them (each task its own).
PRELOAD_SWITCH = "FORECAST_PRELOAD_TASK_MODULES"


def preload_wanted(executor: str, argv: list[str] | None = None) -> bool:
    """In Airflow's scheduler process (``airflow scheduler``, which ``airflow standalone`` starts
    too) with the LocalExecutor (``executor``: ``[core] executor``), unless switched off: its
    worker processes are forked from the scheduler when it starts, and each task from a worker,
    so a module imported here is imported in every task for nothing. Not with another executor
    (a Celery worker is not forked from the scheduler: it preloads them itself,
    ``forecasting.orchestration.celery_worker``), nor in the dag-processor (DAG files
    stay light), the api-server or the triggerer."""
    argv = sys.argv if argv is None else argv
    if not preload_switched_on():
        return False
    in_scheduler = len(argv) > 1 and os.path.basename(argv[0]) == "airflow" and argv[1] == "scheduler"
    return in_scheduler and "LocalExecutor" in executor


def preload_switched_on() -> bool:
    """Unless FORECAST_PRELOAD_TASK_MODULES says false (or 0, no, off)."""
    return os.environ.get(PRELOAD_SWITCH, "true").strip().lower() not in ("0", "false", "no", "off")


def import_ahead(names: Sequence[str], ahead_of: str) -> float:
    """Import ``names`` in this thread; returns the seconds it took. A module that fails to
    import is logged and left to the work that needs it, which reports it where people look."""
    started = time.perf_counter()
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            log.exception("could not import %s ahead of %s", name, ahead_of)
    return time.perf_counter() - started


def import_task_modules() -> float:
    """Import TASK_MODULES in this thread (before any fork: never in a thread of its own, which
    a fork could copy mid-import); returns the seconds it took."""
    took = import_ahead(TASK_MODULES, "the tasks")
    log.info("Imported the forecast tasks' modules in %.1f s: tasks forked from here start with them", took)
    return took
