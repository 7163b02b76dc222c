"""The ``task_failure`` alert: any task of ``monthly_forecast``, ``forecast_monitoring`` or
``forecast_scenarios`` that failed for good (``on_task_failure``, the three DAGs'
``on_failure_callback``; not a try that will be retried). A task failure is an event, not a
state of a month: each one is told (forecasting.monitoring.alerts).

DAG files import this module when they are parsed, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import logging

from forecasting.core.config import Config
from forecasting.core.names import MONITORING_DAG
from forecasting.monitoring.alerts import Alert, raise_alerts

log = logging.getLogger(__name__)


def on_task_failure(context: dict) -> None:
    """An Airflow ``on_failure_callback``: the task failed for good. Raises the ``task_failure``
    alert through the deployment's notifiers; never raises itself."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_id = str(getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?"))
        task_id = getattr(ti, "task_id", None) or "?"
        run_id = context.get("run_id") or getattr(ti, "run_id", None)
        month = failed_month(context, dag_id)
        error = context.get("exception")
        why = f"{type(error).__name__}: {error}" if error is not None else "see the task's log"
        alert = Alert(
            dag_id=dag_id,
            month=month,
            kind="task_failure",
            metric="task_state",
            subject=task_id,
            value=None,
            threshold=None,
            message=f"Task {task_id} of {dag_id} failed for month {month or '(unknown)'} "
            f"(run {run_id}, try {getattr(ti, 'try_number', '?')}): {why}",
            run_id=run_id,
            task_id=task_id,
        )
        config = _config_or_none()
        raise_alerts(config, [alert], context)
    except Exception:
        log.exception("The task-failure alert itself failed")


def _config_or_none() -> Config | None:
    from forecasting.core.config import ConfigError, load_config

    try:
        return load_config()
    except ConfigError:  # a bad config may be why the task failed: the alert is logged only
        log.exception("No config: the task-failure alert is only logged")
        return None


def failed_month(context: dict, dag_id: str) -> str | None:
    """The month M of the failed task's run: its ``month`` param, its mapped job's month, the
    month its data interval names (monthly_forecast), or those of the Asset events that
    triggered it (forecast_monitoring)."""
    params = context.get("params") or {}
    if params.get("month"):
        return str(params["month"])
    job = (getattr(context.get("task"), "op_kwargs", None) or {}).get("job")
    if isinstance(job, dict) and job.get("month"):
        return str(job["month"])
    if dag_id == MONITORING_DAG:
        try:
            events = context.get("triggering_asset_events") or {}
            months = sorted(
                {str(e.extra["month"]) for found in events.values() for e in found if e.extra.get("month")}
            )
        except Exception:
            months = []
        return ",".join(months) or None
    from forecasting.core.months import month_to_run

    dag_run = context.get("dag_run")
    try:
        return month_to_run(None, context.get("data_interval_start"), getattr(dag_run, "run_after", None))
    except Exception:
        return None
