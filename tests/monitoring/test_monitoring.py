"""Realised accuracy (forecasting.monitoring.accuracy), on SQLite and PostgreSQL.

Hand-made data first, every number worked out below: stores 1-2 x items 1-3 (items 1 and 2 are
snacks, 3 drinks) sell 10 * store + item + k units in month k (k = 0 in 2023-01 ... 23 in
2024-12), except store 2 / item 3, which has no row in December (0 sold). Two runs published
every horizon 1-3: 2024-10 forecast the truth + 0.5, 2024-11 the truth - 2.

Then the pipeline on the synthetic data for four consecutive months with a shift injected in the
third (prices x3, demand x5), the last one through the monthly_forecast DAG (its publish's Asset
event names the month) and the forecast_monitoring DAG: accuracy checked against the published
forecasts and the sales as pandas sees them, drift flagging exactly the shifted features, alerts
arriving at a real SMTP server, nothing flagged before the shift.
"""

from __future__ import annotations

import email
import socket
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from forecasting.core import paths
from forecasting.core.config import load_config
from forecasting.monitoring.accuracy import ALL, months_to_score, realised_accuracy
from forecasting.publishing.publish import publish
from forecasting.publishing.query import run_query
from tests.helpers.config import END_MONTH, demo_config_dict, write_config
from tests.helpers.paths import REPO
from tests.helpers.servers import analyst_role

STORES, ITEMS = (1, 2), (1, 2, 3)
CATEGORY = {1: "snacks", 2: "snacks", 3: "drinks"}
MISSING = (2, 3, "2024-12")  # store, item, month without a row
OFFSETS = {"2024-10": 0.5, "2024-11": -2.0}
FIRST = pd.Period("2023-01", "M")


def units(store: int, item: int, month: pd.Period) -> float:
    return float(10 * store + item + (month - FIRST).n)


def sales() -> pd.DataFrame:
    """As a validated snapshot of 2024-12 looks: month starts as timestamps."""
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "month": m.to_timestamp(),
                "units": units(s, i, m),
                "price": 2.0,
                "promo": 0,
                "store_size": "small",
                "region": "north",
                "category": CATEGORY[i],
            }
            for s in STORES
            for i in ITEMS
            for m in pd.period_range(FIRST, "2024-12", freq="M")
            if (s, i, str(m)) != MISSING
        ]
    )


def forecasts(run: str, offset: float) -> pd.DataFrame:
    origin = pd.Period(run, "M")
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "forecast_month": (origin + h).to_timestamp().date(),
                "horizon": h,
                "prediction": units(s, i, origin + h) + offset,
            }
            for s in STORES
            for i in ITEMS
            for h in (1, 2, 3)
        ]
    )


def publish_run(config, run: str, offset: float) -> None:
    publish(forecasts(run, offset), config, pd.Period(run, "M"), model_version=f"{run}-model", run_id=run)


@pytest.fixture(params=["sqlite", "postgresql"])
def handmade(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        else:
            url = f"sqlite:///{tmp_path}/predictions.db"
        raw = demo_config_dict(tmp_path)
        raw["predictions"] = {"url": url, "table": "forecasts"}
        raw["monitoring"] = {"segment": "category"}
        config = load_config(write_config(tmp_path, raw))
        for run, offset in OFFSETS.items():
            publish_run(config, run, offset)
        yield SimpleNamespace(backend=request.param, url=url, config=config)


def rows(config, sql: str) -> list[dict]:
    frame = run_query(config, sql)
    return [
        {k: (v.isoformat()[:10] if isinstance(v, date | datetime) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def accuracy(config, month: str) -> dict[tuple, dict]:
    found = rows(
        config,
        f"SELECT * FROM forecasts_accuracy WHERE forecast_month = '{month}-01' ORDER BY run_month, segment",
    )
    return {(r["run_month"][:7], r["horizon"], r["segment"]): r for r in found}


def test_realised_accuracy_scores_each_published_run_against_the_actuals_and_the_naive_forecasts(handmade):
    config = handmade.config
    snapshot = sales()
    november = realised_accuracy(snapshot, config, pd.Period("2024-11", "M"), run_id="monitor_1")
    # One run: all, snacks, drinks, and its entities' age (22 months of history as of 2024-10).
    assert (november.forecasts, november.accuracy_rows) == (6, 4)

    # November (k = 22): the October run's horizon 1, all 6 entities over by 0.5. 234 units sold
    # (10*(1+1+1+2+2+2) + 2*(1+2+3) + 6*22). From the history up to October (k = 21): last value
    # k = 21 (under by 1), mean of k = 19..21 (under by 2), November a year before k = 10 (by 12).
    got = accuracy(config, "2024-11")
    assert set(got) == {
        ("2024-10", 1, ALL),
        ("2024-10", 1, "snacks"),
        ("2024-10", 1, "drinks"),
        ("2024-10", 1, "6-23"),
    }
    overall = got[("2024-10", 1, ALL)]
    expected = {
        "model_version": "2024-10-model",
        "segment_column": ALL,
        "forecasts": 6,
        "actual_sum": 234.0,
        "prediction_sum": 237.0,
        "wape": 3 / 234,
        "mae": 0.5,
        "bias": 0.5,
        "bias_pct": 3 / 234,
        "last_value_wape": 6 / 234,
        "last_value_mae": 1.0,
        "last_value_bias": -1.0,
        "mean_3_wape": 12 / 234,
        "mean_3_bias": -2.0,
        "seasonal_naive_wape": 72 / 234,
        "seasonal_naive_mae": 12.0,
        "best_naive": "last_value",
        "best_naive_wape": 6 / 234,
        "fva": 3 / 234,
        "run_id": "monitor_1",
    }
    assert {k: overall[k] for k in expected} == pytest.approx(expected)
    # Per category: snacks are items 1 and 2 (154 units), drinks item 3 (80 units).
    snacks, drinks = got[("2024-10", 1, "snacks")], got[("2024-10", 1, "drinks")]
    assert (snacks["segment_column"], snacks["forecasts"], snacks["actual_sum"]) == ("category", 4, 154.0)
    assert (drinks["forecasts"], drinks["actual_sum"]) == (2, 80.0)
    assert (snacks["wape"], drinks["wape"]) == pytest.approx((2 / 154, 1 / 80))
    # By age: every entity first sold in 2023-01, 22 months before the run: all in bucket 6-23.
    young = got[("2024-10", 1, "6-23")]
    assert (young["segment_column"], young["forecasts"]) == ("history_months", 6)
    assert {k: young[k] for k in expected if k not in ("segment_column",)} == pytest.approx(
        {k: v for k, v in expected.items() if k != "segment_column"}
    )

    # December (k = 23): store 2 / item 3 has no row, so it sold 0; the other five sold 194.
    december = realised_accuracy(snapshot, config, pd.Period("2024-12", "M"), run_id="monitor_2")
    assert (december.forecasts, december.accuracy_rows) == (12, 8)  # two runs x (all, snacks, drinks, 6-23)
    got = accuracy(config, "2024-12")
    # The November run's horizon 1: five under by 2, store 2 / item 3 forecast 44 for 0 sold.
    h1 = got[("2024-11", 1, ALL)]
    assert (h1["forecasts"], h1["actual_sum"], h1["model_version"]) == (6, 194.0, "2024-11-model")
    assert (h1["wape"], h1["mae"], h1["bias"]) == pytest.approx((54 / 194, 54 / 6, 34 / 6))
    # Its naive forecasts from the history up to November: last value (k = 22) under by 1 and 45
    # for 0, mean of k = 20..22 under by 2 and 44 for 0, k = 11 under by 12 and 34 for 0.
    assert (h1["last_value_wape"], h1["mean_3_wape"], h1["seasonal_naive_wape"]) == pytest.approx(
        (50 / 194, 54 / 194, 94 / 194)
    )
    assert (h1["best_naive"], h1["fva"]) == ("last_value", pytest.approx(-4 / 194))  # worse than naive
    # The October run's horizon 2: over by 0.5, and 46.5 for 0; naive as of October (k = 21).
    h2 = got[("2024-10", 2, ALL)]
    assert (h2["wape"], h2["bias"]) == pytest.approx((49 / 194, 49 / 6))
    assert (h2["last_value_wape"], h2["mean_3_wape"]) == pytest.approx((54 / 194, 58 / 194))
    assert (h2["best_naive"], h2["fva"]) == ("last_value", pytest.approx(5 / 194))
    # Drinks in December, November's run: store 1 under by 2 (36 sold), store 2 over by 44.
    d = got[("2024-11", 1, "drinks")]
    assert (d["actual_sum"], d["wape"], d["bias"]) == pytest.approx((36.0, 46 / 36, 21.0))

    errors = rows(
        config,
        "SELECT * FROM forecasts_errors WHERE store_id = 2 AND item_id = 3 ORDER BY forecast_month, horizon",
    )
    assert [
        (r["forecast_month"], r["horizon"], r["run_month"], r["actual"], r["prediction"], r["error"])
        for r in errors
    ] == [
        ("2024-11-01", 1, "2024-10-01", 45.0, 45.5, 0.5),
        ("2024-12-01", 1, "2024-11-01", 0.0, 44.0, 44.0),
        ("2024-12-01", 2, "2024-10-01", 0.0, 46.5, 46.5),
    ]
    assert rows(config, "SELECT count(*) AS n FROM forecasts_errors") == [{"n": 18}]

    # The tracking signal of horizon 1 over the two months: store 2 / item 3 errs +0.5 and +44
    # (cumulative 44.5, mean absolute 22.25: 2.0); store 1 / item 1 +0.5 and -2 (-1.5 / 1.25).
    signal = {
        (r["store_id"], r["item_id"]): r
        for r in rows(config, "SELECT * FROM forecasts_tracking_signal WHERE horizon = 1")
    }
    assert len(signal) == 6
    assert (signal[(2, 3)]["months"], signal[(2, 3)]["tracking_signal"]) == (2, pytest.approx(2.0))
    assert signal[(1, 1)]["cumulative_error"] == pytest.approx(-1.5)
    assert signal[(1, 1)]["mean_absolute_error"] == pytest.approx(1.25)
    assert signal[(1, 1)]["tracking_signal"] == pytest.approx(-1.2)
    assert (signal[(1, 1)]["first_month"], signal[(1, 1)]["last_month"]) == ("2024-11-01", "2024-12-01")

    # Scoring December again after November was re-published (now the truth + 1): December's rows
    # are replaced, never doubled, and November's stay as they were.
    before_november = accuracy(config, "2024-11")
    publish_run(config, "2024-11", 1.0)
    realised_accuracy(snapshot, config, pd.Period("2024-12", "M"), run_id="monitor_3")
    again = accuracy(config, "2024-12")
    assert set(again) == set(got)
    assert again[("2024-11", 1, ALL)]["bias"] == pytest.approx((5 * 1 + 47) / 6)
    assert again[("2024-11", 1, ALL)]["run_id"] == "monitor_3"
    assert again[("2024-10", 2, ALL)]["wape"] == pytest.approx(49 / 194)
    assert accuracy(config, "2024-11") == before_november
    assert rows(config, "SELECT count(*) AS n FROM forecasts_errors") == [{"n": 18}]
    assert rows(config, "SELECT count(*) AS n FROM forecasts_accuracy") == [{"n": 12}]


def test_nothing_published_for_the_month_scores_nothing_and_a_month_without_actuals_is_refused(handmade):
    from forecasting.core.errors import DataError, is_permanent

    config = handmade.config
    early = realised_accuracy(sales(), config, pd.Period("2024-06", "M"))  # no run before 2024-10
    assert (early.forecasts, early.accuracy_rows) == (0, 0)
    assert rows(config, "SELECT count(*) AS n FROM forecasts_accuracy") == [{"n": 0}]
    # A snapshot that ends in November has no actuals for December.
    november = sales()[sales()["month"] < pd.Timestamp("2024-12-01")]
    with pytest.raises(DataError, match="no rows in 2024-12") as refused:
        realised_accuracy(november, config, pd.Period("2024-12", "M"))
    assert is_permanent(refused.value)


@pytest.mark.parametrize("handmade", ["postgresql"], indirect=True)
def test_the_analyst_role_reads_the_accuracy_tables(handmade):
    realised_accuracy(sales(), handmade.config, pd.Period("2024-12", "M"))
    with analyst_role(handmade.url) as (granted, analyst):
        assert {"forecasts_accuracy", "forecasts_errors", "forecasts_tracking_signal"} <= set(granted)
        with analyst.connect() as conn:
            for relation in ("forecasts_accuracy", "forecasts_errors", "forecasts_tracking_signal"):
                assert conn.exec_driver_sql(f"SELECT count(*) FROM {relation}").scalar() > 0, relation
        with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("DELETE FROM forecasts_accuracy")


def with_steps(run: str, offset: float, width: float) -> pd.DataFrame:
    """The run's forecasts (the truth + ``offset``) with what predict stores beside them: the
    model's own forecast (the truth + 1), the statistical one (the truth - 3), a band of
    ``width`` units each side (drinks' p10 a quarter unit under the forecast) and a demand class
    (drinks erratic, snacks smooth)."""
    frame = forecasts(run, offset)
    truth = frame["prediction"] - offset
    drinks = frame["item_id"] == 3
    frame["model_forecast"], frame["statistical_forecast"] = truth + 1, truth - 3
    frame["p10"] = np.where(drinks, frame["prediction"] - 0.25, frame["prediction"] - width)
    frame["p90"] = frame["prediction"] + width
    frame["demand_class"] = np.where(drinks, "erratic", "smooth")
    return frame


def fva(config, month: str) -> dict[tuple, dict]:
    found = rows(config, f"SELECT * FROM forecasts_fva WHERE forecast_month = '{month}-01'")
    return {
        (r["run_month"][:7], r["horizon"], r["segment_column"], r["segment"], r["step"]): r for r in found
    }


def test_the_value_added_waterfall_per_step_segment_and_planner(handmade, monkeypatch):
    """November's forecasts of the October run, step by step (234 units sold): seasonal naive
    under by 12 each, the statistical forecast under by 3, the model over by 1, the published
    blend over by 0.5; then two planners' overrides, one that helped and one that did not."""
    from forecasting.monitoring import value_added

    config = handmade.config
    publish(
        with_steps("2024-10", 0.5, 1.0),
        config,
        pd.Period("2024-10", "M"),
        model_version="2024-10-model",
        run_id="r",
    )
    realised_accuracy(sales(), config, pd.Period("2024-11", "M"), run_id="monitor_1")

    got = fva(config, "2024-11")
    steps = [got[("2024-10", 1, ALL, ALL, step)] for step in value_added.STEPS]
    assert [(r["step"], r["step_order"], r["forecaster"]) for r in steps] == [
        ("naive", 1, "seasonal_naive"),
        ("statistical", 2, "theta"),  # monitoring.fva_statistical's default
        ("model", 3, "2024-10-model"),
        ("published", 4, "2024-10-model"),
        ("final", 5, "overrides"),  # no overrides yet: final is the published forecast
    ]
    assert [r["wape"] for r in steps] == pytest.approx([72 / 234, 18 / 234, 6 / 234, 3 / 234, 3 / 234])
    assert [r["value_added"] for r in steps[1:]] == pytest.approx([54 / 234, 12 / 234, 3 / 234, 0.0])
    assert steps[0]["value_added"] is None or np.isnan(steps[0]["value_added"])
    assert steps[-1]["value_added_vs_naive"] == pytest.approx(69 / 234)
    assert {(r["forecasts"], r["overridden"], r["actual_sum"]) for r in steps} == {(6, 0, 234.0)}
    assert [r["forecast_sum"] for r in steps] == pytest.approx([234 - 72, 234 - 18, 240, 237, 237])
    # Per category (monitoring.segment) and per demand class as of the run: drinks are erratic.
    assert got[("2024-10", 1, "category", "drinks", "model")]["wape"] == pytest.approx(2 / 80)
    assert got[("2024-10", 1, "demand_class", "erratic", "statistical")]["wape"] == pytest.approx(6 / 80)
    assert got[("2024-10", 1, "demand_class", "smooth", "naive")]["forecasts"] == 4
    assert len(got) == 5 * 5  # (all), two categories, two demand classes: five steps each

    # The realised p10-p90 coverage: drinks' actuals (half a unit under) fall below their p10.
    [coverage] = rows(config, "SELECT * FROM forecasts_accuracy WHERE segment_column = '(all)'")
    assert (coverage["interval_forecasts"], coverage["coverage"]) == (6, pytest.approx(4 / 6))
    assert (coverage["below_p10"], coverage["above_p90"]) == (pytest.approx(2 / 6), 0.0)

    # Two planners' overrides of November (horizon 1 of the October run), recorded as a planner
    # does and applied by the October run published again: Ana set store 1 / item 1 to what sold
    # (33), Bo store 2 / item 3 five units over the published 45.5.
    from forecasting.publishing import overrides

    monkeypatch.setattr(
        overrides, "_check", lambda *args: None
    )  # checked against October, not the newest run
    for who, store, item, value in (("ana", 1, 1, 33.0), ("bo", 2, 3, 50.5)):
        overrides.record_override(
            config,
            first_month="2024-11",
            last_month="2024-11",
            kind="absolute",
            value=value,
            reason="known promotion",
            created_by=who,
            entity={"store_id": store, "item_id": item},
        )
    publish(
        with_steps("2024-10", 0.5, 1.0),
        config,
        pd.Period("2024-10", "M"),
        model_version="2024-10-model",
        run_id="r",
    )
    realised_accuracy(sales(), config, pd.Period("2024-11", "M"), run_id="monitor_2")
    got = fva(config, "2024-11")
    final = got[("2024-10", 1, ALL, ALL, "final")]
    assert (final["wape"], final["value_added"]) == pytest.approx((7.5 / 234, -4.5 / 234))
    assert final["overridden"] == 2
    ana, bo = (got[("2024-10", 1, "planner", who, "final")] for who in ("ana", "bo"))
    assert (ana["forecasts"], ana["actual_sum"], ana["value_added"]) == (1, 33.0, pytest.approx(0.5 / 33))
    assert (bo["forecasts"], bo["actual_sum"], bo["value_added"]) == (1, 45.0, pytest.approx(-5 / 45))
    assert got[("2024-10", 1, "planner", "ana", "naive")]["wape"] == pytest.approx(12 / 33)


def test_realised_coverage_alerts_after_months_outside_the_band_and_feeds_the_next_bands(handmade):
    """Horizon 1 held 4 of 6 actuals in November (below min_coverage 0.70) and none in December
    (the November run's band of 0.1 unit missed its 2-unit under-forecasts, and store 2 / item 3
    sold nothing): two months in a row, an alert. Horizon 2 has one scored month only. The runs after read those months' errors."""
    from forecasting.modeling import intervals
    from forecasting.monitoring.alert_checks import check_month, coverage_alerts
    from forecasting.monitoring.coverage import realised_errors

    config = handmade.config
    publish(
        with_steps("2024-10", 0.5, 1.0),
        config,
        pd.Period("2024-10", "M"),
        model_version="2024-10-model",
        run_id="r",
    )
    publish(
        with_steps("2024-11", -2.0, 0.1),
        config,
        pd.Period("2024-11", "M"),
        model_version="2024-11-model",
        run_id="r",
    )
    november, december = pd.Period("2024-11", "M"), pd.Period("2024-12", "M")
    realised_accuracy(sales(), config, november)
    assert coverage_alerts(config, november) == []  # one month below the band is not a streak
    realised_accuracy(sales(), config, december)
    [alert] = coverage_alerts(config, december, run_id="monitor_1")
    assert (alert.kind, alert.metric, alert.subject) == ("coverage", "p10_p90_coverage", "horizon 1")
    assert (alert.value, alert.threshold) == (0.0, 0.7)
    assert (
        "2024-11 67% (33% below p10, 0% above p90); 2024-12 0% (17% below p10, 83% above p90)"
        in alert.message
    )
    raised = check_month(config, december, None, run_id="monitor_1")
    assert [(a["kind"], a["subject"]) for a in raised["alerts"] if a["kind"] == "coverage"] == [
        ("coverage", "horizon 1")
    ]

    # The run of January 2025 pools the errors of October..December (those scored: November's
    # 6 and December's 12); December's run only November's: never a month from M on.
    assert len(realised_errors(config, pd.Period("2025-01", "M"))) == 18
    before_december = realised_errors(config, december)
    assert (len(before_december), set(before_december["horizon"])) == (6, {1})
    assert before_december["forecast"].to_numpy() - before_december["actual"].to_numpy() == pytest.approx(
        [0.5] * 6
    )
    january = realised_errors(config, pd.Period("2025-01", "M"))
    # A holdout whose horizon-1 errors were within 1%: with December's misses pooled (store 2 /
    # item 3 forecast 44 for nothing sold), the next run's horizon-1 band reaches further down.
    holdout = np.full(200, 100.0), np.linspace(99, 101, 200), np.ones(200)
    alone = intervals.calibrate(*holdout)["by_horizon"]["1"]
    pooled = intervals.calibrate(*holdout, realised=january)["by_horizon"]["1"]
    assert min(pooled["lower"]) < min(alone["lower"]) and pooled["realised_rows"] == 12


def test_which_months_a_monitoring_run_scores():
    events = [
        {"month": "2024-11", "attempt": "a1"},
        {"month": "2024-10", "attempt": "a0"},
        {"month": "2024-11", "attempt": "a2"},
    ]
    published = ["2024-10", "2024-11"]
    assert months_to_score(None, events, published, 3) == [
        {"month": "2024-10", "attempt": "a0"},
        {"month": "2024-11", "attempt": "a2"},  # the newer publish of the month
    ]
    # A backfill of August: its new forecasts for September..November, whose actuals are in
    # (published months), are scored again; December is beyond its horizon.
    later = ["2024-08", "2024-09", "2024-11", "2024-12"]
    assert months_to_score(None, [{"month": "2024-08", "attempt": "b"}], later, 3) == [
        {"month": "2024-08", "attempt": "b"},
        {"month": "2024-09", "attempt": None},
        {"month": "2024-11", "attempt": None},
    ]
    assert months_to_score("2024-09", events, published, 3) == [{"month": "2024-09", "attempt": None}]
    assert months_to_score(None, [], published, 3) == [{"month": "2024-11", "attempt": None}]
    with pytest.raises(ValueError, match="nothing to score"):
        months_to_score(None, [{"something": "else"}], [], 3)


# --- four consecutive months of the pipeline on the synthetic data, shifted in the third -------


def by_hand(config, sales_frame: pd.DataFrame, month: pd.Period) -> pd.DataFrame:
    """Per run month and horizon: WAPE and bias of the published forecasts for ``month``, the
    last-value and 3-month-mean naive forecasts' WAPE and the share of actuals inside the
    published p10-p90, from the tables and the sales in pandas."""
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        published = pd.read_sql_query(
            sa.text("SELECT * FROM forecasts WHERE forecast_month = :m"), conn, params={"m": f"{month}-01"}
        )
    engine.dispose()
    sold = sales_frame.assign(period=pd.to_datetime(sales_frame["month"]).dt.to_period("M"))
    units = sold.set_index(["store_id", "item_id", "period"])["units"]
    first_row = sold.groupby(["store_id", "item_id"])["period"].min()

    def sold_in(s: int, i: int, m: pd.Period) -> float:
        return float(units.get((s, i, m), 0.0))  # no row: nothing sold

    out = []
    for (run_month, horizon), part in published.groupby(["run_month", "horizon"]):
        origin = pd.Period(str(run_month)[:7], "M")
        entities = list(zip(part.store_id, part.item_id, strict=True))
        actual = np.array([sold_in(s, i, month) for s, i in entities])
        last = np.array([sold_in(s, i, origin) for s, i in entities])
        # The months of the last three up to the origin since the entity's first row.
        mean_3 = np.array(
            [
                np.mean(
                    [sold_in(s, i, origin - lag) for lag in range(3) if origin - lag >= first_row[(s, i)]]
                )
                for s, i in entities
            ]
        )
        error = part["prediction"].to_numpy() - actual
        inside = (actual >= part["p10"].to_numpy()) & (actual <= part["p90"].to_numpy())
        out.append(
            {
                "run_month": str(origin),
                "horizon": horizon,
                "forecasts": len(part),
                "actual_sum": actual.sum(),
                "wape": np.abs(error).sum() / actual.sum(),
                "bias_pct": error.sum() / actual.sum(),
                "last_value_wape": np.abs(last - actual).sum() / actual.sum(),
                "mean_3_wape": np.abs(mean_3 - actual).sum() / actual.sum(),
                "coverage": inside.mean(),
            }
        )
    return pd.DataFrame(out)


# What month 3's shift moves, with the test's features (lags 1, 2, 3, 12 and a 3-month window):
# the price and the features holding the month's sales or price, and the target.
SHIFTED = ["sales_lag_1", "sales_mean_3", "sales_std_3", "price", "price_mean_3", "units"]


def with_shift(sales_frame: pd.DataFrame, first: pd.Period) -> pd.DataFrame:
    """The sales with a price jump (x3) and a demand level change (x5) from month ``first`` on."""
    shifted = sales_frame.copy()
    after = pd.to_datetime(shifted["month"]).dt.to_period("M") >= first
    shifted.loc[after, "price"] = (shifted.loc[after, "price"] * 3).round(2)
    shifted.loc[after, "units"] = shifted.loc[after, "units"] * 5
    return shifted


def drifted(config, month: pd.Period) -> list[str]:
    found = rows(
        config,
        f"SELECT feature FROM forecasts_drift WHERE run_month = '{month}-01' AND drifted ORDER BY kind, feature",
    )
    return [r["feature"] for r in found]


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_four_months_with_a_shift_in_the_third_through_both_dags(tmp_path, synthetic_sales, monkeypatch):
    """September and October as they were; from November on, prices x3 and demand x5. The last
    month goes through the monthly_forecast DAG (its publish's Asset event names the month) and
    the forecast_monitoring DAG; the alerts go to a real SMTP server on localhost."""
    from aiosmtpd.controller import Controller
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import summarize

    september, october, november, december = (pd.Period(END_MONTH, "M") - 3 + k for k in range(4))
    sales_frame = with_shift(synthetic_sales, november)
    raw = demo_config_dict(tmp_path)
    raw["model"]["num_boost_round"] = 100
    raw["evaluation"]["statistical_baselines"] = []  # naive baselines only: a cheaper evaluate
    raw["evaluation"]["backtest_origins"] = 0
    raw["features"] = {"lags": [1, 2, 3, 12], "rolling_windows": [3]}
    raw["alerts"] = {"max_wape": 0.5, "notifiers": [{"type": "smtp", "to": "planning@example.com"}]}
    path = write_config(tmp_path, raw)
    config = load_config(path)
    seed_source_database(config.source.database.url, sales_frame, table=config.source.table)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    inbox: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            inbox.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            f"smtp://127.0.0.1:{port}?disable_tls=true&disable_ssl=true&retry_limit=0"
            "&from_email=forecasts%40example.com",
        )
        # September to November without Airflow: run_month publishes, then monitors, as the DAGs do.
        first = pipeline.run_month(str(september), "manual__september", config)
        assert first["monitor"]["forecasts_scored"] == 0  # nothing was published for September
        second = pipeline.run_month(str(october), "manual__october", config)
        assert [(r["run_month"], r["horizon"]) for r in second["monitor"]["overall"]] == [(str(september), 1)]
        # Nothing drifted and nothing alerted in the unshifted months.
        assert (first["drift"]["drifted"], second["drift"]["drifted"]) == ([], [])
        assert (first["alerts"]["raised"], second["alerts"]["raised"], inbox) == (0, 0, [])
        assert drifted(config, september) == drifted(config, october) == []

        # November: exactly the shifted features and the target drift, and an email says so.
        third = pipeline.run_month(str(november), "manual__november", config)
        assert sorted(third["drift"]["drifted"]) == sorted(SHIFTED)
        assert drifted(config, november) == sorted(SHIFTED[:-1]) + ["units"]  # features, then the target
        [message] = [email.message_from_bytes(m) for m in inbox]
        assert message["Subject"].startswith(f"[forecast alert] forecast_monitoring {november}: ")
        body = message.get_payload()[0].get_payload(decode=True).decode()
        for name in SHIFTED:
            assert f"The {'target' if name == 'units' else 'feature'} {name} drifted in {november}" in body
        assert "monitoring.psi_threshold 0.2" in body
        # Its forecasts, made before the shift, were far off: realised WAPE above alerts.max_wape.
        assert f"The realised WAPE of the horizon-1 forecasts for {november} is" in body
        assert "above alerts.max_wape 0.5" in body
        sent = rows(
            config, f"SELECT kind, metric, subject FROM forecasts_alerts WHERE month = '{november}-01'"
        )
        assert {(r["kind"], r["subject"]) for r in sent if r["kind"] == "drift"} == {
            ("drift", n) for n in SHIFTED
        }

        # December through the monthly DAG: its publish names the month in the Asset event...
        bag = DagBag(dag_folder=str(REPO / "dags"))
        started = datetime.now(UTC)
        monthly = bag.dags["monthly_forecast"].test(run_conf={"month": str(december)})
        assert str(monthly.state) == "success"
        with create_session() as session:
            events = session.query(AssetEvent).filter(AssetEvent.timestamp >= started).all()
            extras = [(e.asset.uri, e.extra.get("month"), e.source_dag_id) for e in events]
        assert extras == [("x-forecast://forecasts", str(december), "monthly_forecast")]
        # ...and the monitoring DAG scores it, compares it and alerts. No scheduler follows the
        # Asset here: a manual run without a month, which takes the newest month published.
        monitoring = bag.dags["forecast_monitoring"].test()
        assert str(monitoring.state) == "success"
        assert len(inbox) == 2
        december_mail = email.message_from_bytes(inbox[1])
        assert december_mail["Subject"].startswith(f"[forecast alert] forecast_monitoring {december}: ")
        # Still shifted: the month's own price and sales drift; only features that read November
        # or December can (their lags 2 and 3 reach back into the shift, lag 12 never).
        flagged = drifted(config, december)
        assert {"price", "sales_lag_1", "units"} <= set(flagged) <= {*SHIFTED, "sales_lag_2", "sales_lag_3"}
    finally:
        smtp.stop()

    for month, runs in ((october, 1), (november, 2), (december, 3)):
        got = rows(config, f"SELECT * FROM forecasts_accuracy WHERE forecast_month = '{month}-01'")
        overall = pd.DataFrame([r for r in got if r["segment_column"] == ALL])
        overall["run_month"] = overall["run_month"].str[:7]
        expected = by_hand(config, sales_frame, month).sort_values(["run_month", "horizon"])
        assert len(expected) == runs
        got_sorted = overall.sort_values(["run_month", "horizon"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got_sorted[expected.columns].astype({"forecasts": int, "horizon": int}),
            expected.reset_index(drop=True).astype({"forecasts": int, "horizon": int}),
            check_exact=False,
            rtol=1e-9,
        )
        # Per category, the forecasts add up to those over all entities.
        segments = pd.DataFrame([r for r in got if r["segment_column"] == "category"])
        assert segments.groupby("run_month")["forecasts"].sum().sum() == overall["forecasts"].sum()
        assert set(segments["segment"]) == set(sales_frame["category"])
    december_rows = rows(
        config, f"SELECT run_id FROM forecasts_accuracy WHERE forecast_month = '{december}-01'"
    )
    assert {r["run_id"] for r in december_rows} == {monitoring.run_id}

    # The run summary of December prints the realised accuracy its actuals settle, and the drift.
    text = summarize(config, str(december))
    assert f"Realised accuracy of the forecasts for {december}" in text
    assert f"{october}" in text and f"{november}" in text
    assert "Drift of 2024-12 against the training window of" in text
    assert "price (PSI" in text

    # The value added's waterfall of each scored month, over every entity: the five steps on the
    # same rows (predict stored the model's and Theta's forecast of each), its published step
    # the accuracy table's WAPE, its final step the same (no override).
    for month in (october, november, december):
        steps = pd.DataFrame(
            rows(
                config,
                f"SELECT * FROM forecasts_fva WHERE forecast_month = '{month}-01' AND segment = '(all)'",
            )
        )
        accuracy_rows = pd.DataFrame(
            rows(
                config,
                f"SELECT * FROM forecasts_accuracy WHERE forecast_month = '{month}-01' AND segment = '(all)'",
            )
        )
        for (run_month, horizon), group in steps.groupby(["run_month", "horizon"]):
            group = group.sort_values("step_order")
            assert list(group["step"]) == ["naive", "statistical", "model", "published", "final"]
            assert group["forecasts"].nunique() == 1 and set(group["forecaster"][:2]) == {
                "seasonal_naive",
                "theta",
            }
            scored = accuracy_rows[
                (accuracy_rows["run_month"] == run_month) & (accuracy_rows["horizon"] == horizon)
            ]
            published = group.set_index("step")["wape"]
            assert published["published"] == pytest.approx(float(scored["wape"].iloc[0]))
            assert published["final"] == published["published"]
    # December's run calibrated its bands on its holdout pooled with the realised errors of the
    # months before it (October's and November's, scored by then; the shift's misses among them).
    attempt = paths.published_attempt(config, december).name
    report = paths.read_json(paths.stage_result(config, december, attempt, "evaluate"))["report"]
    pooled = paths.read_json(Path(report))["intervals"]["realised"]
    scored_before = rows(
        config, f"SELECT count(*) AS n FROM forecasts_errors WHERE forecast_month < '{december}-01'"
    )
    assert pooled == {"rows": scored_before[0]["n"], "months": [str(october), str(november)]}


def run_sql_file(config, name: str) -> list[dict]:
    return rows(config, (REPO / "sql" / name).read_text())


def test_the_example_queries_of_the_realised_accuracy(handmade):
    config = handmade.config
    for month in ("2024-11", "2024-12"):
        realised_accuracy(sales(), config, pd.Period(month, "M"))

    trend = run_sql_file(config, "realised_accuracy_trend.sql")  # newest month first, by horizon
    assert [
        (
            r["forecast_month"],
            r["horizon"],
            r["run_month"],
            float(r["wape"]),
            float(r["fva"]),
            r["best_naive"],
        )
        for r in trend
    ] == [
        ("2024-12-01", 1, "2024-11-01", 0.278, -0.021, "last_value"),  # 54/194, 50/194 - 54/194
        ("2024-12-01", 2, "2024-10-01", 0.253, 0.026, "last_value"),  # 49/194, 54/194 - 49/194
        ("2024-11-01", 1, "2024-10-01", 0.013, 0.013, "last_value"),  # 3/234, 6/234 - 3/234
    ]
    assert [float(r["actual_units"]) for r in trend] == [194, 194, 234]

    worst = run_sql_file(config, "worst_tracked_entities.sql")  # horizon 1, by |tracking signal|
    assert [(r["store_id"], r["item_id"], float(r["tracking_signal"])) for r in worst] == [
        (2, 3, 2.0),  # +0.5 and +44 for nothing sold
        *((s, i, -1.2) for s in STORES for i in ITEMS if (s, i) != (2, 3)),  # +0.5, -2
    ]
    assert float(worst[0]["cumulative_error"]) == 44.5 and worst[0]["months"] == 2

    bias = run_sql_file(config, "bias_by_segment.sql")  # most over-forecast first
    assert [
        (r["segment"], r["horizon"], r["months"], r["forecasts"], float(r["bias"]), float(r["wape"]))
        for r in bias
        if r["segment_column"] == "category"
    ] == [
        ("drinks", 2, 1, 2, 1.306, 1.306),  # December: 83 forecast for 36 sold
        ("drinks", 1, 2, 4, 0.371, 0.405),  # 81 for 80, then 78 for 36: 43 / 116, |1| + |46| over 116
        ("snacks", 2, 1, 4, 0.013, 0.013),  # 160 for 158
        ("snacks", 1, 2, 8, -0.019, 0.032),  # 156 for 154, then 150 for 158: -6 / 312, 10 / 312
    ]
    # And by age: every entity has 21 to 22 months of history at the runs, all in bucket 6-23,
    # whose rows are the overall ones (December's horizon 2: 49 over for 194 sold).
    assert {r["segment_column"] for r in bias} == {"category", "history_months"}
    ages = [
        (r["segment"], r["horizon"], r["forecasts"], float(r["wape"]))
        for r in bias
        if r["segment_column"] == "history_months"
    ]
    assert ages == [("6-23", 2, 6, 0.253), ("6-23", 1, 12, 0.133)]  # (3 + 54) / (234 + 194)


def test_the_segment_must_be_an_entity_column_or_attribute(tmp_path):
    from forecasting.core.config import ConfigError

    raw = demo_config_dict(tmp_path)
    raw["monitoring"] = {"segment": "units"}
    # Written as is (write_config drops a segment the source lacks).
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"monitoring\.segment: must be one of the entity columns or attributes"
    ):
        load_config(tmp_path / "bad.yaml")
    raw["monitoring"] = {"segmnet": "category"}
    with pytest.raises(ConfigError, match=r"monitoring\.segmnet: unknown key"):
        load_config(write_config(tmp_path, raw))
    raw["monitoring"] = {"segment": "store_id"}
    assert load_config(write_config(tmp_path, raw)).monitoring.segment == "store_id"
    del raw["monitoring"]
    assert load_config(write_config(tmp_path, raw)).monitoring.segment is None
