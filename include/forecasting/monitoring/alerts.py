"""Alerts: a failed task, forecasts that turned out bad, data that drifted; told to people.

What raises one: a task that failed for good (forecasting.monitoring.task_failure), and the
accuracy, drift, coverage and revision of a month (forecasting.monitoring.alert_checks).

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
from forecasting.core.names import ALERTS, relation_name

if TYPE_CHECKING:
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
            numbers = f" {format_number(self.value)}"
            if self.threshold is not None:
                numbers += f" (threshold {format_number(self.threshold)})"
        return f"{self.kind} {self.month or '?'}: {self.metric} of {self.subject}{numbers}"

    def identity(self) -> tuple[str, str | None, str, str, str]:
        """What the alert is about, whatever its numbers: a month's check raises it again."""
        return (self.dag_id, _month_key(self.month), self.kind, self.metric, self.subject)


def format_number(value: float) -> str:
    return f"{value:.4g}"


def alerts_table_name(config: Config) -> str:
    return relation_name(config.predictions.table, ALERTS)


def alerts_table(config: Config) -> sa.Table:
    """``<table>_alerts`` (declared in forecasting.publishing.tables)."""
    # Imported here: DAG files import this module (on_task_failure) and must not load pandas.
    from forecasting.publishing import tables

    return tables.for_config(config).alerts


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
                and _sameformat_number(row.value, alert.value)
                and _sameformat_number(row.threshold, alert.threshold)
            )
            if same and wanted <= delivered(row.notified):
                found[i] = f"alert {row.alert_id} of {row.raised_at:%Y-%m-%d %H:%M}, notified: {row.notified}"
                break
    return found


def delivered(notified: str) -> set[str]:
    """The notifiers a ``notified`` cell says the alert reached (not the ones that FAILED)."""
    parts = [p.strip() for p in (notified or "").split(";")]
    return {p for p in parts if p and p != LOG_ONLY and " FAILED" not in p}


def _sameformat_number(stored: float | None, value: float | None) -> bool:
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
            value = format_number(value)
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
