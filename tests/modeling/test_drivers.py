"""The drivers of a forecast (forecasting.modeling.drivers): each family's contribution, in the
forecast's units, sums to the model's forecast of the row, whatever the link; a blend's drivers
explain the model's part and name the baselines' part."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import load_config
from forecasting.features import families
from forecasting.features.dataset import model_features
from forecasting.modeling import booster as model
from forecasting.modeling import drivers
from tests.helpers.config import demo_config_dict, write_config


def config(folder, **model_keys):
    raw = demo_config_dict(folder)
    raw["model"].update(model_keys)
    return load_config(write_config(folder, raw))


def rows(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose sales follow their level, last year's month, the price, a promotion and the region."""
    rng = np.random.default_rng(seed)
    level = 10 ** rng.uniform(-0.5, 3, n)  # series from under one unit to 1,000 a month
    last_year = level * rng.uniform(0.5, 1.5, n)
    price = rng.uniform(1, 3, n)
    promo = rng.integers(0, 2, n).astype(float)
    region = pd.Categorical(rng.choice(["north", "south"], n))
    X = pd.DataFrame(
        {
            "sales_lag_1": level * rng.uniform(0.8, 1.2, n),
            "sales_mean_12": level,
            "sales_year_before_target": last_year,
            "price": price,
            "promo": promo,
            "target_month_of_year": rng.integers(1, 13, n).astype(float),
            "region": region,
        }
    )
    y = (
        (0.5 * level + 0.5 * last_year)
        * (2.5 / price)
        * (1 + 0.4 * promo)
        * np.where(region == "north", 1.2, 1)
    )
    return X, rng.poisson(y).astype(float)


@pytest.mark.parametrize(
    ("keys", "link"),
    [
        ({"scale_by_recent_mean": True}, "log"),
        ({"scale_by_recent_mean": False}, "log"),
        ({"scale_by_recent_mean": False, "params": {"objective": "reg:squarederror"}}, "identity"),
    ],
)
def test_the_families_sum_to_the_forecast_of_every_row(tmp_path, keys, link):
    X, y = rows()
    cfg = config(tmp_path, num_boost_round=60, **keys)
    booster = model.fit(X, y, cfg)
    assert model.link(booster) == link
    made = drivers.explain(booster, X, cfg)
    predicted = model.predict(booster, X)
    np.testing.assert_allclose(made.sum(axis=1).to_numpy(), predicted, rtol=1e-4, atol=1e-4)
    # Only the families of the columns read, in display order, the bias last.
    assert list(made.columns) == [
        drivers.column(f)
        for f in ("level", "seasonality", "price", "promotion", "calendar", "attributes", "bias")
    ]
    # The forecast moves with the price: cheaper rows get a larger price contribution.
    cheap, dear = X["price"] < 1.5, X["price"] > 2.5
    assert made.loc[cheap, "driver_price"].mean() > made.loc[dear, "driver_price"].mean()
    if link == "log":
        # Each family keeps the sign of its part of the margin (the logarithmic mean is positive).
        contribs, base = model.contributions(booster, X)
        price_margin = contribs[:, list(X.columns).index("price")]
        nonzero = np.abs(price_margin) > 1e-6
        assert (np.sign(made["driver_price"].to_numpy()[nonzero]) == np.sign(price_margin[nonzero])).all()
    if keys.get("scale_by_recent_mean"):
        # The level counts the recent level the scaled model starts from.
        assert (made["driver_level"] + made["driver_bias"] > 0).all()


def test_a_clipped_forecast_counts_the_clip_in_bias(tmp_path):
    X, y = rows(300)
    y = np.where(X["promo"] == 0, -50.0, y)  # negative targets: the identity model forecasts below zero
    params = {"objective": "reg:squarederror", "learning_rate": 0.3}
    cfg = config(tmp_path, num_boost_round=50, scale_by_recent_mean=False, params=params)
    booster = model.fit(X, y, cfg)
    predicted = model.predict(booster, X)
    assert (predicted == 0).any()
    made = drivers.explain(booster, X, cfg)
    np.testing.assert_allclose(made.sum(axis=1).to_numpy(), predicted, rtol=1e-5, atol=1e-4)


def test_a_blend_explains_the_model_part_and_names_the_baselines_part(tmp_path):
    X, y = rows(400)
    cfg = config(tmp_path, num_boost_round=30)
    booster = model.fit(X, y, cfg)
    made = drivers.explain(booster, X, cfg)
    model_prediction = model.predict(booster, X)
    baseline = np.full(len(X), 5.0)
    blend = (model_prediction + baseline) / 2
    out = drivers.blended(made, model_prediction, blend, members=2)
    parts = out[drivers.driver_columns(out)]
    np.testing.assert_allclose(parts.sum(axis=1).to_numpy(), blend, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["driver_baselines"], 2.5)
    np.testing.assert_allclose(out["explained"], (model_prediction / 2) / blend)


def test_every_column_of_every_shipped_config_has_a_family():
    from pathlib import Path

    for path in sorted(Path("config").glob("*.yaml")):
        if path.name == "production.yaml":  # reads its settings from the environment; the demo's features
            continue
        cfg = load_config(path)
        named = families.families_of(model_features(cfg), cfg)
        assert set(named) <= set(families.FAMILIES), path
    with pytest.raises(KeyError, match="no driver family"):
        families.family("mystery_column", cfg)


def test_long_form_shares_sum_to_one():
    frame = pd.DataFrame(
        {
            "store": [1, 2],
            "forecast_month": ["2026-01-01", "2026-01-01"],
            "horizon": [1, 1],
            "prediction": [10.0, 0.0],
            "driver_level": [8.0, 0.0],
            "driver_price": [2.0, 0.0],
            "explained": [1.0, 1.0],
        }
    )
    long = drivers.long_form(frame, ["store"])
    assert list(long.columns) == [
        "store",
        "forecast_month",
        "horizon",
        "family",
        "contribution",
        "share",
        "explained",
    ]
    assert long[long.store == 1]["share"].sum() == pytest.approx(1.0)
    assert long[long.store == 2]["share"].isna().all()  # nothing forecast: no share
