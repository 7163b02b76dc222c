"""Prediction intervals: calibrated bands hold about 80% of new actuals, are wider where demand
is noisier, never cross the forecast or zero, are measured on months they were not calibrated
on, and reach the predictions table (p10, p90), also when it was made by an older release."""

from __future__ import annotations

import contextlib
import secrets
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.modeling import intervals
from tests.helpers.config import demo_config_dict, write_config


def draw(rng, rows: int, horizons=(1, 2, 3)):
    """Forecasts of 1..1,000 units; actuals around them, relatively noisier for small forecasts
    and for longer horizons (as demand is)."""
    forecast = rng.uniform(1, 1000, rows)
    horizon = rng.choice(horizons, rows)
    spread = 0.1 + 2.0 / np.sqrt(forecast) + 0.05 * horizon
    actual = np.maximum(forecast * (1 + rng.normal(0, spread)), 0)
    return forecast, actual, horizon


def inside(actual, lower, upper) -> float:
    return float(((actual >= lower) & (actual <= upper)).mean())


def test_bands_hold_about_80_percent_of_new_actuals():
    rng = np.random.default_rng(1)
    spec = intervals.calibrate(*draw(rng, 20_000))
    forecast, actual, horizon = draw(rng, 20_000)

    lower, upper = intervals.apply(spec, forecast, horizon)

    assert 0.77 < inside(actual, lower, upper) < 0.83
    for h in (1, 2, 3):
        rows = horizon == h
        assert 0.75 < inside(actual[rows], lower[rows], upper[rows]) < 0.85
    # Relatively wider for small forecasts (noisier) than for large ones, and for longer horizons.
    relative = (upper - lower) / forecast
    assert relative[forecast < 50].mean() > 1.5 * relative[forecast > 500].mean()
    assert relative[horizon == 3].mean() > relative[horizon == 1].mean()


def test_bounds_never_cross_the_forecast_or_zero():
    rng = np.random.default_rng(2)
    forecast, actual, horizon = draw(rng, 2_000)
    # A forecaster that always overshoots: every error is negative, so p90 would fall below f.
    spec = intervals.calibrate(forecast * 2, actual, horizon)
    new = np.array([0.0, 0.3, 5.0, 900.0])
    lower, upper = intervals.apply(spec, new, np.array([1, 1, 2, 3]))

    assert (lower >= 0).all() and (lower <= new).all() and (upper >= new).all()
    np.testing.assert_array_equal(upper, new)  # no error above the forecast was ever seen


def test_missing_horizons_and_no_calibration():
    rng = np.random.default_rng(3)
    forecast, actual, _ = draw(rng, 1_000)
    spec = intervals.calibrate(forecast, actual, np.ones(1_000))  # horizon 1 only
    one = intervals.apply(spec, np.array([100.0]), np.array([1]))
    three = intervals.apply(spec, np.array([100.0]), np.array([3]))
    assert one == three  # the longest calibrated horizon below

    lower, upper = intervals.apply(None, np.array([100.0, 5.0]), np.array([1, 2]))
    assert np.isnan(lower).all() and np.isnan(upper).all()  # no interval rather than a made-up one
    # Rows without a forecast (a baseline with no history there) are not calibrated on.
    with_gaps = intervals.calibrate(np.array([np.nan, 10.0]), np.array([3.0, 12.0]), np.array([1, 1]))
    assert with_gaps["by_horizon"]["1"]["rows"] == 1


def test_few_rows_get_fewer_bands():
    rng = np.random.default_rng(4)
    spec = intervals.calibrate(*draw(rng, 90, horizons=(1,)))
    assert len(spec["by_horizon"]["1"]["lower"]) == 90 // intervals.MIN_ROWS_PER_BAND


def test_coverage_is_measured_on_months_the_bands_did_not_see():
    rng = np.random.default_rng(5)
    forecast, actual, horizon = draw(rng, 6_000)
    target = rng.choice(np.arange(24290, 24296), 6_000)  # six target months

    held = intervals.coverage(forecast, actual, horizon, target)

    assert held is not None and 0.75 < held["coverage"] < 0.85 and held["target"] == pytest.approx(0.8)
    assert set(held["by_horizon"]) == {"1", "2", "3"} and held["rows"] == 6_000
    assert held["relative_width"] > 0
    # Months unlike the calibration months show up as low coverage, not hidden by in-sample fit.
    shifted = np.where(target >= 24293, actual * 3, actual)
    assert intervals.coverage(forecast, shifted, horizon, target)["coverage"] < 0.6
    assert intervals.coverage(forecast, actual, horizon, np.full(6_000, 24290)) is None


def test_each_demand_class_gets_the_bands_its_errors_need():
    """Mondrian conformal: erratic series (errors twice as wide) get their own wider bands
    and hold about 80% of their new actuals; pooled bands would hold far fewer of theirs."""
    rng = np.random.default_rng(6)

    def mixed(rows):
        forecast, actual, horizon = draw(rng, rows)
        erratic = rng.random(rows) < 0.3
        actual = np.where(erratic, np.maximum(forecast + 2 * (actual - forecast), 0), actual)
        return forecast, actual, horizon, np.where(erratic, "erratic", "smooth")

    forecast, actual, horizon, classes = mixed(20_000)
    by_class = intervals.calibrate(forecast, actual, horizon, groups=classes)
    pooled = intervals.calibrate(forecast, actual, horizon)
    new_forecast, new_actual, new_horizon, new_classes = mixed(20_000)
    erratic = new_classes == "erratic"

    lower, upper = intervals.apply(by_class, new_forecast, new_horizon, new_classes)
    assert 0.77 < inside(new_actual[erratic], lower[erratic], upper[erratic]) < 0.83
    assert 0.77 < inside(new_actual[~erratic], lower[~erratic], upper[~erratic]) < 0.83
    plain = intervals.apply(pooled, new_forecast, new_horizon)
    assert inside(new_actual[erratic], plain[0][erratic], plain[1][erratic]) < 0.72
    # A class the calibration had too few rows of, or none, takes every row's bands.
    unseen = intervals.apply(by_class, np.array([100.0, 100.0]), np.array([1, 1]), np.array(["lumpy", None]))
    pooled_one = intervals.apply(pooled, np.array([100.0]), np.array([1]))
    assert unseen[0][0] == unseen[0][1] == pooled_one[0][0]


def test_levels_widen_for_the_shift_between_months(monkeypatch):
    """Each target month's errors are shifted by a month-wide shock: percentiles of the pooled
    months cover less than 80% of a month left out, so the levels widen until they do; with
    identical months nothing widens, and one month cannot tell."""
    rng = np.random.default_rng(7)
    forecast, actual, horizon = draw(rng, 12_000, horizons=(1,))
    target = rng.choice(np.arange(24290, 24296), 12_000)
    shock = rng.normal(0, 0.3, 6)[target - 24290]
    shifted = np.maximum(actual * (1 + shock), 0)

    steady = intervals.calibrate(forecast, actual, horizon, target)
    shaken = intervals.calibrate(forecast, shifted, horizon, target)
    once = intervals.calibrate(forecast, shifted, horizon, np.full(12_000, 24290))

    assert steady["by_horizon"]["1"]["widening"] <= 0.005
    assert shaken["by_horizon"]["1"]["widening"] >= 0.02
    assert once["by_horizon"]["1"]["widening"] == 0.0
    # On months they were not calibrated on, widened bands hold more of the actuals than plain ones.
    held = intervals.coverage(forecast, shifted, horizon, target)
    monkeypatch.setattr(intervals, "WIDENINGS", np.array([0.0]))
    plain = intervals.coverage(forecast, shifted, horizon, target)
    assert held is not None and plain is not None
    assert held["coverage"] > plain["coverage"] + 0.02


# ------------------------------------------------------------------------ the predictions table


@pytest.fixture
def config(tmp_path):
    from forecasting.core.config import load_config

    return load_config(write_config(tmp_path, demo_config_dict(tmp_path)))


def frame(p10=(8.0, np.nan), p90=(13.0, np.nan)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store_id": [1, 2],
            "item_id": [1, 1],
            "forecast_month": [pd.Timestamp("2024-01-01").date()] * 2,
            "horizon": [1, 1],
            "prediction": [10.0, 4.0],
            "p10": list(p10),
            "p90": list(p90),
        }
    )


def publish(config, rows: pd.DataFrame, month: str = "2023-12"):
    from forecasting.publishing.publish import publish as run

    return run(
        rows,
        config,
        pd.Period(month, "M"),
        model_version="v1",
        run_id="run-1",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def read(config, name: str) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        out = pd.read_sql(sa.text(f"SELECT * FROM {name} ORDER BY store_id"), conn)
    engine.dispose()
    return out


def test_published_bounds_and_null_where_there_is_none(config):
    publish(config, frame())
    table = read(config, "forecasts")
    assert table["p10"].tolist()[0] == 8.0 and table["p90"].tolist()[0] == 13.0
    assert table["p10"].isna().tolist() == [False, True]  # NaN went in as NULL
    assert read(config, "forecasts_latest")[["p10", "p90"]].iloc[0].tolist() == [8.0, 13.0]
    # Forecasts without the columns at all (an older predict's file) publish with NULL bounds.
    publish(config, frame().drop(columns=["p10", "p90"]), month="2024-01")
    assert read(config, "forecasts").query("run_month == '2024-01-01'")["p10"].isna().all()


@pytest.fixture(params=["sqlite", "postgresql"])
def older_release(request, tmp_path):
    """A config whose predictions database holds the table and view as the release before
    intervals (and demand classes) made them, with one month in them (PostgreSQL: with a login
    analyst role)."""
    from forecasting.core.config import load_config
    from forecasting.publishing.postgres import grant_analyst_role, temporary_database
    from forecasting.publishing.publish import predictions_tables
    from forecasting.publishing.tables import latest_view_sql

    raw = demo_config_dict(tmp_path)
    with contextlib.ExitStack() as stack:
        analyst_url = None
        if request.param == "postgresql":
            server = request.getfixturevalue("postgres_server")
            role = f"forecast_test_analyst_{secrets.token_hex(4)}"
            stack.callback(_drop_role, server, role)  # after its database is dropped
            url = stack.enter_context(temporary_database(server))
            raw["predictions"]["url"] = url
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            stack.callback(admin.dispose)
            grant_analyst_role(admin, role, password="analyst-pw")
            analyst_url = sa.make_url(url).set(username=role, password="analyst-pw")
        config = load_config(write_config(tmp_path, raw))
        old, _ = predictions_tables(config, {"store_id": np.dtype("int64"), "item_id": np.dtype("int64")})
        old = old.to_metadata(sa.MetaData())
        for name in ("p10", "p90", "demand_class", "history_months"):
            old._columns.remove(old.c[name])
        engine = sa.create_engine(config.predictions.database.url)
        with engine.begin() as conn:
            old.metadata.create_all(conn)
            view, select = latest_view_sql(old, config.source.entity_columns, conn.dialect)
            conn.execute(sa.text(f"CREATE VIEW {view} AS {select}"))
            conn.execute(old.insert(), [OLD_ROW])
        engine.dispose()
        yield config, analyst_url


def _drop_role(server: str, role: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    admin.dispose()


OLD_ROW = {
    "run_month": pd.Timestamp("2023-11-01").date(),
    "store_id": 1,
    "item_id": 1,
    "forecast_month": pd.Timestamp("2024-02-01").date(),
    "horizon": 3,
    "prediction": 7.0,
    "model_version": "v0",
    "run_id": "old",
    "created_at": datetime(2024, 12, 1, tzinfo=UTC),
}


def test_a_table_made_by_an_older_release_gains_the_columns(older_release):
    config, analyst_url = older_release

    publish(config, frame())
    publish(config, frame())  # and once more: nothing left to add

    table = read(config, "forecasts")
    assert len(table) == 3
    assert table.loc[table["run_id"] == "old", ["p10", "p90"]].isna().all(axis=None)  # kept, no bounds
    latest = read(config, "forecasts_latest")
    assert {"p10", "p90"} <= set(latest.columns) and sorted(latest["p90"].dropna().tolist()) == [13.0]
    # demand_class came later still: NULL for the old row and for forecasts published without it.
    assert table["demand_class"].isna().all() and "demand_class" in latest.columns
    # So did history_months (months of history as of run_month: whole numbers, NULL unknown).
    assert table["history_months"].isna().all() and "history_months" in latest.columns
    labels = {"demand_class": ["intermittent", None], "history_months": [2.0, np.nan]}
    publish(config, frame().assign(**labels), month="2024-01")
    labelled = read(config, "forecasts_latest").query("run_id == 'run-1'").sort_values("store_id")
    assert labelled["demand_class"].tolist() == ["intermittent", None]
    assert labelled["history_months"].iloc[0] == 2 and pd.isna(labelled["history_months"].iloc[1])
    if analyst_url is not None:  # the view made again is still the analyst's to read
        engine = sa.create_engine(analyst_url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(p90) FROM forecasts_latest")).scalar() == 1
            assert conn.execute(sa.text("SELECT COUNT(demand_class) FROM forecasts_latest")).scalar() == 1
            assert conn.execute(sa.text("SELECT SUM(history_months) FROM forecasts_latest")).scalar() == 2
        engine.dispose()
