"""Alerts (forecasting.monitoring.alerts) through Airflow's SMTP notifier to a real SMTP server that the test
starts on localhost (aiosmtpd), into <table>_alerts; the accuracy rules on hand-made accuracy rows;
a month checked again sends only new or changed alerts (on SQLite and PostgreSQL); a failing task
of monthly_forecast, whose on_failure_callback sends the alert."""

from __future__ import annotations

import email
from datetime import date
from email.message import Message

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.monitoring.alert_checks import accuracy_alerts, drift_alerts
from forecasting.monitoring.alerts import Alert, raise_alerts
from forecasting.orchestration.localrun import free_port
from forecasting.publishing.query import run_query
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO


class Inbox:
    """The messages an aiosmtpd server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        self.messages.append(email.message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def text(self, message: Message) -> str:
        """Subject and every text part, decoded."""
        parts = [str(message["Subject"])]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_payload(decode=True).decode())
        return "\n".join(parts)


@pytest.fixture
def smtp_server(monkeypatch):
    """A real SMTP server on localhost, and an ``smtp_default`` Airflow connection to it."""
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{port}?disable_tls=true&disable_ssl=true&retry_limit=0&timeout=10"
        "&from_email=forecasts%40example.com",
    )
    yield inbox
    controller.stop()


def configure(tmp_path, **alerts) -> object:
    raw = demo_config_dict(tmp_path)
    raw["alerts"] = alerts
    path = write_config(tmp_path, raw)
    return load_config(path), path


def alert_rows(config) -> list[dict]:
    return run_query(config, "SELECT * FROM forecasts_alerts ORDER BY alert_id").to_dict(orient="records")


DRIFTED = {
    "model_version": "2024-10-0123456789",
    "rows": [
        {
            "kind": "feature",
            "feature": "price",
            "psi": 1.25,
            "ks_statistic": 0.6,
            "ks_pvalue": 1e-30,
            "threshold": 0.2,
            "drifted": True,
            "reference_first_month": "2023-10",
            "reference_last_month": "2024-09",
        },
        {"kind": "feature", "feature": "promo", "psi": 0.01, "threshold": 0.2, "drifted": False},
        {
            "kind": "entities",
            "feature": "new_entities",
            "share": 0.25,
            "entities": 40,
            "threshold": 0.1,
            "drifted": True,
        },
    ],
}


def test_drift_alerts_arrive_by_email_naming_dag_month_metric_and_threshold(tmp_path, smtp_server):
    config, _ = configure(
        tmp_path, notifiers=[{"type": "smtp", "to": ["planning@example.com", "ops@example.com"]}]
    )
    month = pd.Period("2024-11", "M")
    found = drift_alerts(DRIFTED, month, "forecast_monitoring", "manual__1")
    assert [(a.metric, a.subject, a.value, a.threshold) for a in found] == [
        ("psi", "price", 1.25, 0.2),
        ("share", "new_entities", 0.25, 0.1),
    ]
    raised = raise_alerts(config, found)
    assert raised["raised"] == 2 and raised["notified"] == ["smtp:planning@example.com,ops@example.com"]

    [message] = smtp_server.messages  # both alerts in one message
    assert smtp_server.recipients == [["planning@example.com", "ops@example.com"]]
    assert message["From"] == "forecasts@example.com"
    assert message["Subject"] == (
        "[forecast alert] forecast_monitoring 2024-11: drift 2024-11: psi of price 1.25 (threshold 0.2) and 1 more"
    )
    text = smtp_server.text(message)
    for expected in ("forecast_monitoring", "2024-11", "psi", "price", "0.2", "share", "new_entities", "0.1"):
        assert expected in text, expected
    assert "PSI 1.25, at least monitoring.psi_threshold 0.2" in text
    assert "against the training window 2023-10..2024-09 of 2024-10-0123456789" in text

    rows = alert_rows(config)
    assert [
        (r["dag_id"], r["kind"], r["metric"], r["subject"], r["value"], r["threshold"]) for r in rows
    ] == [
        ("forecast_monitoring", "drift", "psi", "price", 1.25, 0.2),
        ("forecast_monitoring", "drift", "share", "new_entities", 0.25, 0.1),
    ]
    assert {str(r["month"])[:10] for r in rows} == {"2024-11-01"}
    assert {r["notified"] for r in rows} == {"smtp:planning@example.com,ops@example.com"}
    assert {r["run_id"] for r in rows} == {"manual__1"}


def test_without_notifiers_alerts_are_logged_and_written(tmp_path, caplog):
    config, _ = configure(tmp_path)
    alert = Alert(
        "forecast_monitoring", "2024-11", "accuracy", "wape", "horizon 1", 0.8, 0.5, "WAPE too high"
    )
    with caplog.at_level("WARNING", logger="forecasting.monitoring.alerts"):
        raised = raise_alerts(config, [alert])
    assert raised["notified"] == []
    assert "ALERT accuracy 2024-11: wape of horizon 1 0.8 (threshold 0.5): WAPE too high" in caplog.text
    [row] = alert_rows(config)
    assert (row["metric"], row["value"], row["threshold"], row["notified"]) == ("wape", 0.8, 0.5, "log only")
    assert raise_alerts(config, []) == {
        "raised": 0,
        "notified": [],
        "alerts": [],
        "table": None,
        "repeats": [],
    }
    assert len(alert_rows(config)) == 1
    # Raised again (the month checked again): logged as a repeat, not written twice.
    with caplog.at_level("INFO", logger="forecasting.monitoring.alerts"):
        again = raise_alerts(config, [alert])
    assert again["raised"] == 0 and [r["alert"] for r in again["repeats"]] == [alert.line()]
    assert f"Repeat, not sent again (alert {row['alert_id']} of " in caplog.text
    assert len(alert_rows(config)) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def predictions_url(request, tmp_path):
    """The predictions database: SQLite under tmp_path, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield None
        return
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(request.getfixturevalue("postgres_server")) as url:
        yield url


def test_checking_a_month_again_sends_only_new_or_changed_alerts(tmp_path, smtp_server, predictions_url):
    """Monitoring re-run for a month raises the same alerts: they are not sent (or written) twice;
    a changed value, a new alert, or one whose sending failed, is sent."""
    from forecasting.monitoring.alert_checks import check_month

    raw = demo_config_dict(tmp_path)
    raw["alerts"] = {"notifiers": [{"type": "smtp", "to": ["planning@example.com"]}]}
    if predictions_url:
        raw["predictions"]["url"] = predictions_url
    config = load_config(write_config(tmp_path, raw))
    november = pd.Period("2024-11", "M")

    first = check_month(config, november, DRIFTED, run_id="manual__1")
    assert (first["raised"], first["repeats"]) == (2, [])
    again = check_month(config, november, DRIFTED, run_id="manual__2")  # the same month re-run
    assert again["raised"] == 0 and again["notified"] == []
    assert [r["alert"] for r in again["repeats"]] == [
        "drift 2024-11: psi of price 1.25 (threshold 0.2)",
        "drift 2024-11: share of new_entities 0.25 (threshold 0.1)",
    ]
    assert len(smtp_server.messages) == 1
    assert [(r["subject"], r["run_id"]) for r in alert_rows(config)] == [
        ("price", "manual__1"),
        ("new_entities", "manual__1"),
    ]

    # Price drifted further once the month's data was corrected: only that alert goes out.
    changed = {**DRIFTED, "rows": [{**DRIFTED["rows"][0], "psi": 1.5}, *DRIFTED["rows"][1:]]}
    third = check_month(config, november, changed, run_id="manual__3")
    assert third["raised"] == 1 and len(third["repeats"]) == 1
    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[1]["Subject"] == (
        "[forecast alert] forecast_monitoring 2024-11: drift 2024-11: psi of price 1.5 (threshold 0.2)"
    )
    assert "new_entities" not in smtp_server.text(smtp_server.messages[1])
    # Another month with the same numbers is another alert.
    december = check_month(config, pd.Period("2024-12", "M"), DRIFTED, run_id="manual__4")
    assert december["raised"] == 2 and len(smtp_server.messages) == 3
    rows = alert_rows(config)
    assert [(str(r["month"])[:7], r["subject"], r["value"], r["run_id"]) for r in rows] == [
        ("2024-11", "price", 1.25, "manual__1"),
        ("2024-11", "new_entities", 0.25, "manual__1"),
        ("2024-11", "price", 1.5, "manual__3"),
        ("2024-12", "price", 1.25, "manual__4"),
        ("2024-12", "new_entities", 0.25, "manual__4"),
    ]

    # A task failure is an event: a second failure of the same task for the month is sent too.
    failure = Alert(
        "monthly_forecast", "2024-11", "task_failure", "task_state", "extract", None, None, "failed"
    )
    assert raise_alerts(config, [failure])["raised"] == raise_alerts(config, [failure])["raised"] == 1
    assert len(smtp_server.messages) == 5


def test_an_alert_whose_sending_failed_or_to_a_new_notifier_is_sent_again(tmp_path, smtp_server, monkeypatch):
    import os

    from forecasting.monitoring.alert_checks import check_month

    config, _ = configure(tmp_path, notifiers=[{"type": "smtp", "to": "planning@example.com"}])
    november = pd.Period("2024-11", "M")
    working = os.environ["AIRFLOW_CONN_SMTP_DEFAULT"]
    monkeypatch.setenv(  # nothing listens there
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{free_port()}?disable_tls=true&disable_ssl=true&retry_limit=0&timeout=5"
        "&from_email=forecasts%40example.com",
    )
    down = check_month(config, november, DRIFTED)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", working)
    assert down["raised"] == 2 and "FAILED" in down["notified"][0] and smtp_server.messages == []
    up = check_month(config, november, DRIFTED)  # the server is back: the alerts are not repeats
    assert (up["raised"], up["notified"], len(smtp_server.messages)) == (2, ["smtp:planning@example.com"], 1)
    assert check_month(config, november, DRIFTED)["raised"] == 0
    # A notifier added since: it has not been told, so the alerts go out (to every notifier).
    config2, _ = configure(
        tmp_path,
        notifiers=[
            {"type": "smtp", "to": "planning@example.com"},
            {"type": "smtp", "to": "ops@example.com"},
        ],
    )
    assert check_month(config2, november, DRIFTED)["raised"] == 2
    assert smtp_server.recipients[1:] == [["planning@example.com"], ["ops@example.com"]]
    assert check_month(config2, november, DRIFTED)["raised"] == 0
    assert len(alert_rows(config)) == 6


def test_an_smtp_server_that_is_down_does_not_lose_the_alert(tmp_path, monkeypatch):
    config, _ = configure(tmp_path, notifiers=[{"type": "smtp", "to": "planning@example.com"}])
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{free_port()}?disable_tls=true&disable_ssl=true&retry_limit=0&timeout=5"
        "&from_email=forecasts%40example.com",
    )
    alert = Alert("forecast_monitoring", "2024-11", "drift", "psi", "price", 1.5, 0.2, "price drifted")
    raised = raise_alerts(config, [alert])  # no exception
    [notified] = raised["notified"]
    assert notified.startswith("smtp:planning@example.com FAILED: ")
    [row] = alert_rows(config)
    assert row["notified"] == notified and row["message"] == "price drifted"


def accuracy_row(month: str, horizon: int, wape: float, naive: float) -> dict:
    return {
        "forecast_month": date.fromisoformat(f"{month}-01"),
        "run_month": (pd.Period(month, "M") - horizon).to_timestamp().date(),
        "horizon": horizon,
        "model_version": "m",
        "segment_column": "(all)",
        "segment": "(all)",
        "forecasts": 10,
        "actual_sum": 100.0,
        "prediction_sum": 100.0,
        "wape": wape,
        "best_naive": "mean_3",
        "best_naive_wape": naive,
        "fva": naive - wape,
        "scored_at": pd.Timestamp("2024-12-01", tz="UTC"),
    }


def test_accuracy_alerts_above_the_threshold_or_worse_than_naive_for_n_months(tmp_path):
    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import ensure_monitoring_schema

    config, _ = configure(tmp_path, max_wape=0.5, worse_than_naive_months=3)
    rows = [
        # Horizon 1: worse than naive in September, October and November.
        accuracy_row("2024-09", 1, 0.30, 0.28),
        accuracy_row("2024-10", 1, 0.31, 0.29),
        accuracy_row("2024-11", 1, 0.32, 0.30),
        # Horizon 2: worse in October and November only (better in September).
        accuracy_row("2024-09", 2, 0.30, 0.35),
        accuracy_row("2024-10", 2, 0.40, 0.39),
        accuracy_row("2024-11", 2, 0.60, 0.55),  # and above max_wape 0.5
        # Horizon 3: no forecasts scored for October, so no streak; a segment's row never counts.
        accuracy_row("2024-09", 3, 0.50, 0.20),
        accuracy_row("2024-11", 3, 0.45, 0.20),
        {**accuracy_row("2024-11", 3, 0.90, 0.20), "segment_column": "category", "segment": "snacks"},
    ]
    engine = make_engine(config.predictions.database)
    with engine.begin() as conn:
        accuracy, _ = ensure_monitoring_schema(conn, config, {"store_id": "int64", "item_id": "int64"})
        conn.execute(accuracy.insert(), rows)
    engine.dispose()

    found = accuracy_alerts(config, pd.Period("2024-11", "M"), run_id="r")
    assert [(a.kind, a.metric, a.subject, a.value, a.threshold) for a in found] == [
        ("accuracy", "wape_vs_best_naive", "horizon 1", pytest.approx(0.32), pytest.approx(0.30)),
        ("accuracy", "wape", "horizon 2", pytest.approx(0.60), 0.5),
    ]
    assert found[0].message == (
        "The horizon-1 forecasts were worse than the best naive forecast 3 month(s) in a row "
        "(alerts.worse_than_naive_months): realised WAPE 2024-09 0.3 against mean_3 0.28; "
        "2024-10 0.31 against mean_3 0.29; 2024-11 0.32 against mean_3 0.3."
    )
    # Two months in a row are enough with worse_than_naive_months: 2; none with 0 and no max_wape.
    config2, _ = configure(tmp_path, worse_than_naive_months=2)
    assert [(a.metric, a.subject) for a in accuracy_alerts(config2, pd.Period("2024-11", "M"))] == [
        ("wape_vs_best_naive", "horizon 1"),
        ("wape_vs_best_naive", "horizon 2"),
    ]
    config0, _ = configure(tmp_path, worse_than_naive_months=0)
    assert accuracy_alerts(config0, pd.Period("2024-11", "M")) == []
    assert accuracy_alerts(config, pd.Period("2024-12", "M")) == []  # nothing scored for December


def test_no_accuracy_table_yet_raises_nothing(tmp_path):
    config, _ = configure(tmp_path, max_wape=0.0)
    assert accuracy_alerts(config, pd.Period("2024-11", "M")) == []


@pytest.mark.usefixtures("airflow_db")
def test_a_failed_task_of_monthly_forecast_sends_an_alert_through_its_failure_callback(
    tmp_path, smtp_server, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = f"sqlite:///{tmp_path}/no-such-folder/source.db"  # extract fails for good
    raw["alerts"] = {"notifiers": [{"type": "smtp", "to": "ops@example.com"}]}
    path = write_config(tmp_path, raw)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    run = bag.dags["monthly_forecast"].test(run_conf={"month": "2024-06"})
    assert str(run.state) == "failed"

    [message] = smtp_server.messages
    text = smtp_server.text(message)
    assert message["Subject"].startswith("[forecast alert] monthly_forecast 2024-06: task_failure 2024-06:")
    for expected in ("monthly_forecast", "2024-06", "task_failure", "task_state", "extract", run.run_id):
        assert expected in text, expected
    config = load_config(path)
    [row] = alert_rows(config)
    assert (row["dag_id"], row["task_id"], row["kind"], row["run_id"]) == (
        "monthly_forecast",
        "extract",
        "task_failure",
        run.run_id,
    )
    assert str(row["month"])[:10] == "2024-06-01" and row["notified"] == "smtp:ops@example.com"
    assert "Task extract of monthly_forecast failed for month 2024-06" in row["message"]
    with sa.create_engine(config.predictions.database.url).connect() as conn:  # nothing else written
        assert conn.exec_driver_sql("SELECT count(*) FROM forecasts_alerts").scalar() == 1
