"""PostgreSQL specifics: fast atomic publish, safe concurrent publishes, the analyst role.

* ``copy_rows`` streams a publish's rows with COPY into a TEMP staging table (dropped at
  commit at the latest) and moves them into the predictions table with one
  ``INSERT ... SELECT``, all inside the publish transaction: readers still see month M's old
  rows or the new ones, never a mix.
* ``prepare_publish`` creates the tables, the view and the lock table when missing, in a short
  transaction of its own (two first publishes that race on CREATE TABLE / CREATE VIEW: the
  loser rolls back and tries again, and finds them); ``publish_transaction`` then opens the
  publish transaction with a ``lock_timeout`` and locks month M's row of
  ``<table>_publish_lock`` FOR UPDATE, so two publishes of the same month run one after the
  other while different months run side by side. Only roles that may UPDATE the lock table
  (the pipeline's) can take that lock: no advisory locks, which any role may take and hold.
  A wait longer than the lock timeout (``FORECAST_PUBLISH_LOCK_TIMEOUT`` seconds, default
  ``PUBLISH_LOCK_TIMEOUT``) raises ``PublishLockTimeout`` naming what it waited for and who
  held it.
* ``grant_analyst_role`` creates (or updates) a read-only role that may SELECT the
  predictions table, its runs table, the ``_latest`` view, the model registry (``_models``),
  the realised accuracy (``_accuracy``, ``_errors``, the ``_tracking_signal`` view), drift,
  alerts, the what-if scenarios (``_scenarios``) and the hierarchy's levels (``_levels``, the
  ``_levels_latest`` view), and nothing else. From a shell::

      python -m forecasting.publishing.postgres grant-analyst --url postgresql://USER@HOST/predictions \\
          --role analyst [--table forecasts] [--schema public] [--password-env ANALYST_PASSWORD]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import TypeVar

import sqlalchemy as sa

from forecasting.core.config import ConfigError
from forecasting.core.names import PUBLISH_LOCK, RUNS, relation_name
from forecasting.publishing import tables

log = logging.getLogger(__name__)


def _quote(conn: sa.Connection | sa.Engine, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _relation(conn: sa.Connection | sa.Engine, name: str, schema: str | None) -> str:
    return _quote(conn, name) if schema is None else f"{_quote(conn, schema)}.{_quote(conn, name)}"


PUBLISH_LOCK_TIMEOUT = 600.0
"""Seconds a publish waits, at most, for any one lock; the environment variable
``FORECAST_PUBLISH_LOCK_TIMEOUT`` (seconds) overrides it."""

LOCK_TIMEOUT_ENV = "FORECAST_PUBLISH_LOCK_TIMEOUT"

PUBLISH_IDLE_TIMEOUT = 60.0
"""Seconds a publish's transaction may sit idle (its client gone quiet: a killed task whose
socket another process still holds) before the server ends it and frees the month's lock; the
environment variable ``FORECAST_PUBLISH_IDLE_TIMEOUT`` overrides it. A publish sends its
statements back to back, so a live one is never idle that long."""

IDLE_TIMEOUT_ENV = "FORECAST_PUBLISH_IDLE_TIMEOUT"

MAX_TIMEOUT_SECONDS = 86_400.0
"""The longest any of these waits may be set to: a day (PostgreSQL's own limit is 24.8 days of
milliseconds; float('inf') used to pass, then crashed every publish with OverflowError)."""
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout fired
_CREATE_RACE = {"23505", "42P07", "42710"}  # unique_violation, duplicate_table, duplicate_object

T = TypeVar("T")


class PublishLockTimeout(RuntimeError):
    """A publish waited longer than its lock timeout; the message says for what and for whom."""


def lock_table_name(table: str) -> str:
    """The table of publish locks: one row per published month, locked FOR UPDATE by a publish."""
    return relation_name(table, PUBLISH_LOCK)


def seconds_from_env(name: str, default: float, *, zero_allowed: bool = False) -> float:
    """The number of seconds in environment variable ``name`` (``default`` when unset or empty):
    finite, more than 0 (or 0, with ``zero_allowed``) and at most MAX_TIMEOUT_SECONDS, else a
    ConfigError naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    least = "0" if zero_allowed else "more than 0"
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_allowed):
        # PostgreSQL's 0 would mean "wait for ever"; inf and nan overflow its milliseconds
        raise ConfigError(f"{name} must be {least} and at most {MAX_TIMEOUT_SECONDS:g} seconds, not {raw!r}")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"{name} must be {least} and at most {MAX_TIMEOUT_SECONDS:g} seconds, not {raw!r}")
    return seconds


def publish_lock_timeout() -> float:
    """The lock timeout of a publish, in seconds: FORECAST_PUBLISH_LOCK_TIMEOUT or PUBLISH_LOCK_TIMEOUT."""
    return seconds_from_env(LOCK_TIMEOUT_ENV, PUBLISH_LOCK_TIMEOUT)


def publish_idle_timeout() -> float:
    """How long a publish's transaction may be idle: FORECAST_PUBLISH_IDLE_TIMEOUT or PUBLISH_IDLE_TIMEOUT."""
    return seconds_from_env(IDLE_TIMEOUT_ENV, PUBLISH_IDLE_TIMEOUT)


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _set_lock_timeout(conn: sa.Connection, seconds: float) -> None:
    """The transaction's lock_timeout, and its idle_in_transaction_session_timeout: a publish
    whose client died (kill -9) while another process kept its socket open must not keep the
    month's lock for ever."""
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_milliseconds(seconds)}")
    conn.exec_driver_sql(
        f"SET LOCAL idle_in_transaction_session_timeout = {_milliseconds(publish_idle_timeout())}"
    )


def _sqlstate(err: BaseException) -> str | None:
    return getattr(getattr(err, "orig", None), "sqlstate", None)


def _describe_sessions(rows: Sequence[sa.Row]) -> str:
    described = []
    for row in rows:
        query = " ".join((row.query or "").split())
        described.append(
            f"pid {row.pid} (user {row.usename}, application {row.application_name!r}, "
            f"from {row.client or 'local socket'}, {row.state}, transaction open for {row.open_for}"
            + (f", holding {row.lock}" if getattr(row, "lock", None) else "")
            + (f", last query: {query[:160]}" if query else "")
            + ")"
        )
    return "; ".join(described)


_SESSION_COLUMNS = """a.pid, a.usename, a.application_name, host(a.client_addr) AS client, a.state,
    date_trunc('second', clock_timestamp() - a.xact_start) AS open_for, a.query"""


def _row_lock_holders(conn: sa.Connection, lock: str, run_month: date) -> str:
    """Who holds month M's lock row (read in the caller's transaction, after it gave up waiting)."""
    # The row's xmax is the transaction (or subtransaction) that locked it; its holder has a
    # lock on that transaction id. Failing that (a multixact), every session with row locks there.
    holders = conn.execute(
        sa.text(
            f"SELECT {_SESSION_COLUMNS} FROM {lock} t "
            "JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = t.xmax "
            "AND l.granted AND l.mode = 'ExclusiveLock' "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE t.run_month = :m AND l.pid <> pg_backend_pid()"
        ),
        {"m": run_month},
    ).all()
    if not holders:
        holders = conn.execute(
            sa.text(
                f"SELECT {_SESSION_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'relation' AND l.relation = CAST(:lock AS regclass) "
                "AND l.mode = 'RowShareLock' AND l.granted AND l.pid <> pg_backend_pid()"
            ),
            {"lock": lock},
        ).all()
    return _describe_sessions(holders) or "a session that has ended since"


def _relation_lock_holders(engine: sa.Engine, relations: Sequence[str]) -> str:
    """Sessions holding locks on ``relations`` that block a publish's writes (SHARE or stronger)."""
    try:
        with engine.connect() as conn:
            holders = conn.execute(
                sa.text(
                    f"SELECT {_SESSION_COLUMNS}, l.mode || ' on ' || l.relation::regclass::text AS lock "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.relation = ANY(ARRAY(SELECT to_regclass(r) FROM unnest(CAST(:r AS text[])) r)) "
                    "AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', "
                    "'AccessExclusiveLock') ORDER BY a.xact_start"
                ),
                {"r": list(relations)},
            ).all()
    except sa.exc.DBAPIError as err:  # the explanation must not hide the timeout itself
        return f"(could not list them: {err.orig})"
    return _describe_sessions(holders) or "no session holds a conflicting lock on them any more"


def _ensure_lock_table(conn: sa.Connection, table: str, schema: str | None) -> str:
    """Create the lock table if missing; take every privilege on it from all but its owner."""
    lock = _relation(conn, lock_table_name(table), schema)
    if conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": lock}).scalar() is None:
        tables.create(conn, tables.declare(table, {}, schema).publish_lock)
    # Default privileges (the analyst's SELECT on everything the pipeline creates) apply to it too:
    # take them back. Without UPDATE nobody can lock its rows anyway; this keeps it out of sight.
    grantees = sa.text(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END "
        "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
        "WHERE c.oid = CAST(:n AS regclass) AND a.grantee <> c.relowner "
        "AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
    )
    if conn.execute(grantees, {"n": lock}).first() is not None:
        conn.exec_driver_sql(f"LOCK TABLE {lock} IN SHARE ROW EXCLUSIVE MODE")  # one revoker at a time
        for grantee in conn.execute(grantees, {"n": lock}).scalars().all():
            conn.exec_driver_sql(f"REVOKE ALL ON {lock} FROM {grantee}")
            log.info("Revoked the privileges of %s on %s", grantee, lock)
    return lock


def prepare_publish(
    engine: sa.Engine,
    create: Callable[[sa.Connection], T],
    table: str,
    schema: str | None,
    run_month: date,
    *,
    lock_timeout: float | None = None,
    attempts: int = 5,
) -> T:
    """Create what a publish needs, if missing, in a short transaction of its own; returns ``create``'s result.

    ``create(conn)`` creates the predictions table, its runs table and view when missing; then
    the lock table (``<table>_publish_lock``, readable by nobody but the pipeline) gets month M's
    row. Two first publishes that create the same tables at once: the second waits for the first
    to commit, then fails with a duplicate-object or unique violation, rolls back and tries
    again, and finds them. No advisory locks: nothing another role could take and hold.
    """
    timeout = publish_lock_timeout() if lock_timeout is None else lock_timeout
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                _set_lock_timeout(conn, timeout)
                result = create(conn)
                lock = _ensure_lock_table(conn, table, schema)
                conn.execute(
                    sa.text(f"INSERT INTO {lock} (run_month) VALUES (:m) ON CONFLICT (run_month) DO NOTHING"),
                    {"m": run_month},
                )
            return result
        except sa.exc.DBAPIError as err:
            state = _sqlstate(err)
            if state == _LOCK_NOT_AVAILABLE:
                relations = [_relation(engine, n, schema) for n in _publish_relations(table)]
                raise PublishLockTimeout(
                    f"Publishing {run_month} to {_relation(engine, table, schema)}: waited more than "
                    f"{timeout:g} s ({LOCK_TIMEOUT_ENV}) for a lock while creating its tables or the "
                    f"month's lock row, and gave up. Holding conflicting locks on "
                    f"{', '.join(relations)}: {_relation_lock_holders(engine, relations)}"
                ) from err
            if state not in _CREATE_RACE or attempt == attempts:
                raise
            log.info("Another publish created the tables of %s meanwhile (%s); trying again", table, state)
    raise AssertionError("unreachable")


def _publish_relations(table: str) -> list[str]:
    return [table, relation_name(table, RUNS), lock_table_name(table)]


def _lock_month(conn: sa.Connection, table: str, schema: str | None, run_month: date, timeout: float) -> None:
    """Lock month M's row of the lock table FOR UPDATE (publishes of one month run one at a time)."""
    lock = _relation(conn, lock_table_name(table), schema)
    month = {"m": run_month}
    conn.execute(
        sa.text(f"INSERT INTO {lock} (run_month) VALUES (:m) ON CONFLICT (run_month) DO NOTHING"), month
    )
    savepoint = conn.begin_nested()  # to look the holder up in this transaction if the wait times out
    try:
        conn.execute(sa.text(f"SELECT run_month FROM {lock} WHERE run_month = :m FOR UPDATE"), month)
    except sa.exc.OperationalError as err:
        if _sqlstate(err) != _LOCK_NOT_AVAILABLE:
            raise
        savepoint.rollback()
        raise PublishLockTimeout(
            f"Publishing {run_month} to {_relation(conn, table, schema)}: waited more than {timeout:g} s "
            f"({LOCK_TIMEOUT_ENV}) for the month's publish lock (row run_month = {run_month} of {lock}, "
            f"locked FOR UPDATE by every publish of that month) and gave up. It is held by "
            f"{_row_lock_holders(conn, lock, run_month)}: another publish of the month, or a session of "
            "the pipeline's role; end that transaction (pg_terminate_backend(pid)) or try again later."
        ) from err
    savepoint.commit()


@contextmanager
def publish_transaction(
    engine: sa.Engine,
    table: str,
    schema: str | None,
    run_month: date,
    *,
    lock_timeout: float | None = None,
) -> Iterator[sa.Connection]:
    """``engine.begin()`` for replacing month M: with a ``lock_timeout``, and M's publish lock taken.

    Call ``prepare_publish`` first. Any wait for a lock longer than ``lock_timeout`` seconds
    (default ``publish_lock_timeout()``) rolls the publish back and raises
    ``PublishLockTimeout``, naming what it waited for and who held it.
    """
    timeout = publish_lock_timeout() if lock_timeout is None else lock_timeout
    try:
        with engine.begin() as conn:
            _set_lock_timeout(conn, timeout)
            _lock_month(conn, table, schema, run_month, timeout)
            yield conn
    except sa.exc.OperationalError as err:
        if _sqlstate(err) != _LOCK_NOT_AVAILABLE:
            raise
        relations = [_relation(engine, n, schema) for n in _publish_relations(table)]
        raise PublishLockTimeout(
            f"Publishing {run_month} to {_relation(engine, table, schema)}: waited more than {timeout:g} s "
            f"({LOCK_TIMEOUT_ENV}) for a lock while replacing the month's rows, and gave up (rolled "
            f"back). Holding locks on {', '.join(relations)} that block writes: "
            f"{_relation_lock_holders(engine, relations)}"
        ) from err


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
    conn.exec_driver_sql(f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
    with driver.cursor() as cursor, cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
        for record in records:
            copy.write_row([record[c] for c in columns])
    conn.exec_driver_sql(f"INSERT INTO {target} ({column_list}) SELECT {column_list} FROM {stage}")
    conn.exec_driver_sql(f"DROP TABLE {stage}")


WRITING_FUNCTIONS = (
    "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace "
    "AND (left(p.proname, 3) = 'lo_' OR p.proname IN ('loread', 'lowrite', 'pg_logical_emit_message'))"
)
"""The built-in functions that PUBLIC may run and that write something lasting: large objects
(lo_create, lo_from_bytea, lowrite, ...: kept in the database until unlinked) and WAL
messages. init.sql and ``grant_analyst_role`` (as a superuser) revoke them from PUBLIC in the
predictions database; nothing of the pipeline uses them. The other writers PUBLIC may run
leave nothing behind (advisory locks, NOTIFY: the statement needs no privilege anyway) or
check privileges of their own (setval, brin_summarize_range, pg_terminate_backend)."""


def revoke_writing_functions(conn: sa.Connection, role: str) -> list[str]:
    """Take EXECUTE on WRITING_FUNCTIONS from PUBLIC when connected as a superuser; returns those
    ``role`` may still run (warned about: then a superuser must run init.sql's REVOKE)."""
    functions = conn.exec_driver_sql(WRITING_FUNCTIONS).scalars().all()
    if conn.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar():
        for function in functions:
            conn.exec_driver_sql(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    allowed = [
        f
        for f in functions
        if conn.execute(
            sa.text("SELECT has_function_privilege(:r, :f, 'EXECUTE')"), {"r": role, "f": f}
        ).scalar()
    ]
    if allowed:
        log.warning(
            "Role %s may still run %s (PUBLIC may): a superuser must revoke them (deploy/postgres/init.sql)",
            role,
            ", ".join(allowed),
        )
    return allowed


def grant_analyst_role(
    engine: sa.Engine,
    role: str,
    schema: str = "public",
    table: str = "forecasts",
    *,
    password: str | None = None,
    default_privileges: bool = True,
) -> list[str]:
    """Create or update a read-only role; safe to run again. Returns the relations granted.

    The role gets LOGIN with ``password`` if one is given, else NOLOGIN (grant it to people's
    own login roles). It may connect, use ``schema`` and SELECT the predictions table, its
    runs table, its ``_latest`` view, the model registry ``_models``, the realised accuracy
    (``_accuracy``, ``_errors``, ``_tracking_signal``), ``_drift``, ``_alerts``, the what-if
    scenarios' ``_scenarios``, the drivers ``_drivers``, the revisions (``_revisions``,
    ``_churn``) and the hierarchy's ``_levels`` and ``_levels_latest`` (those that exist yet),
    and run none of WRITING_FUNCTIONS (revoked
    from PUBLIC when connected as a superuser, else warned about). With ``default_privileges``,
    tables and views that the connecting user creates in ``schema`` later are readable too,
    so a first publish after this call needs no second grant.
    """
    import psycopg.sql as psql

    names = tables.analyst_relations(table)
    granted: list[str] = []
    with engine.begin() as conn:
        driver = conn.connection.driver_connection

        def run(statement: psql.Composable) -> None:
            conn.exec_driver_sql(statement.as_string(driver))  # no parameters: "%" stays as is

        ident = psql.Identifier(role)
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if not exists:
            # Roles are cluster-wide: a concurrent grant may create it first; that is fine.
            run(
                psql.SQL(
                    "DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                ).format(ident)
            )
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
            run(
                psql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                    psql.Identifier(schema), ident
                )
            )
        revoke_writing_functions(conn, role)
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
            yield (
                sa.make_url(_psycopg_url(admin_url)).set(database=name).render_as_string(hide_password=False)
            )
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
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.publishing.postgres", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant-analyst", help="create or update the read-only analyst role")
    grant.add_argument("--url", required=True, help="SQLAlchemy URL of the predictions database")
    grant.add_argument("--role", default="analyst")
    grant.add_argument("--schema", default="public")
    grant.add_argument("--table", default="forecasts")
    grant.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the role's password (gives it LOGIN)",
    )
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
    print(
        f"{args.role}: SELECT on {', '.join(granted) or '(no relations yet)'}; "
        f"{'LOGIN' if password else 'NOLOGIN'}; default privileges in schema {args.schema}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
