"""Extract from a real PostgreSQL source: the ADBC (Arrow) path and the SQLAlchemy row reader give
the same snapshot, value for value and dtype for dtype, on normal and hostile rows, for a table
and for a query, inside and around the window; and the same validation result."""

from __future__ import annotations

import datetime
import logging

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

import forecasting.data.extract as extract_module
from forecasting.core.config import Config
from forecasting.data.checkpoint import DataValidationError
from forecasting.data.extract import read_window
from forecasting.data.postgres_read import connection_string, session_options
from forecasting.data.validate import validate_snapshot
from tests.data.test_extract import M, make_config

PG_COLUMNS = (
    "k text, month timestamptz, units float8, price numeric(10, 2), promo int2, big int8,"
    " flag bool, label varchar(20), code char(3), since date, ratio float4, qty int4, amount numeric,"
    " note text"
)
PG_ROWS = [
    (
        "a",
        "2024-01-01 00:30+02",
        1.0,
        "2.50",
        1,
        2**40,
        True,
        'q"u,o\nte',
        "ab",
        "2020-02-29",
        0.1,
        7,
        "1e400",
        "x",
    ),
    ("b", "2024-06-30 23:59:59+00", None, None, None, None, None, None, None, None, None, None, None, None),
    (
        "c",
        "2023-06-01 00:00-05",
        float("nan"),
        "NaN",
        0,
        -1,
        False,
        "",
        "x",
        "1999-12-31",
        1e-7,
        0,
        "NaN",
        "x",
    ),
    (
        "d",
        "2024-02-01",
        float("inf"),
        "1.10",
        2,
        3,
        True,
        "é",
        "é",
        "2024-02-01",
        float("-inf"),
        -5,
        "-Infinity",
        "x",
    ),
    (
        "e",
        None,
        2.0,
        "3",
        4,
        5,
        False,
        "x",
        "y",
        "0001-01-01",
        2.5,
        2**31 - 1,
        "123456789012345678901.5",
        "x",
    ),
    ("f", "1500-01-01", 1.0, "1", 1, 1, True, "x", "y", "2024-01-01", 3.4e38, 1, "0.1", "x"),
    ("g", "infinity", 1.0, "1", 1, 1, True, "x", "y", "2024-01-01", 1.4e-45, 1, "-0", "x"),
    (
        "h",
        "2024-03-15 12:00",
        -0.0,
        "-0.00",
        -1,
        -(2**63),
        None,
        "100%",
        "%s",
        None,
        16777217.0,
        None,
        "3",
        None,
    ),
    ("old", "2022-01-01", 1.0, "1", 1, 1, True, "x", "y", "2024-01-01", 1.0, 1, "1", "x"),
]


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database (dropped afterwards) holding ``sales`` with most column types and
    hostile values: NaN, infinities, -0, nulls, text with quotes, commas, newlines and %."""
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(postgres_server, prefix="forecast_extract_pg") as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE sales ({PG_COLUMNS})")
            cursor = conn.connection.driver_connection.cursor()
            cursor.executemany(f"INSERT INTO sales VALUES ({', '.join(['%s'] * len(PG_ROWS[0]))})", PG_ROWS)
        engine.dispose()
        yield url


@pytest.fixture
def postgres_source(postgres_url, tmp_path) -> Config:
    return make_config(tmp_path, url=postgres_url, table="sales", covariates=["price", "ratio", "note"])


def execute(config: Config, *statements: str) -> None:
    engine = sa.create_engine(config.source.database.url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def without_adbc(config: Config) -> Config:
    return config.model_copy(update={"source": config.source.model_copy(update={"postgres_adbc": False})})


def both_paths(config: Config, monkeypatch, month: pd.Period = M) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """The window read through ADBC and through the row reader, and what the ADBC read returned
    (None where it fell back)."""
    returned: list = []
    real = extract_module.read_postgres_arrow

    def spy(*args):
        returned.append(real(*args))
        return returned[-1]

    monkeypatch.setattr(extract_module, "read_postgres_arrow", spy)
    through_adbc = read_window(config, month)
    through_rows = read_window(without_adbc(config), month)
    assert len(returned) == 1  # the row reader's read did not go near ADBC
    return through_adbc, through_rows, returned


def test_adbc_and_row_reader_agree_on_every_type(postgres_source, monkeypatch):
    # psycopg cannot load 'infinity' as a datetime; and a time before 1678 is unreadable text
    # whose spelling differs between psycopg's datetime and ADBC's ("+00:00" against none).
    execute(postgres_source, "DELETE FROM sales WHERE k IN ('f', 'g')")

    through_adbc, through_rows, returned = both_paths(postgres_source, monkeypatch)

    assert returned[0] is not None  # read through ADBC, not fallen back
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    rows = through_adbc.set_index("k")
    assert sorted(rows.index) == ["a", "b", "c", "d", "e", "h"]  # "old" is before the window
    assert (
        rows.loc["a", "label"] == 'q"u,o\nte'
        and rows.loc["a", "code"] == "ab "
        and rows.loc["a", "price"] == 2.5
    )
    assert rows.loc["a", "since"] == datetime.date(2020, 2, 29) and rows.loc["a", "big"] == 2**40
    assert rows.loc["a", "ratio"] == 0.1 and rows.loc["c", "ratio"] == 1e-7  # float4 as its shortest text
    assert rows.loc["a", "amount"] == float("inf") and pd.isna(rows.loc["c", "amount"])
    assert rows.loc["c", "label"] == "" and rows.loc["h", "code"] == "%s "  # empty text is not null
    assert rows.loc["h", "big"] == float(-(2**63)) and through_adbc["big"].dtype == "float64"  # b's null
    assert through_adbc["qty"].dtype == "float64"  # an int column with a null, as read_sql makes it
    assert through_adbc["flag"].dtype == object  # booleans with a null
    assert through_adbc["month"].dtype == "datetime64[ns]"
    assert rows.loc["a", "month"] == pd.Timestamp("2023-12-01")  # 00:30+02 is 22:30 UTC on the 31st


def test_times_no_date_can_hold_are_read_as_unreadable(postgres_source):
    """'infinity' sorts after every date, yet is selected; ADBC hands over the text PostgreSQL
    writes for it, and validation names it."""
    frame = read_window(postgres_source, M).set_index("k")

    assert sorted(frame.index) == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert pd.isna(frame.loc["g", "month"]) and frame.loc["g", "month__unreadable"] == "infinity"
    assert pd.isna(frame.loc["f", "month"]) and frame.loc["f", "month__unreadable"].startswith("1500-01-01")
    assert pd.isna(frame.loc["e", "month"]) and pd.isna(frame.loc["e", "month__unreadable"])


def test_a_query_source_reads_the_same_both_ways(postgres_source, monkeypatch, tmp_path):
    """A query (with a % and a : in it, a computed column and a trailing comment) is wrapped,
    filtered to the window and read the same through both paths."""
    execute(postgres_source, "DELETE FROM sales WHERE k IN ('f', 'g')")
    query = (
        "SELECT k, month, units * 2 AS units, price::text AS price, label, label LIKE '100%' AS pct,"
        " 'a:b' AS colon, since FROM sales WHERE k <> 'b' -- not b"
    )
    config = make_config(
        tmp_path / "q", url=postgres_source.source.database.url, table=None, query=query, covariates=["price"]
    )

    through_adbc, through_rows, returned = both_paths(config, monkeypatch)

    assert returned[0] is not None
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    rows = through_adbc.set_index("k")
    assert sorted(rows.index) == ["a", "c", "d", "e", "h"]
    assert rows.loc["a", "price"] == 2.5 and rows.loc["h", "pct"] == True  # noqa: E712 (object column)
    assert (through_adbc["colon"] == "a:b").all() and rows.loc["a", "units"] == 2.0


@pytest.mark.parametrize("history_months", [13, None])
def test_the_window_filter_is_the_same_both_ways(postgres_source, monkeypatch, tmp_path, history_months):
    execute(
        postgres_source,
        "DELETE FROM sales WHERE k IN ('f', 'g')",
        "INSERT INTO sales (k, month, units) SELECT 'w' || i, date '2022-01-01' + i * interval '1 month', i"
        " FROM generate_series(0, 40) AS i",
    )
    config = make_config(
        tmp_path / "w", url=postgres_source.source.database.url, table="sales", history_months=history_months
    )

    through_adbc, through_rows, returned = both_paths(config, monkeypatch)

    assert returned[0] is not None
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    months = through_adbc.loc[through_adbc["k"].str.startswith("w"), "month"]
    assert months.max() == pd.Timestamp("2024-06-01")  # nothing after M
    first = pd.Timestamp("2022-01-01") if history_months is None else pd.Timestamp("2023-06-01")
    assert months.min() == first


def test_no_rows_and_columns_of_nulls_only_read_the_same(postgres_source, monkeypatch):
    execute(postgres_source, "DELETE FROM sales WHERE k IN ('f', 'g')", "UPDATE sales SET qty = NULL")
    through_adbc, through_rows, _ = both_paths(postgres_source, monkeypatch)
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    assert through_adbc["qty"].dtype == object and through_adbc["qty"].isna().all()

    execute(postgres_source, "DELETE FROM sales")
    through_adbc, through_rows, _ = both_paths(postgres_source, monkeypatch)
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    assert through_adbc.empty and list(through_adbc.columns)[:2] == ["k", "month"]


def test_validation_gives_the_same_result_both_ways(postgres_source, tmp_path):
    """Hostile rows (a time that is no date, text where a number belongs, no time at all) fail
    the same expectations with the same counts whichever way the window was read."""
    # psycopg cannot load 'infinity' as a datetime: the row reader would fail before validating.
    execute(postgres_source, "DELETE FROM sales WHERE k = 'g'", "UPDATE sales SET note = 'n/a' WHERE k = 'a'")
    reports = []
    for name, config in (("adbc", postgres_source), ("rows", without_adbc(postgres_source))):
        with pytest.raises(DataValidationError) as failed:
            validate_snapshot(read_window(config, M), config, M, tmp_path / name)
        reports.append(failed.value.report)
    adbc, rows = reports
    assert adbc.rows == rows.rows and adbc.expectations == rows.expectations
    assert [f["expectation"] for f in adbc.failures] == [f["expectation"] for f in rows.failures]
    assert [f.get("unexpected_count") for f in adbc.failures] == [
        f.get("unexpected_count") for f in rows.failures
    ]


def test_columns_arrow_cannot_type_as_psycopg_does_use_the_row_reader(postgres_source, monkeypatch, caplog):
    execute(
        postgres_source,
        "DELETE FROM sales WHERE k = 'g'",
        "ALTER TABLE sales ADD COLUMN extra jsonb, ADD COLUMN at timestamp, ADD COLUMN blob bytea",
        """UPDATE sales SET extra = '{"a": 1}', at = '2024-01-01 10:00', blob = '\\x00ff'""",
    )

    with caplog.at_level(logging.INFO, logger="forecasting.data.postgres_read"):
        through_adbc, through_rows, returned = both_paths(postgres_source, monkeypatch)

    assert returned == [None]
    assert (
        "through SQLAlchemy" in caplog.text
        and "extra (jsonb)" in caplog.text
        and "blob (bytea)" in caplog.text
    )
    pd.testing.assert_frame_equal(through_adbc, through_rows, check_exact=True)
    assert through_adbc["at"].dtype == "datetime64[ns]" and through_adbc["extra"].tolist()[0] == "{'a': 1}"


def test_a_date_python_cannot_hold_outside_the_time_column_fails_as_before(postgres_source, monkeypatch):
    """The row reader (psycopg) refuses such a date; ADBC would hand over a number, so the read
    falls back and fails the same way rather than inventing a date."""
    execute(
        postgres_source,
        "UPDATE sales SET since = 'infinity' WHERE k = 'a'",
        "DELETE FROM sales WHERE k = 'g'",
    )
    returned: list = []
    real = extract_module.read_postgres_arrow
    monkeypatch.setattr(
        extract_module, "read_postgres_arrow", lambda *a: returned.append(real(*a)) or returned[-1]
    )

    with pytest.raises(sa.exc.DataError, match="date too large"):
        read_window(postgres_source, M)
    assert returned == [None]


def test_the_connection_string_keeps_every_parameter_sqlalchemy_would_connect_with():
    url = sa.make_url(
        "postgresql+psycopg://us%40er:p%40ss%3Aw%20rd%27%5C@db.example:6543/my%2Fdb"
        "?sslmode=require&options=-csearch_path%3Dretail&application_name=forecast"
    )
    dialect = sa.create_engine(url).dialect

    parsed = psycopg.conninfo.conninfo_to_dict(connection_string(url, dialect))

    assert parsed == {
        "user": "us@er",
        "password": "p@ss:w rd'\\",
        "host": "db.example",
        "port": "6543",
        "dbname": "my/db",
        "sslmode": "require",
        "options": "-csearch_path=retail",
        "application_name": "forecast",
    }


def test_the_fast_read_connects_with_the_sessions_options_and_search_path(postgres_source, tmp_path):
    """make_engine moves the URL's options (here a search_path) and the liveness checks into the
    connect arguments: the ADBC connection takes them from the live session, so an unqualified
    table: is read from the schema the URL names, not from public."""
    from forecasting.core.db import make_engine

    execute(
        postgres_source,
        "CREATE SCHEMA retail",
        "CREATE TABLE retail.sales AS SELECT * FROM sales WHERE k = 'a'",
    )
    url = sa.make_url(postgres_source.source.database.url).update_query_dict(
        {"options": "-csearch_path=retail"}
    )
    config = make_config(tmp_path / "retail", url=url.render_as_string(hide_password=False), table="sales")
    engine = make_engine(config.source.database)
    try:
        with engine.connect() as conn:
            options = psycopg.conninfo.conninfo_to_dict(
                connection_string(conn.engine.url, conn.dialect, session_options(conn))
            )["options"]
    finally:
        engine.dispose()

    assert "-csearch_path=retail" in options and "client_connection_check_interval" in options
    assert read_window(config, M)["k"].tolist() == ["a"]


def test_the_switch_reads_through_sqlalchemy(postgres_source, monkeypatch):
    execute(postgres_source, "DELETE FROM sales WHERE k = 'g'")
    monkeypatch.setattr(extract_module, "read_postgres_arrow", lambda *a: pytest.fail("ADBC was used"))

    frame = read_window(without_adbc(postgres_source), M)

    assert sorted(frame["k"]) == ["a", "b", "c", "d", "e", "f", "h"]


def test_the_switch_is_on_by_default_and_takes_only_a_boolean(tmp_path):
    from forecasting.core.config import ConfigError

    assert make_config(tmp_path / "default", table="sales").source.postgres_adbc is True
    assert make_config(tmp_path / "off", table="sales", postgres_adbc=False).source.postgres_adbc is False
    with pytest.raises(ConfigError, match="postgres_adbc"):
        make_config(tmp_path / "bad", table="sales", postgres_adbc="no")


def test_when_adbc_cannot_connect_the_row_reader_reads_and_the_log_says_so(
    postgres_source, monkeypatch, caplog
):
    import forecasting.data.postgres_read as postgres_read

    execute(postgres_source, "DELETE FROM sales WHERE k = 'g'")
    monkeypatch.setattr(
        postgres_read, "connection_string", lambda *a: "host=127.0.0.1 port=1 connect_timeout=2"
    )

    with caplog.at_level(logging.WARNING, logger="forecasting.data.postgres_read"):
        frame = read_window(postgres_source, M)

    assert "ADBC could not connect" in caplog.text
    pd.testing.assert_frame_equal(frame, read_window(without_adbc(postgres_source), M), check_exact=True)


def test_a_bytea_in_a_numeric_role_is_named(postgres_source):
    engine = sa.create_engine(postgres_source.source.database.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM sales WHERE k = 'g'")
        conn.exec_driver_sql("ALTER TABLE sales ALTER COLUMN ratio TYPE bytea USING '\\xff01'::bytea")
    engine.dispose()

    frame = read_window(postgres_source, M)

    assert frame["ratio"].isna().all() and (frame["ratio__unreadable"] == "<2-byte blob ff01>").all()
