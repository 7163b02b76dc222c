"""The training-set plumbing that needs no Feast: labelled entity rows, the split by target
month, the design matrix and the data fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict, write_config

from forecasting.config import Config, load_config
from forecasting.features import TIMESTAMP, monthly_grid
from forecasting.months import month_end
from forecasting.train import (
    HORIZON,
    LABEL,
    ORIGIN,
    TARGET_MONTH,
    categories_of,
    design_matrix,
    fingerprint,
    labelled_rows,
    model_features,
    split_by_target_month,
)

KEYS = ["store", "item"]


def make_config(folder: Path, horizon: int = 2, holdout: int = 6, validation: int = 3,
                covariates=(), attributes=()) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(entity_columns=KEYS, time_column="month", target_column="units",
                         covariates=list(covariates), attributes=list(attributes))
    raw["horizon"] = horizon
    raw["evaluation"] = {"holdout_months": holdout}
    raw["model"]["validation_months"] = validation
    return load_config(write_config(folder, raw))


def frame_of(*rows: tuple[int, int, str, float]) -> pd.DataFrame:
    store, item, month, units = zip(*rows, strict=True)
    return pd.DataFrame({"store": store, "item": item, "month": pd.to_datetime([f"{m}-01" for m in month]),
                         "units": units})


# -------------------------------------------------------------------------------- labelled_rows


def small_snapshot() -> pd.DataFrame:
    return frame_of(
        (1, 1, "2024-01", 1.0), (1, 1, "2024-02", 2.0), (1, 1, "2024-03", 3.0), (1, 1, "2024-04", 4.0),
        (2, 1, "2024-02", 10.0), (2, 1, "2024-04", 30.0),  # no row in 2024-03: sold nothing
        (3, 9, "2024-01", 5.0), (3, 9, "2024-02", 6.0),   # discontinued after 2024-02
    )


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
            months = pd.period_range("2023-01", "2024-12", freq="M")[first:first + int(rng.integers(1, 20))]
            keep = rng.random(len(months)) > 0.2  # random gaps
            keep[0] = True
            parts.append(pd.DataFrame({"store": store, "item": item, "month": months[keep].to_timestamp(),
                                       "units": rng.poisson(7, keep.sum()).astype(float)}))
    snapshot = pd.concat(parts, ignore_index=True)
    month = pd.Period("2024-06", "M")
    snapshot = snapshot[snapshot["month"] <= month.to_timestamp()]

    got = labelled_rows(snapshot, config, month)

    grid = monthly_grid(snapshot, config)
    grid["month"] = [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in grid["_m"]]
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


def target_frame() -> pd.DataFrame:
    months = [str(m) for m in pd.period_range("2023-01", "2024-12", freq="M")]
    return pd.DataFrame({
        "store": ["1", "2"] * len(months),
        TARGET_MONTH: [m for m in months for _ in range(2)],
        HORIZON: 1,
    })


@pytest.mark.parametrize("holdout, validation", [(6, 3), (2, 1), (1, 12)])
def test_split_by_target_month(tmp_path, holdout, validation):
    config = make_config(tmp_path, holdout=holdout, validation=validation)
    frame = target_frame()
    month = pd.Period("2024-12", "M")

    split = split_by_target_month(frame, config, month)

    def months(part):
        return sorted(set(part[TARGET_MONTH]))

    expected_holdout = [str(m) for m in pd.period_range(end=month, periods=holdout, freq="M")]
    expected_validation = [str(m) for m in
                           pd.period_range(end=month - holdout, periods=validation, freq="M")]
    assert months(split.holdout) == expected_holdout
    assert months(split.validation) == expected_validation
    assert max(months(split.train)) < min(expected_validation)
    # A partition of the rows: no overlap, nothing lost.
    indexes = [set(split.train.index), set(split.validation.index), set(split.holdout.index)]
    assert sum(map(len, indexes)) == len(frame)
    assert set().union(*indexes) == set(frame.index)


# --------------------------------------------------------------------------------- design_matrix


def feature_frame(config: Config, regions: list) -> pd.DataFrame:
    n = len(regions)
    frame = pd.DataFrame({name: np.arange(n, dtype=float) + i for i, name in enumerate(model_features(config))})
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
    assert set(X.drop(columns="region").dtypes.astype(str)) == {"float64"}
    assert X[HORIZON].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert X["store_size"].tolist() == [100.0, 200.0, 300.0, 400.0]

    # The same category list whatever subset a frame holds, so codes mean the same in every run.
    only_south = design_matrix(feature_frame(config, ["south"]), config, categories)
    assert only_south["region"].cat.categories.tolist() == ["north", "south"]
    assert only_south["region"].cat.codes.tolist() == [1]


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
