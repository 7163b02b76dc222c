"""Read a PostgreSQL source's window through ADBC into Arrow, typed as the row reader types it.

ADBC's PostgreSQL driver runs the query as ``COPY (...) TO STDOUT (FORMAT binary)`` and decodes
the binary rows into Arrow columns in C: no Python object per value, no text parsed. The columns
then become what ``forecasting.data.extract.read_source_rows`` makes of psycopg's rows (ints as
int64, floats where null; ``numeric`` as floats; text as objects; dates as ``datetime.date``;
a column of nulls only as objects), so ``typed_snapshot`` and validation see the same frame
whichever way it was read. Where the driver would hand over something the row reader would read
differently (a type not listed below, a date Python cannot hold), the read returns None and the
caller reads through SQLAlchemy instead, saying so in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

log = logging.getLogger(__name__)

# The PostgreSQL types the fast path reads (the ``POSTGRESQL:type`` ADBC puts on each field),
# each with how its Arrow column becomes the row reader's. Anything else goes through SQLAlchemy.
_AS_IS = "as is"
_TEXT = ("text", "varchar", "bpchar", "name", "char")
_SUPPORTED = {
    "bool": _AS_IS,
    **dict.fromkeys(("int2", "int4", "int8"), "int64"),
    "float8": _AS_IS,
    # psycopg reads float4's shortest decimal text as a double (0.1, not 0.10000000149...).
    "float4": "shortest text",
    "numeric": "float64",  # read_sql_query's coerce_float: Decimal -> float
    **dict.fromkeys(_TEXT, _AS_IS),
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
}
# Only the time column may be a timestamp: elsewhere the row reader keeps psycopg's datetimes in
# the session's time zone, which the snapshot would then hold.
_TIME_ONLY = {"timestamp", "timestamptz"}

# PostgreSQL keeps 'infinity' and '-infinity' as its integer extremes; the driver shifts them
# from PostgreSQL's epoch (2000-01-01) to Arrow's, wrapping around, and hands over these values.
_INFINITY_DAYS = {-(2**31) + 10_957 - 1: "infinity", -(2**31) + 10_957: "-infinity"}
_EPOCH_SHIFT_US = 946_684_800_000_000
_INFINITY_MICROSECONDS = {-(2**63) + _EPOCH_SHIFT_US - 1: "infinity", -(2**63) + _EPOCH_SHIFT_US: "-infinity"}
# What Python's date and datetime hold (the row reader fails on anything else).
_PYTHON_DAYS = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31, days since 1970-01-01


class _Unreadable(Exception):
    """A value the row reader would read differently: the caller falls back to it."""


def connection_string(url: sa.URL, dialect: sa.Dialect, options: str | None = None) -> str:
    """libpq's key=value connection string for ``url``, with the parameters SQLAlchemy's psycopg
    dialect would connect with (user, password, host, port, dbname, and every query option such
    as sslmode or options), each quoted by psycopg. ``options``: libpq's options as a live
    session has them, in place of the URL's (``core.db.make_engine`` moves the URL's options and
    the liveness checks into the connect arguments, which the URL no longer shows)."""
    import psycopg

    _, kwargs = dialect.create_connect_args(url)
    plain = {k: v for k, v in kwargs.items() if isinstance(v, str | int) and not isinstance(v, bool)}
    if options:
        plain["options"] = options
    return psycopg.conninfo.make_conninfo("", **plain)


def session_options(conn: sa.Connection) -> str | None:
    """The libpq options ``conn``'s session was opened with (search_path, liveness checks...)."""
    import psycopg

    raw = conn.connection.driver_connection
    options = psycopg.conninfo.conninfo_to_dict(raw.info.dsn).get("options") if raw is not None else None
    return str(options) if options else None


def literal_sql(conn: sa.Connection, query: sa.TextClause, params: dict) -> str:
    """The query with its parameters written in, as psycopg writes them for a COPY (ADBC's
    COPY takes no parameters)."""
    import psycopg

    compiled = query.compile(dialect=conn.dialect)
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return psycopg.ClientCursor(raw).mogrify(compiled.string, compiled.construct_params(params))


def read_postgres_arrow(
    conn: sa.Connection, query: sa.TextClause, params: dict, time_column: str
) -> pd.DataFrame | None:
    """The query's rows as the row reader would make them, read through ADBC; None where the
    row reader must read them (the log says why)."""
    try:
        import adbc_driver_postgresql.dbapi as adbc

        fast = adbc.connect(connection_string(conn.engine.url, conn.dialect, session_options(conn)))
    except Exception as err:  # not installed, or its libpq cannot connect (e.g. no GSSAPI): say so
        log.warning("Reading the window through SQLAlchemy: ADBC could not connect: %s", err)
        return None
    sql = literal_sql(conn, query, params)
    with fast, fast.cursor() as cur:
        schema = cur.adbc_execute_schema(sql)
        unsupported = [
            f"{field.name} ({_pg_type(field)})"
            for field in schema
            if not _supported(_pg_type(field), field.name == time_column)
        ]
        if unsupported:
            log.info("Reading the window through SQLAlchemy: no Arrow reading for %s", ", ".join(unsupported))
            return None
        cur.execute(sql)
        table = cur.fetch_arrow_table()
    names = table.column_names
    if table.num_rows == 0:
        return pd.DataFrame(columns=names)  # what read_sql_query returns for no rows
    try:
        parts = {
            f"c{i}": _column(table.column(i), field, field.name == time_column)
            for i, field in enumerate(table.schema)
        }
    except _Unreadable as why:
        log.info("Reading the window through SQLAlchemy: %s", why)
        return None
    del table  # the typed columns only, from here
    return _frame(names, parts)


def _frame(names: list[str], parts: dict[str, pa.ChunkedArray | pd.Series]) -> pd.DataFrame:
    """One frame of the columns, Arrow's converted by one multi-threaded ``to_pandas`` into
    consolidated blocks (as typed_snapshot's select_dtypes wants them: split blocks it would
    merge again); names may repeat (SELECT * over a join)."""
    arrow = {key: part for key, part in parts.items() if isinstance(part, pa.ChunkedArray)}
    frame = pa.table(arrow).to_pandas() if arrow else pd.DataFrame()
    if len(arrow) < len(parts):  # a time column of Python objects: put it in its place
        frame = pd.DataFrame({key: frame[key] if key in arrow else part for key, part in parts.items()})
    frame.columns = pd.Index(names)
    return frame


def _pg_type(field: pa.Field) -> str:
    metadata = field.metadata or {}
    return metadata.get(b"POSTGRESQL:type", b"?").decode()


def _supported(pg_type: str, is_time: bool) -> bool:
    return pg_type in _SUPPORTED and (is_time or pg_type not in _TIME_ONLY)


def _column(column: pa.ChunkedArray, field: pa.Field, is_time: bool) -> pa.ChunkedArray | pd.Series:
    """``column`` cast to what ``to_pandas`` makes the row reader's column of (or, for a time
    column of values pandas cannot hold, that column itself)."""
    if len(column) and column.null_count == len(column):
        return pa.chunked_array([pa.nulls(len(column))])  # objects, as the row reader's null chunks
    if isinstance(column.type, pa.ExtensionType):  # numeric: its decimal text
        column = pa.chunked_array([chunk.storage for chunk in column.chunks], column.type.storage_type)
    kind = _SUPPORTED[_pg_type(field)]
    if kind == "int64" or kind == "float64":
        return column.cast(kind)
    if kind == "shortest text":
        return column.cast(pa.string()).cast(pa.float64())
    if kind in ("date", "timestamp") and is_time:
        try:  # nanosecond timestamps (UTC): typed_snapshot reads them to the months it reads
            return column.cast(pa.timestamp("ns"))  # psycopg's dates and datetimes to, faster
        except pa.ArrowInvalid:  # out of pandas' range, or 'infinity': as the row reader would
            return _time_values(column, kind)
    if kind == "date":
        days = pc.min_max(column.cast(pa.int32()))
        if days["min"].as_py() < _PYTHON_DAYS[0] or days["max"].as_py() > _PYTHON_DAYS[1]:
            # psycopg refuses it: the row reader fails on it, as before, rather than invent a date
            raise _Unreadable(f"column {field.name} holds a date Python cannot hold")
    return column


def _time_values(column: pa.ChunkedArray, kind: str) -> pd.Series:
    """The time column's dates or timestamps as the Python objects psycopg makes, converted once
    per distinct value; a value Python cannot hold ('infinity', a year after 9999) as text,
    which ``typed_snapshot`` then reports as unreadable."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    dictionary = encoded.dictionary
    to_text: Callable[[int], str] = _day_text if kind == "date" else _microsecond_text
    raw = dictionary.view(pa.int32() if kind == "date" else pa.int64()).to_numpy(zero_copy_only=False)
    days = raw if kind == "date" else np.floor_divide(raw, 86_400 * 1_000_000)
    holdable = (days >= _PYTHON_DAYS[0]) & (days <= _PYTHON_DAYS[1])
    values = np.empty(len(dictionary), dtype=object)
    for i, (ok, value) in enumerate(zip(holdable, raw, strict=True)):
        values[i] = dictionary[i].as_py() if ok else to_text(int(value))
    indices = encoded.indices.fill_null(-1).to_numpy()
    out = np.where(indices >= 0, values[np.maximum(indices, 0)] if len(values) else None, None)
    return pd.Series(out, dtype=object)


def _day_text(day: int) -> str:
    return _INFINITY_DAYS.get(day) or str(np.datetime64(day, "D"))


def _microsecond_text(microsecond: int) -> str:
    return _INFINITY_MICROSECONDS.get(microsecond) or str(np.datetime64(microsecond, "us"))
