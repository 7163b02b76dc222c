"""The training-set plumbing that needs no Feast: labelled entity rows, the split by target
month, the design matrix and the data fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import Config, ConfigError, load_config
from forecasting.core.months import month_end, month_index
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.features.catalogue import TIMESTAMP
from forecasting.features.dataset import (
    HORIZON,
    LABEL,
    ORIGIN,
    TARGET_MONTH,
    Rows,
    categories_of,
    design_matrix,
    model_features,
    text_as_categories,
)
from forecasting.modeling.booster import fingerprint
from tests.helpers.config import demo_config_dict, write_config

KEYS = ["store", "item"]


def make_config(
    folder: Path, horizon: int = 2, holdout: int = 6, validation: int = 3, covariates=(), attributes=()
) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS,
        time_column="month",
        target_column="units",
        covariates=list(covariates),
        attributes=list(attributes),
    )
    raw["horizon"] = horizon
    raw["evaluation"] = {"holdout_months": holdout}
    raw["model"]["validation_months"] = validation
    return load_config(write_config(folder, raw))


def frame_of(*rows: tuple[int, int, str, float]) -> pd.DataFrame:
    store, item, month, units = zip(*rows, strict=True)
    return pd.DataFrame(
        {"store": store, "item": item, "month": pd.to_datetime([f"{m}-01" for m in month]), "units": units}
    )


# -------------------------------------------------------------------------------- labelled_rows


def small_snapshot() -> pd.DataFrame:
    return frame_of(
        (1, 1, "2024-01", 1.0),
        (1, 1, "2024-02", 2.0),
        (1, 1, "2024-03", 3.0),
        (1, 1, "2024-04", 4.0),
        (2, 1, "2024-02", 10.0),
        (2, 1, "2024-04", 30.0),  # no row in 2024-03: sold nothing
        (3, 9, "2024-01", 5.0),
        (3, 9, "2024-02", 6.0),  # discontinued after 2024-02
    )


def labelled_rows(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    panel = build_panel(snapshot, config, sales_only=True)
    return dataset.labelled(panel, config, month).frame(panel)


def as_tuples(frame: pd.DataFrame) -> set[tuple]:
    return set(frame[[*KEYS, ORIGIN, HORIZON, TARGET_MONTH, LABEL]].itertuples(index=False, name=None))


def test_labelled_rows_by_hand(tmp_path):
    config = make_config(tmp_path, horizon=2)

    got = labelled_rows(small_snapshot(), config, pd.Period("2024-04", "M"))

    assert as_tuples(got) == {
        ("1", "1", "2024-01", 1, "2024-02", 2.0),
        ("1", "1", "2024-02", 1, "2024-03", 3.0),
        ("1", "1", "2024-03", 1, "2024-04", 4.0),
        ("1", "1", "2024-01", 2, "2024-03", 3.0),
        ("1", "1", "2024-02", 2, "2024-04", 4.0),
        ("2", "1", "2024-02", 1, "2024-03", 0.0),  # the gap month is a 0 label
        ("2", "1", "2024-03", 1, "2024-04", 30.0),  # and a valid origin
        ("2", "1", "2024-02", 2, "2024-04", 30.0),
        ("3", "9", "2024-01", 1, "2024-02", 6.0),  # nothing after its last month
    }
    assert len(got) == 9  # no duplicates
    assert list(got.columns) == [*KEYS, ORIGIN, HORIZON, TARGET_MONTH, TIMESTAMP, LABEL]
    # Stamped when the origin month is complete, so Feast can only join features of the origin.
    expected_stamps = [month_end(pd.Period(o, "M")).tz_localize("UTC") for o in got[ORIGIN]]
    assert got[TIMESTAMP].tolist() == expected_stamps
    assert str(got[TIMESTAMP].dt.tz) == "UTC"


def test_rows_written_with_their_columns_read_back_as_the_frame_would_be(tmp_path):
    """holdout.parquet's writer: the rows' identity (keys and months dictionary-encoded) beside
    other columns reads back equal to ``Rows.frame`` beside them, text as plain str, in order."""
    config = make_config(tmp_path)
    panel = build_panel(small_snapshot(), config, sales_only=True)
    rows = dataset.labelled(panel, config, pd.Period("2024-04", "M"))
    rows = rows.take(np.arange(len(rows))[::-1])  # any order, entities repeated
    other = pd.DataFrame(
        {
            HORIZON: rows.horizon,  # already in the identity: written once
            "sales_lag_1": np.linspace(0, 1, len(rows), dtype=np.float32),
            "region": ["north", None] * (len(rows) // 2) + ["north"] * (len(rows) % 2),
        }
    )
    path = tmp_path / "rows.parquet"
    dataset.write_rows(rows, panel, other, path)
    expected = pd.concat([rows.frame(panel, timestamps=False), other.drop(columns=HORIZON)], axis=1)
    got = dataset.read_rows(path)
    pd.testing.assert_frame_equal(got, expected)
    assert got[KEYS[0]].map(type).eq(str).all() and got[ORIGIN].map(type).eq(str).all()

    # Text that train encoded as categories reads back as the same text.
    dataset.write_rows(rows, panel, text_as_categories(other.copy()), path)
    got = dataset.read_rows(path)
    pd.testing.assert_frame_equal(got.fillna({"region": "none"}), expected.fillna({"region": "none"}))


def test_labelled_rows_stop_at_m(tmp_path):
    config = make_config(tmp_path, horizon=2)

    got = labelled_rows(small_snapshot(), config, pd.Period("2024-03", "M"))

    assert got[TARGET_MONTH].max() == "2024-03"
    assert as_tuples(got) == {
        ("1", "1", "2024-01", 1, "2024-02", 2.0),
        ("1", "1", "2024-02", 1, "2024-03", 3.0),
        ("1", "1", "2024-01", 2, "2024-03", 3.0),
        ("2", "1", "2024-02", 1, "2024-03", 0.0),
        ("3", "9", "2024-01", 1, "2024-02", 6.0),
    }


def test_labelled_rows_properties_on_a_random_history(tmp_path):
    config = make_config(tmp_path, horizon=3)
    rng = np.random.default_rng(3)
    parts = []
    for store in range(3):
        for item in range(4):
            first = int(rng.integers(0, 10))
            months = pd.period_range("2023-01", "2024-12", freq="M")[first : first + int(rng.integers(1, 20))]
            keep = rng.random(len(months)) > 0.2  # random gaps
            keep[0] = True
            parts.append(
                pd.DataFrame(
                    {
                        "store": store,
                        "item": item,
                        "month": months[keep].to_timestamp(),
                        "units": rng.poisson(7, keep.sum()).astype(float),
                    }
                )
            )
    snapshot = pd.concat(parts, ignore_index=True)
    month = pd.Period("2024-06", "M")
    snapshot = snapshot[snapshot["month"] <= month.to_timestamp()]

    got = labelled_rows(snapshot, config, month)

    # Each entity's months from its first to its last row, 0 where it has no row (by hand).
    parts = []
    for (store, item), rows in snapshot.groupby(KEYS):
        span = pd.period_range(rows["month"].min(), rows["month"].max(), freq="M")
        units = rows.set_index(rows["month"].dt.to_period("M"))["units"].reindex(span, fill_value=0.0)
        parts.append(
            pd.DataFrame(
                {"store": str(store), "item": str(item), "month": span.astype(str), "units": units.to_numpy()}
            )
        )
    grid = pd.concat(parts, ignore_index=True)
    sales = grid.set_index([*KEYS, "month"])["units"]
    # Every row: origin and target are months of the entity's history, label = target at origin + h.
    origin_key = pd.MultiIndex.from_frame(got[[*KEYS, ORIGIN]])
    target_key = pd.MultiIndex.from_frame(got[[*KEYS, TARGET_MONTH]])
    assert origin_key.isin(sales.index).all()
    assert target_key.isin(sales.index).all()
    np.testing.assert_array_equal(sales.reindex(target_key).to_numpy(), got[LABEL].to_numpy())
    shifted = (pd.PeriodIndex(got[ORIGIN], freq="M") + got[HORIZON].to_numpy()).astype(str)
    assert (shifted == got[TARGET_MONTH]).all()
    assert set(got[HORIZON]) <= {1, 2, 3}
    assert (got[TARGET_MONTH] <= str(month)).all()
    # ... and every such (entity, origin, horizon) is there exactly once.
    expected = sum(max(0, n - h) for n in grid.groupby(KEYS).size() for h in (1, 2, 3))
    assert len(got) == expected
    assert not got.duplicated([*KEYS, ORIGIN, HORIZON]).any()


# ------------------------------------------------------------------------- split_by_target_month


def target_rows() -> Rows:
    """Two entities with one horizon-1 row for every target month of 2023 and 2024."""
    targets = np.repeat(month_index(pd.period_range("2023-01", "2024-12", freq="M")).to_numpy(), 2)
    entity = np.tile([0, 1], len(targets) // 2)
    return Rows(entity, targets - 1, np.ones(len(targets), dtype=int), np.zeros(len(targets)))


@pytest.mark.parametrize("holdout, validation", [(6, 3), (2, 1), (1, 12)])
def test_split_by_target_month(tmp_path, holdout, validation):
    config = make_config(tmp_path, holdout=holdout, validation=validation)
    rows = target_rows()
    month = pd.Period("2024-12", "M")

    split = dataset.split(rows, config, month)

    def months(mask):
        return sorted(
            {str(pd.Period(year=int(t) // 12, month=int(t) % 12 + 1, freq="M")) for t in rows.target[mask]}
        )

    expected_holdout = [str(m) for m in pd.period_range(end=month, periods=holdout, freq="M")]
    expected_validation = [str(m) for m in pd.period_range(end=month - holdout, periods=validation, freq="M")]
    assert months(split.holdout) == expected_holdout
    assert months(split.validation) == expected_validation
    assert max(months(split.train)) < min(expected_validation)
    # A partition of the rows: no overlap, nothing lost.
    assert (split.train.astype(int) + split.validation + split.holdout == 1).all()


# --------------------------------------------------------------------------------- design_matrix


def feature_frame(config: Config, regions: list) -> pd.DataFrame:
    n = len(regions)
    frame = pd.DataFrame(
        {name: np.arange(n, dtype=float) + i for i, name in enumerate(model_features(config))}
    )
    frame["region"] = pd.array(regions, dtype="string")
    frame["store_size"] = [100, 200, 300, 400][:n]  # a numeric attribute stays numeric
    frame[HORIZON] = np.arange(1, n + 1)  # ints
    frame["extra"] = "not a feature"
    return frame


def test_design_matrix_categoricals_with_fixed_categories(tmp_path):
    config = make_config(tmp_path, covariates=["price"], attributes=["region", "store_size"])
    train_frame = feature_frame(config, ["south", "north", "south", "north"])
    categories = categories_of(train_frame, config)
    assert categories == {"region": ["north", "south"]}

    scoring = feature_frame(config, ["north", "east", None, "south"])  # "east" was never seen
    X = design_matrix(scoring, config, categories)

    assert list(X.columns) == model_features(config)
    assert isinstance(X["region"].dtype, pd.CategoricalDtype)
    assert X["region"].cat.categories.tolist() == ["north", "south"]
    assert X["region"].cat.codes.tolist() == [0, -1, -1, 1]
    assert X["region"].isna().tolist() == [False, True, True, False]
    assert set(X.drop(columns="region").dtypes.astype(str)) == {"float32"}  # XGBoost's own precision
    assert X[HORIZON].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert X["store_size"].tolist() == [100.0, 200.0, 300.0, 400.0]

    # The same category list whatever subset a frame holds, so codes mean the same in every run.
    only_south = design_matrix(feature_frame(config, ["south"]), config, categories)
    assert only_south["region"].cat.categories.tolist() == ["north", "south"]
    assert only_south["region"].cat.codes.tolist() == [1]


def test_text_encoded_once_as_categories_gives_the_same_matrix_categories_and_fingerprint(tmp_path):
    """train encodes the retrieved text features as categoricals once (``text_as_categories``):
    the design matrix, the category list and the data's fingerprint must not change for it."""
    config = make_config(tmp_path, covariates=["price"], attributes=["region", "store_size"])
    train_frame = feature_frame(config, ["south", "north", None, "north"])
    encoded = text_as_categories(train_frame.copy())
    assert isinstance(encoded["region"].dtype, pd.CategoricalDtype)
    assert encoded["sales_lag_1"].dtype == train_frame["sales_lag_1"].dtype  # numbers untouched
    categories = categories_of(encoded, config)
    assert categories == categories_of(train_frame, config) == {"region": ["north", "south"]}

    scoring = feature_frame(config, ["north", "east", None, "south"])
    pd.testing.assert_frame_equal(
        design_matrix(text_as_categories(scoring.copy()), config, categories),
        design_matrix(scoring, config, categories),
    )
    assert fingerprint(encoded, {}) == fingerprint(train_frame, {})


# ----------------------------------------------------------------------------------- fingerprint


def test_fingerprint_changes_with_data_or_params_only():
    frame = pd.DataFrame({"store": ["1", "2"], "sales_lag_1": [3.0, 4.0], LABEL: [5.0, 6.0]})
    params = {"max_depth": 6, "seed": 42, "num_boost_round": 120}
    base = fingerprint(frame, params)

    assert len(base) == 64 and int(base, 16) >= 0
    assert fingerprint(frame.copy(), dict(params)) == base
    assert fingerprint(frame, dict(reversed(params.items()))) == base  # key order is irrelevant
    assert fingerprint(frame.set_axis(["a", "b"]), params) == base  # the index is not data

    changed_value = frame.assign(**{LABEL: [5.0, 6.5]})
    assert fingerprint(changed_value, params) != base
    assert fingerprint(frame.iloc[:1], params) != base
    assert fingerprint(frame.iloc[::-1].reset_index(drop=True), params) != base
    assert fingerprint(frame, {**params, "seed": 43}) != base
    assert fingerprint(frame, {**params, "num_boost_round": 121}) != base


# ---------------------------------------------------------------------- training window and budget


def random_history(months: int = 30, entities: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    stamps = pd.period_range(end="2024-12", periods=months, freq="M").to_timestamp()
    return pd.DataFrame(
        {
            "store": np.repeat(np.arange(entities) // 8, months),
            "item": np.repeat(np.arange(entities) % 8, months),
            "month": np.tile(stamps, entities),
            "units": rng.poisson(9, entities * months).astype(float),
        }
    )


def test_training_origins_bound_how_far_back_origins_go(tmp_path):
    config = make_config(tmp_path, horizon=2)
    snapshot = random_history()
    month = pd.Period("2024-12", "M")
    panel = build_panel(snapshot, config, sales_only=True)
    every = dataset.labelled(panel, config, month)

    raw = demo_config_dict(tmp_path / "bounded")
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    raw.update(horizon=2, evaluation={"holdout_months": 6})
    raw["model"].update(validation_months=3, training_origins=12)
    bounded = dataset.labelled(panel, load_config(write_config(tmp_path / "bounded", raw)), month)

    assert every.origin.min() < month_index(month) - 12
    assert bounded.origin.min() == month_index(month) - 12
    # Exactly the rows of the recent origins: nothing else changes.
    recent = every.origin >= month_index(month) - 12
    np.testing.assert_array_equal(bounded.label, every.label[recent])
    np.testing.assert_array_equal(bounded.entity, every.entity[recent])


def test_too_few_training_origins_for_the_horizon_are_refused(tmp_path):
    raw = demo_config_dict(tmp_path)  # horizon 3, validation 3, holdout 6
    raw["model"]["training_origins"] = 11
    with pytest.raises(ConfigError, match=r"model\.training_origins: 11 leaves no origin to train horizon 3"):
        load_config(write_config(tmp_path, raw))
    raw["model"]["training_origins"] = 12
    assert load_config(write_config(tmp_path, raw)).model.training_origins == 12


def test_the_row_budget_draws_the_same_uniform_sample_every_time(tmp_path):
    config = make_config(tmp_path, horizon=2)
    panel = build_panel(random_history(), config, sales_only=True)
    rows = dataset.labelled(panel, config, pd.Period("2024-12", "M"))
    assert dataset.sample(rows, config).all()  # under the default budget: every row

    raw = demo_config_dict(tmp_path / "budget")
    raw["source"].update(
        entity_columns=KEYS, time_column="month", target_column="units", covariates=[], attributes=[]
    )
    raw.update(horizon=2, evaluation={"holdout_months": 6})
    raw["model"].update(validation_months=3, max_training_rows=1000)
    small = load_config(write_config(tmp_path / "budget", raw))
    first, second = dataset.sample(rows, small), dataset.sample(rows, small)

    np.testing.assert_array_equal(first, second)
    assert len(rows) > 2000 and abs(first.sum() - 1000) < 100
    # Every entity, origin and horizon keeps its share.
    assert set(rows.entity[first]) == set(rows.entity)
    assert set(rows.horizon[first]) == {1, 2}
    assert set(rows.origin[first]) == set(rows.origin)
