"""Extract reads exactly the history window ending at M from a real SQLite source, with every
value bound as a parameter, and writes (then replaces) the month's raw snapshot."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config, load_config
from forecasting.data.extract import extract, read_window, window_query, window_start
from tests.helpers.config import demo_config_dict, write_config

M = pd.Period("2024-06", "M")  # with history_months 13 the window is 2023-06 .. 2024-06
DROP = object()  # make_config(key=DROP) removes the key from the source section


def make_config(folder: Path, **source) -> Config:
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=["k"],
        time_column="month",
        target_column="units",
        covariates=[],
        attributes=[],
        history_months=13,
    )
    # A short window is only valid with little to hold out (config refuses one with nothing to train).
    raw["model"]["validation_months"], raw["evaluation"]["holdout_months"] = 1, 1
    raw["features"] = {"lags": [1], "rolling_windows": [3]}
    for key, value in source.items():
        if value is DROP:
            raw["source"].pop(key, None)
        else:
            raw["source"][key] = value
    return load_config(write_config(folder, raw))


def create_table(
    config: Config, rows: list[tuple], table: str = "sales", columns: str = "k TEXT, month TEXT, units REAL"
) -> None:
    db = config.source.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        quoted = '"' + table.replace('"', '""') + '"'
        con.execute(f"DROP TABLE IF EXISTS {quoted}")
        con.execute(f"CREATE TABLE {quoted} ({columns})")
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {quoted} VALUES ({marks})", rows)
    con.close()


def table_names(config: Config) -> set[str]:
    db = config.source.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    return names


# (label, stamp, in window?) around both edges of the window 2023-06-01 <= t < 2024-07-01.
EDGES = [
    ("long before", "2022-01-01", False),
    ("month before the window", "2023-05-01", False),
    ("last day before the window", "2023-05-31", False),
    ("first month", "2023-06-01", True),
    ("mid first month", "2023-06-15", True),
    ("a middle month", "2023-12-01", True),
    ("month M", "2024-06-01", True),
    ("mid M", "2024-06-15", True),
    ("last day of M", "2024-06-30", True),
    ("month after M", "2024-07-01", False),
    ("later", "2024-12-01", False),
]
EDGES_WITH_TIMES = [
    ("last instant before the window", "2023-05-31 23:59:59", False),
    ("first instant", "2023-06-01 00:00:00", True),
    ("mid first month", "2023-06-15 12:30:00", True),
    ("last instant of M", "2024-06-30 23:59:59", True),
    ("first instant after M", "2024-07-01 00:00:00", False),
]


@pytest.mark.parametrize("edges", [EDGES, EDGES_WITH_TIMES], ids=["dates", "datetimes"])
def test_reads_exactly_the_window(tmp_path, edges):
    config = make_config(tmp_path, table="sales")
    create_table(config, [(label, stamp, float(i)) for i, (label, stamp, _) in enumerate(edges)])

    frame = read_window(config, M)

    assert sorted(frame["k"]) == sorted(label for label, _, inside in edges if inside)
    expected = {
        label: pd.Timestamp(stamp).to_period("M").to_timestamp() for label, stamp, inside in edges if inside
    }
    # Normalised to the first instant of the month, as naive datetimes.
    assert frame["month"].dtype == "datetime64[ns]"
    assert dict(zip(frame["k"], frame["month"], strict=True)) == expected


def test_window_start_follows_history_months(tmp_path):
    assert window_start(make_config(tmp_path / "a", history_months=13).source, M) == pd.Period("2023-06", "M")
    assert window_start(make_config(tmp_path / "b", history_months=60).source, M) == pd.Period("2019-07", "M")
    assert window_start(make_config(tmp_path / "c", history_months=None).source, M) is None


def test_no_history_limit_reads_everything_up_to_m(tmp_path):
    config = make_config(tmp_path, table="sales", history_months=None)
    create_table(config, [("old", "1999-01-01", 1.0), ("m", "2024-06-30", 2.0), ("after", "2024-07-01", 3.0)])

    frame = read_window(config, M)

    assert sorted(frame["k"]) == ["m", "old"]


def test_query_source_is_wrapped_and_filtered(tmp_path):
    # Column names in the raw table differ from the config's; the query renames and filters them.
    query = """
        SELECT sku AS k, sold_on AS month, qty * 2 AS units
        FROM raw_sales
        WHERE sku <> 'excluded-by-the-query'
        -- a trailing comment must not break the wrapping;
    """
    config = make_config(tmp_path, table=DROP, query=query)
    create_table(
        config,
        [
            ("in", "2024-06-15", 1.0),
            ("first", "2023-06-01", 2.0),
            ("before", "2023-05-31", 3.0),
            ("after", "2024-07-01", 4.0),
            ("excluded-by-the-query", "2024-01-01", 5.0),
        ],
        table="raw_sales",
        columns="sku TEXT, sold_on TEXT, qty REAL",
    )

    frame = read_window(config, M).sort_values("k").reset_index(drop=True)

    assert list(frame.columns) == ["k", "month", "units", "month__unreadable", "units__unreadable"]
    assert frame["k"].tolist() == ["first", "in"]
    assert frame["units"].tolist() == [4.0, 2.0]
    assert frame["month"].tolist() == [pd.Timestamp("2023-06-01"), pd.Timestamp("2024-06-01")]


def test_query_with_trailing_semicolon(tmp_path):
    config = make_config(tmp_path, table=DROP, query="SELECT * FROM sales;  ")
    create_table(config, [("in", "2024-06-01", 1.0), ("after", "2024-07-01", 2.0)])
    assert read_window(config, M)["k"].tolist() == ["in"]


def test_unparseable_times_become_nat_and_their_text_is_kept(tmp_path):
    config = make_config(tmp_path, table="sales")
    # Both strings sort inside the window, so the SQL filter lets them through.
    create_table(
        config, [("ok", "2024-02-01", 1.0), ("feb-30", "2024-02-30", 2.0), ("garbage", "2024-03-xx", 3.0)]
    )

    frame = read_window(config, M).set_index("k")

    assert frame.loc["ok", "month"] == pd.Timestamp("2024-02-01")
    assert pd.isna(frame.loc["feb-30", "month"])
    assert pd.isna(frame.loc["garbage", "month"])
    unreadable = frame["month__unreadable"]
    assert pd.isna(unreadable["ok"])
    assert unreadable[["feb-30", "garbage"]].tolist() == ["2024-02-30", "2024-03-xx"]


@pytest.mark.parametrize(
    "value", ["notadate", "99999-01-01", "1500-01-01", "", "2024-13-01", "03/01/2024 or so", 1.5]
)
def test_times_no_window_can_place_are_read_whatever_the_window(tmp_path, value):
    """'notadate' sorts after every date, so the window's WHERE used to drop it unseen."""
    config = make_config(tmp_path, table="sales")
    rows = [("ok", "2024-02-01", 1.0), ("old", "2020-01-01", 1.0), ("later", "2025-01-01", 1.0)]
    create_table(config, [*rows, ("bad", value, 2.0)])

    frame = read_window(config, M).set_index("k")

    assert sorted(frame.index) == ["bad", "ok"]  # valid times outside the window stay out
    assert pd.isna(frame.loc["bad", "month"])
    assert frame.loc["bad", "month__unreadable"] == str(value)


def test_a_text_value_in_a_numeric_column_is_set_aside_not_a_crash(tmp_path):
    """A REAL column holding one text value: SQLite returns floats and a str (ArrowTypeError before)."""
    config = make_config(tmp_path, table="sales", covariates=["price"])
    create_table(
        config,
        [("a", "2024-02-01", 1.0, 2.5), ("b", "2024-02-01", "lots", "n/a"), ("c", "2024-02-01", "3", 1)],
        columns="k TEXT, month TEXT, units REAL, price REAL",
    )

    snapshot = extract(config, M, paths.snapshot(config, M, "r"))
    frame = pd.read_parquet(snapshot.path).set_index("k")

    assert frame["units"].dtype == float and frame["price"].dtype == float
    assert frame.loc[["a", "c"], "units"].tolist() == [1.0, 3.0] and pd.isna(frame.loc["b", "units"])
    assert frame.loc[["a", "c"], "price"].tolist() == [2.5, 1.0] and pd.isna(frame.loc["b", "price"])
    assert frame["units__unreadable"].isna().tolist() == [True, False, True]
    assert (frame.loc["b", "units__unreadable"], frame.loc["b", "price__unreadable"]) == ("lots", "n/a")


def test_keys_mixing_numbers_and_text_are_kept_as_text(tmp_path):
    config = make_config(tmp_path, table="sales")
    create_table(config, [(1, "2024-02-01", 1.0), ("x", "2024-02-01", 2.0)])

    frame = pd.read_parquet(extract(config, M, paths.snapshot(config, M, "r")).path)

    assert frame["k"].tolist() == ["1", "x"]


def test_mixed_date_and_datetime_strings_all_parse(tmp_path):
    config = make_config(tmp_path, table="sales")
    create_table(config, [("date", "2024-03-01", 1.0), ("datetime", "2024-03-15 10:00:00", 2.0)])

    frame = read_window(config, M)

    assert frame["month"].notna().all()


def test_window_query_binds_values_and_quotes_identifiers(tmp_path):
    config = make_config(tmp_path, table="sales", time_column="month")
    dialect = sa.create_engine("sqlite://").dialect

    with_start = window_query(config, dialect, has_start=True)
    without_start = window_query(config, dialect, has_start=False)

    text = str(with_start)
    assert ":window_end" in text and ":window_start" in text
    assert not re.search(r"\d", text), "no date literal may be formatted into the SQL"
    assert text == (
        "SELECT * FROM sales WHERE (month < :window_end AND month >= :window_start) OR month IS NULL"
        " OR NOT (month >= :earliest AND month < :latest) OR date(month) IS NULL"
    )
    assert set(with_start._bindparams) == {"window_end", "window_start", "earliest", "latest"}
    assert all(isinstance(p.type, sa.Date) for p in with_start._bindparams.values())
    assert str(without_start) == (
        "SELECT * FROM sales WHERE (month < :window_end) OR month IS NULL"
        " OR NOT (month >= :earliest AND month < :latest) OR date(month) IS NULL"
    )
    # The compiled statement hands the values to the driver separately, as ? placeholders.
    compiled = with_start.compile(dialect=dialect)
    assert str(compiled).count("?") == 4 and "'" not in str(compiled)


def test_window_query_quotes_odd_table_and_schema_names(tmp_path):
    config = make_config(
        tmp_path, table='odd table"; DROP TABLE keep; --', time_column="month", schema="main"
    )
    text = str(window_query(config, sa.create_engine("sqlite://").dialect, has_start=True))
    assert text.startswith('SELECT * FROM main."odd table""; DROP TABLE keep; --" WHERE ')


def test_injection_looking_table_name_is_only_a_name(tmp_path):
    evil = 'sales"; DROP TABLE keep; --'
    config = make_config(tmp_path, table=evil)
    create_table(config, [("in", "2024-06-01", 1.0), ("before", "2023-05-01", 2.0)], table=evil)
    create_table(config, [("x",)], table="keep", columns="k TEXT")

    frame = read_window(config, M)

    assert frame["k"].tolist() == ["in"]
    assert table_names(config) == {evil, "keep"}


def test_schema_qualified_table(tmp_path):
    config = make_config(tmp_path, table="sales", schema="main")
    create_table(config, [("in", "2024-06-01", 1.0), ("after", "2024-07-01", 2.0)])
    assert read_window(config, M)["k"].tolist() == ["in"]


def test_extract_writes_and_replaces_the_snapshot(tmp_path):
    config = make_config(tmp_path, table="sales")
    create_table(config, [("a", "2023-05-01", 1.0), ("a", "2023-07-01", 2.0), ("b", "2024-06-20", 3.0)])

    first = extract(config, M, paths.snapshot(config, M, "manual__1"))

    assert first.path == config.data_dir / "runs" / "2024-06" / "manual__1" / "raw.parquet"
    assert (first.rows, first.first_month, first.last_month) == (2, "2023-07", "2024-06")
    stored = pd.read_parquet(first.path)
    pd.testing.assert_frame_equal(stored, read_window(config, M))
    assert stored["month"].tolist() == [pd.Timestamp("2023-07-01"), pd.Timestamp("2024-06-01")]

    # The source changes (a correction arrives); extracting M again replaces the snapshot.
    create_table(config, [("c", "2024-01-01", 5.0), ("c", "2024-02-01", 6.0), ("c", "2024-03-01", 7.0)])
    second = extract(config, M, first.path)

    assert second.path == first.path
    assert (second.rows, second.first_month, second.last_month) == (3, "2024-01", "2024-03")
    replaced = pd.read_parquet(second.path)
    assert replaced["k"].tolist() == ["c", "c", "c"]
    assert replaced["units"].tolist() == [5.0, 6.0, 7.0]
    # Nothing but the snapshot is left in the run folder (no temp files from the atomic write).
    assert [p.name for p in first.path.parent.iterdir()] == ["raw.parquet"]


def test_extract_of_an_empty_window(tmp_path):
    config = make_config(tmp_path, table="sales")
    create_table(config, [("old", "2001-01-01", 1.0)])

    snapshot = extract(config, M, paths.snapshot(config, M, "r"))

    assert (snapshot.rows, snapshot.first_month, snapshot.last_month) == (0, None, None)
    assert pd.read_parquet(snapshot.path).empty


def test_rows_without_a_time_reach_validation(tmp_path):
    config = make_config(tmp_path, table="sales")
    create_table(config, [("dated", "2024-02-01", 1.0), ("undated", None, 2.0)])

    frame = read_window(config, M).set_index("k")

    assert pd.isna(frame.loc["undated", "month"])


def test_reading_in_chunks_types_columns_as_one_read_would(tmp_path, monkeypatch):
    """A chunk boundary must not change a column's type: SQLite lets one column hold ints in
    one chunk, floats or text in the next."""
    import forecasting.data.extract as extract_module

    config = make_config(tmp_path, table="sales", covariates=["price"], attributes=["attr"])
    create_table(
        config,
        [
            (1, "2024-02-01", 1, 2, "a"),
            (2, "2024-02-01", 2, 2.5, 7),
            (3, "2024-03-01", 3.5, None, "b"),
            ("x", "2024-03-01", 4, 3, None),
            (5, "2024-04-01", None, "n/a", 1.5),
        ],
        columns="k, month TEXT, units NUMERIC, price, attr",
    )
    whole = read_window(config, M)
    for rows in (1, 2, 3):
        monkeypatch.setattr(extract_module, "CHUNK_ROWS", rows)
        pd.testing.assert_frame_equal(read_window(config, M), whole, check_exact=True)
    assert whole["k"].tolist() == ["1", "2", "3", "x", "5"]  # mixed keys are text, ints not "1.0"
    assert whole["units"].tolist()[:4] == [1.0, 2.0, 3.5, 4.0]
    assert whole["price__unreadable"].tolist()[4] == "n/a"


def test_typed_snapshot_leaves_the_callers_frame_alone(tmp_path):
    from forecasting.data.extract import typed_snapshot

    config = make_config(tmp_path, table="sales")
    frame = pd.DataFrame({"k": ["a", "b"], "month": ["2024-02-01", "nope"], "units": ["1", "x"]})
    before = frame.copy()

    typed = typed_snapshot(frame, config.source)

    pd.testing.assert_frame_equal(frame, before)
    assert typed["month"].tolist()[0] == pd.Timestamp("2024-02-01") and pd.isna(typed["month"][1])
    assert typed["month__unreadable"].tolist()[1] == "nope" and typed["units__unreadable"][1] == "x"


def test_a_blob_in_a_numeric_column_is_named_not_a_crash(tmp_path):
    """SQLite lets a REAL column hold a BLOB (bytes that are not UTF-8): extract set it aside as
    text (UnicodeDecodeError naming no column before) and validation names the column."""
    config = make_config(tmp_path, table="sales", covariates=["price"])
    create_table(
        config,
        [("a", "2024-02-01", 1.0, 2.5), ("b", "2024-02-01", b"\xff\xfe\x00", b"12")],
        columns="k TEXT, month TEXT, units REAL, price REAL",
    )

    frame = read_window(config, M).set_index("k")

    assert pd.isna(frame.loc["b", "units"]) and frame.loc["b", "units__unreadable"] == "<3-byte blob fffe00>"
    assert pd.isna(frame.loc["b", "price"]) and frame.loc["b", "price__unreadable"] == "<2-byte blob 3132>"
    assert frame.loc["a", "units"] == 1.0 and pd.isna(frame.loc["a", "units__unreadable"])


def test_a_blob_key_or_attribute_is_kept_as_text(tmp_path):
    config = make_config(tmp_path, table="sales", attributes=["region"])
    create_table(
        config,
        [("a", "2024-02-01", 1.0, b"\xff"), ("b", "2024-02-01", 2.0, "north")],
        columns="k TEXT, month TEXT, units REAL, region TEXT",
    )

    frame = read_window(config, M).set_index("k")

    assert frame.loc["a", "region"] == "<1-byte blob ff>" and frame.loc["b", "region"] == "north"
