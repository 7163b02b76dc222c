"""Extract: read the history window ending at month M from the source into a raw snapshot."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config, SourceConfig
from forecasting.core.db import make_engine
from forecasting.core.months import FIRST_MONTH, LAST_MONTH, month_end, month_start
from forecasting.data.postgres_read import read_postgres_arrow

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    path: Path
    rows: int
    first_month: str | None
    last_month: str | None


def window_start(source: SourceConfig, month: pd.Period) -> pd.Period | None:
    """First month a run of M reads, or None to read all history."""
    n = source.history_months
    return None if n is None else max(month - (n - 1), FIRST_MONTH)  # no earlier time is readable


# Times a run can represent (pandas' nanosecond timestamps). A row whose time the database cannot
# place inside this range (text that is not a date, a year like 99999) is read too, whatever the
# window, so that validation counts it instead of the window's WHERE dropping it unseen.
EARLIEST_TIME = month_start(FIRST_MONTH)
LATEST_TIME = month_end(LAST_MONTH)

# Beside each column that must hold dates or numbers, the snapshot keeps the raw text of the values
# that are not (null elsewhere): validation names and counts them (``unreadable_column``).
UNREADABLE_SUFFIX = "__unreadable"


def unreadable_column(column: str) -> str:
    return f"{column}{UNREADABLE_SUFFIX}"


def window_query(config: Config, dialect: sa.Dialect, has_start: bool) -> sa.TextClause:
    """SELECT * over the window; identifiers are quoted by the dialect, values are bound.

    Besides the window, rows without a time and rows whose time is not a date in
    [EARLIEST_TIME, LATEST_TIME) are selected, so that validation reports them.
    """
    src = config.source
    quote = dialect.identifier_preparer.quote
    relation = source_relation(src.table, src.query, src.database.schema, dialect, "source_query")
    time = quote(src.time_column)
    window = f"{time} < :window_end" + (f" AND {time} >= :window_start" if has_start else "")
    where = f"({window}) OR {time} IS NULL OR {unplaceable_time(time, dialect)}"
    params = [sa.bindparam(name, type_=sa.Date) for name in ("window_end", "earliest", "latest")]
    if has_start:
        params.append(sa.bindparam("window_start", type_=sa.Date))
    return sa.text(f"SELECT * FROM {relation} WHERE {where}").bindparams(*params)


def source_relation(
    table: str | None, query: str | None, schema: str | None, dialect: sa.Dialect, alias: str
) -> str:
    """What to SELECT from: the quoted table (in its schema), or the query as a subquery."""
    quote = dialect.identifier_preparer.quote
    if table:
        return f"{quote(schema)}.{quote(table)}" if schema else quote(table)
    assert query is not None  # config guarantees one of table and query
    return f"({query.strip().rstrip(';')}\n) AS {alias}"  # \n: a trailing -- comment keeps ")"


def unplaceable_time(column: str, dialect: sa.Dialect) -> str:
    """SQL true where the (quoted) column is not a date in [:earliest, :latest)."""
    # Comparing text, 'notadate' sorts after every date and '20240301' between them: outside the
    # window either way. SQLite keeps times as text, so there its own date() says what is not one.
    unplaceable = f"NOT ({column} >= :earliest AND {column} < :latest)"
    if dialect.name == "sqlite":
        unplaceable += f" OR date({column}) IS NULL"
    return unplaceable


def read_window(config: Config, month: pd.Period) -> pd.DataFrame:
    """Rows with a time in [start of window, end of M), the time column normalised to month starts,
    plus the rows validation must reject (no time, or a time that is not a date in range)."""
    start = window_start(config.source, month)
    # Dates, not datetimes: SQLite compares ISO strings, and "2024-03-01" < "2024-03-01 00:00:00".
    params = {
        "window_end": month_end(month).date(),
        "earliest": EARLIEST_TIME.date(),
        "latest": LATEST_TIME.date(),
    }
    if start is not None:
        params["window_start"] = month_start(start).date()
    engine = make_engine(config.source.database)
    try:
        query = window_query(config, engine.dialect, start is not None)
        frame = None
        if engine.dialect.name == "postgresql" and config.source.postgres_adbc:
            with engine.connect() as conn:
                frame = read_postgres_arrow(conn, query, params, config.source.time_column)
        if frame is None:  # not PostgreSQL, or columns the Arrow read cannot type as psycopg does
            with engine.connect() as conn:
                frame = read_source_rows(conn, query, params)
    finally:
        engine.dispose()
    return typed_snapshot(frame, config.source)


# Rows fetched from the driver at a time: a chunk's Python objects live only until its columns
# are Arrow arrays, so memory follows the compact columns, not millions of row tuples.
CHUNK_ROWS = 100_000


def read_source_rows(conn: sa.Connection, query: sa.TextClause, params: dict) -> pd.DataFrame:
    """The query's rows as pandas.read_sql_query would type them, fetched in chunks and kept as
    Arrow columns meanwhile. Where the driver has server-side cursors the rows stream through
    SQLAlchemy; otherwise (SQLite) they come straight from the DBAPI cursor, as plain tuples."""
    streaming = conn.dialect.supports_server_side_cursors
    result = conn.execution_options(stream_results=streaming).execute(query, params)
    try:
        names = list(result.keys())
        columns = [_ColumnReader() for _ in names]
        for rows in _chunks(result, streaming):
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                column.add(values)
    finally:
        result.close()
    return _frame(names, [column.finish() for column in columns])


def _chunks(result: sa.CursorResult, streaming: bool) -> Iterator[Sequence[Sequence[Any]]]:
    if streaming:  # SQLAlchemy buffers the first rows of a server-side cursor itself
        yield from result.partitions(CHUNK_ROWS)
        return
    cursor = result.cursor  # nothing fetched yet: no SQLAlchemy Row per row
    while rows := cursor.fetchmany(CHUNK_ROWS):
        yield rows


def _frame(names: list[str], arrays: list) -> pd.DataFrame:
    if not arrays or len(arrays[0]) == 0:
        return pd.DataFrame(columns=names)  # what read_sql_query returns for no rows
    frame = pd.DataFrame(dict(enumerate(arrays)))
    frame.columns = pd.Index(names)  # names may repeat (SELECT * over a join)
    return frame


class _ColumnReader:
    """One result column, chunk by chunk, typed like pandas.read_sql_query(coerce_float=True):
    ints (floats where null), floats, text, booleans (object where null) and dates (objects)
    become Arrow arrays as they arrive; anything else (mixed types, as SQLite allows; decimals;
    datetimes) is kept as Python objects and left to pandas' own conversion at the end."""

    def __init__(self) -> None:
        self.chunks: list[pa.Array | np.ndarray] = []

    def add(self, values: tuple) -> None:
        try:
            array = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            array = None
        if (
            array is None
            or not _plain_arrow_type(array.type)
            # Arrow makes ints beside floats floats; pandas only does if the whole column is numbers.
            or (array.type == pa.float64() and int in set(map(type, values)))
            # Arrow makes text beside bytes bytes; the text must stay text.
            or (pa.types.is_binary(array.type) and str in set(map(type, values)))
        ):
            self.chunks.append(_objects(values))
        else:
            self.chunks.append(array)

    def finish(self) -> pd.Series:
        arrow = [c for c in self.chunks if isinstance(c, pa.Array)]
        if len(arrow) == len(self.chunks):
            target = _common_type({c.type for c in arrow})
            if target is not None:
                chunks = [c if c.type == target else c.cast(target) for c in arrow]
                return pa.chunked_array(chunks, type=target).to_pandas()
        objects = np.concatenate(
            [_objects(c.to_pylist()) if isinstance(c, pa.Array) else c for c in self.chunks]
        )
        self.chunks = []
        return pd.DataFrame.from_records(zip(objects), columns=[0], coerce_float=True)[0]


def _plain_arrow_type(type_: pa.DataType) -> bool:
    t = pa.types
    return (
        t.is_null(type_)
        or type_ in (pa.int64(), pa.float64(), pa.bool_(), pa.date32())
        or t.is_string(type_)
        or t.is_binary(type_)
    )


def _common_type(types: set[pa.DataType]) -> pa.DataType | None:
    """The type all chunks cast to without changing a value's meaning, or None."""
    types = {t for t in types if not pa.types.is_null(t)}
    if not types:
        return pa.null()
    if len(types) == 1:
        return types.pop()
    if types == {pa.int64(), pa.float64()}:
        return pa.float64()  # as pandas makes a column of ints and floats
    return None


def _objects(values) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def typed_snapshot(frame: pd.DataFrame, src: SourceConfig) -> pd.DataFrame:
    """Give the role columns their types without losing a bad value: the time column becomes
    month starts, the target and covariates numbers; a value that is neither (text such as
    'n/a' in a numeric column, 'notadate' or year 99999 as a time) becomes null and its raw
    text goes to ``unreadable_column(column)``, which validation requires to be empty.

    Vectorised throughout: times are parsed once per distinct value, and only the values that
    fail are turned into text."""
    frame = frame.copy(deep=False)  # new columns only: the caller's frame is left as it was
    blobs_as_text(frame)
    time = src.time_column
    if time in frame.columns:
        parse_into(frame, time, month_starts)
    for column in [src.target_column, *src.covariates]:
        if column not in frame.columns:
            continue
        raw = frame[column]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            frame[unreadable_column(column)] = _raw_text(raw, None)
            continue
        parse_into(frame, column, as_numbers)
    # Keys and attributes that mix numbers and text (SQLite allows it) are kept as text.
    mixed_as_text(frame, frame.select_dtypes(include="object").columns)
    return frame


def blobs_as_text(frame: pd.DataFrame) -> None:
    """Bytes (a BLOB, which SQLite lets any column hold; PostgreSQL's bytea) as text that names
    them, ``<3-byte blob fffe00>``: never a number or a date, so validation names the column
    that holds one; and never decoded, since a BLOB need not be UTF-8."""
    for column in frame.select_dtypes(include="object").columns:
        kind = pd.api.types.infer_dtype(frame[column], skipna=True)
        if kind == "bytes" or kind.startswith("mixed"):
            frame[column] = frame[column].map(_blob_text, na_action="ignore")


# Bytes of a BLOB shown in its text, enough to recognise it in a report.
BLOB_BYTES_SHOWN = 16


def _blob_text(value: Any) -> Any:
    if not isinstance(value, bytes | bytearray | memoryview):
        return value
    data = bytes(value)
    more = "..." if len(data) > BLOB_BYTES_SHOWN else ""
    return f"<{len(data)}-byte blob {data[:BLOB_BYTES_SHOWN].hex()}{more}>"


def parse_into(frame: pd.DataFrame, column: str, parse: Callable[[pd.Series], pd.Series]) -> None:
    """``frame[column]`` parsed by ``parse``; the raw text of each value it could not read (not
    null before, null after) goes to ``unreadable_column(column)``, which validation requires
    to be empty."""
    raw = frame[column]
    parsed = parse(raw)
    frame[column] = parsed
    frame[unreadable_column(column)] = _raw_text(raw, raw.notna().to_numpy() & parsed.isna().to_numpy())


def as_numbers(raw: pd.Series) -> pd.Series:
    """Floats: numbers that arrive as text ('12.5') and booleans (0/1) too; anything else null."""
    return pd.to_numeric(raw.astype(object), errors="coerce").astype(float)


def mixed_as_text(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    """Columns of ``frame`` whose values mix numbers and text, as text (nulls stay null)."""
    for column in columns:
        if column in frame.columns and pd.api.types.infer_dtype(frame[column], skipna=True).startswith(
            "mixed"
        ):
            frame[column] = frame[column].where(frame[column].isna(), frame[column].astype(str))


def month_starts(raw: pd.Series) -> pd.Series:
    """The first instant of each value's month (NaT where it is no date in range), parsing each
    distinct value once: a month's rows share a handful of stamps."""
    codes, uniques = pd.factorize(raw)  # nulls: code -1
    # ISO 8601 in any precision ("2024-03-01", "2024-03-15 10:00:00"), as SQL databases write it.
    stamps = pd.to_datetime(pd.Series(uniques), errors="coerce", utc=True, format="ISO8601")
    starts = stamps.dt.tz_localize(None).dt.to_period("M").dt.to_timestamp().to_numpy(dtype="datetime64[ns]")
    values = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = codes >= 0
    values[known] = starts[codes[known]]
    return pd.Series(values, index=raw.index, name=raw.name)


def _raw_text(raw: pd.Series, bad: np.ndarray | None) -> pd.Series:
    """The text of ``raw`` where ``bad``, null elsewhere (string dtype)."""
    text = pd.Series(pd.NA, index=raw.index, dtype="string", name=None)
    if bad is not None and bad.any():
        text[bad] = raw[bad].astype(str).to_numpy(dtype=object)
    return text


def extract(config: Config, month: pd.Period, path: Path) -> Snapshot:
    """Write the raw snapshot for M to ``path`` (replacing one an earlier attempt wrote)."""
    frame = read_window(config, month)
    paths.write_parquet_atomically(frame, path)
    time = config.source.time_column
    months = frame[time].dropna() if time in frame.columns else pd.Series(dtype="datetime64[ns]")
    snapshot = Snapshot(
        path=path,
        rows=len(frame),
        first_month=None if months.empty else f"{months.min():%Y-%m}",
        last_month=None if months.empty else f"{months.max():%Y-%m}",
    )
    log.info(
        "Extracted %d rows (%s..%s) for %s into %s",
        snapshot.rows,
        snapshot.first_month,
        snapshot.last_month,
        month,
        path,
    )
    return snapshot


# --- plans: planned covariates of future months (forecasting.features.plans) ---------------------------


@dataclass
class PlansSnapshot:
    path: Path
    rows: int  # revisions (every row is one entity's plan for one month, made at planned_at)
    first_month: str | None
    last_month: str | None
    known_at: str  # the plans as they stood at this instant: the end of M


def plan_months(config: Config, month: pd.Period) -> tuple[pd.Period | None, pd.Period]:
    """The months a run of M reads plans for: its history window (training rows' target
    months) through M + horizon (the months it forecasts). None: from the first month on."""
    return window_start(config.source, month), month + config.horizon


def plans_query(config: Config, dialect: sa.Dialect, has_start: bool) -> sa.TextClause:
    """SELECT * of the plans for the run's months made before ``:known_before`` (a day or two
    after the end of M, compared as a date: ``read_plans`` cuts at the exact instant), plus
    the rows validation must reject (no month or planned_at, or one that is not a date)."""
    plans = config.plans
    assert plans is not None
    quote = dialect.identifier_preparer.quote
    relation = source_relation(plans.table, plans.query, plans.database.schema, dialect, "plans_query")
    month, at = quote(plans.month_column), quote(plans.planned_at)
    window = f"{month} < :months_end" + (f" AND {month} >= :months_start" if has_start else "")
    wanted = f"({window}) AND {at} < :known_before"
    bad = f"{month} IS NULL OR {at} IS NULL OR {unplaceable_time(month, dialect)} OR {unplaceable_time(at, dialect)}"
    params = [
        sa.bindparam(name, type_=sa.Date) for name in ("months_end", "known_before", "earliest", "latest")
    ]
    if has_start:
        params.append(sa.bindparam("months_start", type_=sa.Date))
    return sa.text(f"SELECT * FROM {relation} WHERE ({wanted}) OR {bad}").bindparams(*params)


def read_plans(config: Config, month: pd.Period) -> pd.DataFrame:
    """Every plan revision for the run's months (``plan_months``) made no later than the end of
    M, typed like the snapshot (``typed_plans``), plus the rows validation must reject."""
    plans = config.plans
    assert plans is not None
    first, last = plan_months(config, month)
    known_at = month_end(month)
    params = {
        "months_end": month_end(last).date(),
        # Loose in SQL (text times compare as text in SQLite, time zones vary), exact below.
        "known_before": (known_at + pd.Timedelta(days=2)).date(),
        "earliest": EARLIEST_TIME.date(),
        "latest": LATEST_TIME.date(),
    }
    if first is not None:
        params["months_start"] = month_start(first).date()
    engine = make_engine(plans.database)
    try:
        query = plans_query(config, engine.dialect, first is not None)
        with engine.connect() as conn:
            frame = read_source_rows(conn, query, params)
    finally:
        engine.dispose()
    frame = typed_plans(frame, config)
    if plans.planned_at not in frame.columns or plans.month_column not in frame.columns:
        return frame  # validation names the missing column
    # The exact cut: revisions made after the end of M are not known at M. Rows without a
    # readable month or planned_at stay, for validation to count.
    stamp, target = frame[plans.planned_at], frame[plans.month_column]
    keep = stamp.isna() | target.isna() | (stamp <= known_at)
    keep &= target.isna() | (target < month_end(last))
    if first is not None:
        keep &= target.isna() | (target >= month_start(first))
    return frame[keep.to_numpy()].reset_index(drop=True)


def typed_plans(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The plans' columns typed as ``typed_snapshot`` types the sales': the month column as
    month starts, ``planned_at`` as a naive UTC timestamp (a time zone-aware one converted), the
    covariates as numbers; a value that is none of these becomes null and its raw text goes to
    ``unreadable_column(column)``."""
    plans = config.plans
    assert plans is not None
    frame = frame.copy(deep=False)
    blobs_as_text(frame)
    if plans.month_column in frame.columns:
        parse_into(frame, plans.month_column, month_starts)
    if plans.planned_at in frame.columns:
        parse_into(frame, plans.planned_at, _timestamps)
    for column in plans.covariates:
        if column in frame.columns:
            parse_into(frame, column, as_numbers)
    mixed_as_text(frame, plans.entity_columns)
    return frame


def _timestamps(raw: pd.Series) -> pd.Series:
    """Each value as a naive UTC timestamp (NaT where it is no time in range), parsing each
    distinct value once."""
    codes, uniques = pd.factorize(raw)
    stamps = pd.to_datetime(pd.Series(uniques), errors="coerce", utc=True, format="ISO8601")
    naive = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    values = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = codes >= 0
    values[known] = naive[codes[known]]
    return pd.Series(values, index=raw.index, name=raw.name)


def extract_plans(config: Config, month: pd.Period, path: Path) -> PlansSnapshot:
    """Write the plans as they stood at the end of M to ``path`` (beside M's snapshot)."""
    plans = config.plans
    assert plans is not None
    frame = read_plans(config, month)
    paths.write_parquet_atomically(frame, path)
    months = frame[plans.month_column].dropna() if plans.month_column in frame.columns else pd.Series()
    result = PlansSnapshot(
        path=path,
        rows=len(frame),
        first_month=None if months.empty else f"{months.min():%Y-%m}",
        last_month=None if months.empty else f"{months.max():%Y-%m}",
        known_at=str(month_end(month)),
    )
    log.info(
        "Extracted %d plan revisions (%s..%s) known at %s into %s",
        result.rows,
        result.first_month,
        result.last_month,
        result.known_at,
        path,
    )
    return result
