"""Alerts: a failed task, forecasts that turned out bad, data that drifted; told to people.

What raises one:

* ``task_failure``: any task of ``monthly_forecast``, ``forecast_monitoring`` or
  ``forecast_scenarios`` that failed for good (``on_task_failure``, the three DAGs'
  ``on_failure_callback``; not a try that will be retried);
* ``accuracy``: the realised WAPE of a horizon's forecasts for M above ``alerts.max_wape``, or
  worse than the best naive forecast's in each of the last ``alerts.worse_than_naive_months``
  months up to M (from ``<table>_accuracy``);
* ``drift``: a feature, the target or an entity share of M flagged in ``<table>_drift``;
* ``coverage``: a horizon's realised p10-p90 coverage outside ``monitoring.intervals``' band
  in each of its last ``months`` months up to M (forecasting.monitoring.coverage);
* ``revision``: run M moved the total forecast of the months an earlier run also forecast by
  more than ``monitoring.max_total_revision`` (``<table>_churn``, forecasting.monitoring.revisions).

Every alert is logged and appended to ``<table>_alerts`` (time, DAG, run, task, month, kind,
metric, what it is about, value, threshold, message, and whom it was sent to); the alerts of one
check go out together, as one message per notifier of ``alerts.notifiers``: Airflow notifiers
(``smtp``: the SMTP provider's ``SmtpNotifier`` through an Airflow connection, ``smtp_default``
unless ``conn_id`` says otherwise). Without notifiers, alerts are only logged and written. A
notifier that fails is logged and recorded; it never hides the alert or fails the check.

Checking a month again (monitoring re-run for M) finds the same accuracy and drift alerts: those
are states of the month, told once. An alert whose identity (DAG, month, kind, metric, subject),
value and threshold match a row of ``<table>_alerts`` that reached every notifier configured now
is a *repeat*: logged, neither sent nor written again. A new alert, a changed value or threshold,
a notifier that failed or was added since: sent and written. Task failures are events, not
states: each one is sent.

DAG files import this module when they are parsed, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import html
import logging
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from forecasting.core.config import Config, NotifierConfig
from forecasting.core.names import ALERTS, MONITORING_DAG, REVISIONS, relation_name

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

log = logging.getLogger(__name__)

# Alerts about the state of a month's data: checking the month again raises them again, so one
# already told is not told twice (see ``repeats``). A task failure is an event: always told.
STATE_KINDS = ("accuracy", "drift", "revision", "coverage")
LOG_ONLY = "log only"


@dataclass
class Alert:
    dag_id: str
    month: str | None  # "YYYY-MM": the month M of the run
    kind: str  # task_failure, accuracy, drift, revision, coverage or override (a publish refused one)
    metric: str  # e.g. task_state, wape, wape_vs_best_naive, psi, share
    subject: str  # what it is about: a task, "horizon 1", a feature
    value: float | None
    threshold: float | None
    message: str
    run_id: str | None = None
    task_id: str | None = None

    def line(self) -> str:
        """One line: kind, month, metric, value against threshold."""
        numbers = ""
        if self.value is not None:
            numbers = f" {_number(self.value)}"
            if self.threshold is not None:
                numbers += f" (threshold {_number(self.threshold)})"
        return f"{self.kind} {self.month or '?'}: {self.metric} of {self.subject}{numbers}"

    def identity(self) -> tuple[str, str | None, str, str, str]:
        """What the alert is about, whatever its numbers: a month's check raises it again."""
        return (self.dag_id, _month_key(self.month), self.kind, self.metric, self.subject)


def _number(value: float) -> str:
    return f"{value:.4g}"


def alerts_table_name(config: Config) -> str:
    return relation_name(config.predictions.table, ALERTS)


def alerts_table(config: Config) -> sa.Table:
    """``<table>_alerts`` (declared in forecasting.publishing.tables)."""
    # Imported here: DAG files import this module (on_task_failure) and must not load pandas.
    from forecasting.publishing import tables

    return tables.for_config(config).alerts


# --- what raises an alert ----------------------------------------------------------------------


def accuracy_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """The realised-accuracy alerts of M, from ``<table>_accuracy`` (over every entity)."""
    import sqlalchemy as sa

    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import ALL, monitoring_tables

    rules = config.alerts
    months = max(rules.worse_than_naive_months, 1)
    accuracy, _ = monitoring_tables(config, {k: object for k in config.source.entity_columns})
    first = (month - (months - 1)).to_timestamp().date()
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(accuracy.name, schema=accuracy.schema):
                return []
            columns = ["forecast_month", "horizon", "actual_sum", "wape", "best_naive", "best_naive_wape"]
            found = conn.execute(
                sa.select(*(accuracy.c[c] for c in columns)).where(
                    accuracy.c.segment_column == ALL,
                    accuracy.c.forecast_month >= first,
                    accuracy.c.forecast_month <= month.to_timestamp().date(),
                )
            ).all()
    finally:
        engine.dispose()
    by_horizon: dict[int, dict[str, dict[str, Any]]] = {}
    for row in found:
        key = str(row.forecast_month)[:7]
        by_horizon.setdefault(int(row.horizon), {})[key] = _combine(
            by_horizon.get(int(row.horizon), {}).get(key), row
        )

    out = []
    this = str(month)
    wanted = [str(month - k) for k in range(months - 1, -1, -1)]
    for horizon, scored in sorted(by_horizon.items()):
        now = scored.get(this)
        if now is None or now["wape"] is None:
            continue
        about = f"horizon {horizon}"
        if rules.max_wape is not None and now["wape"] > rules.max_wape:
            out.append(
                Alert(
                    dag_id,
                    this,
                    "accuracy",
                    "wape",
                    about,
                    now["wape"],
                    rules.max_wape,
                    f"The realised WAPE of the horizon-{horizon} forecasts for {this} is "
                    f"{_number(now['wape'])}, above alerts.max_wape {_number(rules.max_wape)}.",
                    run_id,
                )
            )
        streak = [scored.get(m) for m in wanted]
        if rules.worse_than_naive_months and all(
            s is not None and s["wape"] is not None and s["naive"] is not None and s["wape"] > s["naive"]
            for s in streak
        ):
            history = "; ".join(
                f"{m} {_number(s['wape'])} against {s['best_naive']} {_number(s['naive'])}"
                for m, s in zip(wanted, streak, strict=True)
                if s is not None
            )
            out.append(
                Alert(
                    dag_id,
                    this,
                    "accuracy",
                    "wape_vs_best_naive",
                    about,
                    now["wape"],
                    now["naive"],
                    f"The horizon-{horizon} forecasts were worse than the best naive forecast "
                    f"{rules.worse_than_naive_months} month(s) in a row (alerts.worse_than_naive_months): "
                    f"realised WAPE {history}.",
                    run_id,
                )
            )
    return out


def _combine(before: dict[str, Any] | None, row) -> dict[str, Any]:
    """WAPE and best naive WAPE of a horizon's rows of a month (several models: weighted by sales)."""
    actual = float(row.actual_sum or 0.0)
    entry = before or {"actual": 0.0, "errors": 0.0, "naive_errors": 0.0, "best_naive": row.best_naive}
    entry["actual"] += actual
    entry["errors"] += (row.wape or 0.0) * actual
    entry["naive_errors"] += (row.best_naive_wape or 0.0) * actual
    defined = entry["actual"] > 0 and row.wape is not None
    entry["wape"] = entry["errors"] / entry["actual"] if defined else None
    entry["naive"] = (
        entry["naive_errors"] / entry["actual"] if defined and row.best_naive_wape is not None else None
    )
    return entry


def drift_alerts(
    drift: dict | None, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert per row that the drift stage flagged (``drift``: its result, drift.json)."""
    out = []
    for row in (drift or {}).get("rows", []):
        if not row.get("drifted"):
            continue
        window = f"{row.get('reference_first_month')}..{row.get('reference_last_month')}"
        if row["kind"] == "entities":
            message = (
                f"{row['feature'].replace('_', ' ').capitalize()} in {month}: {row['entities']:,} "
                f"({row['share']:.1%}), at least monitoring.entity_share_threshold {row['threshold']:.1%}."
            )
            metric, value = "share", row["share"]
        else:
            test = (
                f"; KS statistic {_number(row['ks_statistic'])}, p-value {row['ks_pvalue']:.2g}"
                if row.get("ks_pvalue") is not None
                else ""
            )
            message = (
                f"The {row['kind']} {row['feature']} drifted in {month}: PSI {_number(row['psi'])}, at least "
                f"monitoring.psi_threshold {_number(row['threshold'])}, against the training window "
                f"{window} of {drift.get('model_version') if drift else '?'}{test}."
            )
            metric, value = "psi", row["psi"]
        out.append(
            Alert(
                dag_id, str(month), "drift", metric, row["feature"], value, row["threshold"], message, run_id
            )
        )
    return out


def revision_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert if run M moved the total forecast of the months an earlier run also forecast by
    more than ``monitoring.max_total_revision``, either way (``<table>_churn``)."""
    from forecasting.monitoring.revisions import churn_of

    threshold = config.monitoring.max_total_revision
    churn = churn_of(config, month) if threshold is not None else None
    if churn is None or churn["total_revision"] is None or abs(churn["total_revision"]) <= threshold:
        return []
    moved = churn["total_revision"]
    message = (
        f"The run of {month} moved the total forecast of the {churn['revised']:,} forecasts an earlier "
        f"run also made by {moved:+.1%} (from {churn['previous_total']:,.1f} to {churn['total']:,.1f}; "
        f"churn {churn['churn']:.1%}), more than monitoring.max_total_revision {threshold:.1%}. "
        f"Per entity: {relation_name(config.predictions.table, REVISIONS)}."
    )
    return [
        Alert(
            dag_id,
            str(month),
            "revision",
            "total_revision",
            "total forecast",
            moved,
            threshold,
            message,
            run_id,
        )
    ]


def coverage_alerts(
    config: Config, month: pd.Period, dag_id: str = MONITORING_DAG, run_id: str | None = None
) -> list[Alert]:
    """One alert per horizon whose intervals held too few or too many actuals, months in a row."""
    from forecasting.monitoring.coverage import coverage_outside_band

    found = coverage_outside_band(config, month)
    return [Alert(dag_id, str(month), "coverage", run_id=run_id, **fields) for fields in found]


def check_month(
    config: Config,
    month: pd.Period,
    drift: dict | None,
    *,
    dag_id: str = MONITORING_DAG,
    run_id: str | None = None,
) -> dict:
    """Raise the accuracy, drift, revision and coverage alerts of M; returns what was raised and to whom it went."""
    found = accuracy_alerts(config, month, dag_id, run_id) + drift_alerts(drift, month, dag_id, run_id)
    found += revision_alerts(config, month, dag_id, run_id) + coverage_alerts(config, month, dag_id, run_id)
    return raise_alerts(config, found)


# --- raising them ------------------------------------------------------------------------------


def raise_alerts(
    config: Config | None,
    alerts: list[Alert],
    context: dict | None = None,
    raised_at: datetime | None = None,
) -> dict:
    """Log the alerts, send them through the config's notifiers (together, one message each) and
    append them to ``<table>_alerts``; a repeat of an alert already told (``repeats``) is only
    logged. ``context``: the Airflow context, in a callback."""
    repeated = repeats(config, alerts) if config is not None else {}
    fresh = [a for i, a in enumerate(alerts) if i not in repeated]
    for i, alert in enumerate(alerts):
        if i in repeated:
            log.info("Repeat, not sent again (%s): %s", repeated[i], alert.line())
        else:
            log.warning("ALERT %s: %s", alert.line(), alert.message)
    result: dict[str, Any] = {
        "raised": len(fresh),
        "notified": [],
        "alerts": [asdict(a) for a in fresh],
        "table": None,
        "repeats": [
            {"alert": alert.line(), "told": repeated[i]} for i, alert in enumerate(alerts) if i in repeated
        ],
    }
    if not fresh:
        return result
    notified = notify(config, fresh, context) if config is not None else []
    result["notified"] = notified
    if config is not None:
        try:
            result["table"] = write_alerts(
                config, fresh, raised_at or datetime.now(UTC), "; ".join(notified) or LOG_ONLY
            )
        except Exception:  # the alert was logged and sent: a database that is down must not hide it
            log.exception("Could not write %d alert(s) to %s", len(fresh), alerts_table_name(config))
    return result


def repeats(config: Config, alerts: list[Alert]) -> dict[int, str]:
    """The alerts (by position) that ``<table>_alerts`` shows were told already: a state alert
    (STATE_KINDS) with the same identity, value and threshold as a row that reached every
    notifier configured now (without notifiers: any such row). Says when and to whom. If the
    table cannot be read, nothing is a repeat: better told twice than never."""
    import sqlalchemy as sa

    from forecasting.core.db import make_engine

    states = [a for a in alerts if a.kind in STATE_KINDS]
    if not states:
        return {}
    table = alerts_table(config)
    months = {_month_date(a.month) for a in states}
    wanted = {notifier_name(n) for n in config.alerts.notifiers}
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table.name, schema=table.schema):
                return {}
            told = conn.execute(
                sa.select(table).where(
                    table.c.kind.in_(STATE_KINDS), table.c.month.in_([m for m in months if m is not None])
                )
            ).all()
    except Exception:
        log.exception("Could not read %s: every alert is sent", table.name)
        return {}
    finally:
        engine.dispose()
    found: dict[int, str] = {}
    for i, alert in enumerate(alerts):
        if alert.kind not in STATE_KINDS:
            continue
        for row in told:
            same = (
                (row.dag_id, _month_key(str(row.month)), row.kind, row.metric, row.subject)
                == alert.identity()
                and _same_number(row.value, alert.value)
                and _same_number(row.threshold, alert.threshold)
            )
            if same and wanted <= delivered(row.notified):
                found[i] = f"alert {row.alert_id} of {row.raised_at:%Y-%m-%d %H:%M}, notified: {row.notified}"
                break
    return found


def delivered(notified: str) -> set[str]:
    """The notifiers a ``notified`` cell says the alert reached (not the ones that FAILED)."""
    parts = [p.strip() for p in (notified or "").split(";")]
    return {p for p in parts if p and p != LOG_ONLY and " FAILED" not in p}


def _same_number(stored: float | None, value: float | None) -> bool:
    value = _finite(value)
    if stored is None or value is None:
        return stored is None and value is None
    return math.isclose(stored, value, rel_tol=1e-9, abs_tol=1e-12)


def _month_key(month: str | None) -> str | None:
    found = _month_date(month)
    return f"{found:%Y-%m}" if found else None


def write_alerts(config: Config, alerts: list[Alert], raised_at: datetime, notified: str) -> str:
    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import create_missing
    from forecasting.publishing import tables

    table = alerts_table(config)
    engine = make_engine(config.predictions.database)
    try:
        create_missing(engine, lambda conn: tables.create(conn, table))
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [
                    {
                        "raised_at": raised_at,
                        "dag_id": a.dag_id,
                        "run_id": a.run_id,
                        "task_id": a.task_id,
                        "month": _month_date(a.month),
                        "kind": a.kind,
                        "metric": a.metric,
                        "subject": a.subject,
                        "value": _finite(a.value),
                        "threshold": _finite(a.threshold),
                        "message": a.message,
                        "notified": notified,
                    }
                    for a in alerts
                ],
            )
    finally:
        engine.dispose()
    return table.name


def _month_date(month: str | None) -> date | None:
    """The first day of a "YYYY-MM" month (of the first one, for a run of several)."""
    found = re.match(r"(\d{4})-(\d{2})", month or "")
    return date(int(found[1]), int(found[2]), 1) if found else None


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def notify(config: Config, alerts: list[Alert], context: dict | None = None) -> list[str]:
    """Send the alerts through each notifier of ``alerts.notifiers``; returns one line per
    notifier saying whom it reached or why it did not."""
    done = []
    for notifier in config.alerts.notifiers:
        where = notifier_name(notifier)
        try:
            airflow_notifier(notifier, email_subject(alerts), email_html(config, alerts))(dict(context or {}))
        except Exception as err:
            log.exception("Notifier %s could not send %d alert(s)", where, len(alerts))
            done.append(f"{where} FAILED: {type(err).__name__}: {err}"[:500])
        else:
            log.info("Sent %d alert(s) to %s", len(alerts), where)
            done.append(where)
    return done


def notifier_name(notifier: NotifierConfig) -> str:
    """How ``notified`` names a notifier: its type and recipients."""
    return f"{notifier.type}:{','.join(notifier.to)}"


def airflow_notifier(notifier: NotifierConfig, subject: str, html_content: str):
    """The Airflow notifier (a ``BaseNotifier``) of one ``alerts.notifiers`` entry."""
    if notifier.type == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=notifier.to,
            from_email=notifier.from_email,
            smtp_conn_id=notifier.conn_id,
            # Notifiers render their fields as Jinja templates: ours are finished text.
            subject=_verbatim(subject),
            html_content=_verbatim(html_content),
        )
    raise ValueError(f"unknown notifier type {notifier.type!r}")


def _verbatim(text: str) -> str:
    return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"


def email_subject(alerts: list[Alert]) -> str:
    first = alerts[0]
    more = f" and {len(alerts) - 1} more" if len(alerts) > 1 else ""
    return f"[forecast alert] {first.dag_id} {first.month or ''}: {first.line()}{more}"


def email_html(config: Config, alerts: list[Alert]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            value = _number(value)
        return f"<td>{html.escape('' if value is None else str(value))}</td>"

    header = ["DAG", "run", "month", "kind", "metric", "about", "value", "threshold", "message"]
    rows = "".join(
        "<tr>"
        + "".join(
            cell(v)
            for v in (
                a.dag_id,
                a.run_id,
                a.month,
                a.kind,
                a.metric,
                a.subject,
                a.value,
                a.threshold,
                a.message,
            )
        )
        + "</tr>"
        for a in alerts
    )
    return (
        f"<p>{len(alerts)} forecast alert(s) from {html.escape(alerts[0].dag_id)} "
        f"(config {html.escape(str(config.path))}):</p>"
        f"<table border='1' cellpadding='4'><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>{rows}</table>"
        f"<p>All alerts: the table {html.escape(alerts_table_name(config))} of the predictions database.</p>"
    )


# --- task failures (the three DAGs' on_failure_callback) -----------------------------------------


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
