"""The PostgreSQL and Redis servers that the production-profile tests talk to.

PostgreSQL at FORECAST_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
a user that may create databases and roles); Redis at FORECAST_TEST_REDIS (default 127.0.0.1:6379)
in db FORECAST_TEST_REDIS_DB (default 15). The fixtures that check they answer are in conftest.py.
"""

from __future__ import annotations

import os

import pandas as pd
import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "FORECAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST, _, REDIS_PORT = os.environ.get("FORECAST_TEST_REDIS", "127.0.0.1:6379").partition(":")
REDIS_PORT = REDIS_PORT or "6379"
REDIS_DB = int(os.environ.get("FORECAST_TEST_REDIS_DB", "15"))


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
