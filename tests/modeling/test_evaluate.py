"""Evaluation metrics on hand-computed examples, and the naive baselines on a hand-built history:
each uses only what was known at the row's forecast origin."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import Config, load_config
from forecasting.features import dataset
from forecasting.modeling.baselines import NAIVE_BASELINES
from forecasting.modeling.evaluate import baseline_forecasts
from forecasting.modeling.scoring import metrics
from tests.helpers.config import demo_config_dict, write_config

KEYS = ["store", "item"]

# ------------------------------------------------------------------------------------- metrics


def test_metrics_by_hand():
    actual = [10.0, 20.0, 0.0, 30.0]
    predicted = [12.0, 15.0, 1.0, 30.0]  # errors +2, -5, +1, 0

    m = metrics(np.array(actual), np.array(predicted))

    assert m["wape"] == pytest.approx(8 / 60)
    assert m["mae"] == pytest.approx(8 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 25 + 1 + 0) / 4))
    assert m["bias"] == pytest.approx(-2 / 4)
    assert m["bias_pct"] == pytest.approx(-2 / 60)
    assert m["rows"] == 4


def test_metrics_perfect_forecast():
    m = metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert (m["wape"], m["mae"], m["rmse"], m["bias"], m["bias_pct"]) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_metrics_over_forecast_is_positive_bias():
    m = metrics([4.0, 6.0], [5.0, 9.0])  # plain lists are accepted too
    assert m["bias"] == pytest.approx(2.0)
    assert m["bias_pct"] == pytest.approx(0.4)
    assert m["wape"] == pytest.approx(0.4)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))


def test_wape_uses_absolute_actuals():
    # Returns in the data (negative actuals) still count towards the scale.
    m = metrics(np.array([-10.0, 10.0]), np.array([0.0, 10.0]))
    assert m["wape"] == pytest.approx(10 / 20)
    assert m["bias_pct"] == pytest.approx(10 / 20)


def test_zero_actuals_give_nan_wape_not_an_error():
    m = metrics(np.zeros(3), np.array([1.0, 0.0, 2.0]))
    assert math.isnan(m["wape"]) and math.isnan(m["bias_pct"])
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["bias"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- baseline_forecasts


def make_config(folder: Path) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    return load_config(write_config(folder, raw))


def value(month: str) -> float:
    """Entity 1/1's sales in a month: distinct for every month, so a wrong lookup shows."""
    p = pd.Period(month, "M")
    return float(p.year * 100 + p.month)


def snapshot() -> pd.DataFrame:
    months = pd.period_range("2023-01", "2024-06", freq="M")
    full = pd.DataFrame(
        {"store": 1, "item": 1, "month": months.to_timestamp(), "units": [value(str(m)) for m in months]}
    )
    # Entity 2/5 starts in 2024-01 and has no row in 2024-03 (a month it sold nothing).
    young = pd.DataFrame(
        {
            "store": 2,
            "item": 5,
            "month": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-04-01", "2024-05-01"]),
            "units": [6.0, 9.0, 12.0, 30.0],
        }
    )
    return pd.concat([full, young], ignore_index=True)


def rows(*cases: tuple[str, str, str, int]) -> pd.DataFrame:
    """Evaluation rows (store, item, origin month, horizon), keyed as strings like Feast's."""
    frame = pd.DataFrame(cases, columns=[*KEYS, dataset.ORIGIN, dataset.HORIZON])
    return frame.set_index(pd.Index([f"row{i}" for i in range(len(frame))]))


def test_baselines_by_hand(tmp_path):
    config = make_config(tmp_path)
    cases = rows(
        ("1", "1", "2024-03", 1),  # target 2024-04: a year earlier is 2023-04, known at the origin
        ("1", "1", "2024-03", 3),  # target 2024-06: 2023-06
        ("1", "1", "2024-03", 12),  # target 2025-03: a year earlier is the origin itself
        ("1", "1", "2024-03", 13),  # target 2025-04: 2024-04 is after the origin -> last value
        ("1", "1", "2023-01", 1),  # first month of history: mean over what exists
    )

    got = baseline_forecasts(cases, snapshot(), config)

    assert list(got.columns) == list(NAIVE_BASELINES)
    assert got.index.tolist() == cases.index.tolist()
    last = value("2024-03")
    assert got["last_value"].tolist() == [last, last, last, last, value("2023-01")]
    assert got["seasonal_naive"].tolist() == [
        value("2023-04"),
        value("2023-06"),
        last,
        last,
        value("2023-01"),
    ]
    mean_3 = np.mean([value("2024-01"), value("2024-02"), value("2024-03")])
    assert got["mean_3"].tolist() == pytest.approx([mean_3] * 4 + [value("2023-01")])


def test_baselines_for_a_young_entity_with_a_gap(tmp_path):
    config = make_config(tmp_path)
    cases = rows(
        ("2", "5", "2024-02", 1),  # no sales a year before (before its history): last value
        ("2", "5", "2024-04", 1),  # 2024-03 had no row: it counts as 0 in mean_3
        ("2", "5", "2024-03", 2),  # origin in the gap month itself
    )

    got = baseline_forecasts(cases, snapshot(), config)

    assert got["last_value"].tolist() == [9.0, 12.0, 0.0]
    assert got["seasonal_naive"].tolist() == [9.0, 12.0, 0.0]
    assert got["mean_3"].tolist() == pytest.approx([(6 + 9) / 2, (9 + 0 + 12) / 3, (6 + 9 + 0) / 3])


def test_baselines_use_only_data_up_to_the_origin(tmp_path):
    config = make_config(tmp_path)
    cases = rows(("1", "1", "2024-02", 1), ("1", "1", "2024-02", 3), ("2", "5", "2024-02", 2))
    history = snapshot()
    known = history[history["month"] <= pd.Timestamp("2024-02-01")]
    # Later months that a cheating baseline would read; make them absurd.
    future = history[history["month"] > pd.Timestamp("2024-02-01")].assign(units=1e9)

    from_known = baseline_forecasts(cases, known, config)
    from_all = baseline_forecasts(cases, pd.concat([known, future], ignore_index=True), config)

    pd.testing.assert_frame_equal(from_all, from_known)
    assert (from_all.to_numpy() < 1e6).all()
