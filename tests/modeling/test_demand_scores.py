"""evaluation.json's ``demand_classes``: each holdout row's class as of its origin, the model and
the baselines per class, Croston SBA, TSB and IMAPA on the intermittent and lumpy classes' rows,
and the p10/p90 bands' coverage per class; recomputed here from holdout.parquet. On synthetic
sales with intermittent items (train on the panel in memory, no Feast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.core.config import ConfigError
from forecasting.core.months import label_index
from forecasting.data.panel import build_panel
from forecasting.datasets.synthetic import generate_sales
from forecasting.features import dataset
from forecasting.features.demand import SPARSE_CLASSES, demand_classes
from forecasting.modeling import booster as model
from forecasting.modeling import evaluate
from forecasting.modeling.baselines import NAIVE_BASELINES, intermittent_forecasts, naive_forecasts
from forecasting.modeling.demand_scores import format_classes
from forecasting.modeling.scoring import metrics
from forecasting.modeling.train import train
from tests.features.test_calendar import calendar_config
from tests.helpers.features import without_feast

MONTH = pd.Period("2024-12", "M")


def test_every_class_is_scored_and_the_sparse_ones_against_the_intermittent_forecasters(
    tmp_path, monkeypatch
):
    without_feast(monkeypatch)
    sales = generate_sales(stores=6, items=25, months=48, end_month=MONTH, seed=2, intermittent_share=0.4)
    sales["month"] = pd.to_datetime(sales["month"])
    config = calendar_config(tmp_path, statistical_jobs=1)
    assert config.evaluation.intermittent_baselines == ["croston_sba", "tsb", "imapa"]
    trained = train(sales, config, MONTH)
    report = evaluate.evaluate(sales, config, MONTH, trained.directory)
    written = json.loads(report.path.read_text())["demand_classes"]
    assert written == json.loads(json.dumps(report.demand_classes))
    assert (written["adi_cutoff"], written["cv2_cutoff"]) == (1.32, 0.49)

    holdout = dataset.read_rows(paths.holdout_rows(trained.directory))
    panel = build_panel(sales, config, sales_only=True)
    entity, origin = holdout[dataset.ENTITY].to_numpy(), label_index(holdout[dataset.ORIGIN])
    horizon, actual = holdout[dataset.HORIZON].to_numpy(), holdout[dataset.LABEL].to_numpy()
    classes = demand_classes(panel, entity, origin)
    booster, metadata = model.load(trained.directory, holdout=True)
    predicted = model.predict(booster, dataset.design_matrix(holdout, config, metadata["categories"]))
    naive = naive_forecasts(panel, entity, origin, horizon)

    scored = written["classes"]
    assert {"smooth", "intermittent"} <= set(scored)
    assert sum(c["rows"] for c in scored.values()) == len(holdout)
    for name, entry in scored.items():
        rows = classes == name
        assert entry["rows"] == rows.sum() and entry["entities"] == len(np.unique(entity[rows]))
        assert entry["model"] == pytest.approx(metrics(actual[rows], predicted[rows]), nan_ok=True)
        for baseline in NAIVE_BASELINES:
            assert entry[baseline] == pytest.approx(metrics(actual[rows], naive[baseline][rows]), nan_ok=True)
        assert entry["interval_coverage"]["model"]["rows"] == rows.sum()
        assert 0 <= entry["interval_coverage"]["model"]["coverage"] <= 1
        assert ("intermittent" in entry) == (name in SPARSE_CLASSES)
    sparse = np.isin(classes, SPARSE_CLASSES)
    got = intermittent_forecasts(
        panel, entity[sparse], origin[sparse], horizon[sparse], ["croston_sba", "tsb", "imapa"]
    )
    for name in set(scored) & set(SPARSE_CLASSES):
        rows = classes[sparse] == name
        entry = scored[name]["intermittent"]
        assert entry["rows"] == rows.sum()
        for forecaster, values in got.items():
            assert np.isfinite(values[rows]).all()
            assert entry["forecasters"][forecaster] == pytest.approx(
                metrics(actual[sparse][rows], values[rows])
            )
    table = format_classes(written)
    assert "intermittent" in table and any(n in table for n in ("croston_sba", "tsb", "imapa"))


def test_intermittent_baselines_are_configurable(tmp_path):
    assert (
        calendar_config(tmp_path / "none", intermittent_baselines=[]).evaluation.intermittent_baselines == []
    )
    with pytest.raises(ConfigError, match=r"evaluation\.intermittent_baselines"):
        calendar_config(tmp_path / "bad", intermittent_baselines=["croston_classic"])
