"""Where the heavy work runs: in this process, or on a Dask cluster.

A deployment that outgrows one machine names a Dask scheduler in its config::

    compute: {dask_scheduler: "tcp://dask-scheduler:8786"}

Then the heavy parts of the stages run on the cluster's workers: the feature arrays of each
chunk of entities (build_features), Feast's point-in-time retrieval of each chunk of entity rows
(train, predict: every worker runs the same Feast offline store over the same files), XGBoost's
training (``xgboost.dask``) and prediction. Without it everything runs in-process, as before.

No secret goes to the workers. A task gets a ``WorkerConfig``: the config's settings the work
reads, without a database (source, plans, predictions), the alerts, the Feast registry's
location or the online store, any of which may hold a password. Feast's definitions travel as
a snapshot of the registry, which the worker reads from a file of its own; the offline store's
settings travel as the config file writes them (``${VAR}``s filled in from the worker's
environment). So the workers need only ``data_dir`` (a shared filesystem) and the code.

Features and Feast's answers are the same either way; a model trained on the cluster differs
slightly from one trained in-process (XGBoost sums its histograms across workers and merges
their quantile sketches, so the trees' split points and floating-point sums can differ): see
docs/deploy.md (Scaling) for the measured gap.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecasting.core.config import (
    AlertsConfig,
    ComputeConfig,
    Config,
    Database,
    PlansConfig,
    PredictionsConfig,
    ScenariosConfig,
    SourceConfig,
    expand_variables,
    unset_variables,
)

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


# Feast's settings a worker's offline retrieval reads (the registry comes as a snapshot).
_FEAST_KEYS = ("project", "provider", "entity_key_serialization_version", "coerce_tz_aware")


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker gets of a Config: the settings its work reads, and no secret.

    ``config`` is the Config without its databases, alerts, compute and Feast sections;
    ``offline_store`` is Feast's offline store section as the config file writes it (a
    ``${VAR}`` is filled in on the worker, from its environment); ``registry`` a snapshot of
    Feast's registry (its serialized proto: the definitions, no location), or None for work
    that does not read Feast. ``opened`` turns it back into a Config on the worker.
    """

    config: Config
    feast: dict[str, Any]
    offline_store: Any
    registry: bytes | None

    @classmethod
    def of(cls, config: Config, *, feast_registry: bytes | None = None) -> WorkerConfig:
        source = config.source
        plans = config.plans
        # Built field by field rather than copied: a setting added to Config later (a database
        # of its own?) stays home until someone decides a worker needs it.
        safe = Config(
            path=config.path,
            data_dir=config.data_dir,
            source=SourceConfig(
                database=Database(),
                table=source.table,
                query=source.query,
                entity_columns=source.entity_columns,
                time_column=source.time_column,
                target_column=source.target_column,
                covariates=source.covariates,
                attributes=source.attributes,
                history_months=source.history_months,
            ),
            validation=config.validation,
            features=config.features,
            feature_store={},
            model=config.model,
            evaluation=config.evaluation,
            predictions=PredictionsConfig(database=Database(), table=config.predictions.table),
            horizon=config.horizon,
            feature_store_unexpanded=None,
            compute=ComputeConfig(),
            gate=config.gate,
            monitoring=config.monitoring,
            alerts=AlertsConfig(),
            plans=None if plans is None else _plans_without_databases(plans),
        )
        written = config.feature_store_unexpanded or config.feature_store
        return cls(
            config=safe,
            feast={k: config.feature_store[k] for k in _FEAST_KEYS if k in config.feature_store},
            offline_store=written.get("offline_store"),
            registry=feast_registry,
        )

    @contextmanager
    def opened(self) -> Iterator[Config]:
        """The Config a worker's task works with; Feast's registry a file in a folder of the
        task's own, removed afterwards."""
        offline_store = expand_variables(self.offline_store)
        unset = sorted(unset_variables(offline_store))
        if unset:
            raise RuntimeError(
                f"feature_store.offline_store: environment variables not set on this worker: {', '.join(unset)}"
            )
        with tempfile.TemporaryDirectory(prefix="forecast-worker-") as folder:
            settings: dict[str, Any] = {**self.feast, "online_store": None}  # offline work only
            if offline_store is not None:
                settings["offline_store"] = offline_store
            if self.registry is not None:
                registry = Path(folder) / "registry.db"
                registry.write_bytes(self.registry)
                settings["registry"] = {"registry_type": "file", "path": str(registry)}
            yield self.config.model_copy(update={"feature_store": settings})


def _plans_without_databases(plans: PlansConfig) -> PlansConfig:
    scenarios = plans.scenarios
    return PlansConfig(
        database=Database(),
        table=plans.table,
        query=plans.query,
        entity_columns=plans.entity_columns,
        month_column=plans.month_column,
        covariates=plans.covariates,
        planned_at=plans.planned_at,
        fill=plans.fill,
        scenarios=None
        if scenarios is None
        else ScenariosConfig(
            database=Database(),
            table=scenarios.table,
            query=scenarios.query,
            scenario_column=scenarios.scenario_column,
            base=scenarios.base,
        ),
    )


def _run_with(item: Any, function: Callable, args: tuple) -> Any:
    """On a worker: ``function(item, *args)``, each WorkerConfig of ``args`` opened as a Config."""
    with ExitStack() as stack:
        opened = [stack.enter_context(a.opened()) if isinstance(a, WorkerConfig) else a for a in args]
        return function(item, *opened)


def map_in_order(
    client: Any, function: Callable, items: Sequence, *args: Any, feast_registry: bytes | None = None
) -> list:
    """``[function(item, *args) for item in items]``, on the cluster's workers if there is a client.

    A Config among ``args`` goes to the workers as a ``WorkerConfig`` (no secret in it), with
    ``feast_registry``, a snapshot of Feast's registry (``store.registry_snapshot``), for work
    that asks Feast."""
    if client is None:
        return [function(item, *args) for item in items]
    sent = tuple(
        WorkerConfig.of(a, feast_registry=feast_registry) if isinstance(a, Config) else a for a in args
    )
    futures = client.map(_run_with, items, function=function, args=sent, pure=False)
    try:
        return client.gather(futures)
    finally:
        for future in futures:
            future.release()
