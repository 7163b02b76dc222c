"""The forecasts' checks before publish (forecasting.publishing.checks): good forecasts pass with
their Data Docs beside the snapshot's; every kind of bad forecast is named; and in the DAG a
failed check stops publish, leaving the predictions table as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.data.checkpoint import DataValidationError
from forecasting.publishing.checks import check_forecasts, previous_run
from tests.helpers.config import demo_config_dict, write_config

MONTH = pd.Period("2024-12", "M")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    from forecasting.core.config import load_config

    folder = tmp_path_factory.mktemp("output-checks")
    return load_config(write_config(folder, demo_config_dict(folder)))


def snapshot() -> pd.DataFrame:
    """Three stores x two items over 2024; store 3 / item 2 stopped selling in November (not
    active in M). Each entity's largest month: 10 * store + item + 11 (December)."""
    rows = [
        {"store_id": s, "item_id": i, "month": m.to_timestamp(), "units": float(10 * s + i + m.month - 1)}
        for s in (1, 2, 3)
        for i in (1, 2)
        for m in pd.period_range("2024-01", "2024-12", freq="M")
        if not (s == 3 and i == 2 and m.month == 12)
    ]
    return pd.DataFrame(rows)


def good_forecasts(horizon: int = 3) -> pd.DataFrame:
    rows = [
        {
            "store_id": s,
            "item_id": i,
            "forecast_month": (MONTH + h).to_timestamp().date(),
            "horizon": h,
            "prediction": float(10 * s + i + 10),
            "p10": float(10 * s + i + 5),
            "p90": float(10 * s + i + 20),
        }
        for s in (1, 2, 3)
        for i in (1, 2)
        if not (s == 3 and i == 2)
        for h in range(1, horizon + 1)
    ]
    return pd.DataFrame(rows)


def failures(err: DataValidationError) -> list[str]:
    return [f["label"] for f in err.failures]


def test_good_forecasts_pass_with_their_data_docs(config, tmp_path):
    report = check_forecasts(
        good_forecasts(), snapshot(), config, MONTH, tmp_path / "docs", previous=("2024-11", 15)
    )
    assert report.success and report.rows == 15 and report.expectations == 12
    assert report.data_docs is not None and (tmp_path / "docs" / "index.html").is_file()
    # Forecasts without intervals (NULL p10/p90) pass too: no interval is not a bad interval.
    unbanded = good_forecasts().assign(p10=np.nan, p90=np.nan)
    assert check_forecasts(unbanded, snapshot(), config, MONTH, tmp_path / "docs2").success


def test_every_bad_value_is_named(config, tmp_path):
    bad = good_forecasts()
    bad.loc[0, "prediction"] = -3.0  # below zero
    bad.loc[1, "prediction"] = np.inf  # not finite
    bad.loc[2, "p10"] = 1000.0  # above its prediction
    bad.loc[3, "p90"] = 1.0  # below its prediction
    bad.loc[4, "prediction"] = 10_000.0  # 300x store 1 / item 2's best month
    bad.loc[4, "p90"] = 10_000.0

    with pytest.raises(DataValidationError) as failed:
        check_forecasts(bad, snapshot(), config, MONTH, tmp_path / "docs")

    named = failures(failed.value)
    assert "expect_column_values_to_be_between(prediction, min 0, finite)" in named
    assert "expect_column_pair_values_a_to_be_greater_than_b(prediction, p10)" in named  # p10 above
    assert "expect_column_pair_values_a_to_be_greater_than_b(p90, prediction)" in named  # p90 below
    assert "(21.0, 1000.0)" in str(failed.value)  # the offending pair, as plain numbers
    assert "expect_column_values_to_be_between(prediction_to_history_max, max 10)" in named
    assert failed.value.report.data_docs is not None  # the docs are built before it fails
    assert "Validation of 2024-12 failed" in str(failed.value)


def test_missing_extra_and_duplicate_rows_are_named(config, tmp_path):
    forecasts = good_forecasts()
    missing = forecasts.iloc[3:]  # store 1 / item 1 has no forecast
    extra = pd.concat([forecasts, forecasts.iloc[[0]]], ignore_index=True)  # a duplicate row
    unknown = pd.concat(
        [forecasts, forecasts.iloc[[0]].assign(store_id=9)], ignore_index=True
    )  # an entity with no history
    horizons = good_forecasts(horizon=4)  # a horizon the config does not have

    def named(frame: pd.DataFrame) -> list[str]:
        with pytest.raises(DataValidationError) as failed:
            check_forecasts(frame, snapshot(), config, MONTH, tmp_path / "docs")
        return failures(failed.value)

    assert named(missing) == ["expect_table_row_count_to_equal()"]
    assert set(named(extra)) == {
        "expect_compound_columns_to_be_unique(store_id, item_id, horizon)",
        "expect_table_row_count_to_equal()",
    }
    assert "expect_column_values_to_not_be_null(prediction_to_history_max)" in named(unknown)
    assert "expect_column_distinct_values_to_equal_set(horizon)" in named(horizons)


def test_row_count_far_from_the_previous_run_is_named(config, tmp_path):
    with pytest.raises(DataValidationError) as failed:
        check_forecasts(
            good_forecasts(), snapshot(), config, MONTH, tmp_path / "docs", previous=("2024-11", 90)
        )
    assert failures(failed.value) == ["expect_table_row_count_to_be_between(min 45, max 135)"]
    assert "2024-11 had 90" in str(failed.value)


def test_previous_run_comes_from_the_runs_table(config):
    from datetime import UTC, datetime

    from forecasting.publishing.publish import publish

    assert previous_run(config, MONTH) is None  # no table yet
    for month, rows in (("2024-10", 12), ("2024-11", 15), ("2024-12", 6)):
        frame = good_forecasts().iloc[:rows]
        publish(
            frame,
            config,
            pd.Period(month, "M"),
            model_version="v",
            run_id=month,
            created_at=datetime.now(UTC),
        )
    assert previous_run(config, MONTH) == ("2024-11", 15)  # the newest before M, not M itself
    assert previous_run(config, pd.Period("2024-10", "M")) is None


def test_config_bound(tmp_path):
    from forecasting.core.config import ConfigError, load_config

    raw = demo_config_dict(tmp_path)
    assert load_config(write_config(tmp_path, raw)).validation.forecast_max_to_history_max == 10.0
    raw["validation"] = {"forecast_max_to_history_max": 0.5}
    with pytest.raises(ConfigError, match=r"validation\.forecast_max_to_history_max: must be at least 1"):
        load_config(write_config(tmp_path, raw))
