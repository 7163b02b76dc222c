"""The snapshot gate runs real Great Expectations checkpoints; each case breaks one rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import Config, parse_config
from forecasting.data.checkpoint import DataValidationError, ValidationReport
from forecasting.data.extract import typed_snapshot
from forecasting.data.validate import validate_snapshot as validate_typed


def validate_snapshot(frame: pd.DataFrame, config: Config, month: pd.Period, docs_dir: Path):
    """Validate ``frame`` as extract would have written it (typed, unreadable values set aside)."""
    return validate_typed(typed_snapshot(frame, config.source), config, month, docs_dir)


MONTH = pd.Period("2024-03", "M")
STORES, ITEMS, MONTHS = 5, 4, 24  # 20 entities, so 4 rows in a month is exactly 20%


@pytest.fixture
def config(tmp_path: Path) -> Config:
    raw = {
        "data_dir": str(tmp_path),
        "source": {
            "url": "sqlite:///x.db",
            "table": "sales",
            "entity_columns": ["store_id", "item_id"],
            "time_column": "month",
            "target_column": "units",
            "covariates": ["price", "promo"],
            "attributes": ["store_size", "region", "category"],
        },
        "feature_store": {"project": "t"},
        "predictions": {"url": "sqlite:///p.db"},
    }
    return parse_config(raw, tmp_path / "cfg.yaml")


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    return tmp_path / "docs"


@pytest.fixture
def snapshot() -> pd.DataFrame:
    """A clean snapshot: every entity in every month up to and including MONTH."""
    rng = np.random.default_rng(0)
    months = pd.period_range(end=MONTH, periods=MONTHS, freq="M").to_timestamp(how="start")
    index = pd.MultiIndex.from_product(
        [range(1, STORES + 1), range(1, ITEMS + 1), months], names=["store_id", "item_id", "month"]
    )
    frame = index.to_frame(index=False)
    n = len(frame)
    return frame.assign(
        units=rng.gamma(2.0, 20.0, n).round(1),
        price=rng.uniform(1, 10, n).round(2),
        promo=rng.integers(0, 2, n),
        store_size=frame["store_id"] * 100,
        region=np.where(frame["store_id"] % 2 == 0, "north", "south"),
        category=np.where(frame["item_id"] <= 2, "food", "drink"),
    )


def in_month(frame: pd.DataFrame, month: str) -> pd.Series:
    return frame["month"] == pd.Timestamp(month)


def assert_fails(
    frame: pd.DataFrame, config: Config, docs_dir: Path, expectation: str, column: str | None
) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate_snapshot(frame, config, MONTH, docs_dir)
    err = info.value
    assert any(f["expectation"] == expectation and f["column"] == column for f in err.failures), str(err)
    message = str(err)
    assert message.startswith("Validation of 2024-03 failed")
    assert f"{expectation}({column or ''}" in message
    assert "Data Docs: " in message and (docs_dir / "index.html").is_file()  # built despite failing
    return err


def test_valid_snapshot_passes_and_builds_data_docs(snapshot, config, docs_dir):
    report = validate_snapshot(snapshot, config, MONTH, docs_dir)

    assert isinstance(report, ValidationReport)
    assert report.success and report.failures == []
    assert report.month == "2024-03"
    assert (report.rows, report.rows_in_month) == (STORES * ITEMS * MONTHS, STORES * ITEMS)
    # 9 columns exist, 4 types, 4 readable (month, units, price, promo), 4 not-null,
    # target >= 0 and finite, 2 covariates finite, 3 plausible (target, covariates), unique keys,
    # month coverage, row count
    assert report.expectations == 30
    assert report.data_docs == str(docs_dir.resolve() / "index.html")
    assert Path(report.data_docs).is_file()
    assert list(snapshot.columns) == [
        "store_id",
        "item_id",
        "month",
        "units",
        "price",
        "promo",
        "store_size",
        "region",
        "category",
    ]  # the caller's frame is not modified


def test_first_month_of_data_skips_the_row_count_check(snapshot, config, docs_dir):
    report = validate_snapshot(snapshot[in_month(snapshot, "2024-03")], config, MONTH, docs_dir)
    assert report.success and report.expectations == 29  # no row-count check; 3 plausible ones


def test_null_entity_key_fails(snapshot, config, docs_dir):
    snapshot.loc[[0, 50, 100], "store_id"] = None
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_not_be_null", "store_id")
    assert "3 unexpected of 480 rows" in str(err)


def test_negative_sales_fail(snapshot, config, docs_dir):
    snapshot.loc[[3, 7], "units"] = -5.0
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_between", "units")
    assert "expect_column_values_to_be_between(units, min 0" in str(err)
    assert "2 unexpected" in str(err)


def test_duplicated_entity_month_fails(snapshot, config, docs_dir):
    duplicated = pd.concat([snapshot, snapshot.iloc[[10]]], ignore_index=True)
    assert_fails(
        duplicated, config, docs_dir, "expect_compound_columns_to_be_unique", "store_id, item_id, month"
    )


def test_missing_month_m_fails(snapshot, config, docs_dir):
    err = assert_fails(
        snapshot[~in_month(snapshot, "2024-03")],
        config,
        docs_dir,
        "expect_column_distinct_values_to_contain_set",
        "month__yyyy_mm",
    )
    assert "missing 2024-03" in str(err)


def test_month_missing_mid_history_fails(snapshot, config, docs_dir):
    err = assert_fails(
        snapshot[~in_month(snapshot, "2023-06")],
        config,
        docs_dir,
        "expect_column_distinct_values_to_contain_set",
        "month__yyyy_mm",
    )
    assert "missing 2023-06" in str(err)
    assert len(err.failures) == 1


def test_target_stored_as_text_is_read_as_numbers_and_the_rest_named(snapshot, config, docs_dir):
    # A column the database hands over as text: numbers in it are numbers, anything else is named.
    snapshot["units"] = snapshot["units"].astype(str).astype(object)
    snapshot.loc[5, "units"] = "n/a"
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_null", "units__unreadable")
    assert "1 of 480 rows hold a units that is not a number (e.g. 'n/a')" in str(err)
    assert len(err.failures) == 1, str(err)  # not reported a second time as a null


def test_one_text_value_in_a_numeric_column_is_named(snapshot, config, docs_dir):
    # What SQLite hands over for a REAL column holding one text value: floats and one str.
    snapshot["price"] = snapshot["price"].astype(object)
    snapshot.loc[7, "price"] = "twelve"
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_null", "price__unreadable")
    assert "1 of 480 rows hold a price that is not a number (e.g. 'twelve')" in str(err)


@pytest.mark.parametrize("column", ["units", "price"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_numbers_fail(snapshot, config, docs_dir, column, value):
    snapshot.loc[[2, 9], column] = value
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_between", column)
    assert f"expect_column_values_to_be_between({column}, " in str(err) and "finite)" in str(err)
    assert "2 unexpected of 480 rows" in str(err) and ("inf" in str(err))


@pytest.mark.parametrize("value", ["notadate", "2024-02-30", "99999-01-01", "1500-01-01", "yesterday"])
def test_times_that_are_not_dates_in_range_fail_with_a_count(snapshot, config, docs_dir, value):
    snapshot["month"] = snapshot["month"].dt.strftime("%Y-%m-%d").astype(object)
    snapshot.loc[[4, 40], "month"] = value
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_null", "month__unreadable")
    assert f"2 of 480 rows hold a month that is not a date (e.g. {value!r})" in str(err)
    labels = [f["label"] for f in err.failures]
    assert not any(label.startswith("expect_column_values_to_not_be_null(month") for label in labels)


def test_missing_configured_column_fails_without_crashing(snapshot, config, docs_dir):
    err = assert_fails(snapshot.drop(columns=["price"]), config, docs_dir, "expect_column_to_exist", "price")
    # Expectations that read the column report it missing instead of raising a KeyError.
    (type_check,) = [f for f in err.failures if f["expectation"] == "expect_column_values_to_be_in_type_list"]
    assert type_check["column"] == "price"
    assert type_check["details"] == "column 'price' is missing from the snapshot"


def test_row_count_collapse_fails(snapshot, config, docs_dir):
    march = snapshot.index[in_month(snapshot, "2024-03")]
    collapsed = snapshot.drop(index=march[4:])  # 4 of 20 rows left
    err = assert_fails(collapsed, config, docs_dir, "expect_table_row_count_to_be_between", None)
    assert "observed 4 rows" in str(err) and "2024-02 had 20" in str(err)
    assert err.report.rows_in_month == 4


@pytest.mark.parametrize(
    "times",
    [
        pd.Series(
            pd.to_datetime(["2024-03-01", None, "2023-12-31 23:59:59", "1700-06-15 10:00"], format="ISO8601")
        ),
        pd.Series(pd.to_datetime(["2024-03-01 00:30", "2024-02-29 23:00"]).tz_localize("Europe/Berlin")),
        pd.Series(["2024-03-01", "notadate", None, "2024-03-15 10:00:00"], dtype=object),
        pd.Series([], dtype="datetime64[ns]"),
        pd.Series([pd.NaT, pd.NaT]),
    ],
    ids=["naive", "tz-aware", "text", "empty", "all-missing"],
)
def test_month_keys_are_the_months_strftime_would_print(times):
    from forecasting.data.validate import month_keys

    keys = month_keys(pd.DataFrame({"month": times}), "month")

    parsed = pd.to_datetime(times, errors="coerce")
    expected = parsed.dt.strftime("%Y-%m").astype(object).where(parsed.notna(), None)
    assert keys.astype(object).where(keys.notna(), None).tolist() == expected.tolist()
    assert list(keys.cat.categories) == sorted(set(expected.dropna()))  # present months only


def test_validation_leaves_pandas_options_as_they_were(snapshot, config, docs_dir):
    before = pd.get_option("mode.copy_on_write")
    validate_snapshot(snapshot, config, MONTH, docs_dir)
    with pytest.raises(DataValidationError):
        validate_snapshot(snapshot.drop(columns=["price"]), config, MONTH, docs_dir)
    assert pd.get_option("mode.copy_on_write") == before


@pytest.mark.parametrize("column", ["units", "price"])
def test_implausible_magnitudes_fail_naming_entity_and_month(snapshot, config, docs_dir, column):
    """1e300 passed validation, then train died in XGBoost naming no row (issue 23, fault 4)."""
    snapshot.loc[9, column] = 1e300
    row = snapshot.loc[9]
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_between", column)
    month = f"{row['month']:%Y-%m}"
    named = f"store_id={row['store_id']}, item_id={row['item_id']} in {month}: {column} 1e+300"
    assert f"expect_column_values_to_be_between({column}, " in str(err) and "max 1e+15)" in str(err)
    assert f"1 unexpected of 480 rows: {named}" in str(err), str(err)
    assert len(err.failures) == 1  # a finite value: not named a second time as infinite


def test_infinity_is_named_once_as_not_finite(snapshot, config, docs_dir):
    snapshot.loc[3, "units"] = np.inf
    err = assert_fails(snapshot, config, docs_dir, "expect_column_values_to_be_between", "units")
    assert len(err.failures) == 1 and "finite)" in str(err), str(err)


def test_attributes_that_change_or_go_missing_pass_saying_which_value_wins(snapshot, config, docs_dir):
    """They passed silently (issue 23, fault 5): the report names them and what the features
    make of them, and the panel the features are read from does exactly that."""
    from forecasting.data.panel import build_panel

    entity = (snapshot["store_id"] == 1) & (snapshot["item_id"] == 1)
    snapshot.loc[entity & (snapshot["month"] >= pd.Timestamp("2024-02-01")), "store_size"] = 120
    snapshot.loc[entity & in_month(snapshot, "2024-01"), "region"] = None
    snapshot.loc[entity & in_month(snapshot, "2022-04"), "region"] = None  # the entity's first month

    report = validate_snapshot(snapshot, config, MONTH, docs_dir)

    assert report.success and len(report.notes) == 2, report.notes
    assert report.notes[0] == (
        "store_size changes within 1 entity (e.g. store_id=1, item_id=1: 100, then 120 from 2024-02): "
        "each month's features use that month's value"
    )
    assert report.notes[1].startswith("region is null in 2 rows of 1 entity (e.g. store_id=1, item_id=1 in 2022-04)")
    assert "Note: store_size changes within 1 entity" in report.summary()

    panel = build_panel(typed_snapshot(snapshot, config.source), config)
    row = 0  # store 1, item 1: the first entity
    columns = np.arange(panel.months)
    months = [str(pd.Period(f"{m // 12}-{m % 12 + 1:02d}", "M")) for m in panel.first_month + columns]
    sizes = dict(zip(months, panel.attribute("store_size", np.zeros_like(columns), columns), strict=True))
    regions = dict(zip(months, panel.attribute("region", np.zeros_like(columns), columns), strict=True))
    assert panel.keys.iloc[row].tolist() == ["1", "1"]
    assert (sizes["2024-01"], sizes["2024-02"], sizes["2024-03"]) == (100.0, 120.0, 120.0)
    assert pd.isna(regions["2022-04"]) and regions["2022-05"] == "south"  # nothing before its first value
    assert regions["2024-01"] == "south"  # the month's null: the last value carries forward


def test_data_docs_are_private_like_every_file_in_data_dir(snapshot, config, docs_dir):
    """GX wrote its pages 0644 (issue 23, fault 16)."""
    validate_snapshot(snapshot, config, MONTH, docs_dir)
    modes = {p.name: p.stat().st_mode & 0o777 for p in docs_dir.rglob("*") if p.is_file()}
    assert "index.html" in modes and set(modes.values()) == {0o600}
