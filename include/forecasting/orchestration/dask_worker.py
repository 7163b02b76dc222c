"""A Dask worker's preload: the modules the stages' work imports on a worker, imported as the
worker starts instead of by the first tasks it runs.

    dask worker tcp://dask-scheduler:8786 --preload forecasting.orchestration.dask_worker

(docker-compose.yml's dask-worker does, and benchmarks/run_stages.py's LocalCluster). A worker
process serves every task it is given, so without this only its first tasks pay the imports:
Feast and its offline store, XGBoost's Dask module and our own (docs/benchmarks.md has the time),
but they pay them in the middle of a month's run, in every new worker (one added by scaling up
during the run too). Dask calls ``dask_setup`` before the worker joins its scheduler, so no task
is sent to a worker that is still importing. FORECAST_PRELOAD_TASK_MODULES=false switches it
off, as for the scheduler and the Celery workers (``forecasting.orchestration.warm_up``).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# What the work sent to a worker imports (forecasting.core.compute.map_in_order and xgboost.dask):
# the feature arrays of a chunk of entities, Feast's retrieval of a chunk of entity rows (with
# either offline store), XGBoost's training and prediction on Dask collections.
WORKER_MODULES = (
    "forecasting.core.compute",
    "forecasting.features.catalogue",
    "forecasting.features.dataset",
    "forecasting.features.store",
    "feast",
    "feast.infra.offline_stores.duckdb",
    "ibis.backends.duckdb",
    "feast.infra.offline_stores.dask",
    "xgboost",
    "xgboost.dask",
    "dask.dataframe",
)


def dask_setup(worker: Any) -> None:
    """Called by Dask in the worker process as it starts, before it joins the scheduler."""
    from forecasting.orchestration.warm_up import import_ahead, preload_switched_on

    if preload_switched_on():
        took = import_ahead(WORKER_MODULES, "the Dask tasks")
        log.info("Imported the forecast work's modules in %.1f s, before joining the scheduler", took)
