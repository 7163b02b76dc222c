"""Tuning within a budget (forecasting.modeling.tuning): Optuna's search on the validation months,
its wall-clock budget, the check that decides whether the tuned parameters replace the
configured ones, the record in metadata.json and the registry, and the config section.

Real Optuna and XGBoost on a small synthetic panel; train() runs with Feast's point-in-time
join replaced by the same features computed in memory (tests/helpers/features.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import DEFAULT_MODEL_PARAMS, Config, ConfigError, load_config
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.modeling import tuning
from forecasting.modeling.train import train
from forecasting.orchestration.summary import tuning_line
from forecasting.registry import models
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.features import without_feast

KEYS = ["store", "item"]
MONTH = pd.Period("2024-12", "M")


def make_config(folder: Path, params: dict | None = None, **tuning_settings) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    raw["model"].update(num_boost_round=60, early_stopping_rounds=10, validation_months=3, seed=7)
    raw["model"]["params"] = {**raw["model"].get("params", {}), **(params or {})}
    # A budget that the loaded machine of a test run never reaches: the trial counts are exact.
    raw["model"]["tuning"] = {"enabled": True, "budget_seconds": 600, "max_trials": 4, **tuning_settings}
    raw["evaluation"] = {"holdout_months": 3, "statistical_baselines": []}
    raw["horizon"] = 2
    return load_config(write_config(folder, raw))


def history(entities: int = 30, months: int = 40) -> pd.DataFrame:
    """Seasonal sales at a level of each entity's own, with noise: something to learn."""
    rng = np.random.default_rng(11)
    stamps = pd.period_range(end=str(MONTH), periods=months, freq="M")
    level = rng.uniform(5, 200, entities)
    season = 1 + 0.4 * np.sin(2 * np.pi * (stamps.month.to_numpy() - 1) / 12)
    units = rng.poisson(level[:, None] * season[None, :]).astype(float) + 1.0
    return pd.DataFrame(
        {
            "store": np.repeat(np.arange(entities) // 6, months),
            "item": np.repeat(np.arange(entities) % 6, months),
            "month": np.tile(stamps.to_timestamp(), entities),
            "units": units.ravel(),
        }
    )


@pytest.fixture(scope="module")
def no_feast():
    with pytest.MonkeyPatch.context() as patch:
        without_feast(patch)
        yield


def search_inputs(config: Config, snapshot: pd.DataFrame):
    """What train hands tune: the design matrix of the fitted rows and their split."""
    panel = build_panel(snapshot, config, sales_only=True)
    rows = dataset.labelled(panel, config, MONTH)
    features = dataset.retrieve(config, panel, rows.entity, rows.origin)
    frame = dataset.with_model_columns(features, rows.horizon, dataset.model_features(config))
    X = dataset.design_matrix(frame, config, dataset.categories_of(frame, config))
    return X, rows, dataset.split(rows, config, MONTH)


def test_every_trial_is_recorded_in_metadata_and_the_registry(tmp_path, no_feast):
    config = make_config(tmp_path, max_trials=3)
    trained = train(history(), config, MONTH)
    written = json.loads((trained.directory / "metadata.json").read_text())
    record = written["tuning"]
    assert record["trials_run"] == 3 and len(record["trials"]) == 3
    assert [t["number"] for t in record["trials"]] == [0, 1, 2]
    # The first trial is the configured parameters themselves.
    assert record["trials"][0]["params"] == tuning.searched_values(config.model.params)
    for trial in record["trials"]:
        assert trial["state"] == tuning.COMPLETE
        assert 0 < trial["value"] < 1 and trial["trees"] >= 1 and trial["seconds"] > 0
        assert set(trial["params"]) == set(tuning.searched_values(config.model.params))
    assert record["budget_seconds"] == 600 and record["seconds"] < 600
    assert isinstance(record["adopted"], bool) and record["reason"]

    evaluation = {"model": {"wape": 0.1}, "baselines": {"naive": {"wape": 0.2}}, "best_baseline": "naive"}
    row = models.model_row(written, evaluation, {}, None)
    assert json.loads(row["tuning"]) == record
    assert '"trials_run": 3' in models.format_row(row)


def test_without_tuning_nothing_is_searched_or_recorded(tmp_path, no_feast):
    config = make_config(tmp_path, enabled=False)
    trained = train(history(), config, MONTH)
    assert trained.metadata["tuning"] is None
    evaluation = {"model": {"wape": 0.1}, "baselines": {"naive": {"wape": 0.2}}, "best_baseline": "naive"}
    assert models.model_row(trained.metadata, evaluation, {}, None)["tuning"] is None


def test_a_tiny_budget_stops_the_search_within_it(tmp_path, no_feast):
    # Without the budget this would be 10,000 trials of up to 5,000 trees at a learning rate
    # from 0.02: minutes. A running fit stops at the deadline, and so does the search.
    raw = make_config(tmp_path, budget_seconds=1.5, max_trials=10_000)
    config = raw.model_copy(
        update={
            "model": raw.model.model_copy(update={"num_boost_round": 5000, "early_stopping_rounds": 5000})
        }
    )
    X, rows, split = search_inputs(config, history(entities=120))
    started = time.monotonic()
    result = tuning.tune(X, rows, split, config)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 0.5  # the budget and one tree's fit
    assert result.record["seconds"] <= 1.5 + 0.5
    assert result.adopted is False
    assert result.params == config.model.params
    assert any(t["state"] == tuning.CUT for t in result.record["trials"])


def test_not_adopted_when_no_trial_beats_the_configured_parameters(tmp_path, no_feast):
    config = make_config(tmp_path, max_trials=1)  # the configured parameters alone
    X, rows, split = search_inputs(config, history())
    result = tuning.tune(X, rows, split, config)
    assert result.adopted is False
    assert result.params == config.model.params
    assert result.record["reason"] == "no trial beat the configured parameters on the validation months"
    assert "check" not in result.record
    assert tuning_line(result.record).startswith("kept the configured parameters (1 trials in ")


def test_not_adopted_when_the_check_months_do_not_improve_by_the_margin(tmp_path, no_feast):
    # Configured parameters that learn next to nothing (a learning rate of 0.001 over 60 trees):
    # every trial beats them on the validation months, and on the check months too, but by
    # less than a margin of 99%.
    config = make_config(tmp_path, params={"learning_rate": 0.001}, max_trials=4, min_improvement=0.99)
    X, rows, split = search_inputs(config, history())
    result = tuning.tune(X, rows, split, config)
    check = result.record["check"]
    assert check["tuned_wape"] < check["configured_wape"]
    assert result.adopted is False
    assert result.params == config.model.params
    assert "not 99.0% below" in result.record["reason"]
    assert check["rows"] > 0 and check["months"] == 3


def test_adopted_when_the_check_months_improve_by_the_margin(tmp_path, no_feast):
    config = make_config(tmp_path, params={"learning_rate": 0.001}, max_trials=4, min_improvement=0.05)
    trained = train(history(), config, MONTH)
    record = trained.metadata["tuning"]
    assert record["adopted"] is True, record["reason"]
    assert record["check"]["tuned_wape"] < 0.95 * record["check"]["configured_wape"]
    best = record["trials"][record["best_trial"]]
    assert record["params"] == best["params"]
    # Every fit after the search used the tuned parameters: the model's params are them.
    for key, value in best["params"].items():
        assert trained.metadata["params"][key] == value
    assert trained.metadata["params"]["objective"] == DEFAULT_MODEL_PARAMS["objective"]
    assert "adopted" in tuning_line(record)


def test_the_same_seed_gives_the_same_trials(tmp_path, no_feast):
    config = make_config(tmp_path, max_trials=4)
    X, rows, split = search_inputs(config, history())

    def trials(cfg: Config) -> list[tuple]:
        record = tuning.tune(X, rows, split, cfg).record
        return [(t["params"], t["value"], t["trees"]) for t in record["trials"]]

    first = trials(config)
    assert trials(config) == first
    other = config.model_copy(update={"model": config.model.model_copy(update={"seed": 8})})
    assert [t[0] for t in trials(other)][1:] != [t[0] for t in first][1:]


def test_the_tuning_section_defaults_and_validation(tmp_path):
    raw = demo_config_dict(tmp_path)
    config = load_config(write_config(tmp_path, raw))
    settings = config.model.tuning
    assert settings.enabled is False
    assert settings.budget_seconds == 120 and settings.max_trials == 50
    assert settings.min_improvement == 0.01 and settings.pruning is False

    raw["model"]["tuning"] = {"enabled": True, "budget_seconds": 30}
    assert load_config(write_config(tmp_path, raw)).model.tuning.budget_seconds == 30.0


@pytest.mark.parametrize(
    ("tuning_settings", "message"),
    [
        ({"budget_seconds": 0}, "model.tuning.budget_seconds"),
        ({"max_trials": 0}, "model.tuning.max_trials"),
        ({"min_improvement": 1.0}, "model.tuning.min_improvement"),
        ({"enabled": "yes"}, "model.tuning.enabled"),
        ({"trials": 5}, "trials"),
    ],
)
def test_the_tuning_section_refuses_bad_values(tmp_path, tuning_settings, message):
    raw = demo_config_dict(tmp_path)
    raw["model"]["tuning"] = tuning_settings
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, raw))


def test_pruning_stops_trials_that_trail_the_median(tmp_path, no_feast):
    config = make_config(tmp_path, max_trials=12, pruning=True)
    X, rows, split = search_inputs(config, history())
    record = tuning.tune(X, rows, split, config).record
    states = [t["state"] for t in record["trials"]]
    assert states[0] == tuning.COMPLETE and tuning.PRUNED in states
    best = record["trials"][record["best_trial"]]
    assert best["state"] == tuning.COMPLETE  # a pruned trial is never the best one
