"""Where the heavy work runs: in this process, or on a Dask cluster.

A deployment that outgrows one machine names a Dask scheduler in its config::

    compute: {dask_scheduler: "tcp://dask-scheduler:8786"}

Then the heavy parts of the stages run on the cluster's workers: the feature arrays of each
chunk of entities (build_features), Feast's point-in-time retrieval of each chunk of entity rows
(train, predict: every worker runs the same Feast offline store over the same files), XGBoost's
training (``xgboost.dask``) and prediction. Without it everything runs in-process, as before.

The workers must see what the task sees: the config file and its environment, ``data_dir`` (a
shared filesystem) and the Feast registry. Features and Feast's answers are the same either
way; a model trained on the cluster differs slightly from one trained in-process (XGBoost sums
its histograms across workers and merges their quantile sketches, so the trees' split points
and floating-point sums can differ): see the README's Scaling section for the measured gap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from forecasting.config import Config

log = logging.getLogger(__name__)


@contextmanager
def client_for(config: Config) -> Iterator[Any]:
    """A ``dask.distributed.Client`` of the configured scheduler, or None to work in-process."""
    address = config.compute.dask_scheduler
    if not address:
        yield None
        return
    from dask.distributed import Client

    # The default client of the process (xgboost.dask looks for it); a task process is its own.
    client = Client(address, timeout="60s", set_as_default=True)
    try:
        log.info("Working on the Dask cluster at %s (%d workers)", address, len(workers(client)))
        yield client
    finally:
        client.close()


def workers(client: Any) -> list[str]:
    return list(client.scheduler_info(n_workers=-1)["workers"])


def map_in_order(client: Any, function: Callable, items: Sequence, *args: Any) -> list:
    """``[function(item, *args) for item in items]``, on the cluster's workers if there is a client."""
    if client is None:
        return [function(item, *args) for item in items]
    futures = client.map(function, items, *[[a] * len(items) for a in args], pure=False)
    try:
        return client.gather(futures)
    finally:
        for future in futures:
            future.release()
