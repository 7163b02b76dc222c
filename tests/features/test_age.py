"""Months of history and age buckets (forecasting.features.age), against the synthetic
generator's launched items, whose first months are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.months import month_index
from forecasting.data.panel import build_panel
from forecasting.datasets.synthetic import generate_sales
from forecasting.features import age
from tests.features.test_calendar import calendar_config

END = pd.Period("2024-12", "M")


def test_buckets_split_the_lookback_and_every_count_falls_in_one():
    assert age.buckets(24)[:3] == [("1-2", 1, 2), ("3-5", 3, 5), ("6-23", 6, 23)]
    assert age.bucket_names(24) == ["1-2", "3-5", "6-23", age.ESTABLISHED]
    assert age.bucket_names(4) == ["1-2", "3", age.ESTABLISHED]
    assert age.bucket_names(2) == ["1", age.ESTABLISHED]
    got = age.age_buckets(np.array([0, 1, 2, 3, 5, 6, 23, 24, 500]), 24).tolist()
    assert got == [None, "1-2", "1-2", "3-5", "3-5", "6-23", "6-23", "established", "established"]


def test_launched_items_count_their_months_from_their_first_row_in_every_store(tmp_path):
    sales = generate_sales(
        stores=5, items=30, months=36, end_month=END, seed=3, launch_share=0.4, launch_within=8
    )
    launched = sales.attrs["launched_items"]
    assert len(launched) == 12
    first = sales.groupby(["store_id", "item_id"])["month"].min().map(lambda d: pd.Period(d, "M"))
    # Launched in the last 8 months (a store rolls it out up to 2 months later, never after the end).
    assert (first[first.index.get_level_values("item_id").isin(launched)] >= END - 7).all()
    assert (first[~first.index.get_level_values("item_id").isin(launched)] < END - 7).all()
    assert generate_sales(stores=2, items=10, months=12, seed=3).attrs["launched_items"] != []
    with pytest.raises(ValueError, match="launch_within"):
        generate_sales(stores=2, items=10, months=12, launch_within=11)

    sales["month"] = pd.to_datetime(sales["month"])
    config = calendar_config(tmp_path)
    panel = build_panel(sales, config, sales_only=True)
    m = month_index(END)
    months = age.history_months(panel, np.arange(panel.entities), np.full(panel.entities, m))
    keyed = pd.Series(months, index=pd.MultiIndex.from_frame(panel.keys.astype(int)))
    expected = first.map(lambda p: (END - p).n + 1)
    assert keyed.sort_index().tolist() == expected.sort_index().tolist()
    assert keyed.max() == 36 and keyed.min() >= 1
    # Two months earlier an item launched since has no history (0, no bucket).
    earlier = age.history_months(panel, np.arange(panel.entities), np.full(panel.entities, m - 2))
    assert ((earlier == 0) == (keyed.to_numpy() <= 2)).all()

    # The published label: the source's key types in, the same counts out (NaN: unknown entity).
    frame = sales.drop_duplicates(["store_id", "item_id"])[["store_id", "item_id"]].reset_index(drop=True)
    frame = pd.concat([frame, pd.DataFrame({"store_id": [99], "item_id": [1]})], ignore_index=True)
    labels = age.label_forecasts(frame, panel, ["store_id", "item_id"], m)
    assert np.isnan(labels[-1])
    by_key = dict(zip(zip(frame["store_id"], frame["item_id"], strict=True), labels, strict=True))
    assert all(by_key[key] == n for key, n in expected.items())
    # The feature of the same name is this count capped at the lookback.
    from forecasting.features.catalogue import feature_arrays

    feature = feature_arrays(panel, config).values["history_months"][:, panel.column(m)]
    assert (feature == np.minimum(months, config.features.lookback_months)).all()
