"""evaluation.json's ``ages``: each holdout row's age bucket as of its origin, the model and the
baselines per bucket and the p10/p90 bands' coverage per bucket; recomputed here from
holdout.parquet. On synthetic sales whose launched items start in the last 10 months (train on
the panel in memory, no Feast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.core.months import label_index
from forecasting.data.panel import build_panel
from forecasting.datasets.synthetic import generate_sales
from forecasting.features import dataset
from forecasting.features.age import ESTABLISHED, age_buckets, history_months, interval_groups
from forecasting.features.demand import demand_classes
from forecasting.modeling import booster as model
from forecasting.modeling import evaluate, intervals
from forecasting.modeling.age_scores import format_ages
from forecasting.modeling.baselines import NAIVE_BASELINES, naive_forecasts
from forecasting.modeling.cold_start import sibling_forecasts, with_siblings
from forecasting.modeling.scoring import metrics
from forecasting.modeling.train import train
from tests.features.test_calendar import calendar_config
from tests.helpers.features import without_feast

MONTH = pd.Period("2024-12", "M")


def test_every_age_bucket_is_scored_on_its_rows(tmp_path, monkeypatch):
    without_feast(monkeypatch)
    sales = generate_sales(
        stores=6, items=30, months=48, end_month=MONTH, seed=5, launch_share=0.4, launch_within=10
    )
    sales["month"] = pd.to_datetime(sales["month"])
    config = calendar_config(tmp_path, statistical_jobs=1)
    trained = train(sales, config, MONTH)
    report = evaluate.evaluate(sales, config, MONTH, trained.directory)
    written = json.loads(report.path.read_text())["ages"]
    assert written == json.loads(json.dumps(report.ages))
    assert written["lookback"] == config.features.lookback_months == 24

    holdout = dataset.read_rows(paths.holdout_rows(trained.directory))
    panel = build_panel(sales, config, sales_only=True)
    entity, origin = holdout[dataset.ENTITY].to_numpy(), label_index(holdout[dataset.ORIGIN])
    horizon, actual = holdout[dataset.HORIZON].to_numpy(), holdout[dataset.LABEL].to_numpy()
    bucket = age_buckets(history_months(panel, entity, origin), 24)
    booster, metadata = model.load(trained.directory, holdout=True)
    predicted = model.predict(booster, dataset.design_matrix(holdout, config, metadata["categories"]))
    naive = naive_forecasts(panel, entity, origin, horizon)

    scored = written["buckets"]
    # Launched 1-10 months before M, their holdout origins (M-8..M-1) see them at every young age.
    assert list(scored) == ["1-2", "3-5", "6-23", ESTABLISHED]
    assert sum(b["rows"] for b in scored.values()) == len(holdout)
    launched = np.isin(panel.keys["item_id"].astype(int).to_numpy()[entity], sales.attrs["launched_items"])
    assert (bucket[~launched] == ESTABLISHED).all() and (bucket[launched] != ESTABLISHED).all()
    for name, entry in scored.items():
        rows = bucket == name
        assert entry["rows"] == rows.sum() and entry["entities"] == len(np.unique(entity[rows]))
        assert entry["model"] == pytest.approx(metrics(actual[rows], predicted[rows]), nan_ok=True)
        for baseline in NAIVE_BASELINES:
            assert entry[baseline] == pytest.approx(metrics(actual[rows], naive[baseline][rows]), nan_ok=True)
        held = entry["interval_coverage"]["model"]
        assert held["rows"] == rows.sum() and 0 <= held["coverage"] <= 1
    table = format_ages(written)
    assert all(name in table for name in scored)

    # The siblings' forecast: chosen per forecaster and young bucket on these rows, and the bands
    # calibrated on the forecasts as predict makes them (no backtest here: the holdout model's),
    # a young entity's in a group of their own.
    cold = json.loads(report.path.read_text())["cold_start"]
    sibling = sibling_forecasts(panel, entity, origin, horizon, 24)
    target = label_index(holdout[dataset.TARGET_MONTH])
    for name in ("1-2", "3-5", "6-23"):
        rows = bucket == name
        entry = cold["forecasters"]["model"][name]
        mixed = with_siblings(predicted, sibling, bucket, [name])
        assert entry["without"] == pytest.approx(metrics(actual[rows], predicted[rows])["wape"])
        assert entry["with"] == pytest.approx(metrics(actual[rows], mixed[rows])["wape"])
        assert cold["buckets"][name]["with_siblings"] == (rows & np.isfinite(sibling)).sum() > 0
        assert (name in cold["used"]["model"]) == entry["used"]
    published = with_siblings(predicted, sibling, bucket, cold["used"]["model"])
    groups = interval_groups(demand_classes(panel, entity, origin), history_months(panel, entity, origin), 24)
    bands = json.loads(report.path.read_text())["intervals"]["forecasters"]["model"]
    assert bands == json.loads(json.dumps(intervals.calibrate(published, actual, horizon, target, groups)))
    assert "new" in bands["by_group"]
