"""The gate on the statistical forecasters' sample, on hand-made rows (fast; the pipeline's case
is in test_models.py).

* The paired bootstrap over entities: seeded, paired (a forecaster against itself is no
  difference), and its bound tells a real improvement from one entity's luck.
* The rule's choice (here a promoted challenger: the naive baselines lose on every row) is
  displaced when AutoETS or its blend with the challenger is lower on the sample by the margin
  and beyond noise, and stays when the difference is within noise or below the margin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import GateConfig, parse_config
from forecasting.modeling.forecaster import Baseline, Blend, Model
from forecasting.modeling.scoring import paired_bootstrap
from forecasting.registry import models, sample
from forecasting.registry.gate import Candidates, decide, on_sample
from tests.helpers.config import demo_config_dict

CHALLENGER = "2024-11-0123456789"
NAIVE = ("seasonal_naive", "last_value", "mean_3")


def hand_made(entities: int = 100, seed: int = 3, ets_noise: float = 0.08) -> pd.DataFrame:
    """sample_rows.parquet as evaluate writes it: 2 target months x 3 horizons per entity. The
    model errs by ~15%, the naive baselines by ~40%, AutoETS by ``ets_noise``, Theta by ~30%."""
    rng = np.random.default_rng(seed)
    entity = np.repeat(np.arange(entities), 6)
    horizon = np.tile([1, 2, 3, 1, 2, 3], entities)
    target = np.tile([600, 600, 600, 601, 601, 601], entities)
    level = np.repeat(rng.gamma(2.0, 100.0, entities), 6)
    actual = np.maximum(level * (1 + rng.normal(0, 0.2, len(entity))), 0)

    def noisy(spread: float) -> np.ndarray:
        return np.maximum(actual * (1 + rng.normal(0, spread, len(entity))), 0)

    return pd.DataFrame(
        {
            "row": np.arange(len(entity)) * 2,  # the sample's rows are some of the holdout's
            "entity": entity,
            "horizon": horizon,
            "target": target,
            "actual": actual,
            "model": noisy(0.15),
            **{name: noisy(0.4) for name in NAIVE},
            "auto_ets": noisy(ets_noise),
            "theta": noisy(0.3),
        }
    )


def evaluation_of(rows: pd.DataFrame) -> dict:
    """What the gate reads of evaluation.json: the naive baselines on every row (here the
    sample's rows stand in for them), the statistical ones on the sample."""
    from forecasting.modeling.scoring import metrics

    actual = rows["actual"].to_numpy()
    return {
        "model": metrics(actual, rows["model"].to_numpy()),
        "baselines": {n: metrics(actual, rows[n].to_numpy()) for n in NAIVE},
        "best_baseline": min(NAIVE, key=lambda n: metrics(actual, rows[n].to_numpy())["wape"]),
        "statistical_baselines": {"forecasters": ["auto_ets", "theta"], "scored_on": "sample"},
    }


def gate_on(rows: pd.DataFrame, tmp_path, gate: GateConfig | None = None, backtest: dict | None = None):
    raw = demo_config_dict(tmp_path)
    config = parse_config(raw, tmp_path / "forecast.yaml")
    if gate is not None:
        config = config.model_copy(update={"gate": gate})
    evaluation = evaluation_of(rows)
    if backtest is not None:
        evaluation["backtest"] = {"overall": backtest}
    best = evaluation["best_baseline"]
    rule = decide(
        CHALLENGER, evaluation["model"]["wape"], best, evaluation["baselines"][best]["wape"], config.gate
    )
    assert rule.outcome == models.PROMOTED  # on every row the model beats every naive baseline
    found = Candidates({Model(CHALLENGER): evaluation["model"]["wape"]}, {}, None)
    decision, report = on_sample(config, evaluation, CHALLENGER, rule, rows, found)
    return decision, report, found


def test_the_paired_bootstrap_is_seeded_paired_and_tells_luck_from_a_real_improvement():
    rows = hand_made()
    y, m, e = (rows[c].to_numpy() for c in ("actual", "model", "entity"))
    better = paired_bootstrap(y, m, rows["auto_ets"].to_numpy(), e, 1000, 0.9, seed=1)
    assert better == paired_bootstrap(y, m, rows["auto_ets"].to_numpy(), e, 1000, 0.9, seed=1)
    assert better["resamples"] == 1000 and better["entities"] == 100
    assert (
        better["difference"] < better["upper"] < 0 and better["low"] < better["difference"] < better["high"]
    )
    assert better["share_better"] > 0.99
    same = paired_bootstrap(y, m, m, e, 1000, 0.9, seed=1)
    assert same["difference"] == same["upper"] == same["low"] == same["high"] == 0.0
    # Better on one entity of 100 only: a lower WAPE, which resamples without that entity (a
    # third of them) do not have; the bound says luck.
    lucky = m.copy()
    lucky[e == 7] = y[e == 7]
    one = paired_bootstrap(y, m, lucky, e, 1000, 0.9, seed=1)
    assert one["difference"] < 0 and one["upper"] == pytest.approx(0.0)
    # Chunked or not, the same numbers (bounded memory at any number of entities).
    many = np.repeat(np.arange(30_000), 2)
    ys = np.ones(len(many))
    got = paired_bootstrap(ys, ys * 1.1, ys * 1.05, many, 200, 0.9, seed=2)
    assert got["resamples"] == 200 and got["difference"] == pytest.approx(-0.05)


def test_autoets_better_on_the_sample_beyond_noise_displaces_a_promoted_challenger(tmp_path):
    rows = hand_made()
    decision, report, found = gate_on(rows, tmp_path)
    assert report is not None and report["chosen"] == CHALLENGER and report["entities"] == 100
    by_name = {c["forecaster"]: c for c in report["candidates"]}
    assert set(by_name) == {
        str(f)
        for f in (
            Baseline("auto_ets"),
            Baseline("theta"),
            Blend(CHALLENGER, "auto_ets"),
            Blend(CHALLENGER, "theta"),
            Blend(None, "auto_ets", ("theta",)),
            Blend(CHALLENGER, "auto_ets", ("theta",)),
        )
    }
    assert report["selected_on"] == "holdout"  # no backtest: every candidate is considered
    # Theta is worse than the model there: its bound is above zero.
    assert by_name["baseline:theta"]["difference"] > 0 and not by_name["baseline:theta"]["beyond_noise"]
    winners = [c for c in report["candidates"] if c["lower_by_margin"] and c["beyond_noise"]]
    best = min(winners, key=lambda c: c["wape"])["forecaster"]
    assert best in (
        str(Baseline("auto_ets")),
        str(Blend(CHALLENGER, "auto_ets")),
        f"blend:{CHALLENGER}+auto_ets+theta",
    )
    # Not promoted: AutoETS (or its blend, whichever is best there) forecasts every entity.
    assert decision.outcome in (models.BASELINE, models.BLENDED) and str(decision.forecaster) == best
    assert report["published"] == best
    assert "beyond noise" in decision.reason and "forecasts every entity" in decision.reason
    assert decision.reason.startswith("no champion to beat")  # the rule's own reason first
    # Its WAPE and bands are the sample's, calibrated on the rows it was scored on.
    assert found.wapes[decision.forecaster] == pytest.approx(by_name[best]["wape"])
    bands = found.intervals[decision.forecaster]
    assert bands is not None and set(bands["by_horizon"]) == {"1", "2", "3"}
    assert sum(b["rows"] for b in bands["by_horizon"].values()) == len(rows)
    held = report["coverage"]
    assert held["rows"] == len(rows) and 0.6 < held["coverage"] < 0.95

    # Without blends, AutoETS itself.
    decision, _, _ = gate_on(rows, tmp_path, GateConfig(blend=False))
    assert decision.forecaster == Baseline("auto_ets") and decision.outcome == models.BASELINE


def test_a_sample_difference_within_noise_or_below_the_margin_leaves_the_model(tmp_path):
    # AutoETS is the model but on one entity, where it is exact: lower WAPE, by luck.
    rows = hand_made()
    lucky = rows["entity"] == 11
    rows["auto_ets"] = rows["model"].where(~lucky, rows["actual"])
    rows["theta"] = rows["model"] * 1.3
    decision, report, _ = gate_on(rows, tmp_path)
    assert report is not None and report["published"] is None
    ets = next(c for c in report["candidates"] if c["forecaster"] == "baseline:auto_ets")
    assert ets["wape"] < report["chosen_wape"] and ets["lower_by_margin"] and not ets["beyond_noise"]
    assert (decision.outcome, decision.forecaster) == (models.PROMOTED, Model(CHALLENGER))
    assert decision.reason.endswith(
        "none is lower beyond noise (paired bootstrap over entities), so it stays"
    )

    # Better beyond noise, but not by the margin asked for: the model stays too (no blends here:
    # the mean of two forecasters erring independently is lower by more).
    rows = hand_made(ets_noise=0.10)
    decision, report, _ = gate_on(rows, tmp_path, GateConfig(min_margin_over_baseline=0.5, blend=False))
    assert report is not None and report["published"] is None
    assert any(c["beyond_noise"] and not c["lower_by_margin"] for c in report["candidates"])
    assert decision.outcome == models.PROMOTED and "by 50.0% beyond noise" in decision.reason

    # gate.sample: false skips the comparison.
    decision, report, _ = gate_on(hand_made(), tmp_path, GateConfig(sample=False))
    assert report is None and decision.outcome == models.PROMOTED


def test_the_sample_reaches_the_champion_by_its_rows():
    rows = hand_made(entities=20)
    holdout_forecasts = np.zeros(2 * len(rows))
    holdout_forecasts[rows["row"].to_numpy()] = rows["theta"].to_numpy()
    got = sample.forecast_of(Model("old"), rows, CHALLENGER, ("old", holdout_forecasts))
    np.testing.assert_array_equal(got, rows["theta"].to_numpy())
    assert sample.forecast_of(Model("other"), rows, CHALLENGER, None) is None
    assert sample.forecast_of(Baseline("actual"), rows, CHALLENGER, None) is None
    np.testing.assert_allclose(
        sample.forecast_of(Blend(CHALLENGER, "auto_ets"), rows, CHALLENGER, None),
        (rows["model"] + rows["auto_ets"]) / 2,
    )


def test_the_sample_settings_are_checked_in_the_config(tmp_path):
    from forecasting.core.config import ConfigError

    raw = demo_config_dict(tmp_path)
    assert parse_config(raw, tmp_path / "f.yaml").gate.bootstrap_resamples == 1000
    raw["gate"] = {"sample": False, "bootstrap_resamples": 2000, "bootstrap_confidence": 0.95}
    gate = parse_config(raw, tmp_path / "f.yaml").gate
    assert (gate.sample, gate.bootstrap_resamples, gate.bootstrap_confidence) == (False, 2000, 0.95)
    for bad, message in (
        ({"bootstrap_confidence": 1.0}, "gate.bootstrap_confidence"),
        ({"bootstrap_confidence": 0.4}, "gate.bootstrap_confidence"),
        ({"bootstrap_resamples": 10}, "gate.bootstrap_resamples"),
        ({"sample": "yes"}, "gate.sample: must be bool"),
    ):
        raw["gate"] = bad
        with pytest.raises(ConfigError, match=message):
            parse_config(raw, tmp_path / "f.yaml")


def backtest_board(model: float, **wapes: float) -> dict:
    """evaluation.json's ``backtest.overall`` as the gate reads it: the refit models' WAPE, each
    baseline's and each combination's (named as evaluate names them: model+auto_ets, ...)."""
    combos = {name.replace("__", "+"): {"wape": w} for name, w in wapes.items() if "__" in name}
    baselines = {name: {"wape": w} for name, w in wapes.items() if "__" not in name}
    baselines.update({n: {"wape": 0.5} for n in NAIVE})
    return {"model": {"wape": model}, "baselines": baselines, "combinations": combos}


def test_the_candidate_is_chosen_on_the_backtest_never_on_the_rows_that_score_it(tmp_path):
    """On the holdout rows AutoETS (and its blend with the model) is best; on the backtest the
    three-way combination is. The gate considers only the backtest's pick, which the holdout then
    confirms: a gate that chose on the holdout rows (the rows whose WAPE it reports) would
    publish AutoETS instead."""
    rows = hand_made()
    on_backtest = backtest_board(
        0.20,
        auto_ets=0.19,
        theta=0.25,
        model__auto_ets=0.18,
        model__theta=0.19,
        auto_ets__theta=0.20,
        model__auto_ets__theta=0.15,
    )
    three = Blend(CHALLENGER, "auto_ets", ("theta",))
    decision, report, found = gate_on(rows, tmp_path, backtest=on_backtest)
    assert report is not None and report["selected_on"] == "backtest"
    by_name = {c["forecaster"]: c for c in report["candidates"]}
    holdout_best = min(report["candidates"], key=lambda c: c["wape"])["forecaster"]
    assert holdout_best != str(three)  # the holdout alone would pick another
    # Every candidate lower than the model's 0.20 on the backtest is considered; the first of them
    # on the backtest's order that the holdout confirms is published.
    considered = {c["forecaster"] for c in report["candidates"] if c["considered"]}
    assert considered == {
        str(three),
        "baseline:auto_ets",
        f"blend:{CHALLENGER}+auto_ets",
        f"blend:{CHALLENGER}+theta",
    }
    assert by_name[str(three)]["backtest_wape"] == 0.15 and report["chosen_backtest_wape"] == 0.20
    assert by_name[str(three)]["lower_by_margin"] and by_name[str(three)]["beyond_noise"]
    assert decision.forecaster == three and decision.outcome == models.BLENDED
    assert str(three) == f"blend:{CHALLENGER}+auto_ets+theta" and report["published"] == str(three)
    assert f"best first: {three} (0.1500)" in decision.reason
    assert found.wapes[three] == pytest.approx(by_name[str(three)]["wape"])

    # The backtest's best fails on the holdout (Theta alone: worse than the model there): the
    # next on the backtest, AutoETS, is checked and confirmed (the blends are not lower there).
    others = {
        "model__auto_ets": 0.195,
        "model__theta": 0.2,
        "auto_ets__theta": 0.2,
        "model__auto_ets__theta": 0.2,
    }
    decision, report, _ = gate_on(
        rows, tmp_path, backtest=backtest_board(0.20, auto_ets=0.19, theta=0.10, **others)
    )
    considered = {c["forecaster"] for c in report["candidates"] if c["considered"]}
    assert considered == {"baseline:theta", "baseline:auto_ets", f"blend:{CHALLENGER}+auto_ets"}
    theta = next(c for c in report["candidates"] if c["forecaster"] == "baseline:theta")
    assert not (theta["lower_by_margin"] and theta["beyond_noise"])
    assert report["published"] == "baseline:auto_ets"
    assert (decision.outcome, decision.forecaster) == (models.BASELINE, Baseline("auto_ets"))
    assert "checked on the holdout in that order" in decision.reason

    # Only Theta lower on the backtest, and it fails on the holdout: the rule's choice stays,
    # though AutoETS is better on the holdout beyond noise (it is not lower on the backtest).
    decision, report, _ = gate_on(
        rows,
        tmp_path,
        backtest=backtest_board(0.20, auto_ets=0.21, theta=0.10, **{k: 0.21 for k in others}),
    )
    assert report is not None and report["published"] is None
    assert [c["forecaster"] for c in report["candidates"] if c["considered"]] == ["baseline:theta"]
    ets = next(c for c in report["candidates"] if c["forecaster"] == "baseline:auto_ets")
    assert ets["lower_by_margin"] and ets["beyond_noise"] and not ets["considered"]
    assert (decision.outcome, decision.forecaster) == (models.PROMOTED, Model(CHALLENGER))

    # No candidate lower than the model on the backtest by the margin: nothing is confirmed.
    decision, report, _ = gate_on(
        rows,
        tmp_path,
        GateConfig(min_margin_over_baseline=0.1),
        backtest_board(0.20, auto_ets=0.19, theta=0.30, **{**others, "model__auto_ets": 0.185}),
    )
    assert report is not None and not any(c["considered"] for c in report["candidates"])
    assert decision.outcome == models.PROMOTED and "is not lower by 10.0%, so it stays" in decision.reason


def test_a_blend_of_baselines_only_reads_its_members():
    rows = hand_made(entities=20)
    pair = Blend(None, "auto_ets", ("theta",))
    np.testing.assert_allclose(
        sample.forecast_of(pair, rows, CHALLENGER, None), (rows["auto_ets"] + rows["theta"]) / 2
    )
    three = Blend(CHALLENGER, "auto_ets", ("theta",))
    np.testing.assert_allclose(
        sample.forecast_of(three, rows, CHALLENGER, None),
        (rows["model"] + rows["auto_ets"] + rows["theta"]) / 3,
    )
    assert sample.forecast_of(Blend("other", "auto_ets", ("theta",)), rows, CHALLENGER, None) is None


def test_the_published_forecasters_bands_and_coverage_are_evaluates():
    """The gate publishes, with any forecaster evaluate scored, evaluate's bands and their
    measured coverage (evaluation.json's ``decision.coverage``, the run summary's line); the
    sample comparison's own when it chose the forecaster; none for a model evaluate did not score."""
    from forecasting.orchestration.summary import interval_lines

    held = {"coverage": 0.79, "rows": 600, "target": 0.8, "relative_width": 0.5, "by_horizon": {}}
    names = ["model", "auto_ets", "blend", "model+auto_ets+theta", "auto_ets+theta"]
    evaluation = {
        "blend": {"baseline": "mean_3"},
        "intervals": {
            "forecasters": {n: {"by_horizon": {}, "n": n} for n in names},
            "coverage": {n: held for n in names},
        },
    }
    cases = {
        Model(CHALLENGER): "model",
        Baseline("auto_ets"): "auto_ets",
        Blend(CHALLENGER, "mean_3"): "blend",
        Blend(CHALLENGER, "auto_ets", ("theta",)): "model+auto_ets+theta",
        Blend(None, "auto_ets", ("theta",)): "auto_ets+theta",
    }
    for forecaster, name in cases.items():
        assert sample.evaluation_name(evaluation, forecaster, CHALLENGER) == name
        spec, coverage = sample.evaluation_bands(evaluation, forecaster, CHALLENGER)
        assert spec is not None and spec["n"] == name and coverage == held
        assert sample.published_coverage(evaluation, forecaster, CHALLENGER, None) == held
    assert sample.evaluation_bands(evaluation, Model("old"), CHALLENGER) == (None, None)
    chosen = {"published": "baseline:theta", "coverage": {**held, "coverage": 0.81}}
    assert sample.published_coverage(evaluation, Baseline("theta"), CHALLENGER, chosen)["coverage"] == 0.81
    line = interval_lines({}, {"forecaster": "blend:auto_ets+theta", "coverage": held})
    assert line == [
        "  intervals   p10-p90 held 79% of the actuals of holdout months they were not calibrated on "
        "(goal 80%; blend:auto_ets+theta, 600 forecasts)"
    ]
