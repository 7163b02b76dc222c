"""Demand classes (forecasting.features.demand): ADI and CV² by hand, the Syntetos-Boylan
cut-offs, the panel's vectorised measures against the one-series definition, point in time, and
on synthetic data the classification finds the items generated intermittent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.data.panel import build_panel
from forecasting.datasets.synthetic import generate_sales
from forecasting.features.demand import (
    SPARSE_CLASSES,
    adi_cv2,
    classify,
    demand_classes,
    label_forecasts,
    measures,
)
from tests.features.test_calendar import calendar_config


@pytest.mark.parametrize(
    ("history", "adi", "cv2"),
    [
        ([5, 5, 5, 5], 1.0, 0.0),  # demand every month, always the same: smooth
        ([1, 2, 3, 4], 1.0, 0.2),  # sizes 1-4: mean 2.5, variance 1.25, CV² 1.25 / 6.25
        ([0, 5, 0, 5, 0, 5], 2.0, 0.0),  # every other month, same size: intermittent
        ([0, 0, 1, 0, 9, 0], 3.0, 0.64),  # two demands in six months, sizes 1 and 9: 16 / 25
        ([np.nan, np.nan, 0, 4, 4], 1.5, 0.0),  # before the span (NaN) is not history
    ],
)
def test_adi_and_cv2_by_hand(history, adi, cv2):
    assert adi_cv2(np.array(history, dtype=float)) == pytest.approx((adi, cv2))


def test_no_demand_has_no_measures():
    assert all(np.isnan(adi_cv2(np.zeros(6))))


def test_the_cut_offs():
    adi = np.array([1.0, 1.0, 1.32, 2.0, 1.3199, 1.0, np.nan])
    cv2 = np.array([0.2, 0.49, 0.2, 0.64, 0.4899, 0.4899, np.nan])
    assert classify(adi, cv2).tolist() == [
        "smooth",
        "erratic",  # CV² at the cut-off is variable
        "intermittent",  # ADI at the cut-off is sparse
        "lumpy",
        "smooth",
        "smooth",
        "no_demand",
    ]


def panel_of(units: dict[tuple[int, int], list[float | None]], tmp_path):
    """A panel of (store, item) series over 2023-01.., None: no row that month."""
    rows = []
    for (store, item), values in units.items():
        for t, value in enumerate(values):
            if value is not None:
                rows.append((store, item, pd.Timestamp("2023-01-01") + pd.DateOffset(months=t), value))
    frame = pd.DataFrame(rows, columns=["store_id", "item_id", "month", "units"])
    return build_panel(frame, calendar_config(tmp_path), sales_only=True)


def test_the_panels_measures_are_the_definitions_at_every_origin(tmp_path):
    series = {
        (1, 1): [3, 0, 0, 4, 0, 0, 0, 9, 1, 0],
        (1, 2): [None, None, 2, 2, None, 2, 3, 2, 2, 2],  # starts in month 2; a missing month is 0
        (2, 1): [0, 0, 0, 0, 0, 7, 0, 0, 0, 0],
        (2, 2): [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
    panel = panel_of(series, tmp_path)
    for col in range(panel.months):
        entity = np.arange(panel.entities)
        adi, cv2 = measures(panel, entity, np.full(panel.entities, panel.first_month + col))
        for e in entity:
            history = np.where(
                panel.in_span()[e, : col + 1], np.nan_to_num(panel.sales[e, : col + 1]), np.nan
            )
            np.testing.assert_allclose((adi[e], cv2[e]), adi_cv2(history), rtol=1e-9, equal_nan=True)
    classes = demand_classes(panel, np.arange(4), np.full(4, panel.first_month + 9))
    keys = list(zip(panel.keys["store_id"].astype(int), panel.keys["item_id"].astype(int), strict=True))
    got = dict(zip(keys, classes, strict=True))
    # (1, 1): 4 demands in 10 months (ADI 2.5), sizes 3, 4, 9, 1: mean 4.25, variance 8.6875,
    # CV² 0.481, just under 0.49 -> intermittent.
    assert got == {(1, 1): "intermittent", (1, 2): "smooth", (2, 1): "intermittent", (2, 2): "no_demand"}
    # Before its first demand, (2, 1) had none.
    assert demand_classes(panel, np.array([keys.index((2, 1))]), np.array([panel.first_month + 4])) == [
        "no_demand"
    ]


def test_a_class_reads_nothing_after_its_origin(tmp_path):
    base = {(1, 1): [0, 5, 0, 5, 0, 5, 1, 1, 1, 1]}
    later = {(1, 1): [0, 5, 0, 5, 0, 5, 90, 0, 300, 7]}
    origin = None
    got = []
    for units in (base, later):
        panel = panel_of(units, tmp_path / str(len(got)))
        origin = panel.first_month + 5
        got.append(demand_classes(panel, np.array([0]), np.array([origin])).tolist())
    assert got == [["intermittent"], ["intermittent"]]


def test_forecast_rows_get_their_entitys_class_by_key(tmp_path):
    panel = panel_of({(1, 1): [0, 5, 0, 5], (1, 2): [5, 5, 5, 5]}, tmp_path)
    frame = pd.DataFrame({"store_id": [1, 1, 9], "item_id": [2, 1, 9]})  # (9, 9): not in the panel
    labels = label_forecasts(frame, panel, ["store_id", "item_id"], panel.first_month + 3)
    assert labels.tolist() == ["smooth", "intermittent", None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_generators_intermittent_items_are_found(tmp_path, seed):
    sales = generate_sales(
        stores=8, items=40, months=48, end_month="2024-12", seed=seed, intermittent_share=0.3
    )
    sales["month"] = pd.to_datetime(sales["month"])
    panel = build_panel(sales, calendar_config(tmp_path), sales_only=True)
    last = panel.first_month + panel.months - 1
    classes = demand_classes(panel, np.arange(panel.entities), np.full(panel.entities, last))
    truth = panel.keys["item_id"].astype(int).isin(sales.attrs["intermittent_items"]).to_numpy()
    sparse = np.isin(classes, SPARSE_CLASSES)
    assert truth.sum() >= 30
    assert sparse[truth].mean() >= 0.95  # every generated-intermittent series, or nearly
    # A regular series is called sparse only when it is slow (Poisson zeros in over a quarter of
    # its months): every regular one selling 5 units a month or more is smooth or erratic.
    mean = np.nanmean(np.where(panel.in_span(), panel.sales, np.nan), axis=1)
    assert not (sparse & ~truth & (mean >= 5)).any()
    assert sparse[~truth].mean() <= 0.10
