"""Training rows get the features known at their forecast origin, never later ones (no leakage).

Runs the real Feast point-in-time join (file offline store, SQLite registry) that training uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import END_MONTH

MONTH = pd.Period(END_MONTH, "M")
SENTINEL = -999.0


@pytest.fixture
def applied(deployment):
    from forecasting import extract, features, store

    snapshot = extract.read_window(deployment, MONTH)
    features.build_features(snapshot, deployment, MONTH)
    store.apply(deployment)
    return deployment, snapshot


def test_training_rows_carry_the_features_of_their_origin(applied):
    from forecasting import train

    config, snapshot = applied
    frame = train.training_set(snapshot, config, MONTH)
    assert len(frame) > 1000 and set(frame[train.HORIZON]) == {1, 2, 3}

    sales = snapshot.assign(origin_month=snapshot["month"].dt.to_period("M").astype(str))
    sales[["store_id", "item_id"]] = sales[["store_id", "item_id"]].astype(str)
    joined = frame.merge(sales[["store_id", "item_id", "origin_month", "units"]],
                         on=["store_id", "item_id", "origin_month"], how="left")
    # lag 1 is the origin month's own sales (0 where the entity had no row that month) ...
    np.testing.assert_allclose(joined["sales_lag_1"], joined["units"].fillna(0.0))
    # ... and the label is a later month's: the feature and the label never come from one row.
    later = pd.PeriodIndex(frame[train.TARGET_MONTH], freq="M") > pd.PeriodIndex(frame[train.ORIGIN], freq="M")
    assert later.all()


def test_a_feature_stamped_after_the_origin_never_reaches_a_training_row(applied):
    from forecasting import paths, store, train
    from forecasting.features import CREATED, TIMESTAMP

    config, snapshot = applied
    folder = paths.feature_table(config)
    # A restatement of month t's features with sentinel values, stamped mid-way through t+1:
    # later than every training row whose origin is t, earlier than those whose origin is t+1.
    month = MONTH - 4
    late = pd.read_parquet(folder / f"{month}.parquet")
    late["sales_lag_1"] = SENTINEL
    late[TIMESTAMP] = late[TIMESTAMP] + pd.Timedelta(days=15)
    late[CREATED] = late[TIMESTAMP]
    paths.write_parquet_atomically(late, folder / f"{month}-late-restatement.parquet")

    frame = train.training_set(snapshot, config, MONTH)
    assert (pd.PeriodIndex(frame[train.ORIGIN], freq="M") == month).sum() > 0
    assert not (frame["sales_lag_1"] == SENTINEL).any()

    # Feast does serve the restated values to a row stamped after them: the file was read.
    probe = late[["store_id", "item_id"]].head(5).assign(**{TIMESTAMP: late[TIMESTAMP].iloc[0] + pd.Timedelta(hours=1)})
    assert (store.historical_features(config, probe)["sales_lag_1"] == SENTINEL).all()
