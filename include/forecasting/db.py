"""Engines for the databases a config names: a SQLAlchemy URL, or an Airflow connection id."""

from __future__ import annotations

import sqlalchemy as sa

from forecasting.config import Database


def database_url(db: Database) -> str:
    if db.url:
        return db.url
    # Only a deployment that names an Airflow connection needs Airflow here.
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(db.conn_id).get_hook()
    return str(hook.sqlalchemy_url) if hasattr(hook, "sqlalchemy_url") else hook.get_uri()


def make_engine(db: Database) -> sa.Engine:
    url = sa.make_url(database_url(db))
    if url.drivername == "postgresql":  # psycopg 3 is the driver we pin
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, future=True)
