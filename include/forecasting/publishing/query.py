"""Run one read-only SQL query against the deployment's predictions database and print the rows.

    .venv/bin/python -m forecasting.publishing.query "SELECT * FROM forecasts_latest WHERE store_id = 3"

For a laptop without a database client: it uses the config's own connection (FORECAST_CONFIG;
only its predictions section is read), often the pipeline's credentials, which may write. So
the query is read-only by construction, whatever its text says, and it is exactly one statement:

* PostgreSQL: PostgreSQL's own parser (pglast) must find exactly one plain read: SELECT, WITH ...
  SELECT, VALUES, TABLE or EXPLAIN without ANALYZE; no data-modifying WITH, SELECT INTO, FOR
  UPDATE/SHARE or COPY, and only functions on an allow-list of built-ins that compute from
  their arguments (no pg_read_file, pg_terminate_backend, lo_*, set_config, ...). It runs in a
  READ ONLY transaction that is always rolled back, in a session whose transactions default to
  read-only, sent with the extended query protocol (one statement), cancelled after --timeout
  seconds (statement_timeout). A superuser connection drops its privileges to pg_read_all_data
  (SET LOCAL ROLE) for the query, or is refused where that role does not exist.
* SQLite: the file is opened read-only (mode=ro) with PRAGMA query_only = ON; the driver compiles
  exactly one statement; ATTACH (which creates files, also for VACUUM INTO) and changing
  query_only are not authorized. No string or blob may exceed 1 MiB, and the query is
  interrupted at --timeout seconds.

On both, a result over 256 MiB in memory is refused (ask for fewer rows). A write, DDL, several
statements, or a statement that returns no rows is refused with a one-line message and exit
status 2, and nothing is changed; any other error (a typo, a missing table, a bad config)
exits with 1. Only PostgreSQL and SQLite predictions databases are supported.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from pandas.io.sql import _wrap_result

from forecasting.core.config import Config, ConfigError, Database, PredictionsConfig, load_predictions_config
from forecasting.core.db import database_url, postgres_session
from forecasting.publishing.read_only_sql import (
    ONE_STATEMENT,
    READ_ONLY,
    NotParsed,
    RefusedSql,
    check_read_only,
    postgres_text,
)

DEFAULT_TIMEOUT_SECONDS = 60.0
RETURNS_ROWS = (
    "forecasting.publishing.query runs one read-only query that returns rows (SELECT ..., WITH ... SELECT ...); "
    "this statement returned none and changed nothing"
)
MAX_VALUE_BYTES = 1 << 20
"""SQLite: the longest string or blob a query may make (SQLITE_LIMIT_LENGTH): one function call
(randomblob, printf, replace) cannot be interrupted, so its size bounds its time and memory."""
SQLITE_PROGRESS_OPS = 1_000
"""SQLite: virtual machine steps between two looks at the deadline."""
SQLITE_HEAP_BYTES = 1 << 30
"""SQLite: the command's process-wide heap limit (PRAGMA hard_heap_limit), set by ``main`` only."""
MAX_RESULT_BYTES = 256 << 20
"""The largest result, in memory, a query may return (it is read in chunks and refused beyond)."""
CHUNK_ROWS = 10_000
"""PostgreSQL: rows fetched at a time from the server-side cursor."""
READ_ALL_DATA = "pg_read_all_data"  # PostgreSQL 14+: SELECT on every table, nothing else


class QueryError(RuntimeError):
    """The query could not be run (no database, unsupported backend, a syntax error, too large a result)."""


class QueryRefused(QueryError):
    """SQL that forecasting.publishing.query will not run: it writes, or it is not exactly one query."""


def run_query(
    config: Config | PredictionsConfig,
    sql: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The rows of ``sql``, one read-only statement, run on the predictions database, with
    ``params`` bound to its ``:name`` placeholders (values never become SQL text).

    Raises QueryRefused when it is not one plain read (checked before it is sent, on
    PostgreSQL), when the database refuses it as a write or as more than one statement, or when
    it returns no rows; in every case nothing is changed.
    """
    predictions = config.predictions if isinstance(config, Config) else config
    engine = _read_only_engine(predictions.database, timeout)
    try:
        if engine.dialect.name == "postgresql":
            _check_postgres(sql)  # before connecting: a refused statement never reaches the server
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(postgresql_readonly=True)  # BEGIN READ ONLY
                _drop_superuser(conn)
                # the query's rows through a server-side cursor, in chunks
                conn.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS)
            try:
                return _read(conn, sql, params)
            except sa.exc.ResourceClosedError:  # the statement ran but returns no rows
                raise QueryRefused(RETURNS_ROWS) from None
            except sa.exc.DBAPIError as err:
                reason = _refusal(conn.dialect.name, err.orig or err)
                if reason:
                    raise QueryRefused(f"{reason}: {_first_line(err.orig or err)}") from err
                raise
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def _check_postgres(sql: str) -> None:
    try:
        check_read_only(postgres_text(sql))
    except RefusedSql as err:
        raise QueryRefused(str(err)) from None
    except NotParsed as err:
        raise QueryError(str(err)) from None


def _drop_superuser(conn: sa.Connection) -> None:
    """A superuser runs the query as pg_read_all_data (SET LOCAL ROLE, undone by the rollback):
    the statement check is one wall, the missing privileges another."""
    user, superuser = conn.exec_driver_sql(
        "SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).one()
    if not superuser:
        return
    if conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{READ_ALL_DATA}'").first() is None:
        raise QueryRefused(
            f"{READ_ONLY}: the config connects as the superuser {user} and this server has no "
            f"{READ_ALL_DATA} role to drop to; connect as a role that may only read (the analyst role)"
        )
    conn.exec_driver_sql(f"SET LOCAL ROLE {READ_ALL_DATA}")


def _read(conn: sa.Connection, sql: str, params: Mapping[str, Any] | None) -> pd.DataFrame:
    """The result as pandas.read_sql_query makes it, read row by row and refused once its text
    and bytes pass MAX_RESULT_BYTES (each row counts 8 bytes a column more)."""
    result = conn.execute(sa.text(sql), dict(params or {}))
    if not result.returns_rows:
        raise QueryRefused(RETURNS_ROWS)
    columns = list(result.keys())
    rows: list[Any] = []
    size = 0
    for row in result:
        size += 8 * len(row) + sum(len(v) for v in row if isinstance(v, str | bytes))
        if size > MAX_RESULT_BYTES:
            raise QueryError(
                f"the result is larger than {MAX_RESULT_BYTES >> 20} MiB after {len(rows)} rows: "
                "ask for fewer rows or columns (LIMIT, WHERE, an aggregate)"
            )
        rows.append(row)
    # pandas.read_sql_query's own conversion (it would fetch every row at once, unbounded)
    return _wrap_result(rows, columns, coerce_float=True)


def _read_only_engine(db: Database, timeout: float) -> sa.Engine:
    url = sa.make_url(database_url(db))
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return _postgres_engine(url, timeout)
    if backend == "sqlite":
        return _sqlite_engine(url, timeout)
    raise QueryError(
        f"forecasting.publishing.query supports PostgreSQL and SQLite predictions databases, not {backend}: "
        "it cannot make the query read-only there"
    )


def _postgres_engine(url: sa.URL, timeout: float) -> sa.Engine:
    url, connect_args = postgres_session(
        url, "-c default_transaction_read_only=on", f"-c statement_timeout={max(1, round(timeout * 1000))}"
    )
    return sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        # prepare_threshold=0: psycopg prepares every statement, i.e. sends it with the extended
        # query protocol, in which the server accepts exactly one statement.
        connect_args={**connect_args, "prepare_threshold": 0},
    )


def _sqlite_engine(url: sa.URL, timeout: float) -> sa.Engine:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise QueryError(
            f"forecasting.publishing.query needs a SQLite database file, not {url.database or ':memory:'}"
        )
    path = Path(url.database).resolve()
    if not path.is_file():
        raise QueryError(f"no SQLite database at {path}")
    uri = f"{path.as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_sqlite_authorizer)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), SQLITE_PROGRESS_OPS)
        return conn

    return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)


def _sqlite_authorizer(action: int, arg1, arg2, database, trigger) -> int:
    """Deny what mode=ro and query_only leave open: ATTACH creates (and opens read-write) any
    file, VACUUM INTO attaches its target; and turning query_only off."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() == "query_only" and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@contextmanager
def sqlite_heap_limit(limit: int = SQLITE_HEAP_BYTES) -> Iterator[None]:
    """SQLite's process-wide heap limit while the command runs (and the previous one after)."""
    probe = sqlite3.connect(":memory:")
    try:
        before = probe.execute("PRAGMA hard_heap_limit").fetchone()[0]
        probe.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
        try:
            yield
        finally:
            probe.execute(f"PRAGMA hard_heap_limit = {int(before)}")
    finally:
        probe.close()


def _refusal(dialect: str, error: BaseException) -> str | None:
    """Why the database refused the statement, when it refused it as a write or as several."""
    message = _first_line(error)
    if dialect == "postgresql":
        sqlstate = getattr(error, "sqlstate", None) or ""
        if sqlstate[:2] in ("25", "2D"):  # invalid transaction state (read-only), termination
            return READ_ONLY
        if sqlstate == "42601" and "multiple commands" in message:
            return ONE_STATEMENT
    elif dialect == "sqlite":
        if isinstance(error, sqlite3.ProgrammingError) and "one statement" in message:
            return ONE_STATEMENT
        if getattr(error, "sqlite_errorname", None) in ("SQLITE_READONLY", "SQLITE_AUTH"):
            return READ_ONLY
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.publishing.query",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sql",
        help='exactly one read-only statement, e.g. "SELECT * FROM forecasts_latest LIMIT 10"',
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"cancel the query after this long (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    try:
        with sqlite_heap_limit():
            rows = run_query(load_predictions_config(), args.sql, timeout=args.timeout)
    except QueryRefused as err:
        print(f"refused: {err}", file=sys.stderr)
        return 2
    except sa.exc.DBAPIError as err:
        message = _first_line(err.orig or err)
        if message == "interrupted":  # SQLite's progress handler
            message = f"cancelled after {args.timeout:g} s (--timeout)"
        elif getattr(err.orig, "sqlite_errorname", None) == "SQLITE_TOOBIG":
            message = f"{message}: a string or blob may hold at most {MAX_VALUE_BYTES >> 20} MiB here"
        print(f"error: {message}", file=sys.stderr)
        return 1
    except (ConfigError, QueryError, sa.exc.SQLAlchemyError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever it held
        return 1
    print(rows.to_string(index=False) if len(rows) else "(no rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
