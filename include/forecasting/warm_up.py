"""The Forecasts view's modules imported when the api-server starts, not on the first page.

The pages import pandas, SQLAlchemy, pyarrow and our own modules: about 2 s on a busy 2-core
machine, which the first person to open the view after a restart of the UI would wait for
(5 s instead of under 1 s: benchmarks/ui_load.py). The plugin's FastAPI app runs this as its
lifespan (Airflow's api-server enters its mounted apps' lifespans), in a thread of its own, so
the server starts answering at once; a page asked for meanwhile waits for the imports it needs
(Python's import locks), never imports twice.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

PAGE_MODULES = ("forecasting.config", "forecasting.report", "forecasting.explorer", "forecasting.charts")


def import_pages() -> None:
    try:
        for name in PAGE_MODULES:
            importlib.import_module(name)
    except Exception:  # the page that needs the module will show the error; the server runs on
        log.exception("could not import the Forecasts view's modules ahead of time")


@asynccontextmanager
async def warm_up(app: Any) -> AsyncIterator[None]:
    threading.Thread(target=import_pages, name="forecasts-view-warm-up", daemon=True).start()
    yield
