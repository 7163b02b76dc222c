"""The month on every DAG run: a note ``month=YYYY-MM`` that Airflow shows beside the run.

A run's id says when it was made (``scheduled__2026-11-01T00:00:00+00:00``,
``manual__2026-11-29T...``), not which month it works on: a scheduled run on the 1st is for the
month before, and a manual run works on its ``month`` param. The note names the month(s), so
Airflow's list of runs says which month is which. The ``forecast_run_notes`` plugin writes it
when a run starts (an Airflow listener in the scheduler) and when it ends (``dag.test()`` runs
start without the scheduler); this module decides what it says, the same way the DAGs do. When
a monthly_forecast run succeeds, a line says how many planners' overrides its publish applied
and refused, naming each refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from forecasting.core.names import ASSET_DAGS, FORECAST_DAG

NOTE_PREFIX = "month="
OVERRIDES_PREFIX = "overrides: "
OVERRIDES_LINE_LIMIT = 600  # characters: Airflow keeps a note in 1,000


def months_of_run(
    dag_id: str,
    conf: Mapping[str, Any] | None,
    data_interval_start: datetime | None,
    run_after: datetime | None,
    event_extras: Iterable[Mapping[str, Any]] = (),
    published: Callable[[], list[str]] = list,
) -> list[str]:
    """The months ("YYYY-MM") a run of ``dag_id`` works on, as its tasks will decide them; [] for
    other DAGs.

    monthly_forecast: forecasting.core.months.month_to_run (the ``month`` param, else the data
    interval, else the month before the run). forecast_monitoring and forecast_scenarios (both
    follow the predictions table's Asset): the months its run is about,
    as forecasting.monitoring.accuracy.months_to_score picks them (the ``month`` param, else the months of
    the Asset events that started it, else the newest ``published`` month), without the later
    months it re-scores along with them.
    """
    requested = (conf or {}).get("month") or None
    if dag_id == FORECAST_DAG:
        from forecasting.core.months import month_to_run

        return [month_to_run(requested, data_interval_start, run_after)]
    if dag_id in ASSET_DAGS:  # their month comes from the Asset's events
        from forecasting.monitoring.accuracy import months_to_score

        extras = [dict(extra or {}) for extra in event_extras]
        # published months are read only for a manual run without a month (the last fallback)
        fallback = [] if requested or any(e.get("month") for e in extras) else published()
        return [job["month"] for job in months_to_score(requested, extras, fallback, horizon=0)]
    return []


def note_with_months(existing: str | None, months: list[str]) -> str | None:
    """The run's note with ``month=...`` as its first line, or None to leave it as it is: no
    month to name, or its first line names one already (written before, or by a person)."""
    if not months:
        return None
    current = (existing or "").strip()
    if current.startswith(NOTE_PREFIX):
        return None
    line = NOTE_PREFIX + ",".join(months)
    # a note given when triggering (the trigger form has one) stays, below the month
    return f"{line}\n\n{current}" if current else line


def published_months() -> list[str]:
    """The deployment's published months (FORECAST_CONFIG), oldest first."""
    from forecasting.core.config import load_config
    from forecasting.monitoring.accuracy import published_months as published_in

    return published_in(load_config())


def overrides_line(published: Mapping[str, Any] | None) -> str | None:
    """What a publish (its publish.json) did with the planners' overrides, as a line of the note."""
    overrides = (published or {}).get("overrides")
    if not overrides:
        return None
    line = f"{OVERRIDES_PREFIX}{overrides['applied']} applied, {overrides['refused']} refused"
    if overrides.get("refusals"):
        line += " (" + "; ".join(overrides["refusals"]) + ")"
    return line if len(line) <= OVERRIDES_LINE_LIMIT else line[: OVERRIDES_LINE_LIMIT - 1] + "…"


def note_with_line(existing: str | None, line: str | None) -> str | None:
    """The note with ``line`` appended, or None to leave it: no line, or it is there already."""
    current = (existing or "").strip()
    if line is None or line in current:
        return None
    return f"{current}\n{line}" if current else line


def published_result(month: str, run_id: str) -> dict | None:
    """The publish.json of run ``run_id`` of ``month`` (FORECAST_CONFIG's deployment), if it published."""
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.core.months import month_of

    attempt = paths.published_attempt(load_config(), month_of(month), run_id)
    return paths.read_json(paths.result_in(attempt, "publish")) if attempt is not None else None
