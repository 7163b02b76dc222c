"""A publish that outlives its client or its server (issue 23, faults 14 and 15), on the real
PostgreSQL server; every test in a database of its own, dropped afterwards.

* A publishing process killed with ``kill -9`` while it holds the month's publish lock: its
  orphaned backend lets the lock go (``client_connection_check_interval`` when it was running a
  query, the publish's ``idle_in_transaction_session_timeout`` when another process still holds
  its socket), and the next publish of the month goes through. Before, it waited for ever.
* PostgreSQL going away during a publish (simulated by a TCP proxy in front of the test server
  that refuses, then cuts every connection, then accepts again): the publish tries again with
  backoff for FORECAST_PUBLISH_CONNECT_RETRY seconds and completes; it failed at once before.
* FORECAST_PUBLISH_LOCK_TIMEOUT=inf (and other numbers no timeout can hold): refused naming the
  variable, before the database is touched (every publish crashed with OverflowError).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

import pytest
import sqlalchemy as sa

from forecasting.core.config import ConfigError
from forecasting.core.months import month_start
from forecasting.publishing.postgres import temporary_database
from forecasting.publishing.publish import publish
from tests.e2e.test_production import EVALUATION, MONTH, forecast_frame, predictions_config, read_month

LOCK_TIMEOUT_ENV, IDLE_TIMEOUT_ENV = "FORECAST_PUBLISH_LOCK_TIMEOUT", "FORECAST_PUBLISH_IDLE_TIMEOUT"
RETRY_ENV = "FORECAST_PUBLISH_CONNECT_RETRY"
RUN_MONTH = month_start(MONTH).date()


@pytest.fixture
def database(postgres_server):
    with temporary_database(postgres_server) as url:
        yield url


def publish_version(config, version: str, frame=None):
    frame = forecast_frame(MONTH, stores=5, items=10) if frame is None else frame
    return publish(frame, config, MONTH, model_version=version, run_id=version, evaluation=EVALUATION)


# --- a killed publisher ----------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import date
    from forecasting.core.config import Database
    from forecasting.core.db import make_engine
    from forecasting.publishing.postgres import publish_transaction

    url, how = sys.argv[1], sys.argv[2]
    engine = make_engine(Database(url=url))
    with publish_transaction(engine, "forecasts", None, date.fromisoformat(sys.argv[3])) as conn:
        if how == "query":  # killed while the backend runs a query for it
            print("locked", flush=True)
            conn.exec_driver_sql("SELECT pg_sleep(3600)")
        else:  # killed while a child it forked keeps the connection's socket open
            child = os.fork()
            if child == 0:
                time.sleep(3600)
                os._exit(0)
            print(f"locked {child}", flush=True)
            time.sleep(3600)
    """
)


def start_holder(url: str, how: str, env: dict) -> tuple[subprocess.Popen, int | None]:
    """A process that takes the month's publish lock as publish does; returns it and the pid of
    the child keeping its socket (``how`` = "socket")."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, how, RUN_MONTH.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    line = holder.stdout.readline().split()
    assert line and line[0] == "locked", f"the holder did not take the lock: {line}"
    return holder, int(line[1]) if len(line) > 1 else None


def lock_holders(url: str) -> int:
    """Backends of the test database inside a transaction other than this one."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("how", ["query", "socket"])
def test_a_killed_publisher_lets_the_months_lock_go(database, tmp_path, monkeypatch, how):
    config = predictions_config(database, tmp_path)
    publish_version(config, "v1")  # the tables and the month's lock row exist
    holder, child = start_holder(database, how, {IDLE_TIMEOUT_ENV: "3"})
    try:
        assert lock_holders(database) == 1
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # Were the lock kept, this publish would give up after 30 s naming the orphaned backend.
        monkeypatch.setenv(LOCK_TIMEOUT_ENV, "30")
        start = time.monotonic()
        publish_version(config, "v2")
        assert time.monotonic() - start < 20
    finally:
        for pid in (holder.pid, child):
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if child is not None:
            with suppress(ChildProcessError):
                os.waitpid(child, 0)
    assert set(read_month(database, MONTH)["model_version"]) == {"v2"}


def test_the_pipelines_sessions_check_that_their_client_is_there(database):
    from forecasting.core.config import Database
    from forecasting.core.db import make_engine

    engine = make_engine(Database(url=database + "?options=-c%20statement_timeout%3D7000"))
    try:
        with engine.connect() as conn:
            shown = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("client_connection_check_interval", "tcp_keepalives_idle", "statement_timeout")
            }
    finally:
        engine.dispose()
    # The URL's own options are kept beside ours.
    assert shown == {
        "client_connection_check_interval": "5s",
        "tcp_keepalives_idle": "60",
        "statement_timeout": "7s",
    }


# --- a server that goes away -------------------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1:``port`` to the test server: ``start`` accepts, ``stop`` closes
    the port and cuts every connection through it, as a server restart does."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        with socket.socket() as probe:  # a free port, refused until start()
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            with suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for s in self.open:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(database):
    url = sa.make_url(database)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    yield proxy
    proxy.stop()


def through(url: str, proxy: Proxy) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def test_a_publish_waits_for_a_server_that_is_not_up_yet(database, proxy, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(RETRY_ENV, "60")
    config = predictions_config(through(database, proxy), tmp_path)
    threading.Timer(3, proxy.start).start()  # "connection refused" for 3 s, then a server
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="forecasting.publishing.publish"):
        result = publish_version(config, "v1")
    assert result.rows == 5 * 10 * 3 and time.monotonic() - start >= 3
    assert "cannot be reached" in caplog.text and "refused" in caplog.text.lower()
    assert set(read_month(database, MONTH)["model_version"]) == {"v1"}


def test_a_publish_survives_a_server_restart_in_the_middle(database, proxy, tmp_path, monkeypatch):
    """The publish waits inside its transaction for the month's lock (held by another session)
    when every connection is cut and the port refuses for 2 s: it starts again and completes."""
    monkeypatch.setenv(RETRY_ENV, "60")
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "60")
    publish_version(predictions_config(database, tmp_path / "direct"), "v1")
    proxy.start()
    config = predictions_config(through(database, proxy), tmp_path)
    holder = sa.create_engine(database)
    pool = ThreadPoolExecutor(1)
    try:
        with holder.connect() as conn:
            conn.exec_driver_sql(
                f"SELECT * FROM forecasts_publish_lock WHERE run_month = '{RUN_MONTH}' FOR UPDATE"
            ).all()
            future = pool.submit(publish_version, config, "v2")
            deadline = time.monotonic() + 30
            while not waiting_for_a_lock(database) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert waiting_for_a_lock(database), "the publish never reached the month's lock"
            proxy.stop()
            time.sleep(2)
            proxy.start()
            conn.rollback()
        result = future.result(timeout=90)
    finally:
        pool.shutdown(wait=False)
        holder.dispose()
    assert result.rows == 5 * 10 * 3
    rows = read_month(database, MONTH)
    assert set(rows["model_version"]) == {"v2"} and len(rows) == 150


def waiting_for_a_lock(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_publish_gives_up_on_a_server_that_stays_away(proxy, tmp_path, monkeypatch, database):
    monkeypatch.setenv(RETRY_ENV, "3")
    config = predictions_config(through(database, proxy), tmp_path)  # never started: refused
    start = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="(?i)refused"):
        publish_version(config, "v1")
    assert 2 <= time.monotonic() - start < 15


# --- settings no timeout can hold -----------------------------------------------------------------


@pytest.mark.parametrize("variable", [LOCK_TIMEOUT_ENV, IDLE_TIMEOUT_ENV, RETRY_ENV])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "86401", "-1", "soon"])
def test_a_timeout_that_is_not_a_finite_bounded_number_is_refused(
    database, tmp_path, monkeypatch, variable, value
):
    config = predictions_config(database, tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        publish_version(config, "v1")
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:  # refused before any table was made
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_the_days_bound_and_zero_retry_pass(monkeypatch):
    from forecasting.publishing.postgres import MAX_TIMEOUT_SECONDS, publish_lock_timeout, seconds_from_env

    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "86400")
    assert publish_lock_timeout() == MAX_TIMEOUT_SECONDS
    monkeypatch.setenv(RETRY_ENV, "0")
    assert seconds_from_env(RETRY_ENV, 300.0, zero_allowed=True) == 0.0
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0")
    with pytest.raises(ConfigError, match="more than 0"):
        publish_lock_timeout()
