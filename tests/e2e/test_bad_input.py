"""Bad source data stops the DAG at validation, and bad forecasts stop it before publish: the
failed expectation is named, nothing downstream runs, and the predictions table is exactly as
it was."""

from __future__ import annotations

import pandas as pd
import pytest

from forecasting.core.names import FORECAST_STAGES
from tests.e2e.test_pipeline_e2e import read_table, run_dag, task_states
from tests.helpers.config import END_MONTH, demo_config_dict, write_config

pytestmark = pytest.mark.slow  # runs the whole DAG

DOWNSTREAM = list(FORECAST_STAGES[FORECAST_STAGES.index("build_features") :])


@pytest.fixture(scope="module")
def published(airflow_db, tmp_path_factory, synthetic_sales):
    """A deployment whose month has already been published once with good data."""
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database

    folder = tmp_path_factory.mktemp("bad-input")
    path = write_config(folder, demo_config_dict(folder))
    config = load_config(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORECAST_CONFIG", str(path))
        seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
        assert str(run_dag().state) == "success"
        yield config, read_table(config)


def _in_month(frame: pd.DataFrame, month: str) -> pd.Series:
    return pd.to_datetime(frame["month"]).dt.to_period("M") == pd.Period(month, "M")


def null_keys(sales):
    sales = sales.astype({"store_id": "Int64"})
    sales.loc[sales.index[:5], "store_id"] = pd.NA
    return sales


def negative_sales(sales):
    sales.loc[sales.index[10:13], "units"] = -4.0
    return sales


def duplicated_entity_month(sales):
    return pd.concat([sales, sales.iloc[[20, 21]]], ignore_index=True)


def missing_month(sales):
    return sales[~_in_month(sales, END_MONTH)]


def wrong_column_type(sales):
    sales = sales.astype({"units": object})
    sales.loc[sales.index[::50], "units"] = "n/a"
    return sales


def text_in_a_real_column(sales):
    """One text value in a REAL column: SQLite keeps it as text, the rest as numbers."""
    sales = sales.astype({"price": object})
    sales.loc[sales.index[33], "price"] = "twelve"
    return sales


def time_not_a_date(sales):
    """Text that is not a date sorts outside every window: the window's WHERE used to drop it."""
    sales = sales.assign(month=pd.to_datetime(sales["month"]).dt.strftime("%Y-%m-%d"))
    sales.loc[sales.index[[5, 6]], "month"] = "notadate"
    return sales


def infinite_sales(sales):
    sales.loc[sales.index[8], "units"] = float("inf")
    return sales


def infinite_covariate(sales):
    sales.loc[sales.index[9], "price"] = float("-inf")
    return sales


def blob_in_a_numeric_column(sales):
    """Bytes that are not UTF-8 in a REAL column (SQLite stores a BLOB): a UnicodeDecodeError
    naming no column, retried, before."""
    sales = sales.astype({"units": object})
    sales.loc[sales.index[12], "units"] = b"\xff\xfe\x00"
    return sales


def implausible_price(sales):
    """1e300 is finite: it passed validation, and train died in XGBoost naming no row."""
    sales.loc[sales.index[14], "price"] = 1e300
    return sales


# case: (corrupt the sales, the failed expectation the message names, SQL types for to_sql)
CASES = {
    "null keys": (null_keys, "expect_column_values_to_not_be_null(store_id)", {}),
    "negative sales": (negative_sales, "expect_column_values_to_be_between(units", {}),
    "duplicated entity-month": (duplicated_entity_month, "expect_compound_columns_to_be_unique", {}),
    "missing month": (missing_month, "expect_column_distinct_values_to_contain_set", {}),
    "sales stored as text with a word": (
        wrong_column_type,
        "expect_column_values_to_be_null(units__unreadable)",
        {},
    ),
    "one text value in a numeric column": (
        text_in_a_real_column,
        "rows hold a price that is not a number (e.g. 'twelve')",
        {"price": "REAL"},
    ),
    "a time that is not a date": (
        time_not_a_date,
        "rows hold a month that is not a date (e.g. 'notadate')",
        {"month": "TEXT"},
    ),
    "a blob in a numeric column": (
        blob_in_a_numeric_column,
        "rows hold a units that is not a number (e.g. '<3-byte blob fffe00>')",
        {"units": "REAL"},
    ),
    "an implausible price": (
        implausible_price,
        "expect_column_values_to_be_between(price, min -1e+15, max 1e+15)",
        {},
    ),
    "infinite sales": (infinite_sales, "expect_column_values_to_be_between(units, min 0, finite)", {}),
    "infinite covariate": (infinite_covariate, "expect_column_values_to_be_between(price, finite)", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_validation_and_writes_nothing(case, published, synthetic_sales, capfd, monkeypatch):
    from forecasting.datasets.synthetic import seed_source_database

    config, before = published
    corrupt, named, types = CASES[case]
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    # Written through pandas, without the seeded table's primary key, so that the database
    # accepts the bad rows and validation is what has to catch them.
    _replace_source(config, corrupt(synthetic_sales.copy()), types)
    capfd.readouterr()
    try:
        dag_run = run_dag()
        output = "".join(capfd.readouterr())
        states = task_states(dag_run)
        assert states["extract"] == "success"
        assert states["validate"] == "failed", states
        assert all(states[t] == "upstream_failed" for t in DOWNSTREAM), states
        assert "Validation of" in output and named in output, f"{named!r} not in the failure message"
        after = read_table(config)
        pd.testing.assert_frame_equal(before, after)
    finally:
        seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)


def _replace_source(config, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """Through sqlite3 itself, so that the column types (affinities) decide what is stored."""
    import sqlite3

    frame = frame.copy()
    if pd.api.types.is_datetime64_any_dtype(frame["month"]):
        frame["month"] = frame["month"].dt.strftime("%Y-%m-%d")
    with sqlite3.connect(config.source.database.url.removeprefix("sqlite:///")) as conn:
        frame.to_sql(
            config.source.table, conn, if_exists="replace", index=False, dtype={"month": "DATE", **types}
        )
    conn.close()


def test_bad_forecasts_fail_their_checks_and_publish_nothing(published, capfd, monkeypatch):
    import forecasting.modeling.predict

    config, before = published
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    honest = forecasting.modeling.predict.forecast

    def runaway(*args, **kwargs):  # a model gone wrong: forecasts 1,000 times too high
        frame = honest(*args, **kwargs)
        return frame.assign(prediction=frame["prediction"] * 1000)

    monkeypatch.setattr(forecasting.modeling.predict, "forecast", runaway)
    capfd.readouterr()
    dag_run = run_dag()
    output = "".join(capfd.readouterr())
    states = task_states(dag_run)
    assert states["predict"] == "success" and states["check_forecasts"] == "failed", states
    assert states["publish"] == "upstream_failed", states
    assert "expect_column_values_to_be_between(prediction_to_history_max, max 10)" in output
    pd.testing.assert_frame_equal(before, read_table(config))


def test_every_file_a_run_writes_is_private(published):
    """Model files were written 0644 (XGBoost's own writer) and GX's Data Docs too, beside
    everything else in data_dir at 0600 (issue 23, fault 16)."""
    config, _ = published
    files = [p for p in config.data_dir.rglob("*") if p.is_file()]
    modes = {str(p.relative_to(config.data_dir)): p.stat().st_mode & 0o777 for p in files}
    assert any(name.endswith("model.ubj") for name in modes) and any("data_docs" in name for name in modes)
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}
