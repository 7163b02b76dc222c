"""model.scale_by_recent_mean: each row is fitted relative to its series' recent mean (the base
margin of a log-link objective), the saved booster remembers it, and the config refuses it with an
objective that has no log link."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import ConfigError, load_config
from forecasting.modeling import booster as model
from tests.helpers.config import demo_config_dict, write_config


def config(folder, **model_keys):
    raw = demo_config_dict(folder)
    raw["model"].update(model_keys)
    return load_config(write_config(folder, raw))


def test_recent_mean_margin_takes_the_widest_window_the_row_has():
    X = pd.DataFrame(
        {
            "sales_mean_3": [4.0, 9.0, np.nan, np.nan],
            "sales_mean_12": [1.0, np.nan, np.nan, np.nan],
            "sales_lag_1": [7.0, 7.0, 3.0, np.nan],
        }
    )
    np.testing.assert_allclose(model.recent_mean_margin(X), np.log1p([1.0, 9.0, 3.0, 0.0]))


def test_scaled_fit_learns_the_shape_across_sizes_and_the_saved_booster_remembers_it(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    level = 10 ** rng.uniform(0, 4, n)  # series from 1 to 10,000 units a month
    season = rng.integers(1, 13, n).astype(float)
    shape = 1 + 0.5 * np.sin(2 * np.pi * season / 12)
    X = pd.DataFrame({"sales_mean_12": level, "target_month_of_year": season}).astype(np.float32)
    y = level * shape
    scaled = model.fit(X, y, config(tmp_path / "a", scale_by_recent_mean=True, num_boost_round=100))
    path = tmp_path / "model.ubj"
    scaled.save_model(path)

    import xgboost as xgb

    loaded = xgb.Booster()
    loaded.load_model(path)
    assert loaded.attr(model.SCALE_ATTRIBUTE) == model.RECENT_MEAN
    predicted = model.predict(loaded, X)
    wape = np.abs(predicted - y).sum() / y.sum()
    assert wape < 0.05
    # Unscaled, the same booster recipe does not carry the attribute.
    plain = model.fit(X, y, config(tmp_path / "b", num_boost_round=20, scale_by_recent_mean=False))
    assert plain.attr(model.SCALE_ATTRIBUTE) is None


def test_config_refuses_scaling_without_a_log_link(tmp_path):
    # On by default (the common default chosen on the real data sets, docs/quality.md).
    assert config(tmp_path / "a").model.scale_by_recent_mean is True
    with pytest.raises(ConfigError, match=r"model\.scale_by_recent_mean: needs a log-link objective"):
        config(tmp_path / "b", scale_by_recent_mean=True, params={"objective": "reg:squarederror"})
    # Another objective alone is refused by the default too, and the message says how to turn it off.
    with pytest.raises(ConfigError, match=r"set model\.scale_by_recent_mean: false"):
        config(tmp_path / "d", params={"objective": "reg:squarederror"})
    unscaled = config(tmp_path / "e", scale_by_recent_mean=False, params={"objective": "reg:squarederror"})
    assert unscaled.model.params["objective"] == "reg:squarederror"
    with pytest.raises(ConfigError, match=r"model\.scale_by_recent_mean: must be bool"):
        config(tmp_path / "c", scale_by_recent_mean="yes")
