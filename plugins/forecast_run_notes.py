"""The month on every run of monthly_forecast, forecast_monitoring and forecast_scenarios, as the
run's note.

An Airflow listener: when a run starts (in the scheduler) or ends (``dag.test()`` runs start
without one), the run's note gets ``month=YYYY-MM`` as its first line, so Airflow's list of runs
says which month each run is for; a monthly_forecast run that succeeded gets a line saying how
many planners' overrides its publish applied and refused. What it says is decided by forecasting.orchestration.run_notes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from forecasting.core.names import ASSET_DAGS, DAG_IDS, FORECAST_DAG
from forecasting.orchestration.run_notes import (
    months_of_run,
    note_with_line,
    note_with_months,
    overrides_line,
    published_months,
    published_result,
)

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)


def _write_month_note(dag_run: DagRun, succeeded: bool = False) -> None:
    if dag_run.dag_id not in DAG_IDS:
        return  # any other DAG: not ours, and nothing to import or read for it
    from sqlalchemy.orm import object_session

    if object_session(dag_run) is None:
        # dag.test() hands over its run detached from any session: read and write it in one.
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            bound = session.get(DagRun, dag_run.id)
            if bound is not None:
                _note(bound, succeeded)
        return
    _note(dag_run, succeeded)


def _note(dag_run: DagRun, succeeded: bool = False) -> None:
    try:
        events = dag_run.consumed_asset_events if dag_run.dag_id in ASSET_DAGS else []
        months = months_of_run(
            dag_run.dag_id,
            dag_run.conf,
            dag_run.data_interval_start,
            dag_run.run_after,
            [event.extra for event in events],
            published_months,
        )
        note = note_with_months(dag_run.note, months)
        if succeeded and dag_run.dag_id == FORECAST_DAG and months:  # how many overrides it applied
            line = overrides_line(published_result(months[0], dag_run.run_id))
            note = note_with_line(note if note is not None else dag_run.note, line) or note
    except Exception as err:  # a run without a month to name still runs (its tasks will say why)
        log.warning("no month note for %s %s: %s", dag_run.dag_id, dag_run.run_id, err)
        return
    if note is not None:
        # Written in the session it came in (the scheduler's), committed with it.
        dag_run.note = note


class _MonthNotes:
    @hookimpl
    def on_dag_run_running(self, dag_run: DagRun, msg: str) -> None:
        _write_month_note(dag_run)

    @hookimpl
    def on_dag_run_success(self, dag_run: DagRun, msg: str) -> None:
        _write_month_note(dag_run, succeeded=True)

    @hookimpl
    def on_dag_run_failed(self, dag_run: DagRun, msg: str) -> None:
        _write_month_note(dag_run)


class ForecastRunNotesPlugin(AirflowPlugin):
    name = "forecast_run_notes"
    listeners = [_MonthNotes()]
