"""Engines for the databases a config names: a SQLAlchemy URL, or an Airflow connection id."""

from __future__ import annotations

import sqlalchemy as sa

from forecasting.core.config import Database


def database_url(db: Database) -> str:
    if db.url:
        return db.url
    # Only a deployment that names an Airflow connection needs Airflow here.
    from airflow.sdk import BaseHook

    assert db.conn_id is not None  # config guarantees one of url and conn_id
    connection = BaseHook.get_connection(db.conn_id)
    try:
        hook = connection.get_hook()
    except Exception:  # no provider installed for this connection type: its URI will do
        hook = None
    url = getattr(hook, "sqlalchemy_url", None)
    if url is not None:
        return url.render_as_string(hide_password=False)
    return connection.get_uri()


def make_engine(db: Database) -> sa.Engine:
    url = sa.make_url(database_url(db))
    if url.drivername.split("+")[0] in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we pin
    return sa.create_engine(url)
