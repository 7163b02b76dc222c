"""Features: the panel (entities × months), each feature checked against a hand-built series, and
the per-month parquet files build_features writes (and, on a backfill, leaves alone or rewrites
with the same values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.core.config import Config, load_config
from forecasting.core.months import month_end, month_range
from forecasting.data.panel import build_panel
from forecasting.features.catalogue import (
    CREATED,
    TIMESTAMP,
    active_entities,
    build_features,
    compute_features,
    feature_names,
)
from tests.helpers.config import demo_config_dict, write_config

KEYS = ["store", "item"]


def make_config(folder: Path, history_months: int | None = 24) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=KEYS,
        time_column="month",
        target_column="units",
        covariates=["price"],
        attributes=["region"],
        history_months=history_months,
    )
    raw["features"] = {"lags": [1, 2, 3, 6, 12], "rolling_windows": [3, 6, 12]}
    # Short windows are only valid with little to hold out (config refuses one with nothing to train).
    raw["model"]["validation_months"], raw["evaluation"]["holdout_months"] = 1, 1
    raw["horizon"] = 1  # and a horizon the short window can label
    return load_config(write_config(folder, raw))


def ms(month: str) -> pd.Timestamp:
    return pd.Timestamp(f"{month}-01")


def series_frame(store, item, first: str, units, price=None, region="north") -> pd.DataFrame:
    """Consecutive monthly rows of one entity, as extract leaves them (month starts)."""
    months = pd.period_range(first, periods=len(units), freq="M").to_timestamp()
    price = np.linspace(1.0, 2.0, len(units)) if price is None else price
    return pd.DataFrame(
        {"store": store, "item": item, "month": months, "units": units, "price": price, "region": region}
    )


# ----------------------------------------------------------------------------------------- panel


def test_panel_fills_gaps_with_zero_and_carries_covariates(tmp_path):
    config = make_config(tmp_path)
    snapshot = pd.DataFrame(
        {
            "store": [1, 1, 2, 2],
            "item": [10, 10, 10, 10],
            "month": [ms("2024-01"), ms("2024-04"), ms("2024-02"), ms("2024-03")],
            "units": [5, 7, 3, 4],
            "price": [1.0, 2.0, 1.5, 1.6],
            "region": ["north", "north", "south", "south"],
            "ignored": ["x", "y", "z", "w"],
        }
    )

    panel = build_panel(snapshot, config)

    # Entity keys become strings; each entity spans only its own first..last month.
    assert panel.keys.to_numpy().tolist() == [["1", "10"], ["2", "10"]]
    assert panel.first_month == 2024 * 12 and panel.months == 4
    nan = np.nan
    np.testing.assert_array_equal(panel.sales, [[5.0, 0.0, 0.0, 7.0], [nan, 3.0, 4.0, nan]])
    np.testing.assert_array_equal(panel.observed, [[True, False, False, True], [False, True, True, False]])
    np.testing.assert_array_equal(panel.covariates["price"], [[1.0, 1.0, 1.0, 2.0], [nan, 1.5, 1.6, nan]])
    rows, cols = np.nonzero(panel.in_span())
    assert panel.attribute("region", rows, cols).tolist() == ["north"] * 4 + ["south"] * 2
    assert set(panel.covariates) == {"price"} and set(panel.attributes) == {"region"}
    assert panel.key_dtypes == {"store": np.dtype("int64"), "item": np.dtype("int64")}


# ------------------------------------------------------------------------------ compute_features

A_UNITS = [3.0, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]  # 2023-01 .. 2024-03
B_UNITS = [10.0, 0, 20, 40]  # 2023-11 .. 2024-02, crosses a year end


@pytest.fixture
def features(tmp_path):
    config = make_config(tmp_path)
    snapshot = pd.concat(
        [
            series_frame(1, 1, "2023-01", A_UNITS, price=np.arange(1.0, 16.0), region="north"),
            series_frame(2, 7, "2023-11", B_UNITS, price=[2.0, 4.0, 6.0, 8.0], region="south"),
        ],
        ignore_index=True,
    )
    return compute_features(build_panel(snapshot, config), config)


def _entity(features: pd.DataFrame, store: str) -> pd.DataFrame:
    return features[features["store"] == store].reset_index(drop=True)


@pytest.mark.parametrize("store, units", [("1", A_UNITS), ("2", B_UNITS)])
@pytest.mark.parametrize("k", [1, 2, 3, 6, 12])
def test_lag_k_is_the_target_k_minus_1_months_earlier(features, store, units, k):
    rows = _entity(features, store)
    # lag 1 is month t itself; lag k at t is the target at t-k+1, NaN before the entity's history.
    expected = [units[i - k + 1] if i >= k - 1 else np.nan for i in range(len(units))]
    np.testing.assert_array_equal(rows[f"sales_lag_{k}"].to_numpy(), expected)


@pytest.mark.parametrize("store, units", [("1", A_UNITS), ("2", B_UNITS)])
@pytest.mark.parametrize("w", [3, 6, 12])
def test_rolling_mean_and_std_match_pandas(features, store, units, w):
    rows = _entity(features, store)
    series = pd.Series(units)
    mean, std = series.rolling(w).mean(), series.rolling(w).std()
    np.testing.assert_allclose(rows[f"sales_mean_{w}"].to_numpy(), mean.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(rows[f"sales_std_{w}"].to_numpy(), std.to_numpy(), rtol=1e-12)
    # NaN until a full window of the entity's own months exists (no bleed from the entity before).
    assert rows[f"sales_mean_{w}"].isna().tolist() == [i < w - 1 for i in range(len(units))]


def test_rolling_values_by_hand(features):
    a = _entity(features, "1")
    assert a.loc[2, "sales_mean_3"] == pytest.approx((3 + 1 + 4) / 3)
    assert a.loc[2, "sales_std_3"] == pytest.approx(np.std([3, 1, 4], ddof=1))
    assert a.loc[14, "sales_mean_12"] == pytest.approx(np.mean(A_UNITS[3:15]))


def test_calendar_history_and_timestamps(features):
    a, b = _entity(features, "1"), _entity(features, "2")

    assert a["month_of_year"].tolist() == [float(m) for m in [*range(1, 13), 1, 2, 3]]
    assert b["month_of_year"].tolist() == [11.0, 12.0, 1.0, 2.0]
    # Months of history so far, capped at the lookback (12) so a row does not depend on the window.
    assert a["history_months"].tolist() == [float(min(i + 1, 12)) for i in range(15)]
    assert b["history_months"].tolist() == [1.0, 2.0, 3.0, 4.0]

    # event_timestamp = month_end(t): the first instant of t+1, in UTC.
    expected = [
        pd.Timestamp(f"{m}", tz="UTC") for m in ["2023-12-01", "2024-01-01", "2024-02-01", "2024-03-01"]
    ]
    assert b[TIMESTAMP].tolist() == expected
    assert str(b[TIMESTAMP].dt.tz) == "UTC"
    assert a[TIMESTAMP].iloc[0] == pd.Timestamp("2023-02-01", tz="UTC")
    assert (a[CREATED] == a[TIMESTAMP]).all()


def test_covariates_and_attributes(features):
    b = _entity(features, "2")
    assert b["price"].tolist() == [2.0, 4.0, 6.0, 8.0]
    np.testing.assert_array_equal(b["price_mean_3"].to_numpy(), [np.nan, np.nan, 4.0, 6.0])
    assert b["region"].tolist() == ["south"] * 4
    assert b["region"].dtype == "string"


def test_feature_columns_are_the_declared_ones(features, tmp_path):
    config = make_config(tmp_path / "names")
    assert list(features.columns) == [*KEYS, *feature_names(config), "_m", TIMESTAMP, CREATED]


# ------------------------------------------------------------------------------- build_features

M = pd.Period("2024-12", "M")  # history_months 24: window 2023-01 .. 2024-12, lookback 12


def history() -> pd.DataFrame:
    """Four entities over 2022-01 .. 2025-03: two always listed, one launched, one discontinued."""
    rng = np.random.default_rng(0)
    frames = [
        series_frame(1, 1, "2022-01", rng.poisson(20, 39).astype(float), rng.uniform(1, 3, 39)),
        series_frame(1, 2, "2022-01", rng.poisson(5, 39).astype(float), rng.uniform(1, 3, 39), "south"),
        series_frame(2, 1, "2024-03", rng.poisson(8, 13).astype(float), rng.uniform(1, 3, 13)),
        series_frame(2, 2, "2022-01", rng.poisson(9, 26).astype(float), rng.uniform(1, 3, 26)),  # .. 2024-02
    ]
    return pd.concat(frames, ignore_index=True)


def window(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """What extract would read for month: rows from the window start through month."""
    start = (month - (config.source.history_months - 1)).to_timestamp()
    return snapshot[(snapshot["month"] >= start) & (snapshot["month"] <= month.to_timestamp())]


def written(config: Config) -> dict[str, Path]:
    return {p.stem: p for p in sorted(paths.feature_table(config).iterdir())}


def test_build_features_writes_one_file_per_month_with_a_full_lookback(tmp_path):
    config = make_config(tmp_path)
    snapshot = history()
    # Rows after M (which extract would never read) must not produce files either.
    run_input = snapshot[snapshot["month"] >= ms("2023-01")]

    result = build_features(run_input, config, M)

    # The first month whose 12-month lookback lies in 2023-01 .. 2024-12 is 2023-12.
    expected_months = [str(m) for m in month_range(pd.Period("2023-12", "M"), M)]
    files = written(config)
    assert list(files) == expected_months
    assert all(p.suffix == ".parquet" for p in files.values())
    assert (result.months_written, result.first_month, result.last_month) == (13, "2023-12", "2024-12")
    assert result.entities == 4

    total = 0
    for month, path in files.items():
        rows = pd.read_parquet(path)
        total += len(rows)
        assert "_m" not in rows.columns
        assert (rows[TIMESTAMP] == month_end(pd.Period(month, "M")).tz_localize("UTC")).all()
        listed = (
            {("1", "1"), ("1", "2")}
            | ({("2", "1")} if month >= "2024-03" else set())
            | ({("2", "2")} if month <= "2024-02" else set())
        )
        assert set(map(tuple, rows[KEYS].to_numpy().tolist())) == listed
        # Entities listed throughout have every feature: their whole lookback is in the window.
        always = rows[rows["store"] == "1"]
        assert len(always) == 2
        assert always["sales_lag_12"].notna().all() and always["sales_std_12"].notna().all()
    assert result.rows_written == total


def _signature(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    return pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()


EARLIER = pd.Period("2024-09", "M")  # window 2022-10 .. 2024-09: writes 2023-09 .. 2024-09


def _run_then_backfill(config: Config):
    """Build features for M, then for EARLIER; the files and frames of M's run, and EARLIER's result."""
    snapshot = history()
    build_features(window(snapshot, config, M), config, M)
    signatures = {month: _signature(path) for month, path in written(config).items()}
    frames = {month: pd.read_parquet(path) for month, path in written(config).items()}
    result = build_features(window(snapshot, config, EARLIER), config, EARLIER)
    return signatures, frames, result


def test_backfill_leaves_later_months_alone_and_rewrites_earlier_ones(tmp_path):
    config = make_config(tmp_path)
    before, frames_before, result = _run_then_backfill(config)

    assert (result.first_month, result.last_month) == ("2023-09", "2024-09")
    after = written(config)
    assert list(after) == [str(m) for m in month_range(pd.Period("2023-09", "M"), M)]
    rewritten = 0
    for month, path in after.items():
        if month > str(EARLIER):
            assert _signature(path) == before[month], f"{month} was touched"
        elif month in before:
            assert _signature(path)[:2] != before[month][:2], f"{month} was not rewritten"
            # Same rows, same columns, same values (exactly: see the byte-identical test below).
            pd.testing.assert_frame_equal(
                pd.read_parquet(path), frames_before[month], check_exact=False, rtol=1e-12, atol=0
            )
            rewritten += 1
    assert rewritten == 10  # 2023-12 .. 2024-09


def test_backfill_rewrites_earlier_months_byte_identically(tmp_path):
    config = make_config(tmp_path)
    _, frames_before, _ = _run_then_backfill(config)

    for month, path in written(config).items():
        if month in frames_before and month <= str(EARLIER):
            again = pd.read_parquet(path)
            assert _frame_bytes(again) == _frame_bytes(frames_before[month]), month


def test_backfill_is_identical_for_an_entity_with_a_gap_at_the_window_start(tmp_path):
    config = make_config(tmp_path, history_months=15)  # a run of M writes M-3 .. M
    gap = [M - 15, *month_range(M - 11, M)]  # one row at M-15 (outside M's window), none in M-14 .. M-12
    snapshot = pd.DataFrame(
        {
            "store": 1,
            "item": 1,
            "month": [m.to_timestamp() for m in gap],
            "units": np.arange(1.0, len(gap) + 1),
            "price": 1.0,
            "region": "north",
        }
    )

    build_features(window(snapshot, config, M - 1), config, M - 1)
    backfilled = pd.read_parquet(written(config)[str(M - 1)])
    build_features(window(snapshot, config, M), config, M)
    later = pd.read_parquet(written(config)[str(M - 1)])

    pd.testing.assert_frame_equal(later, backfilled)


# ------------------------------------------------------------------------------ active_entities


def test_active_entities_are_those_with_a_row_in_m(tmp_path):
    config = make_config(tmp_path)
    snapshot = window(history(), config, M)
    gone_before_m = {("2", "2")}

    active = active_entities(build_panel(snapshot, config), M)

    assert list(active.columns) == KEYS
    assert active.dtypes.tolist() == [object, object]
    assert sorted(map(tuple, active.to_numpy().tolist())) == [("1", "1"), ("1", "2"), ("2", "1")]
    assert not gone_before_m & set(map(tuple, active.to_numpy().tolist()))
    # Duplicate rows in M (caught later by validation) still give each entity once.
    doubled = pd.concat([snapshot, snapshot[snapshot["month"] == ms("2024-12")]])
    pd.testing.assert_frame_equal(active_entities(build_panel(doubled, config), M), active)

    # An entity with no row in the month is not forecast, even if it sold the month before.
    def keys_in(month: str) -> set[tuple[str, str]]:
        panel = build_panel(snapshot, config)
        return set(map(tuple, active_entities(panel, pd.Period(month, "M")).to_numpy().tolist()))

    assert keys_in("2024-02") == {("1", "1"), ("1", "2"), ("2", "2")}
    assert keys_in("2024-03") == {("1", "1"), ("1", "2"), ("2", "1")}
    assert keys_in("2025-01") == set()


def test_chunks_of_entities_write_the_same_files_as_one_chunk(tmp_path, monkeypatch):
    """Feature work goes chunk by chunk of entities (each a task on a Dask cluster): the files are
    byte for byte those of one chunk, whatever the chunk size."""
    from forecasting.features import catalogue as features

    snapshot = window(history(), make_config(tmp_path / "x"), M)
    files = {}
    for size in (1, 3, 10_000):
        config = make_config(tmp_path / str(size))
        monkeypatch.setattr(features, "CHUNK_ENTITIES", size)
        build_features(snapshot, config, M)
        files[size] = {month: path.read_bytes() for month, path in written(config).items()}
    assert files[1] and files[1] == files[3] == files[10_000]
