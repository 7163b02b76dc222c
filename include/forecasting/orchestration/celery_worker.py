"""Celery settings for the CeleryExecutor's workers: Airflow's own, and the forecast tasks'
modules imported once per worker instead of once per task.

``airflow celery worker`` starts its pool processes by forking the worker process, and each
task process by forking a pool process (Airflow's supervisor), as the LocalExecutor forks its
tasks from the scheduler. So a module the worker imported before its pool started is imported
in every task for nothing: Great Expectations, Feast, XGBoost, statsforecast and pandas (seconds
per task otherwise, docs/benchmarks.md; validate and check_forecasts each pay GX's).

Deployments point ``[celery] celery_config_options`` here (docker-compose.yml does):

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=forecasting.orchestration.celery_worker.CELERY_CONFIG

``worker_init`` is sent in the worker's main thread before its pool starts, only in a worker
(not in the scheduler, which reads the same settings to send tasks). FORECAST_PRELOAD_TASK_MODULES
=false switches the preload off, as for the scheduler (``forecasting.orchestration.warm_up``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

# Airflow's own settings, unchanged: it reads this whole dict in place of its default one.
CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect
def preload_task_modules(**_: Any) -> None:
    from forecasting.orchestration.warm_up import import_task_modules, preload_switched_on

    if preload_switched_on():
        import_task_modules()
