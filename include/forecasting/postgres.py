"""PostgreSQL specifics: fast atomic publish, safe concurrent publishes, the analyst role.

* ``copy_rows`` streams a publish's rows with COPY into a TEMP staging table (dropped at
  commit at the latest) and moves them into the predictions table with one
  ``INSERT ... SELECT``, all inside the publish transaction: readers still see month M's old
  rows or the new ones, never a mix.
* ``lock_for_publish`` takes transaction-level advisory locks at the start of a publish, so
  two publishes that find the schema missing do not race on CREATE TABLE / CREATE VIEW
  (the loser waits and then finds it), and two publishes of the same month run one after
  the other. Publishes of different months run side by side once the schema exists.
* ``grant_analyst_role`` creates (or updates) a read-only role that may SELECT the
  predictions table, its runs table and the ``_latest`` view, and nothing else. From a shell::

      python -m forecasting.postgres grant-analyst --url postgresql://USER@HOST/predictions \\
          --role analyst [--table forecasts] [--schema public] [--password-env ANALYST_PASSWORD]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import sqlalchemy as sa

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = "forecasting.publish"


def _quote(conn: sa.Connection | sa.Engine, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _relation(conn: sa.Connection, name: str, schema: str | None) -> str:
    return _quote(conn, name) if schema is None else f"{_quote(conn, schema)}.{_quote(conn, name)}"


def _lock_class(table: str, schema: str | None) -> int:
    """A stable signed 32-bit key for the table (the first half of a two-key advisory lock)."""
    key = zlib.crc32(f"{_LOCK_NAMESPACE}:{schema or ''}.{table}".encode())
    return key - 2**32 if key >= 2**31 else key


def _month_key(run_month: date) -> int:
    return run_month.year * 12 + run_month.month  # never 0, which is the schema lock


def schema_exists(conn: sa.Connection, table: str, schema: str | None = None) -> bool:
    """Whether the predictions table, its runs table and its ``_latest`` view all exist."""
    names = [_relation(conn, n, schema) for n in (table, f"{table}_runs", f"{table}_latest")]
    found = conn.execute(sa.text("SELECT to_regclass(:a), to_regclass(:b), to_regclass(:c)"),
                         dict(zip("abc", names, strict=True))).one()
    return all(v is not None for v in found)


def lock_for_publish(conn: sa.Connection, table: str, schema: str | None, run_month: date) -> None:
    """Advisory locks held until the publish transaction ends.

    Key (table, 0) guards the schema: shared when it already exists, exclusive when this
    publish may have to create it (then it waits for publishes in flight, and they for it).
    Key (table, month) is always exclusive, so publishes of one month never interleave.
    The schema key is always taken first, so the locks cannot deadlock.
    """
    key = _lock_class(table, schema)
    if schema_exists(conn, table, schema):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k, 0)"), {"k": key})
    else:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k, 0)"), {"k": key})
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k, :m)"), {"k": key, "m": _month_key(run_month)})


def _psycopg3_connection(conn: sa.Connection):
    try:
        import psycopg
    except ImportError:
        return None
    driver = conn.connection.driver_connection
    return driver if isinstance(driver, psycopg.Connection) else None


def copy_rows(conn: sa.Connection, table: sa.Table, records: Sequence[dict]) -> None:
    """Insert ``records`` into ``table`` via COPY into a staging table, in the caller's transaction."""
    if not records:
        return
    driver = _psycopg3_connection(conn)
    if driver is None:  # not psycopg 3 (e.g. psycopg2): the generic multi-row INSERT
        log.debug("COPY needs psycopg 3; using INSERT for %s", table.name)
        conn.execute(table.insert(), list(records))
        return
    columns = [c.name for c in table.columns]
    column_list = ", ".join(_quote(conn, c) for c in columns)
    # Temp tables live in the session's own schema, so concurrent publishes never collide;
    # the random suffix lets one transaction stage more than once.
    stage = _quote(conn, f"_stage_{table.name[:40]}_{secrets.token_hex(4)}")
    target = _relation(conn, table.name, table.schema)
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
    with driver.cursor() as cursor, cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
        for record in records:
            copy.write_row([record[c] for c in columns])
    conn.exec_driver_sql(f"INSERT INTO {target} ({column_list}) SELECT {column_list} FROM {stage}")
    conn.exec_driver_sql(f"DROP TABLE {stage}")


def grant_analyst_role(engine: sa.Engine, role: str, schema: str = "public", table: str = "forecasts",
                       *, password: str | None = None, default_privileges: bool = True) -> list[str]:
    """Create or update a read-only role; safe to run again. Returns the relations granted.

    The role gets LOGIN with ``password`` if one is given, else NOLOGIN (grant it to people's
    own login roles). It may connect, use ``schema`` and SELECT the predictions table, its
    runs table and its ``_latest`` view (those that exist yet). With ``default_privileges``,
    tables and views that the connecting user creates in ``schema`` later are readable too,
    so a first publish after this call needs no second grant.
    """
    import psycopg.sql as psql

    names = [table, f"{table}_runs", f"{table}_latest"]
    granted: list[str] = []
    with engine.begin() as conn:
        driver = conn.connection.driver_connection

        def run(statement: psql.Composable) -> None:
            conn.exec_driver_sql(statement.as_string(driver))  # no parameters: "%" stays as is

        ident = psql.Identifier(role)
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if not exists:
            # Roles are cluster-wide: a concurrent grant may create it first; that is fine.
            run(psql.SQL("DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
                .format(ident))
        if password:
            run(psql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, psql.Literal(password)))
        else:
            run(psql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        run(psql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(psql.Identifier(database), ident))
        run(psql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(psql.Identifier(schema), ident))
        for name in names:
            qualified = f"{_quote(conn, schema)}.{_quote(conn, name)}"
            if conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": qualified}).scalar() is None:
                continue
            run(psql.SQL("GRANT SELECT ON {} TO {}").format(psql.Identifier(schema, name), ident))
            granted.append(name)
        if default_privileges:
            run(psql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}")
                .format(psql.Identifier(schema), ident))
    log.info("Role %s may read %s in %s.%s", role, ", ".join(granted) or "nothing yet", database, schema)
    return granted


@contextmanager
def temporary_database(admin_url: str, prefix: str = "forecast_test") -> Iterator[str]:
    """Create a fresh database named ``<prefix>_<random>`` and yield its URL; drop it afterwards.

    ``admin_url`` points at an existing database of the server (e.g. ``postgres``) as a user
    that may CREATE DATABASE. For tests and benchmarks.
    """
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(_psycopg_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {_quote(conn, name)}")
        try:
            yield sa.make_url(_psycopg_url(admin_url)).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(conn, name)} WITH (FORCE)")
    finally:
        admin.dispose()


def _psycopg_url(url: str) -> str:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forecasting.postgres", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant-analyst", help="create or update the read-only analyst role")
    grant.add_argument("--url", required=True, help="SQLAlchemy URL of the predictions database")
    grant.add_argument("--role", default="analyst")
    grant.add_argument("--schema", default="public")
    grant.add_argument("--table", default="forecasts")
    grant.add_argument("--password-env", metavar="VAR",
                       help="environment variable holding the role's password (gives it LOGIN)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and not password:
        parser.error(f"{args.password_env} is not set")
    engine = sa.create_engine(_psycopg_url(args.url))
    try:
        granted = grant_analyst_role(engine, args.role, args.schema, args.table, password=password)
    finally:
        engine.dispose()
    print(f"{args.role}: SELECT on {', '.join(granted) or '(no relations yet)'}; "
          f"{'LOGIN' if password else 'NOLOGIN'}; default privileges in schema {args.schema}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
