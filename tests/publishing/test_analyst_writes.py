"""The analyst role writes nothing that lasts (issue 23, fault 12), on the real PostgreSQL server.

PUBLIC may run the large-object functions (``lo_create``, ``lo_from_bytea``, ``lowrite``, ...)
and ``pg_logical_emit_message``: a read-only analyst could store large objects, which stay until
unlinked, or write to the WAL. Both ways the tests make the analyst take them away: the real
``deploy/postgres/init.sh`` (+ ``init.sql``) run on the test server with names of its own, and
``grant_analyst_role`` (what tests/helpers/servers.analyst_role uses). Every function
``WRITING_FUNCTIONS`` finds is refused to the analyst, and the ones it could call are called.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess

import psycopg
import pytest
import sqlalchemy as sa

from forecasting.publishing.postgres import WRITING_FUNCTIONS, grant_analyst_role, temporary_database
from tests.helpers.paths import REPO
from tests.helpers.servers import analyst_role

CALLS = {  # what an analyst tried, one per kind of lasting write
    "lo_create": "SELECT lo_create(0)",
    "lo_creat": "SELECT lo_creat(-1)",
    "lo_from_bytea": "SELECT lo_from_bytea(0, 'kept for ever')",
    "lo_import": "SELECT lo_import('/etc/hostname')",
    "lo_open": "SELECT lo_open(1, 131072)",
    "lowrite": "SELECT lowrite(0, 'x')",
    "lo_put": "SELECT lo_put(1, 0, 'x')",
    "pg_logical_emit_message": "SELECT pg_logical_emit_message(false, 'analyst', 'in the WAL')",
}


def conninfo(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def writing_functions(url: str) -> list[str]:
    with psycopg.connect(conninfo(url)) as conn:
        return [row[0] for row in conn.execute(WRITING_FUNCTIONS)]


def assert_writes_nothing(admin_url: str, analyst_url: str) -> None:
    functions = writing_functions(admin_url)
    names = {f.split("(")[0] for f in functions}
    assert set(CALLS) <= names, names  # the query finds what it is meant to
    with psycopg.connect(conninfo(admin_url)) as admin:
        objects = admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    with psycopg.connect(conninfo(analyst_url), autocommit=True) as conn:
        role = conn.execute("SELECT current_user").fetchone()[0]
        allowed = [
            f
            for f in functions
            if conn.execute("SELECT has_function_privilege(%s, 'EXECUTE')", [f]).fetchone()[0]
        ]
        assert allowed == [], f"{role} may still run {allowed}"
        for name, call in CALLS.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"function {name}"):
                conn.execute(call)
    with psycopg.connect(conninfo(admin_url)) as admin:
        assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == objects


def test_the_analyst_of_grant_analyst_role_writes_nothing_that_lasts(postgres_server):
    with temporary_database(postgres_server) as url, analyst_role(url) as (_, analyst):
        assert_writes_nothing(url, analyst.url.render_as_string(hide_password=False))


def test_grant_analyst_role_without_a_superuser_warns_of_what_it_could_not_revoke(postgres_server, caplog):
    """A pipeline role cannot revoke what PUBLIC may run on built-ins: it says so, naming them."""
    tag = secrets.token_hex(4)
    owner, analyst = f"forecast_test_owner_{tag}", f"forecast_test_analyst_{tag}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        with temporary_database(postgres_server) as url:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE \"{owner}\" LOGIN CREATEROLE PASSWORD 'owner-pw'")
                conn.exec_driver_sql(f'ALTER DATABASE "{sa.make_url(url).database}" OWNER TO "{owner}"')
            engine = sa.create_engine(sa.make_url(url).set(username=owner, password="owner-pw"))
            try:
                with caplog.at_level(logging.WARNING, logger="forecasting.publishing.postgres"):
                    grant_analyst_role(engine, analyst)
            finally:
                engine.dispose()
    finally:
        with admin.connect() as conn:
            for role in (analyst, owner):
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()
    assert f"Role {analyst} may still run" in caplog.text and "lo_from_bytea(oid,bytea)" in caplog.text
    assert "deploy/postgres/init.sql" in caplog.text


def test_the_analyst_of_init_sql_writes_nothing_that_lasts(postgres_server):
    """deploy/postgres/init.sh as the postgres container runs it, with names of its own and
    PRIVATE_DBS empty (it closes none of the server's other databases)."""
    tag = secrets.token_hex(4)
    names = {
        "PREDICTIONS_DB": f"forecast_test_predictions_{tag}",
        "FEAST_REGISTRY_DB": f"forecast_test_registry_{tag}",
        "FORECAST_DB_USER": f"forecast_test_user_{tag}",
        "ANALYST_ROLE": f"forecast_test_analyst_{tag}",
    }
    server = sa.make_url(postgres_server)
    env = {
        **os.environ,
        **names,
        "FORECAST_DB_PASSWORD": "forecast-pw",
        "ANALYST_PASSWORD": "analyst-pw",
        "PRIVATE_DBS": "",
        "POSTGRES_USER": server.username or "postgres",
        "POSTGRES_DB": server.database or "postgres",
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
    }
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        done = subprocess.run(
            ["bash", str(REPO / "deploy" / "postgres" / "init.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        database = server.set(database=names["PREDICTIONS_DB"])
        assert_writes_nothing(
            database.render_as_string(hide_password=False),
            database.set(username=names["ANALYST_ROLE"], password="analyst-pw").render_as_string(
                hide_password=False
            ),
        )
        # The pipeline's role cannot either (nothing of it uses them).
        pipeline = database.set(username=names["FORECAST_DB_USER"], password="forecast-pw")
        with psycopg.connect(conninfo(pipeline.render_as_string(hide_password=False))) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(CALLS["lo_from_bytea"])
    finally:
        with admin.connect() as conn:
            for key in ("PREDICTIONS_DB", "FEAST_REGISTRY_DB"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{names[key]}" WITH (FORCE)')
            for key in ("ANALYST_ROLE", "FORECAST_DB_USER"):
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{names[key]}"')
        admin.dispose()


def test_init_sql_and_the_code_find_the_functions_with_the_same_rule():
    """The rule is written twice (init.sql runs without Python): the same predicate in both."""
    rule = WRITING_FUNCTIONS.split(" WHERE ", 1)[1]
    init_sql = " ".join((REPO / "deploy" / "postgres" / "init.sql").read_text().split())
    assert " ".join(rule.split()) in init_sql, rule
