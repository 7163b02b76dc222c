"""The PostgreSQL and Redis servers that the production-profile tests talk to.

PostgreSQL at FORECAST_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
a user that may create databases and roles); Redis at FORECAST_TEST_REDIS (default 127.0.0.1:6379)
in db FORECAST_TEST_REDIS_DB (default 15, and one below it per pytest-xdist worker: gw1 uses 14, so
two workers' Celery brokers and online stores never share a db; the compose stack test keeps 12
and 13). The fixtures that check they answer are in conftest.py.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "FORECAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST, _, REDIS_PORT = os.environ.get("FORECAST_TEST_REDIS", "127.0.0.1:6379").partition(":")
REDIS_PORT = REDIS_PORT or "6379"
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_DB = int(os.environ.get("FORECAST_TEST_REDIS_DB", "15")) - _WORKER


def feast_keys(client, project: str) -> list[bytes]:
    """Feast's Redis keys end with the project name."""
    return list(client.scan_iter(match=b"*" + project.encode(), count=1000))


def query(url: str, sql: str, **params) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(sql), conn, params=params)
    finally:
        engine.dispose()


@contextmanager
def analyst_role(url: str, planner: bool = False) -> Iterator[tuple[list[str], object]]:
    """A throwaway analyst role on the PostgreSQL predictions database at ``url``, made by
    forecasting.publishing.postgres.grant_analyst_role (``planner``: a planner role, made by
    forecasting.publishing.overrides.grant_planner_role): (what it was granted, an engine logged
    in as it). Dropped afterwards, failed or not."""
    from forecasting.publishing.overrides import grant_planner_role
    from forecasting.publishing.postgres import grant_analyst_role

    kind = "planner" if planner else "analyst"
    role, password = f"forecast_test_{kind}_{secrets.token_hex(4)}", secrets.token_hex(8)
    owner = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        grant = grant_planner_role if planner else grant_analyst_role
        granted = grant(owner, role, password=password)
        analyst = sa.create_engine(sa.make_url(url).set(username=role, password=password))
        try:
            yield granted, analyst
        finally:
            analyst.dispose()
    finally:
        with owner.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        owner.dispose()


@contextmanager
def database_copy(template_url: str, prefix: str = "forecast_test") -> Iterator[str]:
    """A fresh PostgreSQL database copied from the one at ``template_url`` (CREATE DATABASE ...
    TEMPLATE: a file copy, far cheaper than building it again), dropped afterwards; yields its URL.
    Connections still open on the template (an engine's pool) are closed first: PostgreSQL copies
    only a database nobody is connected to."""
    template = sa.make_url(template_url)
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (template.database,),
            )
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template.database}"')
        try:
            yield template.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
