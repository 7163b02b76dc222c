"""Engines for the databases a config names: a SQLAlchemy URL, or an Airflow connection id.

Every PostgreSQL session the pipeline opens asks the server to notice a client that is gone:
``client_connection_check_interval`` (a query still running for a killed task, e.g. waiting
for a lock or in COPY, is ended within that many milliseconds instead of holding its locks
until it finishes) and TCP keepalives (a client host that vanished without closing its
connection). Both only end sessions whose client is gone; how long a publish's transaction may
sit idle is set by the publish itself (forecasting.publishing.postgres).
"""

from __future__ import annotations

import sqlalchemy as sa

from forecasting.core.config import Database

CLIENT_CHECK_INTERVAL_MS = 5_000
"""How often (ms) the server checks, while running a query, that its client is still connected."""
KEEPALIVE = {"idle": 60, "interval": 10, "count": 6}
"""TCP keepalives of the server's socket (seconds idle, seconds between probes, probes): a dead
client host is noticed after about two minutes."""


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


def is_postgres(url: sa.URL) -> bool:
    return url.drivername.split("+")[0] in ("postgres", "postgresql")


def postgres_session(url: sa.URL, *settings: str) -> tuple[sa.URL, dict[str, str]]:
    """``url`` for psycopg 3 without its libpq ``options``, and the ``options`` connect argument:
    the URL's own first, then the liveness checks above, then ``settings`` (``-c name=value``),
    so later ones win."""
    options = [
        f"-c client_connection_check_interval={CLIENT_CHECK_INTERVAL_MS}",
        *(f"-c tcp_keepalives_{name}={value}" for name, value in KEEPALIVE.items()),
        *settings,
    ]
    given = url.query.get("options")
    if given:
        options[:0] = [given] if isinstance(given, str) else list(given)
    plain = url.set(drivername="postgresql+psycopg").difference_update_query(["options"])
    return plain, {"options": " ".join(options)}


def make_engine(db: Database) -> sa.Engine:
    url = sa.make_url(database_url(db))
    if not is_postgres(url):
        return sa.create_engine(url)
    url, connect_args = postgres_session(url)  # psycopg 3 is the driver we pin
    return sa.create_engine(url, connect_args=connect_args)
