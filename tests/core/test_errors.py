"""Errors that a retry cannot heal fail the task at once; those that may pass are retried.

The errors are real: raised by SQLite, PostgreSQL (psycopg) and our own checks, not built by hand.
"""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa

from forecasting.core.errors import DataError, is_permanent
from tests.helpers.config import demo_config_dict, write_config


def raised(call) -> BaseException:
    try:
        call()
    except BaseException as err:  # noqa: BLE001 - the error is what is tested
        return err
    raise AssertionError("nothing was raised")


def query(url: str, sql: str, **connect_args):
    engine = sa.create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql).all()
    finally:
        engine.dispose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_data_and_validation_errors_are_permanent(tmp_path):
    from forecasting.core.config import ConfigError, load_config
    from forecasting.data.checkpoint import DataValidationError, ValidationReport

    assert is_permanent(raised(lambda: load_config(tmp_path / "missing.yaml")))
    assert is_permanent(ConfigError("x"))
    assert is_permanent(DataError("too little history"))
    report = ValidationReport(success=False, month="2024-01", rows=1, rows_in_month=1, expectations=1)
    assert is_permanent(DataValidationError(report))
    # Wrapped by whoever called us, still permanent.
    try:
        try:
            raise DataError("inner")
        except DataError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        assert is_permanent(outer)


def test_sqlite_errors_that_will_not_heal(tmp_path):
    missing_dir = f"sqlite:///{tmp_path}/no/such/folder/db.sqlite"
    assert is_permanent(raised(lambda: query(missing_dir, "SELECT 1")))
    db = f"sqlite:///{tmp_path}/db.sqlite"
    assert is_permanent(raised(lambda: query(db, "SELECT * FROM sales")))  # no such table
    assert is_permanent(raised(lambda: query(db, "SELEKT 1")))  # syntax
    assert is_permanent(raised(lambda: sa.create_engine("nosuchdb://x")))  # no such dialect
    assert is_permanent(raised(lambda: sa.create_engine("not a url")))


def test_sqlite_busy_is_retried(tmp_path):
    import sqlite3

    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        err = raised(lambda: query(f"sqlite:///{path}", "SELECT * FROM t", timeout=0.1))
    finally:
        holder.rollback()
        holder.close()
    assert "locked" in str(err) and not is_permanent(err)


def test_postgres_errors_that_will_not_heal(postgres_server):
    url = sa.make_url(postgres_server)
    refused = url.set(port=closed_port()).render_as_string(False)
    assert is_permanent(raised(lambda: query(refused, "SELECT 1")))  # connection refused
    unknown_host = url.set(host="no-such-host.invalid").render_as_string(False)
    assert is_permanent(raised(lambda: query(unknown_host, "SELECT 1")))
    no_database = url.set(database="forecast_no_such_db").render_as_string(False)
    assert is_permanent(raised(lambda: query(no_database, "SELECT 1")))  # 3D000
    no_role = url.set(username="forecast_no_such_role").render_as_string(False)
    assert is_permanent(raised(lambda: query(no_role, "SELECT 1")))  # 28000
    assert is_permanent(raised(lambda: query(postgres_server, "SELECT * FROM forecast_no_such_table")))
    assert is_permanent(raised(lambda: query(postgres_server, "SELECT 1/0")))  # 22012


def test_postgres_errors_that_may_pass_are_retried(postgres_server):
    timeout = raised(lambda: query(postgres_server, "SELECT pg_sleep(2)", options="-c statement_timeout=100"))
    assert "statement timeout" in str(timeout) and not is_permanent(timeout)
    assert not is_permanent(RuntimeError("something we do not know"))
    assert not is_permanent(TimeoutError("timed out"))


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_an_unreachable_source_fails_the_run_at_once_without_retries(tmp_path, monkeypatch):
    """Before, the task was retried twice, 2 minutes apart: `make month` took 4.5 minutes to say so."""
    from tests.e2e.test_pipeline_e2e import run_dag, task_states

    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/sales"
    monkeypatch.setenv("FORECAST_CONFIG", str(write_config(tmp_path, raw)))

    started = time.monotonic()
    dag_run = run_dag()
    took = time.monotonic() - started

    states = task_states(dag_run)
    assert states["extract"] == "failed" and states["publish"] == "upstream_failed", states
    (extract,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "extract"]
    assert extract.try_number == 1, "a connection refused is not retried"
    assert took < 100, f"the failed run took {took:.0f} s"
    failure = next((tmp_path / "data" / "runs").rglob("extract.failed.json"))
    assert '"permanent": true' in failure.read_text() and "Connection refused" in failure.read_text()


def test_the_dag_turns_permanent_errors_into_failures_without_retry(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from forecasting.orchestration.tasks import run_stage

    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = f"sqlite:///{tmp_path}/missing/source.db"
    monkeypatch.setenv("FORECAST_CONFIG", str(write_config(tmp_path, raw)))
    with pytest.raises(AirflowFailException, match="unable to open database file"):
        run_stage("extract", "2024-12", "manual__x")
    with pytest.raises(ValueError, match="unknown stage"):
        run_stage("drop_everything", "2024-12", "manual__x")


def test_xgboost_refusing_its_data_or_a_model_file_is_permanent(tmp_path):
    """Train died in XGBoost on a 1e300 and was retried twice (issue 23, fault 4)."""
    import numpy as np
    import xgboost as xgb

    huge = np.array([[1.0], [3e300]])
    refused = raised(lambda: xgb.DMatrix(huge, label=np.array([1.0, 1e300])))
    assert type(refused).__name__ == "XGBoostError" and is_permanent(refused)

    corrupt = tmp_path / "model.ubj"
    corrupt.write_bytes(b"not a model")
    unreadable = raised(lambda: xgb.Booster().load_model(corrupt))
    assert type(unreadable).__name__ == "XGBoostError" and is_permanent(unreadable)


def test_xgboost_losing_its_workers_may_pass():
    from xgboost.core import XGBoostError

    assert not is_permanent(XGBoostError("[12:00:00] Failed to connect to the tracker: connection timed out"))
