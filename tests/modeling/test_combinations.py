"""Combinations as forecasters: the equal-weight means of the model, AutoETS and Theta.

On a real trained model (the small synthetic panel of test_backtest, Feast's point-in-time join
replaced by the same features computed in memory) and real statsforecast fits: evaluate scores
each combination on the holdout and, with the refit models as its model member, on the backtest;
its weights never depend on the rows that score it; its bands are calibrated and their coverage
measured; predict forecasts it for every active entity as the mean of its members' forecasts.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.features import dataset
from forecasting.modeling import evaluate
from forecasting.modeling.backtest import BACKTEST
from forecasting.modeling.forecaster import (
    MODEL_FORECAST,
    STATISTICAL_FORECAST,
    Baseline,
    Blend,
    Model,
    as_blend,
    combinations,
    model_version,
    parse,
)
from forecasting.modeling.predict import baseline_forecasts, blend_forecast, forecast, with_step_forecasts
from forecasting.modeling.scoring import combine, metrics
from tests.modeling.test_backtest import MONTH, history, make_config, no_feast, trained  # noqa: F401

STATISTICAL = ["auto_ets", "theta"]
COMBINATIONS = ["model+auto_ets", "model+theta", "auto_ets+theta", "model+auto_ets+theta"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, no_feast):  # noqa: F811
    """A model trained once, evaluated with AutoETS and Theta on every entity."""
    config = make_config(
        tmp_path_factory.mktemp("combinations"),
        statistical_baselines=STATISTICAL,
        statistical_max_series=None,
        statistical_jobs=1,
    )
    snapshot = history()
    metadata, holdout, model_dir = trained(snapshot, config)
    result = evaluate.evaluate(snapshot, config, MONTH, model_dir)
    written = json.loads(result.path.read_text())
    rows = pd.read_parquet(paths.sample_rows(model_dir))
    return SimpleNamespace(
        config=config,
        snapshot=snapshot,
        metadata=metadata,
        holdout=holdout,
        model_dir=model_dir,
        written=written,
        rows=rows,
    )


def test_the_combinations_and_their_names():
    assert ["+".join(c) for c in combinations(STATISTICAL)] == COMBINATIONS
    assert combinations([]) == []
    for text, blend in (
        ("blend:2024-12-0123456789+auto_ets+theta", Blend("2024-12-0123456789", "auto_ets", ("theta",))),
        ("blend:auto_ets+theta", Blend(None, "auto_ets", ("theta",))),
        ("blend:2024-12-0123456789+theta", Blend("2024-12-0123456789", "theta")),
    ):
        assert parse(text) == blend and str(blend) == text
    assert model_version(parse("blend:auto_ets+theta")) is None
    assert as_blend(("model", "theta"), "v") == Blend("v", "theta")
    assert as_blend(("auto_ets", "theta"), "v") == Blend(None, "auto_ets", ("theta",))
    for bad in ("blend:auto_ets", "blend:v+", "blend:v++theta"):
        with pytest.raises(ValueError, match="blend"):
            parse(bad)
    np.testing.assert_allclose(
        combine([np.array([1.0, 2.0]), np.array([3.0, 5.0]), np.array([2.0, 2.0])]), [2.0, 3.0]
    )


def test_each_combination_is_the_mean_of_its_members_on_the_holdout_and_the_backtest(run):
    """evaluation.json's ``combinations`` and the backtest's, recomputed here from the rows
    evaluate wrote (sample_rows.parquet: every row, here) and holdout.parquet's refit forecasts."""
    written, rows = run.written, run.rows
    section = written["combinations"]
    assert section["scored_on"] == "holdout" and section["rows"] == len(rows) == len(run.holdout)
    assert set(section["forecasters"]) == set(COMBINATIONS)
    actual = rows["actual"].to_numpy()
    for name in COMBINATIONS:
        mean = np.mean([rows[m].to_numpy() for m in name.split("+")], axis=0)
        assert section["forecasters"][name] == pytest.approx(metrics(actual, mean))
        assert section["by_horizon"]["2"][name]["rows"] == (rows["horizon"] == 2).sum()
    assert section["model"] == pytest.approx(written["model"])

    # On the backtest the refit models are the model member.
    refit = run.holdout[BACKTEST].to_numpy()[rows["row"].to_numpy()]
    backtested = np.isfinite(refit)
    members = {"model": refit, **{n: rows[n].to_numpy() for n in STATISTICAL}}
    overall = written["backtest"]["overall"]
    assert set(overall["combinations"]) == set(COMBINATIONS)
    for name in COMBINATIONS:
        mean = np.mean([members[m] for m in name.split("+")], axis=0)
        assert overall["combinations"][name] == pytest.approx(metrics(actual[backtested], mean[backtested]))
        assert name in written["backtest"]["by_horizon"]["1"]

    # Bands for each, calibrated on the refit models' errors where the backtest ran (the holdout
    # model's elsewhere: the earlier origins and the longer horizons), and their coverage measured.
    assert written["intervals"]["calibrated_on"] == "backtest"
    for name in ["model", *STATISTICAL, *COMBINATIONS]:
        spec = written["intervals"]["forecasters"][name]
        assert set(spec["by_horizon"]) == {"1", "2", "3"}
        held = written["intervals"]["coverage"][name]
        assert held is not None and 0 < held["coverage"] <= 1 and held["target"] == pytest.approx(0.8)
    model_rows = sum(b["rows"] for b in written["intervals"]["forecasters"]["model"]["by_horizon"].values())
    assert model_rows == len(run.holdout) > backtested.sum()  # every holdout row, refit or not
    assert "model+auto_ets+theta" in evaluate.format_table(
        evaluate.EvaluationReport(
            path=run.model_dir,
            model=written["model"],
            baselines=written["baselines"],
            by_horizon={},
            combinations=section,
        )
    )


def test_the_weights_never_see_the_rows_that_score_them(run, tmp_path):
    """Evaluate again with every actual of the holdout changed: each combination's forecasts
    (recovered from its scores against two sets of actuals) stay the equal-weight mean of its
    members' forecasts, which do not read those actuals. Weights fitted on the scoring rows
    (inverse error, least squares, a chosen best member) would move with the actuals."""
    import shutil

    moved = tmp_path / "model"
    shutil.copytree(run.model_dir, moved)
    holdout = dataset.read_rows(paths.holdout_rows(moved))
    rng = np.random.default_rng(0)
    # The later half of the rows much larger, the earlier smaller: any fitted weight would shift.
    holdout[dataset.LABEL] = holdout[dataset.LABEL] * np.where(rng.random(len(holdout)) < 0.5, 0.3, 3.0)
    paths.write_parquet_atomically(holdout, paths.holdout_rows(moved))
    again = evaluate.evaluate(run.snapshot, run.config, MONTH, moved)
    rows = pd.read_parquet(paths.sample_rows(moved))
    for name in STATISTICAL + ["model"]:  # the members do not read the actuals
        np.testing.assert_allclose(rows[name].to_numpy(), run.rows[name].to_numpy())
    actual = rows["actual"].to_numpy()
    for name in COMBINATIONS:
        mean = np.mean([rows[m].to_numpy() for m in name.split("+")], axis=0)
        assert again.combinations["forecasters"][name] == pytest.approx(metrics(actual, mean))


def test_a_combination_forecasts_every_active_entity_as_the_mean_of_its_members(run):
    config, snapshot = run.config, run.snapshot
    version = run.metadata["model_version"]
    models_dir = run.model_dir.parent
    made = forecast(snapshot, config, MONTH, run.model_dir)
    base = baseline_forecasts(snapshot, config, MONTH, STATISTICAL)
    assert len(made) == len(base) == 24 * config.horizon  # every active entity, every horizon
    identity = [c for c in made.columns if c != "prediction"]
    assert made[identity].equals(base[identity])
    for text in ("blend:auto_ets+theta", f"blend:{version}+auto_ets+theta", f"blend:{version}+theta"):
        blended = parse(text)
        assert isinstance(blended, Blend)
        got = blend_forecast(snapshot, config, MONTH, blended, models_dir)
        assert got[identity].equals(base[identity])
        members = [base[n].to_numpy() for n in blended.baselines]
        if blended.model_version is not None:
            members.append(made["prediction"].to_numpy())
        np.testing.assert_allclose(got["prediction"].to_numpy(), np.mean(members, axis=0))
        assert got["prediction"].notna().all() and (got["prediction"] >= 0).all()


def test_predict_keeps_each_rows_model_and_statistical_forecast_for_the_value_added(run):
    """The FVA waterfall's model and statistical steps (monitoring.fva_statistical: Theta) for
    every row, whatever the gate published: a blend's members as it made them, the challenger
    forecast anew when baselines were published, Theta fitted where no member was Theta."""
    config, snapshot = run.config, run.snapshot
    version, models_dir = run.metadata["model_version"], run.model_dir.parent
    made = forecast(snapshot, config, MONTH, run.model_dir)
    theta = baseline_forecasts(snapshot, config, MONTH, ["theta"])["theta"].to_numpy()
    published = {
        Model(version): made,
        parse(f"blend:{version}+theta"): blend_forecast(
            snapshot, config, MONTH, parse(f"blend:{version}+theta"), models_dir
        ),
        parse("blend:auto_ets+theta"): blend_forecast(
            snapshot, config, MONTH, parse("blend:auto_ets+theta"), models_dir
        ),
        Baseline("auto_ets"): baseline_forecasts(snapshot, config, MONTH, ["auto_ets"]).rename(
            columns={"auto_ets": "prediction"}
        ),
    }
    for forecaster, frame in published.items():
        stepped = with_step_forecasts(frame, snapshot, config, MONTH, forecaster, run.model_dir)
        np.testing.assert_allclose(stepped["prediction"], frame["prediction"])  # the published, as it was
        np.testing.assert_allclose(stepped[MODEL_FORECAST], made["prediction"], rtol=1e-6)
        np.testing.assert_allclose(stepped[STATISTICAL_FORECAST], theta, rtol=1e-6)
    # The blend of the model and Theta made both steps itself (nothing fitted again).
    assert {MODEL_FORECAST, STATISTICAL_FORECAST} <= set(published[parse(f"blend:{version}+theta")].columns)


def test_realised_errors_that_widened_widen_the_next_runs_bands(run, tmp_path):
    """Evaluate again, pooled with realised errors of forecasts that sold three times what they
    said (as after a demand shift): every horizon's and size band's p90 reaches further, the
    forecasts published with them get wider intervals, and evaluation.json says what was pooled."""
    import shutil

    from forecasting.modeling import intervals

    moved = tmp_path / "model"
    shutil.copytree(run.model_dir, moved)
    rows = run.rows  # the model's forecast of every holdout row
    realised = pd.DataFrame(
        {
            "forecast_month": "2024-11-01",
            "horizon": rows["horizon"],
            "forecast": rows["model"],
            "actual": 3 * rows["model"],
        }
    )
    evaluate.evaluate(run.snapshot, run.config, MONTH, moved, realised)
    written = json.loads(paths.evaluation(moved).read_text())
    before = run.written["intervals"]["forecasters"]["model"]["by_horizon"]
    after = written["intervals"]["forecasters"]["model"]["by_horizon"]
    assert set(after) == set(before)
    for h in before:
        assert (
            after[h]["realised_rows"] == int((rows["horizon"] == int(h)).sum())
            and after[h]["rows"] > before[h]["rows"]
        )
        assert min(after[h]["upper"]) > max(before[h]["upper"]), h
    assert written["intervals"]["realised"] == {"rows": len(realised), "months": ["2024-11"]}
    assert run.written["intervals"]["realised"] == {"rows": 0, "months": []}
    forecast_, horizon = rows["model"].to_numpy(), rows["horizon"].to_numpy()
    _, p90_before = intervals.apply(run.written["intervals"]["forecasters"]["model"], forecast_, horizon)
    _, p90_after = intervals.apply(written["intervals"]["forecasters"]["model"], forecast_, horizon)
    assert (p90_after >= p90_before).all() and (p90_after > p90_before).mean() > 0.9
    # The gate calibrates a champion's bands with the same errors (beside the model).
    pd.testing.assert_frame_equal(pd.read_parquet(paths.realised_errors(moved)), realised)
