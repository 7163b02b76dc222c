"""The forecast tasks' libraries imported once, in the scheduler, instead of in every task.

Airflow's LocalExecutor forks its workers from the scheduler when it starts, and every task
process from a worker (Linux: a bare ``os.fork``). A task then inherits the scheduler's imported
modules: Great Expectations, Feast, XGBoost, statsforecast and pandas cost a task nothing instead
of seconds each (docs/benchmarks.md). An Airflow listener's ``on_starting`` runs in the scheduler before the
executor starts its workers (``forecasting.orchestration.warm_up`` decides where and what; switch it off with
FORECAST_PRELOAD_TASK_MODULES=false).
"""

from __future__ import annotations

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class _PreloadTaskModules:
    @hookimpl
    def on_starting(self, component) -> None:
        # The scheduler's job, not a task forked from it (which inherits its argv and modules).
        if type(component).__name__ != "Job":
            return
        from airflow.configuration import conf

        from forecasting.orchestration.warm_up import import_task_modules, preload_wanted

        if preload_wanted(conf.get("core", "executor")):
            import_task_modules()


class ForecastTaskPreloadPlugin(AirflowPlugin):
    name = "forecast_task_preload"
    listeners = [_PreloadTaskModules()]
