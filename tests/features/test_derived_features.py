"""features.derived: the seasonal and relative columns the model derives from Feast's features
when a row is assembled (dataset.with_model_columns): which ones a config asks for, their
values by hand, point in time, and a model that reads them trains, saves and forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import ConfigError, load_config
from forecasting.core.months import month_index
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.features.catalogue import feature_names
from forecasting.features.dataset import (
    RELATIVE_PREFIX,
    SEASONAL_INDEX,
    TWO_YEARS_BEFORE_TARGET,
    YEAR_BEFORE_TARGET,
)
from forecasting.modeling import booster as model
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.features import in_memory_features, without_feast

MONTH = pd.Period("2024-12", "M")


def make_config(folder, derived, lags=(1, 2, 3, 6, 12), horizon=3, **model_keys):
    raw = demo_config_dict(folder)
    raw["features"] = {"lags": list(lags), "rolling_windows": [3, 12], "derived": derived}
    raw["source"].update(
        entity_columns=["store", "item"],
        time_column="month",
        target_column="units",
        covariates=[],
        attributes=[],
    )
    raw["model"].update(num_boost_round=40, early_stopping_rounds=5, validation_months=3, **model_keys)
    raw["evaluation"] = {"holdout_months": 3, "statistical_baselines": [], "backtest_origins": 0}
    raw["horizon"] = horizon
    return load_config(write_config(folder, raw))


def test_the_config_names_the_groups_and_the_columns_follow_its_lags(tmp_path):
    assert dataset.derived_feature_names(make_config(tmp_path / "none", [])) == []
    seasonal = make_config(tmp_path / "s", ["seasonal"], lags=[*range(1, 14), 24])
    assert dataset.derived_feature_names(seasonal) == [YEAR_BEFORE_TARGET, TWO_YEARS_BEFORE_TARGET]
    both = make_config(tmp_path / "b", ["seasonal", "relative"], lags=[*range(1, 14), 24])
    sales = [name for name in feature_names(both) if name.startswith("sales_")]
    assert dataset.derived_feature_names(both) == [
        YEAR_BEFORE_TARGET,
        TWO_YEARS_BEFORE_TARGET,
        *(RELATIVE_PREFIX + name for name in [*sales, YEAR_BEFORE_TARGET, TWO_YEARS_BEFORE_TARGET]),
        SEASONAL_INDEX,
    ]
    assert dataset.model_features(both)[-len(dataset.derived_feature_names(both)) :] == (
        dataset.derived_feature_names(both)
    )
    # The demo's lags hold the target month a year before at horizon 1 only (lag 12), and no
    # month two years before: no seasonal index from a single year.
    demo = make_config(tmp_path / "d", ["seasonal", "relative"])
    names = dataset.derived_feature_names(demo)
    assert YEAR_BEFORE_TARGET in names and TWO_YEARS_BEFORE_TARGET not in names
    assert SEASONAL_INDEX not in names
    with pytest.raises(ConfigError, match=r"features\.derived: must be a list of seasonal, relative"):
        make_config(tmp_path / "bad", ["fourier"])


def test_values_by_hand(tmp_path):
    config = make_config(tmp_path, ["seasonal", "relative"], lags=[1, 10, 11, 12, 22, 23, 24], horizon=3)
    lag = {k: [100.0 + k, 200.0 + k, 300.0 + k, 400.0 + k] for k in (1, 10, 11, 12, 22, 23, 24)}
    features = pd.DataFrame(
        {
            **{f"sales_lag_{k}": v for k, v in lag.items()},
            "sales_mean_3": [50.0, 80.0, 20.0, 0.0],
            "sales_mean_12": [40.0, np.nan, 10.0, 0.0],  # row 1: the widest mean it has is mean_3
            "sales_std_3": [1.0, 2.0, 3.0, 4.0],
            "sales_std_12": [5.0, 6.0, 7.0, 8.0],
            "month_of_year": [1.0, 2.0, 3.0, 4.0],
            "history_months": [24.0] * 4,
        }
    )
    features.loc[2, "sales_lag_23"] = np.nan  # no month two years before the target for row 2
    horizon = np.array([1, 2, 3, 1])
    frame = dataset.with_model_columns(features, horizon, dataset.model_features(config))

    # The target month a year before is lag 13 - h, two years before lag 25 - h.
    np.testing.assert_array_equal(frame[YEAR_BEFORE_TARGET], [112.0, 211.0, 310.0, 412.0])
    np.testing.assert_array_equal(frame[TWO_YEARS_BEFORE_TARGET], [124.0, 223.0, 322.0, 424.0])
    level = np.array([40.0, 80.0, 10.0, np.nan])  # the widest window; a level of 0 scales nothing
    for name in [*(f"sales_lag_{k}" for k in lag), "sales_mean_3", "sales_std_12", YEAR_BEFORE_TARGET]:
        np.testing.assert_allclose(frame[RELATIVE_PREFIX + name], frame[name] / level, rtol=1e-6)
    np.testing.assert_allclose(
        frame[SEASONAL_INDEX],
        [(112 + 124) / 2 / 40, (211 + 223) / 2 / 80, (310 + 322) / 2 / 10, np.nan],
        rtol=1e-6,
    )
    features.loc[2, "sales_lag_22"] = np.nan  # one year known: the index is that year's ratio
    frame = dataset.with_model_columns(features, horizon, dataset.model_features(config))
    assert frame[SEASONAL_INDEX][2] == pytest.approx(310 / 10)
    # A saved model that reads none of them gets none (an older champion reads what it always read).
    older = dataset.with_model_columns(
        features, horizon, dataset.model_features(make_config(tmp_path / "o", []))
    )
    assert not {YEAR_BEFORE_TARGET, SEASONAL_INDEX, RELATIVE_PREFIX + "sales_lag_1"} & set(older.columns)


def seasonal_history(entities: int = 30, months: int = 48) -> pd.DataFrame:
    """Strongly seasonal sales at levels from 5 to 5,000 units: what the derived columns are for."""
    rng = np.random.default_rng(3)
    stamps = pd.period_range(end=str(MONTH), periods=months, freq="M")
    level = 10 ** rng.uniform(0.7, 3.7, entities)
    season = 1 + 0.6 * np.sin(
        2 * np.pi * (stamps.month.to_numpy() - 1) / 12 + rng.uniform(0, 6, entities)[:, None]
    )
    units = rng.poisson(level[:, None] * season).astype(float) + 1.0
    return pd.DataFrame(
        {
            "store": np.repeat(np.arange(entities) // 6, months),
            "item": np.repeat(np.arange(entities) % 6, months),
            "month": np.tile(stamps.to_timestamp(), entities),
            "units": units.ravel(),
        }
    )


def test_derived_columns_are_as_of_the_origin(tmp_path):
    config = make_config(tmp_path, ["seasonal", "relative"], lags=[*range(1, 14), 24])
    snapshot = seasonal_history()
    later = snapshot["month"] > (MONTH - 3).to_timestamp()
    poisoned = snapshot.assign(units=np.where(later, snapshot["units"] * 40 + 1000, snapshot["units"]))
    origin = month_index(MONTH - 3)
    wanted = dataset.model_features(config)
    frames = []
    for history in (snapshot, poisoned):
        panel = build_panel(history, config, sales_only=True)
        entity = np.arange(panel.entities)
        features = in_memory_features(config, panel, entity, np.full(len(entity), origin))
        frames.append(dataset.with_model_columns(features, np.full(len(entity), 3), wanted))
    pd.testing.assert_frame_equal(frames[0], frames[1])  # nothing after the origin reaches a row


def test_a_model_reading_them_trains_saves_and_forecasts(tmp_path, monkeypatch):
    from forecasting.modeling.predict import ForecastInputs, predict_inputs
    from forecasting.modeling.train import train

    without_feast(monkeypatch)
    snapshot = seasonal_history()
    config = make_config(
        tmp_path, ["seasonal", "relative"], lags=[*range(1, 14), 24], scale_by_recent_mean=True
    )
    trained = train(snapshot, config, MONTH)
    assert trained.metadata["features"] == dataset.model_features(config)
    holdout = pd.read_parquet(trained.directory / "holdout.parquet")
    assert set(dataset.derived_feature_names(config)) <= set(holdout.columns)

    booster, metadata = model.load(trained.directory)
    panel = build_panel(snapshot, config, sales_only=True)
    active = np.arange(panel.entities)
    m = month_index(MONTH)
    features = in_memory_features(config, panel, active, np.full(len(active), m))
    forecasts = predict_inputs(ForecastInputs(panel, MONTH, active, features), config, booster, metadata)
    assert len(forecasts) == 3 * panel.entities and (forecasts["prediction"] > 0).all()
    # The forecasts follow each series' own level and season: within 25% of the seasonal naive
    # forecast, series from 5 to 5,000 units alike.
    year_before = panel.sales[
        forecasts.index % panel.entities, m + forecasts["horizon"] - 12 - panel.first_month
    ]
    ratio = forecasts["prediction"].to_numpy() / year_before
    assert np.median(np.abs(ratio - 1)) < 0.25
