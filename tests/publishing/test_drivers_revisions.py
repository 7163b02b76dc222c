"""``<table>_drivers`` published in the forecasts' transaction, and the revisions views
``<table>_revisions`` and ``<table>_churn`` over two runs of different months, with the
revision alert: on SQLite and PostgreSQL.

Hand-made: entities (store, item) (1, 1), (1, 2), (2, 1), horizons 1-3. Run 2024-05 forecasts
100 + 10 * store + item for each of June, July and August; run 2024-06 forecasts July and August
at 1.5 times that (and September): the plan of July and August moved by +50%.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.modeling import drivers
from forecasting.publishing.publish import publish
from forecasting.publishing.query import run_query
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.servers import analyst_role

ENTITIES = ((1, 1), (1, 2), (2, 1))
FACTOR = {"2024-05": 1.0, "2024-06": 1.5}


def base(store: int, item: int) -> float:
    return 100.0 + 10 * store + item


def forecasts(run: str) -> pd.DataFrame:
    origin = pd.Period(run, "M")
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "forecast_month": (origin + h).to_timestamp().date(),
                "horizon": h,
                "prediction": base(s, i) * FACTOR[run],
            }
            for s, i in ENTITIES
            for h in (1, 2, 3)
        ]
    )


def explained(frame: pd.DataFrame) -> pd.DataFrame:
    """Drivers as predict makes them: level 70%, price 20%, bias 10% of each prediction."""
    wide = frame.assign(
        driver_level=0.7 * frame["prediction"],
        driver_price=0.2 * frame["prediction"],
        driver_bias=0.1 * frame["prediction"],
        explained=1.0,
    )
    return drivers.long_form(wide, ["store_id", "item_id"])


def publish_run(config, run: str, with_drivers=True, **kwargs):
    frame = forecasts(run)
    return publish(
        frame,
        config,
        pd.Period(run, "M"),
        model_version=f"{run}-model",
        run_id=run,
        drivers=explained(frame) if with_drivers else None,
        **kwargs,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        else:
            url = f"sqlite:///{tmp_path}/predictions.db"
        raw = demo_config_dict(tmp_path)
        raw["predictions"] = {"url": url, "table": "forecasts"}
        raw["monitoring"] = {"max_total_revision": 0.2}
        yield SimpleNamespace(backend=request.param, url=url, config=load_config(write_config(tmp_path, raw)))


def rows(config, sql: str) -> list[dict]:
    frame = run_query(config, sql)
    return [
        {k: (v.isoformat()[:10] if isinstance(v, date) else None if pd.isna(v) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def test_the_drivers_are_published_with_the_forecasts_and_sum_to_them(database):
    config = database.config
    result = publish_run(config, "2024-05")
    assert (result.rows, result.drivers) == (9, 27)
    summed = rows(
        config,
        "SELECT f.store_id, f.item_id, f.horizon, f.prediction, SUM(d.contribution) AS total, "
        "SUM(d.share) AS shares, MIN(d.explained) AS explained, MIN(d.model_version) AS made_by "
        "FROM forecasts f JOIN forecasts_drivers d ON d.run_month = f.run_month AND d.store_id = f.store_id "
        "AND d.item_id = f.item_id AND d.horizon = f.horizon GROUP BY f.store_id, f.item_id, f.horizon, "
        "f.prediction",
    )
    assert len(summed) == 9
    for row in summed:
        assert row["total"] == pytest.approx(row["prediction"])
        assert row["shares"] == pytest.approx(1.0)
        assert (row["explained"], row["made_by"]) == (1.0, "2024-05-model")
    # A re-publish by a baseline (no drivers) withdraws the month's drivers with its forecasts.
    publish_run(config, "2024-05", with_drivers=False)
    assert rows(config, "SELECT COUNT(*) AS n FROM forecasts_drivers") == [{"n": 0}]


def test_a_failed_publish_writes_no_drivers_and_keeps_the_month_as_it_was(database):
    config = database.config
    publish_run(config, "2024-05")
    before = rows(config, "SELECT * FROM forecasts_drivers ORDER BY store_id, item_id, horizon, family")
    frame = forecasts("2024-05")
    made = explained(frame)
    broken = pd.concat([made, made.tail(1)])  # a row twice: the primary key fails mid-transaction
    with pytest.raises(sa.exc.IntegrityError):
        publish(frame, config, pd.Period("2024-05", "M"), model_version="v2", run_id="again", drivers=broken)
    assert (
        rows(config, "SELECT * FROM forecasts_drivers ORDER BY store_id, item_id, horizon, family") == before
    )
    assert {r["run_id"] for r in rows(config, "SELECT run_id FROM forecasts")} == {"2024-05"}
    # A first publish of a month that fails writes neither forecasts nor drivers.
    with pytest.raises(sa.exc.IntegrityError):
        publish(
            forecasts("2024-06"),
            config,
            pd.Period("2024-06", "M"),
            model_version="v",
            run_id="x",
            drivers=broken,
        )
    assert rows(config, "SELECT COUNT(*) AS n FROM forecasts WHERE run_month = '2024-06-01'") == [{"n": 0}]
    assert rows(config, "SELECT COUNT(*) AS n FROM forecasts_drivers WHERE run_month = '2024-06-01'") == [
        {"n": 0}
    ]


def test_revisions_after_two_runs_of_different_months(database):
    config = database.config
    for run in FACTOR:
        publish_run(config, run)
    found = rows(
        config,
        "SELECT store_id, item_id, forecast_month, run_month, horizon, prediction, previous_run_month, "
        "previous_prediction, change FROM forecasts_revisions ORDER BY store_id, item_id, forecast_month, run_month",
    )
    # Each of June..August once from May; July and August again from June; September from June only.
    assert len(found) == 3 * (3 + 3)
    by_key = {(r["store_id"], r["item_id"], r["forecast_month"], r["run_month"]): r for r in found}
    for s, i in ENTITIES:
        june = by_key[(s, i, "2024-06-01", "2024-05-01")]
        assert (june["previous_run_month"], june["previous_prediction"], june["change"]) == (None, None, None)
        july = by_key[(s, i, "2024-07-01", "2024-06-01")]
        assert july["horizon"] == 1
        assert july["previous_run_month"] == "2024-05-01"
        assert july["previous_prediction"] == pytest.approx(base(s, i))
        assert july["change"] == pytest.approx(0.5 * base(s, i))
        assert by_key[(s, i, "2024-09-01", "2024-06-01")]["previous_prediction"] is None
    [churn] = rows(config, "SELECT * FROM forecasts_churn")
    previous = 2 * sum(base(s, i) for s, i in ENTITIES)  # July and August
    assert churn["run_month"] == "2024-06-01"
    assert churn["revised"] == 6
    assert churn["previous_total"] == pytest.approx(previous)
    assert churn["total"] == pytest.approx(1.5 * previous)
    assert churn["churn"] == pytest.approx(0.5)
    assert churn["total_revision"] == pytest.approx(0.5)


def test_the_revision_alert_fires_when_a_run_moves_the_total_too_far(database):
    from forecasting.monitoring.alert_checks import check_month, revision_alerts

    config = database.config
    publish_run(config, "2024-05")
    assert revision_alerts(config, pd.Period("2024-05", "M")) == []  # nothing to revise yet
    publish_run(config, "2024-06")
    [alert] = revision_alerts(config, pd.Period("2024-06", "M"))
    assert (alert.kind, alert.metric, alert.value, alert.threshold) == (
        "revision",
        "total_revision",
        0.5,
        0.2,
    )
    assert "by +50.0%" in alert.message and "monitoring.max_total_revision 20.0%" in alert.message
    raised = check_month(config, pd.Period("2024-06", "M"), None)
    assert raised["raised"] == 1
    stored = rows(config, "SELECT kind, metric, value, threshold FROM forecasts_alerts")
    assert stored == [{"kind": "revision", "metric": "total_revision", "value": 0.5, "threshold": 0.2}]
    # Checking the month again does not tell it twice; a looser threshold raises nothing.
    assert check_month(config, pd.Period("2024-06", "M"), None)["raised"] == 0
    looser = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"max_total_revision": 0.6})}
    )
    assert revision_alerts(looser, pd.Period("2024-06", "M")) == []


def test_the_analyst_role_reads_the_drivers_and_the_revisions(database):
    if database.backend != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    for run in FACTOR:
        publish_run(database.config, run)
    with analyst_role(database.url) as (granted, analyst):
        assert {"forecasts_drivers", "forecasts_revisions", "forecasts_churn"} <= set(granted)
        with analyst.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM forecasts_drivers").scalar() == 54
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM forecasts_revisions").scalar() == 18
            assert conn.exec_driver_sql("SELECT churn FROM forecasts_churn").scalar() == pytest.approx(0.5)
