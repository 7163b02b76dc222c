"""Run one read-only SQL query against the deployment's predictions database and print the rows.

    .venv/bin/python -m forecasting.publishing.query "SELECT * FROM forecasts_latest WHERE store_id = 3"

For a laptop without a database client: it uses the config's own connection (FORECAST_CONFIG),
often the pipeline's credentials, which may write. So the query is read-only by construction,
whatever its text says, and it is exactly one statement:

* PostgreSQL: the statement is sent with the extended query protocol (prepared), which the
  server refuses for several statements in one string; it runs in a READ ONLY transaction that
  is always rolled back, in a session whose transactions default to read-only
  (default_transaction_read_only=on, so a COMMIT cannot start a writable one), and is cancelled
  after --timeout seconds (statement_timeout).
* SQLite: the file is opened read-only (mode=ro) with PRAGMA query_only = ON; the driver compiles
  exactly one statement; ATTACH (which creates files, also for VACUUM INTO) and changing
  query_only are not authorized.

A write, DDL, several statements, or a statement that returns no rows is refused with a one-line
message and exit status 2, and nothing is changed; any other error (a typo, a missing table)
exits with 1. Only PostgreSQL and SQLite predictions databases are supported.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, Database, load_config
from forecasting.core.db import database_url

DEFAULT_TIMEOUT_SECONDS = 60.0
READ_ONLY = "forecasting.publishing.query is read-only"
ONE_STATEMENT = "forecasting.publishing.query runs exactly one SQL statement"
RETURNS_ROWS = (
    "forecasting.publishing.query runs one read-only query that returns rows (SELECT ..., WITH ... SELECT ...); "
    "this statement returned none and changed nothing"
)


class QueryError(RuntimeError):
    """The query could not be run (no database, unsupported backend)."""


class QueryRefused(QueryError):
    """SQL that forecasting.publishing.query will not run: it writes, or it is not exactly one query."""


def run_query(
    config: Config,
    sql: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The rows of ``sql``, one read-only statement, run on the predictions database, with
    ``params`` bound to its ``:name`` placeholders (values never become SQL text).

    Raises QueryRefused when the database refuses it as a write or as more than one statement,
    or when it returns no rows; in every case nothing is changed.
    """
    engine = _read_only_engine(config.predictions.database, timeout)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(postgresql_readonly=True)  # BEGIN READ ONLY
            try:
                return pd.read_sql_query(sa.text(sql), conn, params=dict(params or {}))
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
    options = [f"-c default_transaction_read_only=on -c statement_timeout={max(1, round(timeout * 1000))}"]
    given = url.query.get("options")
    if given:  # the URL's own libpq options come first, so ours win
        options[:0] = [given] if isinstance(given, str) else list(given)
    return sa.create_engine(
        url.set(drivername="postgresql+psycopg").difference_update_query(["options"]),
        poolclass=sa.pool.NullPool,
        # prepare_threshold=0: psycopg prepares every statement, i.e. sends it with the extended
        # query protocol, in which the server accepts exactly one statement.
        connect_args={"options": " ".join(options), "prepare_threshold": 0},
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
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
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
        rows = run_query(load_config(), args.sql, timeout=args.timeout)
    except QueryRefused as err:
        print(f"refused: {err}", file=sys.stderr)
        return 2
    except sa.exc.DBAPIError as err:
        message = _first_line(err.orig or err)
        if message == "interrupted":  # SQLite's progress handler
            message = f"cancelled after {args.timeout:g} s (--timeout)"
        print(f"error: {message}", file=sys.stderr)
        return 1
    except (QueryError, sa.exc.SQLAlchemyError) as err:
        print(f"error: {_first_line(err)}", file=sys.stderr)
        return 1
    print(rows.to_string(index=False) if len(rows) else "(no rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
