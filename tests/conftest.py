"""Shared fixtures and the session's environment: a private AIRFLOW_HOME (set before anything
imports Airflow), demo-like data in a SQLite source, the test servers. What tests share that is
not a fixture lives in tests/helpers/."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.config import END_MONTH, SYNTHETIC_SIZE, seeded_deployment
from tests.helpers.paths import REPO

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="forecast-tests-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "GX_ANALYTICS_ENABLED": "false",
    }
)


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite in the private AIRFLOW_HOME), migrated once per session."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def synthetic_sales():
    from forecasting.datasets.synthetic import generate_sales

    return generate_sales(**SYNTHETIC_SIZE, end_month=END_MONTH, seed=7)


@pytest.fixture
def deployment(tmp_path, synthetic_sales, monkeypatch):
    """A seeded SQLite source and a config for it, selected through FORECAST_CONFIG."""
    return seeded_deployment(tmp_path, synthetic_sales, monkeypatch)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test PostgreSQL server; skips, saying so, when it does not answer."""
    import sqlalchemy as sa

    from tests.helpers.servers import ADMIN_URL

    engine = sa.create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {err.orig}")
    finally:
        engine.dispose()
    return ADMIN_URL


@pytest.fixture(scope="session")
def redis_client():
    """A client of the test Redis db; skips, saying so, when Redis does not answer."""
    import redis

    from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT

    client = redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT), db=REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as err:
        pytest.skip(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {err}")
    yield client
    client.close()


# The files that run whole stacks, schedulers or DAGs, longest first: under pytest-xdist (make
# test: two workers, a file at a time each) a long file started last would run alone at the end.
LONGEST_FIRST = (
    "tests/e2e/test_compose_stack.py",
    "tests/e2e/test_production.py",
    "tests/e2e/test_production_dag.py",
    "tests/e2e/test_local_run_beside_a_scheduler.py",
    "tests/e2e/test_local_run.py",
    "tests/e2e/test_dominicks_e2e.py",
    "tests/e2e/test_pipeline_e2e.py",
    "tests/monitoring/test_monitoring.py",
    "tests/e2e/test_dask.py",
)


def pytest_collection_modifyitems(config, items):
    """Under xdist, the LONGEST_FIRST files first, then every other file with a slow test, then
    the rest, each in collection order (xdist keeps it: --no-loadscope-reorder). The workers
    collect, and xdist clears their numprocesses: a worker is known by its workerinput."""
    if not (getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")):
        return

    def path(item) -> str:
        return item.nodeid.split("::", 1)[0]

    slow = {path(item) for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        if path(item) in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(path(item))
        return (1 if path(item) in slow else 2), 0

    items.sort(key=rank)
