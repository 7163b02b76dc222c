"""The Dominick's orange juice loader, on the real data from Debian's r-cran-bayesm.

The first run downloads the package with apt-get into the repo's data/external cache; the
tests skip only when apt-get download itself is impossible on this machine.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.datasets import dominicks as dom

DEMOGRAPHIC_COLUMNS = [
    "age60",
    "educ",
    "ethnic",
    "income",
    "hhlarge",
    "workwom",
    "hval150",
    "sstrdist",
    "sstrvol",
    "cpdist5",
    "cpwvol5",
]


@pytest.fixture(scope="module")
def rda_path():
    try:
        return dom.fetch_orange_juice_rda(dom.DEFAULT_CACHE_DIR)
    except dom.AptDownloadError as err:
        pytest.skip(f"apt-get download {dom.DEB_PACKAGE} is impossible here: {err}")


@pytest.fixture(scope="module")
def loaded(rda_path):
    return dom.load_orange_juice(rda_path)


@pytest.fixture(scope="module")
def monthly(loaded):
    return dom.monthly_sales(*loaded)


def test_week_calendar_follows_dominicks_manual():
    assert dom.week_start(1) == pd.Timestamp("1989-09-14")
    assert dom.week_start(40) == pd.Timestamp("1990-06-14")
    assert dom.week_start(160) == pd.Timestamp("1992-10-01")
    starts = dom.week_start(pd.Series([1, 2, 100]))
    assert list(starts.dt.day_name()) == ["Thursday"] * 3


def test_raw_frames(loaded):
    weekly, demographics = loaded
    assert len(weekly) > 100_000
    assert weekly["store"].nunique() == 83
    assert sorted(weekly["brand"].unique()) == list(range(1, 12))
    assert weekly["week"].between(40, 160).all()
    assert not weekly.duplicated(["store", "brand", "week"]).any()
    assert list(demographics.columns) == ["STORE", *dom.DEMOGRAPHICS]
    assert set(demographics["STORE"]) == set(weekly["store"])
    # logmove counts ounces: every weekly volume is a whole number of packages.
    oz = weekly["brand"].map({b: size for b, (_, size) in dom.BRANDS.items()})
    packages = np.exp(weekly["logmove"]) / oz
    assert np.allclose(packages, packages.round(), atol=1e-6)


def test_monthly_shape(monthly):
    assert list(monthly.columns) == [
        "store",
        "brand",
        "month",
        "units",
        "price",
        "deal",
        "feat",
        *DEMOGRAPHIC_COLUMNS,
    ]
    assert 80 <= monthly["store"].nunique() <= 83
    assert monthly["brand"].nunique() == 11
    assert not monthly.duplicated(["store", "brand", "month"]).any()
    assert monthly["store"].dtype == np.int64 and monthly["brand"].dtype == np.int64
    assert all(type(m) is date and m.day == 1 for m in monthly["month"])
    # Only months the weekly data covers in full: July 1990 .. September 1992.
    months = pd.PeriodIndex(sorted(set(monthly["month"])), freq="M")
    assert (months[0], months[-1]) == (pd.Period("1990-07"), pd.Period("1992-09"))
    assert list(months) == list(pd.period_range(months[0], months[-1], freq="M"))
    # Nearly every store-brand has every month (a few stores start late or miss weeks).
    per_series = monthly.groupby(["store", "brand"]).size()
    assert per_series.max() == len(months) and per_series.median() == len(months)
    assert len(monthly) > 0.95 * 83 * 11 * len(months)


def test_monthly_values(monthly):
    assert monthly.notna().all().all()
    assert (monthly["units"] > 0).all()
    # Packages per store-brand-month: tens to tens of thousands.
    assert 100 < monthly["units"].median() < 10_000
    assert monthly["price"].between(0.5, 6.5).all()  # dollars per package, 64 to 128 oz
    per_oz = monthly["price"] / monthly["brand"].map({b: s for b, (_, s) in dom.BRANDS.items()})
    assert per_oz.between(0.005, 0.08).all()
    for col in ("deal", "feat"):
        assert monthly[col].between(0, 1).all()
        assert 0.05 < monthly[col].mean() < 0.8


def test_demographics_constant_per_store(monthly, loaded):
    _, demographics = loaded
    assert (monthly.groupby("store")[DEMOGRAPHIC_COLUMNS].nunique() == 1).all().all()
    first = monthly.groupby("store")[DEMOGRAPHIC_COLUMNS].first()
    expected = demographics.set_index("STORE")[dom.DEMOGRAPHICS]
    expected.columns = DEMOGRAPHIC_COLUMNS
    pd.testing.assert_frame_equal(first, expected.loc[first.index], check_names=False)


def test_weeks_are_split_across_months_by_days():
    # Week 51 runs Thursday 1990-08-30 .. Wednesday 1990-09-05: 2 days in August, 5 in September.
    weekly = pd.DataFrame(
        {
            "store": 1,
            "brand": 1,
            "week": [46, 47, 48, 49, 50, 51, 52, 53, 54, 55],
            "logmove": np.log(64 * 70.0),
            "deal": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            "feat": 0.0,
            **{f"price{b}": 0.04 for b in dom.BRANDS},
        }
    )
    demographics = pd.DataFrame({"STORE": [1], **{c: [0.5] for c in dom.DEMOGRAPHICS}})
    out = dom.monthly_sales(weekly, demographics)
    # Weeks 46..55 run 1990-07-26 .. 1990-10-03: only August and September are whole.
    assert [m.isoformat() for m in out["month"]] == ["1990-08-01", "1990-09-01"]
    aug, sep = out.iloc[0], out.iloc[1]
    assert aug["units"] == pytest.approx(70 * 31 / 7)  # 10 packages a day, whole month on record
    assert sep["units"] == pytest.approx(70 * 30 / 7)
    assert aug["deal"] == pytest.approx(2 / 31)  # only week 51's two August days on deal
    assert sep["deal"] == pytest.approx(1.0)
    assert aug["price"] == pytest.approx(0.04 * 64)


def test_seed_round_trips(tmp_path, monthly, rda_path, capsys):
    url = f"sqlite:///{tmp_path / 'nested' / 'source.db'}"
    rows = dom.seed_dominicks(url, table="oj", cache_dir=rda_path.parent)
    assert rows == len(monthly)
    back = pd.read_sql_table("oj", sa.create_engine(url))
    back["month"] = [pd.Timestamp(m).date() for m in back["month"]]
    pd.testing.assert_frame_equal(back, monthly, check_dtype=False)

    assert dom.main(["--url", url, "--table", "oj2", "--cache-dir", str(rda_path.parent)]) == 0
    printed = capsys.readouterr().out
    assert f"rows: {len(monthly)}" in printed
    assert "brands: 11" in printed
    assert "first month: 1990-07-01" in printed and "last month: 1992-09-01" in printed
