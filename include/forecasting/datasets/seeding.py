"""Writing a seeded table: the engine every seeder of the demo data replaces its tables with."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from forecasting.core.config import Database
from forecasting.core.db import make_engine


def replacing_engine(url: str) -> sa.Engine:
    """An engine for replacing a table in one transaction (its folder made, for SQLite)."""
    engine = make_engine(Database(url=url))
    if engine.dialect.name != "sqlite":
        return engine
    path = engine.url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    # pysqlite starts transactions lazily and not before DDL, so DROP/CREATE would commit on
    # their own; take over BEGIN so the whole replacement is one transaction.
    @sa.event.listens_for(engine, "connect")
    def _no_pysqlite_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine
