"""New items (forecasting.modeling.cold_start): the siblings' forecast at the same age, its choice
per forecaster and bucket, and how predict applies it. Hand-made launches with a known ramp-up
(the truth the siblings' ratio must recover), then the synthetic generator's launched items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.months import month_index
from forecasting.data.panel import build_panel
from forecasting.datasets.synthetic import generate_sales
from forecasting.features.age import age_buckets, history_months
from forecasting.modeling import drivers
from forecasting.modeling.cold_start import (
    MIN_REFERENCES,
    apply_to_forecasts,
    choose,
    sibling_forecasts,
    with_siblings,
)
from tests.features.test_calendar import calendar_config

RAMP = np.array([0.3, 0.6, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
FIRST = pd.Period("2023-01", "M")


def launches(levels: dict[tuple[int, int], tuple[float, str]]) -> pd.DataFrame:
    """Store x item sales following RAMP x level from each entity's launch month to 2024-12; an
    established store 1 / item 1 sells 50 a month from 2023-01 (so the window starts there)."""
    rows = [
        {"store_id": 1, "item_id": 1, "month": m.to_timestamp(), "units": 50.0}
        for m in pd.period_range(FIRST, "2024-12", freq="M")
    ]
    for (store, item), (level, launch) in levels.items():
        for age, month in enumerate(pd.period_range(launch, "2024-12", freq="M")):
            rows.append(
                {
                    "store_id": store,
                    "item_id": item,
                    "month": month.to_timestamp(),
                    "units": level * RAMP[min(age, len(RAMP) - 1)],
                }
            )
    return pd.DataFrame(rows)


def test_the_siblings_ratio_recovers_a_shared_ramp_up_and_reads_nothing_after_the_origin(tmp_path):
    config = calendar_config(tmp_path)
    # Six older launches (the references) at levels 10..60, and a new item launched in 2024-10.
    older = {(2, i): (10.0 * i, str(pd.Period("2024-01", "M") + i - 1)) for i in range(1, 7)}
    sales = launches({**older, (3, 9): (200.0, "2024-10")})
    panel = build_panel(sales, config, sales_only=True)
    new = int(np.flatnonzero((panel.keys["store_id"] == "3").to_numpy())[0])
    origin = month_index(pd.Period("2024-10", "M"))  # its first month: 60 sold (0.3 x 200)
    got = sibling_forecasts(panel, np.full(3, new), np.full(3, origin), np.arange(1, 4), 24)
    # Its first month times the references' growth from age 1 to 1 + h: exactly RAMP x 200.
    assert got == pytest.approx(200.0 * RAMP[1:4])
    # Two months in (60, 120 sold), horizon 1: the mean of its two months times the growth of a
    # two-month start to month 3 (0.8 / 0.45).
    two = sibling_forecasts(panel, np.array([new]), np.array([origin + 1]), np.array([1]), 24)
    assert two == pytest.approx([90.0 * 0.8 / 0.45])
    # Only references whose month of age 1 + h is known at the origin: a launch in 2024-08 is too
    # young for horizon 3 from 2024-10, so with it left the only one the ratio would be its own.
    late = launches({**{(2, i): (10.0, "2024-08") for i in range(1, 7)}, (3, 9): (200.0, "2024-10")})
    late_panel = build_panel(late, config, sales_only=True)
    row = int(np.flatnonzero((late_panel.keys["store_id"] == "3").to_numpy())[0])
    reach = sibling_forecasts(late_panel, np.full(3, row), np.full(3, origin), np.arange(1, 4), 24)
    assert np.isfinite(reach[:2]).all() and np.isnan(reach[2])
    # Point in time: whatever happens after the origin changes nothing.
    later = sales.assign(units=np.where(sales["month"] > pd.Timestamp("2024-10-01"), 1e6, sales["units"]))
    again = sibling_forecasts(
        build_panel(later, config, sales_only=True), np.full(3, new), np.full(3, origin), np.arange(1, 4), 24
    )
    assert again == pytest.approx(got)
    # Established entities (24 months or more) and fewer references than the minimum: none.
    established = int(np.flatnonzero((panel.keys["store_id"] == "1").to_numpy())[0])
    assert np.isnan(
        sibling_forecasts(panel, np.array([established]), np.array([origin]), np.array([1]), 24)
    ).all()
    few = launches(
        {**{k: v for k, v in list(older.items())[: MIN_REFERENCES - 1]}, (3, 9): (200.0, "2024-10")}
    )
    few_panel = build_panel(few, config, sales_only=True)
    row = int(np.flatnonzero((few_panel.keys["store_id"] == "3").to_numpy())[0])
    assert np.isnan(
        sibling_forecasts(few_panel, np.array([row]), np.array([origin]), np.array([1]), 24)
    ).all()


def test_a_bucket_uses_the_siblings_only_where_the_mean_is_lower_beyond_noise():
    # 20 entities in bucket 1-2 (one row each) and 20 in 3-5, each sold 10.
    entity = np.arange(40)
    actual = np.full(40, 10.0)
    bucket = np.array(["1-2"] * 20 + ["3-5"] * 20, dtype=object)
    # The model is 4 over everywhere; the siblings are right on in 1-2; in 3-5 right on for one
    # entity, 8 over for the others.
    forecasts = {"model": np.full(40, 14.0), "other": np.full(40, 10.0)}
    sibling = np.concatenate([np.full(20, 10.0), [10.0], np.full(19, 18.0)])
    section = choose(forecasts, actual, entity, bucket, sibling, ["1-2", "3-5", "6-23"], (500, 0.9, 0))
    assert section["buckets"]["1-2"] == {
        "rows": 20,
        "with_siblings": 20,
        "siblings_wape": 0.0,
        "model_wape": 0.4,
    }
    assert "6-23" not in section["buckets"]
    model = section["forecasters"]["model"]
    assert (model["1-2"]["without"], model["1-2"]["with"]) == (pytest.approx(0.4), pytest.approx(0.2))
    assert model["1-2"]["upper"] < 0 and model["1-2"]["used"]
    # 3-5: (2 + 19 x 6) / 200 = 0.58 with, 0.4 without: not used.
    assert model["3-5"]["with"] == pytest.approx(0.58) and not model["3-5"]["used"]
    # A forecaster that is right on gains nothing (1-2: the same forecasts): nothing to test, not used.
    assert section["forecasters"]["other"]["1-2"]["with"] == 0.0 and np.isnan(
        section["forecasters"]["other"]["1-2"]["upper"]
    )
    assert section["used"] == {"model": ["1-2"], "other": []}
    # A forecaster already close, siblings right on for 2 entities and 4 over for 18: not used.
    few = np.where(np.arange(40) < 2, 10.0, 14.0)
    noisy = choose(
        {"model": np.where(np.arange(40) < 20, 10.4, 14.0)},
        actual,
        entity,
        bucket,
        np.where(np.arange(40) < 20, few, np.nan),
        ["1-2"],
        (500, 0.9, 0),
    )
    assert not noisy["forecasters"]["model"]["1-2"]["used"]
    mixed = with_siblings(forecasts["model"], sibling, bucket, ["1-2"])
    assert mixed.tolist() == [12.0] * 20 + [14.0] * 20


def test_predict_averages_the_young_rows_and_the_drivers_still_sum_to_the_prediction(tmp_path):
    config = calendar_config(tmp_path)
    sales = generate_sales(stores=6, items=40, months=36, seed=5, launch_share=0.4, launch_within=10)
    sales["month"] = pd.to_datetime(sales["month"])
    panel = build_panel(sales, config, sales_only=True)
    m = month_index(pd.Period("2024-12", "M"))
    keys = panel.keys.astype(int)
    frame = pd.concat([keys.assign(horizon=h) for h in (1, 2, 3)], ignore_index=True)
    frame["prediction"] = 20.0
    frame["driver_level"], frame["driver_history"] = 15.0, 5.0
    frame[drivers.EXPLAINED] = 1.0
    used = ["1-2", "3-5"]
    out = apply_to_forecasts(frame, panel, ["store_id", "item_id"], m, 24, used)
    entity = np.tile(np.arange(panel.entities), 3)
    bucket = age_buckets(history_months(panel, entity, np.full(len(frame), m)), 24)
    sibling = sibling_forecasts(panel, entity, np.full(len(frame), m), frame["horizon"].to_numpy(), 24)
    applied = np.isin(bucket.astype(str), used) & np.isfinite(sibling)
    assert applied.sum() > 50 and (bucket[~applied] != "1-2").any()
    assert out["prediction"].to_numpy() == pytest.approx(np.where(applied, (20.0 + sibling) / 2, 20.0))
    parts = drivers.driver_columns(out)
    assert drivers.column(drivers.BASELINES) in parts
    assert out[parts].sum(axis=1).to_numpy() == pytest.approx(out["prediction"].to_numpy())
    assert out.loc[~applied, drivers.column(drivers.BASELINES)].eq(0).all()
    assert out[drivers.EXPLAINED].to_numpy() == pytest.approx(
        np.where(applied, 10.0 / out["prediction"], 1.0)
    )
    # Only the launched items are young.
    launched = np.isin(keys["item_id"].to_numpy()[entity], sales.attrs["launched_items"])
    assert not (applied & ~launched).any()
    assert apply_to_forecasts(frame, panel, ["store_id", "item_id"], m, 24, []) is frame
