"""Publishing on PostgreSQL against hostile or stuck sessions, on the real server, no mocks.

* A read-only analyst (a login role set up as deploy/postgres/init.sql or grant_analyst_role
  sets it up) does everything it may to hold publishing up: advisory locks on every key the
  advisory-lock publish of old used and on arbitrary ones, ACCESS SHARE locks on every relation
  it can see, long open transactions that read everything; row locks and stronger table locks
  are refused to it. A first publish and a re-publish still complete within seconds.
* A session of the pipeline's own role that holds a month's publish lock (a stuck publish), or a
  table lock that blocks writes: the publish gives up after its lock timeout, saying what it
  waited for and who held it.

Every test works in a database of its own (forecast_test_<random>) with roles of its own
(forecast_test_*_<random>), dropped afterwards.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack
from datetime import date
from types import SimpleNamespace

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from forecasting.publishing.postgres import grant_analyst_role, temporary_database
from forecasting.publishing.publish import publish
from tests.e2e.test_production import EVALUATION, MONTH, forecast_frame, predictions_config, read_month
from tests.helpers.servers import query

LOCK_TIMEOUT_ENV = "FORECAST_PUBLISH_LOCK_TIMEOUT"
FAST = 10.0  # seconds: a publish of a few thousand rows takes well under one


def conninfo(url: str) -> str:
    """A libpq URI for psycopg.connect from an SQLAlchemy URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=["init.sql", "grant_analyst_role"])
def stack(request, postgres_server):
    """A predictions database, the pipeline's role and a login analyst role.

    ``init.sql``: as the compose server has them (the database owned by a non-superuser
    pipeline role; the analyst may connect, use schema public and, by default privileges, read
    what the pipeline creates). ``grant_analyst_role``: the pipeline connects as the admin
    user, who made the analyst with ``grant_analyst_role`` before the first publish.
    """
    tag = secrets.token_hex(4)
    writer, analyst = f"forecast_test_writer_{tag}", f"forecast_test_analyst_{tag}"
    passwords = {writer: "writer-pw", analyst: "analyst-pw"}
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with ExitStack() as stack:

        @stack.callback
        def drop_roles():
            with admin.connect() as conn:
                for role in (analyst, writer):
                    conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            admin.dispose()

        db_url = stack.enter_context(temporary_database(postgres_server))
        database = sa.make_url(db_url).database
        db_admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
        stack.callback(db_admin.dispose)
        if request.param == "init.sql":
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE \"{writer}\" LOGIN PASSWORD '{passwords[writer]}'")
                conn.exec_driver_sql(f'CREATE ROLE "{analyst}" NOLOGIN')
                conn.exec_driver_sql(f"ALTER ROLE \"{analyst}\" LOGIN PASSWORD '{passwords[analyst]}'")
                conn.exec_driver_sql(f'ALTER DATABASE "{database}" OWNER TO "{writer}"')
                conn.exec_driver_sql(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
                conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{database}" TO "{analyst}"')
            with db_admin.connect() as conn:
                conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                conn.exec_driver_sql(f'GRANT ALL ON SCHEMA public TO "{writer}"')
                conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA public TO "{analyst}"')
                conn.exec_driver_sql(
                    f'ALTER DEFAULT PRIVILEGES FOR ROLE "{writer}" IN SCHEMA public '
                    f'GRANT SELECT ON TABLES TO "{analyst}"'
                )
            pipeline_url = (
                sa.make_url(db_url)
                .set(username=writer, password=passwords[writer])
                .render_as_string(hide_password=False)
            )
        else:
            grant_analyst_role(db_admin, analyst, password=passwords[analyst])
            pipeline_url = db_url
        analyst_url = (
            sa.make_url(db_url).set(username=analyst, password=passwords[analyst]).render_as_string(False)
        )
        yield SimpleNamespace(
            setup=request.param,
            admin_url=db_url,
            pipeline_url=pipeline_url,
            analyst=analyst,
            analyst_url=analyst_url,
        )


def old_advisory_keys(table: str, schema: str | None, months: list[pd.Period]) -> list[tuple[int, int]]:
    """The (class, object) keys of the advisory locks that publish took before the lock table."""
    key = zlib.crc32(f"forecasting.publishing.publish:{schema or ''}.{table}".encode())
    key = key - 2**32 if key >= 2**31 else key
    return [(key, 0)] + [(key, m.year * 12 + m.month) for m in months]


def timed_publish(config, month: pd.Period, frame: pd.DataFrame, version: str, deadline: float = 60.0):
    """Publish from another thread; returns (seconds taken, result), or fails after ``deadline`` seconds."""
    pool = ThreadPoolExecutor(1)
    start = time.monotonic()
    future = pool.submit(publish, frame, config, month, model_version=version, run_id=version)
    try:
        result = future.result(timeout=deadline)
    except FutureTimeout:
        pytest.fail(f"publish of {month} ({version}) still waiting after {deadline:g} s: blocked")
    finally:
        pool.shutdown(wait=False)  # a blocked publish ends when the test's sessions close
    return time.monotonic() - start, result


def visible_relations(conn: psycopg.Connection) -> list[str]:
    """Tables, views and matviews the current role may SELECT, in this database (shared catalogs
    left alone: other people's databases use them too)."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND NOT c.relisshared AND c.relpersistence <> 't' AND has_table_privilege(c.oid, 'SELECT') "
            "ORDER BY 1"
        )
    ]


def lock_everything_visible(conn: psycopg.Connection, tally: Counter) -> list[str]:
    """In ``conn``'s open transaction: ACCESS SHARE on every visible relation, and read it."""
    locked = []
    for relation in visible_relations(conn):
        try:
            with conn.transaction():  # a savepoint: one refusal does not end the transaction
                conn.execute(f"LOCK TABLE {relation} IN ACCESS SHARE MODE")
                conn.execute(f"SELECT * FROM {relation} LIMIT 1").fetchall()
            locked.append(relation)
            tally["ACCESS SHARE lock + SELECT held on a visible relation"] += 1
        except psycopg.Error:
            tally["ACCESS SHARE lock refused (not lockable)"] += 1
    return locked


def assert_refused(conn: psycopg.Connection, statements: list[str], tally: Counter, label: str) -> None:
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.transaction():
                conn.execute(statement)
        tally[label] += 1


def test_a_hostile_analyst_cannot_hold_up_publishing(stack, tmp_path, monkeypatch):
    # Were the publish to wait for a lock after all, it would fail after 5 s naming the holder.
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "5")
    config = predictions_config(stack.pipeline_url, tmp_path)
    months = [MONTH - 1, MONTH, MONTH + 1]
    frames = {m: forecast_frame(m, stores=20, items=50, seed=i) for i, m in enumerate(months)}
    tally: Counter = Counter()

    with ExitStack() as sessions:

        def analyst_session(autocommit: bool, repeatable_read: bool = False) -> psycopg.Connection:
            conn = sessions.enter_context(
                psycopg.connect(
                    conninfo(stack.analyst_url), autocommit=autocommit, application_name="hostile-analyst"
                )
            )
            if repeatable_read:  # one snapshot for the whole (long) transaction
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            assert conn.execute("SELECT current_user").fetchone()[0] == stack.analyst
            return conn

        # Session-level advisory locks (held until the session ends) on every key the
        # advisory-lock publish used, schema unset or "public", and on arbitrary other keys.
        keys = old_advisory_keys("forecasts", None, months) + old_advisory_keys("forecasts", "public", months)
        rng = secrets.SystemRandom()
        arbitrary_pairs = [(keys[0][0], m) for m in range(1, 33)] + [
            (rng.randint(-(2**31), 2**31 - 1), rng.randint(-(2**31), 2**31 - 1)) for _ in range(32)
        ]
        arbitrary_bigints = [0, 1, -1, 42, 2**62, -(2**63)] + [
            rng.randint(-(2**63), 2**63 - 1) for _ in range(26)
        ]
        hoarder = analyst_session(autocommit=True)
        for k1, k2 in keys:
            hoarder.execute("SELECT pg_advisory_lock(%s, %s)", (k1, k2))
            tally["advisory lock held: a key of the old publish"] += 1
        for k1, k2 in arbitrary_pairs:
            hoarder.execute("SELECT pg_advisory_lock(%s, %s)", (k1, k2))
            tally["advisory lock held: an arbitrary (int, int) key"] += 1
        for k in arbitrary_bigints:
            hoarder.execute("SELECT pg_advisory_lock(%s)", (k,))
            tally["advisory lock held: an arbitrary bigint key"] += 1
        # ...and transaction-level ones, shared and exclusive, in a transaction left open.
        xact_hoarder = analyst_session(autocommit=False)
        for k in range(100, 116):
            xact_hoarder.execute("SELECT pg_advisory_xact_lock(%s)", (k,))
            xact_hoarder.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (keys[0][0], -k))
            tally["advisory lock held: transaction-level, exclusive or shared"] += 2
        # A long transaction that has locked (ACCESS SHARE) and read everything it can see yet.
        reader = analyst_session(autocommit=False, repeatable_read=True)
        lock_everything_visible(reader, tally)

        held = query(
            stack.admin_url,
            "SELECT count(*) FILTER (WHERE l.locktype = 'advisory') AS advisory, "
            "count(*) FILTER (WHERE l.locktype = 'relation') AS relation "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.usename = :r AND l.granted",
            r=stack.analyst,
        ).iloc[0]
        assert held["advisory"] == len(keys) + len(arbitrary_pairs) + len(arbitrary_bigints) + 32
        assert held["relation"] > 0

        # 1. The first publish: creates the tables, the view and the lock table.
        seconds, first = timed_publish(config, MONTH, frames[MONTH], "first")
        assert seconds < FAST and first.replaced == 0
        took = [seconds]

        # 2. Now the analyst's tables exist: lock and read them too, and hold on.
        reader2 = analyst_session(autocommit=False, repeatable_read=True)
        locked = lock_everything_visible(reader2, tally)
        for relation in ("forecasts", "forecasts_runs", "forecasts_latest"):
            assert f"public.{relation}" in locked or relation in locked, (relation, locked)
        assert not any("publish_lock" in r for r in locked)
        assert reader2.execute("SELECT count(*) FROM forecasts").fetchone()[0] == len(frames[MONTH])

        # What it may not do: row locks, stronger table locks, anything on the lock table.
        attacker = analyst_session(autocommit=False)
        where = f"WHERE run_month = '{date(2024, 10, 1)}'"
        row_locks = ["FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"]
        assert_refused(
            attacker,
            [
                f"SELECT * FROM {relation} {where} {lock}"
                for relation in ("forecasts", "forecasts_runs", "forecasts_latest")
                for lock in row_locks
            ],
            tally,
            "row lock refused (FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE)",
        )
        stronger = [
            "ROW SHARE",
            "ROW EXCLUSIVE",
            "SHARE UPDATE EXCLUSIVE",
            "SHARE",
            "SHARE ROW EXCLUSIVE",
            "EXCLUSIVE",
            "ACCESS EXCLUSIVE",
        ]
        assert_refused(
            attacker,
            [
                f"LOCK TABLE {relation} IN {mode} MODE {nowait}"
                for relation in ("forecasts", "forecasts_runs", "forecasts_latest")
                for mode in stronger
                for nowait in ("", "NOWAIT")
            ],
            tally,
            "table lock stronger than ACCESS SHARE refused",
        )
        assert_refused(
            attacker,
            [
                "SELECT * FROM forecasts_publish_lock",
                *(f"SELECT * FROM forecasts_publish_lock {lock}" for lock in row_locks),
                *(
                    f"LOCK TABLE forecasts_publish_lock IN {mode} MODE"
                    for mode in ["ACCESS SHARE", *stronger]
                ),
                "INSERT INTO forecasts_publish_lock VALUES ('2030-01-01')",
                "UPDATE forecasts_publish_lock SET run_month = run_month",
                "DELETE FROM forecasts_publish_lock",
                "TRUNCATE forecasts_publish_lock",
            ],
            tally,
            "anything on the lock table refused",
        )

        # 3. With all that held: a re-publish of the month, and the first publish of two others.
        seconds, again = timed_publish(config, MONTH, frames[MONTH], "again")
        assert seconds < FAST and again.replaced == len(frames[MONTH])
        took.append(seconds)
        for month in (MONTH - 1, MONTH + 1):
            seconds, other = timed_publish(config, month, frames[month], f"other-{month}")
            assert seconds < FAST and other.replaced == 0
            took.append(seconds)
        # The analyst's sessions are all still there, holding what they held.
        for conn in (hoarder, xact_hoarder, reader, reader2):
            assert conn.execute("SELECT 1").fetchone() == (1,)

    assert set(read_month(stack.admin_url, MONTH)["model_version"]) == {"again"}
    runs = query(stack.admin_url, "SELECT model_version FROM forecasts_runs ORDER BY run_month")
    assert runs["model_version"].tolist() == [f"other-{MONTH - 1}", "again", f"other-{MONTH + 1}"]
    print(f"\nhostile actions tried by the analyst ({stack.setup}):")
    for action, count in sorted(tally.items()):
        print(f"  {count:4d}  {action}")
    print("publishes meanwhile took " + ", ".join(f"{t:.2f}" for t in took) + " s")


def test_publish_gives_up_after_its_lock_timeout_naming_the_holder(stack, tmp_path, monkeypatch):
    from forecasting.publishing import postgres

    config = predictions_config(stack.pipeline_url, tmp_path)
    frames = {v: forecast_frame(MONTH, stores=5, items=10, value=x) for v, x in (("v1", 1.0), ("v2", 2.0))}
    publish(frames["v1"], config, MONTH, model_version="v1", run_id="v1", evaluation=EVALUATION)
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "1")
    assert postgres.publish_lock_timeout() == 1.0

    # A session of the pipeline's own role holds the month's lock row: a stuck publish.
    with psycopg.connect(conninfo(stack.pipeline_url), application_name="stuck-publish") as holder:
        holder.execute(
            "SELECT run_month FROM forecasts_publish_lock WHERE run_month = %s FOR UPDATE",
            (date(2024, 10, 1),),
        )
        pid = holder.info.backend_pid
        start = time.monotonic()
        with pytest.raises(postgres.PublishLockTimeout) as info:
            publish(frames["v2"], config, MONTH, model_version="v2", run_id="v2")
        assert 1.0 <= time.monotonic() - start < FAST
        message = str(info.value)
        for expected in (
            "waited more than 1 s",
            LOCK_TIMEOUT_ENV,
            "publish lock",
            "run_month = 2024-10-01 of forecasts_publish_lock",
            f"pid {pid}",
            "application 'stuck-publish'",
            "idle in transaction",
            "FOR UPDATE",
        ):
            assert expected in message, (expected, message)
        assert set(read_month(stack.admin_url, MONTH)["model_version"]) == {"v1"}  # rolled back

        # Other months do not wait for it.
        start = time.monotonic()
        publish(
            forecast_frame(MONTH + 1, stores=5, items=10), config, MONTH + 1, model_version="m", run_id="m"
        )
        assert time.monotonic() - start < FAST
        holder.rollback()

        # A table lock that blocks writes (a migration, say): the timeout names it too.
        holder.execute("LOCK TABLE forecasts IN EXCLUSIVE MODE")
        with pytest.raises(postgres.PublishLockTimeout) as info:
            publish(frames["v2"], config, MONTH, model_version="v2", run_id="v2")
        message = str(info.value)
        for expected in ("replacing the month's rows", f"pid {pid}", "ExclusiveLock on forecasts"):
            assert expected in message, (expected, message)
        holder.rollback()

    # Once the holder is gone, the publish goes through.
    publish(frames["v2"], config, MONTH, model_version="v2", run_id="v2")
    assert set(read_month(stack.admin_url, MONTH)["model_version"]) == {"v2"}


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_lock_timeout_that_would_wait_for_ever_or_is_no_number_is_refused(value, monkeypatch):
    from forecasting.publishing import postgres

    monkeypatch.setenv(LOCK_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=LOCK_TIMEOUT_ENV):
        postgres.publish_lock_timeout()
    monkeypatch.delenv(LOCK_TIMEOUT_ENV)
    assert postgres.publish_lock_timeout() == postgres.PUBLISH_LOCK_TIMEOUT
