"""The rolling-origin backtest: which origins are refit on what, point in time (a fit of origin o
never sees a target after o), its scores against every baseline on the same rows, the config
key, the registry's columns and the quality page's table.

train() runs on a small synthetic panel with Feast's point-in-time join replaced by the same
features computed from the panel in memory (each row's features as of the end of its origin,
as ``features.build_features`` writes them), so a train costs about a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import Config, ConfigError, load_config
from forecasting.core.months import label_index, month_index
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.modeling import backtest, evaluate
from forecasting.modeling.backtest import BACKTEST
from forecasting.modeling.baselines import NAIVE_BASELINES, naive_forecasts
from forecasting.modeling.scoring import metrics
from forecasting.modeling.train import train
from forecasting.registry import models
from forecasting.ui import overview as report
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.features import without_feast

KEYS = ["store", "item"]
MONTH = pd.Period("2024-12", "M")
ORIGINS = [str(MONTH - k) for k in range(6, 0, -1)]  # 2024-06 .. 2024-11: the last 6 origins


def make_config(folder: Path, **evaluation) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    raw["model"].update(num_boost_round=40, early_stopping_rounds=5, validation_months=3)
    raw["evaluation"] = {"holdout_months": 6, "statistical_baselines": [], **evaluation}
    raw["horizon"] = 3
    return load_config(write_config(folder, raw))


def history(entities: int = 24, months: int = 36) -> pd.DataFrame:
    """Seasonal sales at a level of each entity's own, with noise: something to learn."""
    rng = np.random.default_rng(5)
    stamps = pd.period_range(end=str(MONTH), periods=months, freq="M")
    level = rng.uniform(5, 50, entities)
    season = 1 + 0.4 * np.sin(2 * np.pi * (stamps.month.to_numpy() - 1) / 12)
    units = rng.poisson(level[:, None] * season[None, :]).astype(float) + 1.0  # never 0: same rows
    return pd.DataFrame(
        {
            "store": np.repeat(np.arange(entities) // 6, months),
            "item": np.repeat(np.arange(entities) % 6, months),
            "month": np.tile(stamps.to_timestamp(), entities),
            "units": units.ravel(),
        }
    )


def poisoned_after(snapshot: pd.DataFrame, month: str) -> pd.DataFrame:
    """Every sale after ``month`` changed beyond recognition (its rows kept: the same labelled rows)."""
    later = snapshot["month"] > pd.Period(month, "M").to_timestamp()
    out = snapshot.copy()
    out.loc[later, "units"] = out.loc[later, "units"] * 40 + 1000
    return out


@pytest.fixture(scope="module")
def no_feast():
    with pytest.MonkeyPatch.context() as patch:
        without_feast(patch)
        yield


def trained(snapshot: pd.DataFrame, config: Config) -> tuple[dict, pd.DataFrame, Path]:
    model = train(snapshot, config, MONTH)
    return model.metadata, pd.read_parquet(model.directory / "holdout.parquet"), model.directory


@pytest.fixture(scope="module")
def clean(tmp_path_factory, no_feast):
    """The model trained once on the unpoisoned history (its config scores Theta on 3 entities)."""
    config = make_config(
        tmp_path_factory.mktemp("clean"),
        statistical_baselines=["theta"],
        statistical_max_series=3,
        statistical_jobs=1,
    )
    snapshot = history()
    metadata, holdout, model_dir = trained(snapshot, config)
    return SimpleNamespace(
        config=config, snapshot=snapshot, metadata=metadata, holdout=holdout, model_dir=model_dir
    )


def backtest_of(holdout: pd.DataFrame, origin: str) -> np.ndarray:
    return holdout.loc[holdout[dataset.ORIGIN] == origin, BACKTEST].to_numpy()


# ----------------------------------------------------------------------------------- train


def test_each_of_the_last_origins_is_refit_on_the_targets_up_to_it(clean):
    config, snapshot, metadata, holdout = clean.config, clean.snapshot, clean.metadata, clean.holdout

    panel = build_panel(snapshot, config, sales_only=True)
    fitted = dataset.labelled(panel, config, MONTH)  # every row is fitted (under the row budget)
    assert metadata["rows"]["fitted"] == len(fitted)
    fits = metadata["backtest"]["fits"]
    assert [f["origin"] for f in fits] == ORIGINS
    assert metadata["backtest"]["trees"] == metadata["params"]["num_boost_round"]  # the holdout model's
    for fit in fits:
        o = month_index(pd.Period(fit["origin"], "M"))
        assert fit["last_target_month"] == fit["origin"]
        assert fit["train_rows"] == int((fitted.target <= o).sum())
        rows = holdout[dataset.ORIGIN] == fit["origin"]
        assert fit["forecast_rows"] == int(rows.sum()) > 0
        expected_horizons = [h for h in (1, 2, 3) if o + h <= month_index(MONTH)]
        assert fit["horizons"] == expected_horizons
        assert sorted(holdout.loc[rows, dataset.HORIZON].unique()) == expected_horizons

    # A forecast for exactly the holdout rows of those origins; NaN for the older origins' rows.
    in_backtest = holdout[dataset.ORIGIN].isin(ORIGINS)
    assert holdout.loc[in_backtest, BACKTEST].notna().all()
    assert holdout.loc[~in_backtest, BACKTEST].isna().all() and (~in_backtest).any()
    assert (holdout.loc[in_backtest, BACKTEST] >= 0).all()


@pytest.mark.parametrize("origin", ["2024-06", "2024-09"])
def test_a_backtest_fit_never_sees_a_target_after_its_origin(tmp_path, clean, origin):
    """Sales after ``origin`` poisoned (labels of later target months and every feature of later
    origins): the forecasts of ``origin`` and earlier are bit for bit the same; the later
    origins' forecasts change, so the poison did reach everything after ``origin``."""
    _, poisoned, _ = trained(poisoned_after(clean.snapshot, origin), make_config(tmp_path))

    for o in ORIGINS:
        before, after = backtest_of(clean.holdout, o), backtest_of(poisoned, o)
        if o <= origin:
            np.testing.assert_array_equal(before, after, err_msg=f"origin {o}")
        else:
            assert np.abs(after - before).mean() > 1, f"origin {o} did not see the poisoned months"


def test_no_backtest_with_zero_origins(tmp_path, no_feast):
    config = make_config(tmp_path, backtest_origins=0)
    metadata, holdout, model_dir = trained(history(), config)
    assert metadata["backtest"]["fits"] == [] and metadata["backtest"]["seconds"] == 0
    assert holdout[BACKTEST].isna().all()

    written = json.loads(evaluate.evaluate(history(), config, MONTH, model_dir).path.read_text())
    assert written["backtest"] is None
    assert backtest.registry_values(written["backtest"])["backtest_wape"] is None


# -------------------------------------------------------------------------------- evaluate


def test_the_backtest_is_scored_against_every_baseline_on_the_same_rows(clean):
    """With the statistical baseline sampled (3 of 24 entities): the naive baselines on every
    backtest row, the statistical one with the model on the sample's rows, per origin, per
    horizon and overall; the numbers recomputed here from holdout.parquet."""
    config, snapshot, holdout = clean.config, clean.snapshot, clean.holdout
    result = evaluate.evaluate(snapshot, config, MONTH, clean.model_dir)
    written = json.loads(result.path.read_text())["backtest"]
    assert written == json.loads(json.dumps(result.backtest))

    panel = build_panel(snapshot, config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    origin = label_index(holdout[dataset.ORIGIN])
    horizon = holdout[dataset.HORIZON].to_numpy()
    actual = holdout[dataset.LABEL].to_numpy()
    refit = holdout[BACKTEST].to_numpy()
    naive = naive_forecasts(panel, entity, origin, horizon)

    assert [o["origin"] for o in written["origins"]] == ORIGINS
    for entry in written["origins"]:
        rows = (holdout[dataset.ORIGIN] == entry["origin"]).to_numpy()
        assert entry["rows"] == rows.sum()
        assert entry["model"] == pytest.approx(metrics(actual[rows], refit[rows]), nan_ok=True)
        assert set(entry["baselines"]) == set(NAIVE_BASELINES)  # every row: the naive ones
        for name in NAIVE_BASELINES:
            assert entry["baselines"][name] == pytest.approx(metrics(actual[rows], naive[name][rows]))
        best = min(NAIVE_BASELINES, key=lambda n: entry["baselines"][n]["wape"])
        assert entry["best_baseline"] == best
        assert entry["beats_best_baseline"] == (entry["model"]["wape"] < entry["baselines"][best]["wape"])
        # The sample: 3 entities' rows of this origin, every forecaster on them.
        sample = entry["sample"]
        assert set(sample["baselines"]) == {*NAIVE_BASELINES, "theta"}
        assert {m["rows"] for m in [sample["model"], *sample["baselines"].values()]} == {sample["rows"]}
        assert sample["rows"] == 3 * len(entry_horizons(holdout, entry["origin"]))
        assert entry["train_rows"] > 0 and entry["last_target_month"] == entry["origin"]

    overall = written["overall"]
    assert overall["rows"] == sum(o["rows"] for o in written["origins"]) == np.isfinite(refit).sum()
    assert overall["sample"]["rows"] == sum(o["sample"]["rows"] for o in written["origins"])
    assert overall[backtest.HOLDOUT_MODEL]["rows"] == overall["rows"]
    assert sorted(written["by_horizon"], key=int) == ["1", "2", "3"]
    assert sum(h["model"]["rows"] for h in written["by_horizon"].values()) == overall["rows"]
    for by_h in written["by_horizon"].values():
        assert set(by_h) == {"model", backtest.HOLDOUT_MODEL, *NAIVE_BASELINES}
        assert len({m["rows"] for m in by_h.values()}) == 1
    assert set(overall["sample"]["by_horizon"]["1"]) == {
        "model",
        backtest.HOLDOUT_MODEL,
        *NAIVE_BASELINES,
        "theta",
        "model+theta",  # the combination, with the refit models as its model
    }
    assert written["statistical_baselines_scored_on"] == "sample"

    # The registry's columns and the quality page's table come from this section.
    values = backtest.registry_values(written)
    assert values["backtest_wape"] == overall["model"]["wape"]
    assert values["backtest_best_baseline"] == overall["best_baseline"]
    assert [o["origin"] for o in values["backtest_origins"]] == ORIGINS
    assert values["backtest_origins"][0]["sample"]["baseline_wapes"].keys() == {*NAIVE_BASELINES, "theta"}
    page = report._backtest_table(written)
    for entry in [*written["origins"], overall]:
        assert f"{entry['model']['wape']:.3f}" in page
        assert f"{entry['baselines'][entry['best_baseline']]['wape']:.3f}" in page
    assert page.count("<tr data-origin=") == len(ORIGINS) + 1
    assert "on the sample" in page
    # Under each published month's scores on the quality page.
    month = {
        "month": str(MONTH),
        "model_version": "v",
        "forecasts": 72,
        "holdout_wape": 0.2,
        "best_baseline": "mean_3",
        "best_baseline_wape": 0.3,
        "evaluation": json.loads(result.path.read_text()),
    }
    assert page in report._month_quality(month, open_=True)
    assert report._backtest_table(None) == "" == report._backtest_table({"origins": []})


def test_the_blend_is_the_mean_of_the_model_and_the_best_baseline_on_every_row(clean):
    """evaluation.json's ``blend`` (what the gate may publish when neither model beats the best
    baseline): the holdout model's and the best baseline's forecasts averaged, scored overall and
    per horizon, with its own p10/p90 bands; in the backtest, the refit models blended with the
    same baseline. Recomputed here from holdout.parquet. The statistical baseline is sampled, so
    the blend's partner is the best naive one (scored on every row)."""
    from forecasting.modeling import booster as model

    config, snapshot, holdout = clean.config, clean.snapshot, clean.holdout
    result = evaluate.evaluate(snapshot, config, MONTH, clean.model_dir)
    written = json.loads(result.path.read_text())
    blend = written["blend"]
    partner = blend["baseline"]
    assert partner == written["best_baseline"] and partner in NAIVE_BASELINES

    panel = build_panel(snapshot, config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    origin = label_index(holdout[dataset.ORIGIN])
    horizon = holdout[dataset.HORIZON].to_numpy()
    actual = holdout[dataset.LABEL].to_numpy()
    booster, metadata = model.load(clean.model_dir, holdout=True)
    predicted = model.predict(booster, dataset.design_matrix(holdout, config, metadata["categories"]))
    naive = naive_forecasts(panel, entity, origin, horizon)[partner]
    mean = (predicted + naive) / 2
    assert blend["metrics"] == pytest.approx(metrics(actual, mean))
    for h in ("1", "2", "3"):
        rows = horizon == int(h)
        assert blend["by_horizon"][h] == pytest.approx(metrics(actual[rows], mean[rows]))
    assert written["intervals"]["forecasters"]["blend"] is not None
    assert "blend" in written["intervals"]["coverage"]

    refit = holdout[BACKTEST].to_numpy()
    for entry in written["backtest"]["origins"]:
        rows = (holdout[dataset.ORIGIN] == entry["origin"]).to_numpy()
        expected = metrics(actual[rows], (refit[rows] + naive[rows]) / 2)
        assert entry["blend"] == pytest.approx({"baseline": partner, **expected})
    assert "blend" in backtest.format_table(written["backtest"]).splitlines()[0]
    # The log's table, the run summary's and the quality page's list it beside the baselines.
    assert f"blend {partner}" in evaluate.format_table(result)
    board = {entry["name"]: entry for entry in report.scoreboard(written)}
    assert board["blend"]["metrics"] == blend["metrics"]
    assert board["blend"]["wape_by_horizon"]["2"] == blend["by_horizon"]["2"]["wape"]
    # A month that published the blend marks the blend's row as the published one.
    month = {
        "month": str(MONTH),
        "model_version": f"blend:v+{partner}",
        "forecasts": 72,
        "holdout_wape": blend["metrics"]["wape"],
        "best_baseline": partner,
        "best_baseline_wape": written["baselines"][partner]["wape"],
        "evaluation": written,
    }
    page = report._month_quality(month, open_=True)
    assert page.count("<tr class=chosen>") == 1 and "<tr class=chosen><td>blend</td>" in page


def entry_horizons(holdout: pd.DataFrame, origin: str) -> list[int]:
    return sorted(holdout.loc[holdout[dataset.ORIGIN] == origin, dataset.HORIZON].unique())


def test_the_log_table_and_an_evaluation_without_statistical_sampling():
    """Pure scoring on hand-made rows: two origins, a model and the baselines."""
    actual = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    refit = np.array([11.0, 18.0, np.nan, 44.0, 50.0])
    june = month_index(pd.Period("2024-06", "M"))
    origin = np.array([june, june, june - 1, june + 1, june + 1])
    horizon = np.array([1, 2, 1, 1, 2])
    forecasts = {
        "model": actual * 1.5,
        "last_value": actual + 5,
        "mean_3": actual - 1,
    }
    section = backtest.score(
        actual,
        refit,
        forecasts,
        origin,
        horizon,
        ("last_value", "mean_3"),
        ("last_value", "mean_3"),
        None,
        [],
    )
    assert section is not None
    assert [o["origin"] for o in section["origins"]] == ["2024-06", "2024-07"]
    first = section["origins"][0]
    assert first["rows"] == 2 and first["model"]["mae"] == pytest.approx(1.5)
    assert first["best_baseline"] == "mean_3" and first["beats_best_baseline"] is False  # MAE 1.5 vs 1
    assert first["train_rows"] is None  # no fit described
    assert section["overall"]["rows"] == 4 and "sample" not in section["overall"]
    assert section["overall"][backtest.HOLDOUT_MODEL]["wape"] == pytest.approx(0.5)
    assert section["by_horizon"]["2"]["model"]["rows"] == 2
    table = backtest.format_table(section)
    assert table.splitlines()[0].split()[:4] == ["origin", "rows", "model", "holdout"]
    assert "overall" in table and "mean_3" in table
    nothing = backtest.score(actual, np.full(5, np.nan), forecasts, origin, horizon, (), (), None, [])
    assert nothing is None


# ---------------------------------------------------------------------------------- config


def test_backtest_origins_default_and_accepted_values(tmp_path):
    assert make_config(tmp_path / "a").evaluation.backtest_origins == 6
    assert make_config(tmp_path / "b", backtest_origins=0).evaluation.backtest_origins == 0
    assert make_config(tmp_path / "c", backtest_origins=3).evaluation.backtest_origins == 3
    # Unset, the default is capped at the holdout's months; set, it may not exceed them.
    assert make_config(tmp_path / "d", holdout_months=2).evaluation.backtest_origins == 2
    assert make_config(tmp_path / "e", holdout_months=2, backtest_origins=2).evaluation.backtest_origins == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be at least 0"),
        (7, "7 is more than evaluation.holdout_months 6"),
        (2.5, "must be int"),
        ("six", "must be int"),
        (True, "must be int"),
        (None, "must be int"),
    ],
)
def test_backtest_origins_refused_values(tmp_path, value, message):
    with pytest.raises(ConfigError, match=rf"evaluation\.backtest_origins: .*{message}"):
        make_config(tmp_path, backtest_origins=value)


# -------------------------------------------------------------------------------- registry


def test_model_row_carries_the_backtest():
    section = backtest.score(
        np.array([10.0, 20.0]),
        np.array([12.0, 20.0]),
        {"model": np.array([15.0, 25.0]), "last_value": np.array([10.0, 10.0])},
        month_index(pd.PeriodIndex(["2041-09", "2041-10"], freq="M")).to_numpy(),
        np.array([1, 1]),
        ("last_value",),
        ("last_value",),
        None,
        [],
    )
    evaluation = {
        "holdout_target_months": ["2041-09", "2041-10"],
        "model": {"wape": 0.3, "rows": 2},
        "baselines": {"last_value": {"wape": 0.33}},
        "best_baseline": "last_value",
        "backtest": section,
    }
    metadata = {"model_version": "2041-10-abc", "run_month": "2041-10"}
    row = models.model_row(metadata, evaluation, {}, None)
    assert row["backtest_rows"] == 2
    assert row["backtest_wape"] == pytest.approx(2 / 30)
    assert (row["backtest_best_baseline"], row["backtest_best_baseline_wape"]) == (
        "last_value",
        pytest.approx(1 / 3),
    )
    per_origin = json.loads(row["backtest_origins"])
    assert [o["origin"] for o in per_origin] == ["2041-09", "2041-10"]
    assert per_origin[0] == {
        "origin": "2041-09",
        "rows": 1,
        "wape": pytest.approx(0.2),
        "baseline_wapes": {"last_value": 0.0},
        "best_baseline": "last_value",
        "best_baseline_wape": 0.0,
    }
    # A model evaluated before backtests existed: the columns stay NULL.
    del evaluation["backtest"]
    old = models.model_row(metadata, evaluation, {}, None)
    assert [old[c] for c in ("backtest_rows", "backtest_wape", "backtest_origins")] == [None, None, None]
