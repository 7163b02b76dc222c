"""The synthetic sales generator and the loader that seeds the demo source database."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.datasets.synthetic import COLUMNS, generate_sales, main, seed_source_database

END = "2024-12"


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return generate_sales(stores=8, items=40, months=48, end_month=END, seed=7)


def _read_back(url: str, table: str = "sales") -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        frame = pd.read_sql_table(table, engine)
    finally:
        engine.dispose()
    frame["month"] = frame["month"].dt.date
    return frame.sort_values(["store_id", "item_id", "month"]).reset_index(drop=True)


def test_same_seed_same_frame_and_other_seed_differs():
    a = generate_sales(stores=4, items=10, months=30, end_month=END, seed=3)
    b = generate_sales(stores=4, items=10, months=30, end_month=END, seed=3)
    c = generate_sales(stores=4, items=10, months=30, end_month=END, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not (len(a) == len(c) and a.equals(c))


def test_columns_and_types(sales):
    assert list(sales.columns) == COLUMNS
    for col in ("store_id", "item_id", "promo"):
        assert pd.api.types.is_integer_dtype(sales[col]), col
    for col in ("units", "price"):
        assert pd.api.types.is_float_dtype(sales[col]), col
    assert all(type(m) is date and m.day == 1 for m in sales["month"])
    assert set(sales["promo"].unique()) == {0, 1}
    assert (sales["units"] == sales["units"].round()).all()
    assert (sales["price"] > 0).all() and (sales["price"] == sales["price"].round(2)).all()
    for col in ("store_size", "region", "category"):
        assert all(isinstance(v, str) for v in sales[col]), col
    assert set(sales["store_size"]) <= {"small", "medium", "large"}
    assert set(sales["region"]) <= {"north", "south", "east", "west"}
    assert {"beverages", "snacks", "dairy", "household"} <= set(sales["category"])
    # Store attributes are fixed per store, the category per item.
    assert (sales.groupby("store_id")[["store_size", "region"]].nunique() == 1).all().all()
    assert (sales.groupby("item_id")["category"].nunique() == 1).all()
    assert sales["store_id"].nunique() == 8 and sales["item_id"].nunique() == 40


def test_one_row_per_store_item_month(sales):
    assert not sales.duplicated(["store_id", "item_id", "month"]).any()
    keys = list(zip(sales["store_id"], sales["item_id"], sales["month"], strict=True))
    assert keys == sorted(keys)


def test_units_are_counts_with_some_zero_months(sales):
    assert (sales["units"] >= 0).all()
    assert (sales["units"] == 0).any()
    # ...but zeros are occasional, and levels vary a lot across entities.
    assert (sales["units"] == 0).mean() < 0.1
    levels = sales.groupby(["store_id", "item_id"])["units"].mean()
    assert levels.quantile(0.9) > 5 * levels.quantile(0.1)


def test_items_launch_and_stop_within_history(sales):
    first, last = date(2021, 1, 1), date(2024, 12, 1)
    span = sales.groupby("item_id")["month"].agg(["min", "max"])
    assert (span["min"] > first).any(), "some items launch after the first month"
    assert (span["max"] < last).any(), "some items are discontinued before the end"
    assert (span["min"] == first).mean() > 0.7 and (span["max"] == last).mean() > 0.7
    # Listed months are contiguous per store and item: no holes between launch and stop.
    per_entity = sales.groupby(["store_id", "item_id"])["month"].agg(["min", "max", "count"])
    months = (
        per_entity["max"].map(lambda d: d.year * 12 + d.month)
        - per_entity["min"].map(lambda d: d.year * 12 + d.month)
        + 1
    )
    assert (months == per_entity["count"]).all()


def test_months_end_at_end_month(sales):
    assert sales["month"].max() == date(2024, 12, 1)
    assert sales["month"].min() == date(2021, 1, 1)  # 48 months back
    assert (sales["month"] == date(2024, 12, 1)).sum() > 0.5 * (sales["month"] == date(2021, 1, 1)).sum()
    frame = generate_sales(stores=2, items=5, months=13, end_month=pd.Period("2026-10", "M"), seed=1)
    assert frame["month"].max() == date(2026, 10, 1) and frame["month"].min() == date(2025, 10, 1)


def test_seasonality_follows_category(sales):
    # Units relative to each store-item's own mean, so big items do not drown the pattern.
    relative = sales["units"] / sales.groupby(["store_id", "item_id"])["units"].transform("mean").clip(
        lower=1
    )
    moy = sales["month"].map(lambda d: d.month)
    by_month = (
        sales.assign(relative=relative, moy=moy).groupby(["category", "moy"])["relative"].mean().unstack()
    )
    beverages = by_month.loc["beverages"]
    assert beverages[[6, 7, 8]].mean() / beverages[[12, 1, 2]].mean() > 1.25  # summer peak
    snacks = by_month.loc["snacks"]
    assert snacks[12] / snacks[list(range(1, 11))].mean() > 1.15  # December peak


def test_promotions_lift_units_within_entity(sales):
    assert 0.08 < sales["promo"].mean() < 0.25
    means = sales.groupby(["store_id", "item_id", "promo"])["units"].mean().unstack().dropna()
    ratio = means[1] / means[0].clip(lower=1)
    assert ratio.median() > 1.3
    assert (ratio > 1).mean() > 0.8
    # Promotions come with a discount: within an item and store, the promo price is lower.
    prices = sales.groupby(["store_id", "item_id", "promo"])["price"].mean().unstack().dropna()
    assert (prices[1] < prices[0]).mean() > 0.9


def test_sizes_are_validated_and_small_histories_work():
    with pytest.raises(ValueError, match="stores"):
        generate_sales(stores=0)
    with pytest.raises(ValueError, match="months"):
        generate_sales(months=2.5)
    for months in (1, 7, 8):
        frame = generate_sales(stores=2, items=3, months=months, end_month=END)
        assert frame["month"].nunique() == months and not frame.empty


def test_large_frames_are_generated():
    # Speed is measured in benchmarks/, never asserted in tests.
    frame = generate_sales(stores=50, items=200, months=60, end_month=END, seed=11)
    assert len(frame) > 300_000


def test_seed_source_database_round_trips_and_replaces(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'source.db'}"
    frame = generate_sales(stores=3, items=6, months=24, end_month=END, seed=5)
    assert seed_source_database(url, frame) == len(frame)
    pd.testing.assert_frame_equal(_read_back(url), frame, check_dtype=False)

    smaller = generate_sales(stores=2, items=4, months=12, end_month=END, seed=6)
    assert seed_source_database(url, smaller) == len(smaller)
    pd.testing.assert_frame_equal(_read_back(url), smaller, check_dtype=False)

    engine = sa.create_engine(url)
    try:
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("sales")}
    finally:
        engine.dispose()
    assert isinstance(columns["month"]["type"], sa.Date)


def test_failed_reseed_leaves_the_old_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'source.db'}"
    frame = generate_sales(stores=2, items=4, months=12, end_month=END, seed=5)
    seed_source_database(url, frame)
    broken = pd.concat([frame, frame.iloc[[0]]])  # a duplicate key fails the insert
    with pytest.raises(sa.exc.IntegrityError):
        seed_source_database(url, broken)
    pd.testing.assert_frame_equal(_read_back(url), frame, check_dtype=False)


def test_cli_writes_the_requested_table(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = [
        "--url",
        url,
        "--table",
        "demo_sales",
        "--stores",
        "3",
        "--items",
        "5",
        "--months",
        "24",
        "--end-month",
        "2026-10",
        "--seed",
        "7",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    back = _read_back(url, "demo_sales")
    assert f"wrote {len(back):,} rows" in out and "demo_sales" in out
    expected = generate_sales(stores=3, items=5, months=24, end_month="2026-10", seed=7)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


def test_cli_end_month_defaults_to_latest_complete_month(tmp_path, capsys):
    before = pd.Period(datetime.now(UTC).strftime("%Y-%m"), "M") - 1
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    main(["--url", url, "--stores", "1", "--items", "2", "--months", "3"])
    after = pd.Period(datetime.now(UTC).strftime("%Y-%m"), "M") - 1
    last = _read_back(url)["month"].max()
    assert pd.Period(last, "M") in (before, after)
    assert "sales" in capsys.readouterr().out


def test_cli_defaults_to_the_configured_source(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(
        "data_dir: data\n"
        "source: {url: 'sqlite:///data/src.db', table: my_sales, entity_columns: [store_id, item_id],\n"
        "         time_column: month, target_column: units}\n"
        "feature_store: {project: demo}\n"
        "predictions: {url: 'sqlite:///data/pred.db'}\n"
    )
    monkeypatch.setenv("FORECAST_CONFIG", str(config))
    main(["--stores", "2", "--items", "3", "--months", "6", "--end-month", "2025-06"])
    assert "my_sales" in capsys.readouterr().out
    assert len(_read_back(f"sqlite:///{tmp_path / 'data' / 'src.db'}", "my_sales")) > 0


def test_runs_as_a_module(tmp_path):
    url = f"sqlite:///{tmp_path / 'module.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forecasting.datasets.synthetic",
            "--url",
            url,
            "--stores",
            "2",
            "--items",
            "3",
            "--months",
            "12",
            "--end-month",
            "2026-10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert _read_back(url)["month"].max() == date(2026, 10, 1)


def test_the_options_off_leave_the_frame_as_it_was_and_their_truth_is_known():
    import numpy as np
    import pandas as pd

    from forecasting.core.calendar import month_calendar

    plain = generate_sales(stores=4, items=10, months=36, seed=11)
    off = generate_sales(stores=4, items=10, months=36, seed=11, intermittent_share=0.0, holiday_effect=0.0)
    pd.testing.assert_frame_equal(plain, off)
    assert plain.attrs["intermittent_items"] == []
    # The trading-day effect draws nothing: the same seed's sales scale month by month by the
    # month's trading days over the mean month's, to the power given (Poisson noise aside).
    base = generate_sales(stores=8, items=40, months=36, seed=11)
    effect = generate_sales(stores=8, items=40, months=36, seed=11, holiday_effect=2.0)
    months = sorted(base["month"].unique())
    days = np.array([month_calendar(m.year, m.month, "US")[0] for m in months], dtype=float)
    ratio = (effect.groupby("month")["units"].sum() / base.groupby("month")["units"].sum()).to_numpy()
    # log(ratio) = 2 x log(days / mean days) + Poisson noise: the slope is the elasticity given.
    slope, _ = np.polyfit(np.log(days / days.mean()), np.log(ratio), 1)
    assert slope == pytest.approx(2.0, abs=0.2)
    assert np.corrcoef(np.log(days), np.log(ratio))[0, 1] > 0.95
    sparse = generate_sales(stores=4, items=10, months=36, seed=11, intermittent_share=0.5)
    items = sparse.attrs["intermittent_items"]
    assert items and set(items) <= set(range(1, 11))
    zero_share = sparse.assign(zero=sparse["units"] == 0).groupby("item_id")["zero"].mean()
    assert zero_share[items].min() > 0.4  # sold in 15-45% of months
