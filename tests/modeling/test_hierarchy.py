"""The hierarchy's reconciliation (forecasting.modeling.hierarchy): levels that add up, never
negative, with intervals of their own, for every reconciliation method and the sparse path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import RECONCILIATIONS, ConfigError, HierarchyConfig, load_config
from forecasting.core.months import month_index
from forecasting.data.panel import build_panel
from forecasting.modeling import hierarchy
from forecasting.modeling.baselines import naive_forecasts
from forecasting.modeling.hierarchy import level_members
from forecasting.modeling.predict import active_entities
from tests.helpers.config import demo_config_dict, write_config

END = "2024-12"
LEVELS = [[], ["region"], ["store_id"], ["category"], ["region", "category"]]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A small demo panel, M's active entities, a holdout of seasonal-naive forecasts at six
    origins and horizons 1-3, and base forecasts for M with some negative ones."""
    from forecasting.datasets.synthetic import generate_sales

    folder = tmp_path_factory.mktemp("hierarchy")
    config = load_config(write_config(folder, demo_config_dict(folder, hierarchy=True)))
    sales = generate_sales(stores=4, items=8, months=36, end_month=END, seed=3)
    sales["month"] = pd.to_datetime(sales["month"])  # as extract writes the snapshot
    panel = build_panel(sales, config, sales_only=True)
    m = month_index(pd.Period(END, "M"))
    active = active_entities(panel, m)
    origins = np.arange(m - 8, m - 2)
    entity = np.repeat(active, len(origins) * 3)
    origin = np.tile(np.repeat(origins, 3), len(active))
    horizon = np.tile(np.arange(1, 4), len(active) * len(origins))
    forecast = naive_forecasts(panel, entity, origin, horizon)["seasonal_naive"]
    actual = panel.sales[entity, origin + horizon - panel.first_month]
    held = hierarchy.Holdout(entity, origin, horizon, forecast, actual)
    rng = np.random.default_rng(0)
    base = np.nan_to_num(panel.sales[active, -1])[:, None] * rng.uniform(0.8, 1.2, (len(active), 3))
    base[:3] = -2.0  # a forecaster may propose negative units: the published ones never are
    members = level_members(sales, config, panel.keys.iloc[active].reset_index(drop=True))
    return panel, active, m, base, held, members


def reconcile(setting, **settings) -> hierarchy.Reconciled:
    panel, active, m, base, held, members = setting
    config = HierarchyConfig(levels=LEVELS, aggregate_forecaster="seasonal_naive", **settings)
    return hierarchy.reconcile_month(panel, active, m, base, held, members, config)


def bottom_frame(made: hierarchy.Reconciled, members: pd.DataFrame) -> pd.DataFrame:
    horizons = made.bottom.shape[1]
    frame = members.loc[members.index.repeat(horizons)].reset_index(drop=True)
    frame["horizon"] = np.tile(np.arange(1, horizons + 1), len(members))
    frame["prediction"] = made.bottom.ravel()
    return frame


@pytest.mark.parametrize(
    "settings",
    [{"reconciliation": r} for r in RECONCILIATIONS]
    + [{"reconciliation": "mint_shrink", "sparse_above": 10}],
    ids=[*RECONCILIATIONS, "sparse"],
)
def test_levels_add_up_and_are_never_negative(setting, settings):
    made = reconcile(setting, **settings)
    members = setting[5]
    levels = made.levels
    assert set(levels["level"]) == {hierarchy.level_name(level) for level in LEVELS}
    assert len(levels) == levels[["level", "level_key", "horizon"]].drop_duplicates().shape[0]
    sums = hierarchy.bottom_sums(bottom_frame(made, members), levels)
    np.testing.assert_allclose(levels["prediction"].to_numpy(), sums, rtol=1e-9, atol=1e-6)
    assert (made.bottom >= 0).all() and (levels["prediction"] >= 0).all()
    assert (levels["p10"] <= levels["prediction"] + 1e-9).all()
    assert (levels["prediction"] <= levels["p90"] + 1e-9).all() and (levels["p10"] >= 0).all()
    assert np.isfinite(levels[["p10", "p90"]].to_numpy()).all()
    total = levels[levels["level"] == "total"]
    assert total["prediction"].to_numpy() == pytest.approx(made.bottom.sum(axis=0))
    if settings.get("sparse_above") == 10:
        assert made.report["reconciliation"] == "mint_sparse_wls_var"


def test_bottom_up_keeps_the_bottom_forecasts_clipped_at_zero(setting):
    made = reconcile(setting, reconciliation="bottom_up")
    np.testing.assert_allclose(made.bottom, np.maximum(setting[3], 0))


def test_mint_moves_the_bottom_and_is_scored_per_level_out_of_sample(setting):
    made = reconcile(setting, max_bottom_loss=10.0)  # kept whatever it does to the entities
    assert not np.allclose(made.bottom, np.maximum(setting[3], 0))
    report = made.report
    assert report["reconciliation"] == "mint_shrink"
    for scored in [*report["levels"].values(), report["bottom"]]:
        assert scored["rows"] > 0
        for forecast in ("reconciled", "base", "bottom_up"):
            assert 0 <= scored[forecast]["wape"] < 5
        assert 0 <= scored["coverage"]["coverage"] <= 1


@pytest.mark.parametrize("reconciliation", ["mint_shrink", "ols"])
def test_the_entities_are_never_made_worse_than_unreconciled_on_the_holdout(setting, reconciliation):
    """max_bottom_loss 0: a method that makes the entities' holdout WAPE worse at all is replaced
    by bottom-up, which keeps their forecasts."""
    made = reconcile(setting, reconciliation=reconciliation, max_bottom_loss=0.0)
    scored = made.report["bottom"]
    assert scored["reconciled"]["wape"] <= scored["base"]["wape"] + 1e-12
    if "instead_of" in made.report:
        assert made.report["reconciliation"] == "bottom_up"
        assert made.report["instead_of"]["entities_wape"] > made.report["instead_of"]["unreconciled_wape"]
        np.testing.assert_allclose(made.bottom, np.maximum(setting[3], 0))


def test_a_levels_interval_is_its_own_not_the_sum_of_its_members(setting):
    """The total's p10-p90 comes from the total's errors: narrower than the bottom's bounds summed."""
    made = reconcile(setting)
    total = made.levels[made.levels["level"] == "total"].sort_values("horizon")
    summed_width = (made.bottom_p90 - made.bottom_p10).sum(axis=0)
    assert ((total["p90"] - total["p10"]).to_numpy() < summed_width).all()


def test_structure_sums_each_group():
    members = pd.DataFrame({"region": ["a", "a", "b"], "store_id": ["1", "2", "3"]})
    st = hierarchy.structure(members, [[], ["region"]])
    assert st.series["level"].tolist() == ["total", "region", "region"]
    assert st.series["level_key"].tolist() == ["total", "a", "b"]
    assert st.series["region"].tolist() == [None, "a", "b"]
    np.testing.assert_array_equal(st.summing.toarray(), [[1, 1, 1], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(st.S(dense=True)[3:], np.eye(3))


def test_the_config_names_levels_of_entity_columns_and_attributes(tmp_path):
    raw = demo_config_dict(tmp_path, hierarchy=True)
    assert load_config(write_config(tmp_path, raw)).hierarchy.levels == LEVELS
    assert load_config(write_config(tmp_path, demo_config_dict(tmp_path))).hierarchy is None
    for levels, message in (
        ([["country"]], "'country' is not an entity column or attribute"),
        ([["store_id", "item_id"]], "that is the entities themselves"),
        ([["region"], ["region"]], "names a level more than once"),
        ("region", "must be a non-empty list of lists"),
    ):
        raw["hierarchy"] = {"levels": levels}
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path, raw))
    raw["hierarchy"] = {"levels": [[]], "reconciliation": "top_down"}
    with pytest.raises(ConfigError, match="hierarchy.reconciliation: must be one of mint_shrink"):
        load_config(write_config(tmp_path, raw))


def test_the_entities_bands_pool_the_realised_errors_and_widen_when_they_did(setting):
    """Published forecasts that sold three times what they said (realised, per horizon) widen the
    entities' reconciled p90s; the levels' bands, given no realised error of their own, stay."""
    panel, active, m, base, held, members = setting
    config = HierarchyConfig(levels=LEVELS, aggregate_forecaster="seasonal_naive", reconciliation="bottom_up")
    before = hierarchy.reconcile_month(panel, active, m, base, held, members, config)
    forecast = np.nan_to_num(held.forecast)
    realised = pd.DataFrame({"horizon": held.horizon, "forecast": forecast, "actual": 3 * forecast + 10})
    after = hierarchy.reconcile_month(panel, active, m, base, held, members, config, realised=realised)
    np.testing.assert_allclose(after.bottom, before.bottom)  # the forecasts do not move
    widened = after.bottom_p90 > before.bottom_p90
    assert widened.mean() > 0.9 and after.bottom_p90.sum() > 1.5 * before.bottom_p90.sum()
    pd.testing.assert_frame_equal(after.levels, before.levels)
    assert after.report["bottom"]["rows"] == before.report["bottom"]["rows"]


def test_a_levels_bands_pool_its_own_realised_errors(setting):
    """The total's published forecasts that fell short by half (realised, each horizon) widen the
    total's p90 and no other level's; the forecasts do not move."""
    panel, active, m, base, held, members = setting
    config = HierarchyConfig(levels=LEVELS, aggregate_forecaster="seasonal_naive", reconciliation="bottom_up")
    before = hierarchy.reconcile_month(panel, active, m, base, held, members, config)
    total = before.levels[before.levels["level"] == "total"]
    realised = pd.DataFrame(
        {
            "level": "total",
            "forecast_month": np.repeat(["2024-10-01", "2024-11-01", "2024-12-01"], 3),
            "horizon": np.tile([1, 2, 3], 3),
            "forecast": float(total["prediction"].mean()),
            "actual": 1.5 * float(total["prediction"].mean()),
        }
    )
    after = hierarchy.reconcile_month(panel, active, m, base, held, members, config, realised_levels=realised)
    np.testing.assert_allclose(after.levels["prediction"], before.levels["prediction"])
    is_total = (after.levels["level"] == "total").to_numpy()
    assert (
        after.levels.loc[is_total, "p90"].to_numpy() > before.levels.loc[is_total, "p90"].to_numpy()
    ).all()
    others = ~is_total
    np.testing.assert_allclose(after.levels.loc[others, "p90"], before.levels.loc[others, "p90"])
    np.testing.assert_allclose(after.bottom_p90, before.bottom_p90)
