"""Shared fixtures: a private AIRFLOW_HOME (set before anything imports Airflow), demo-like data
in a SQLite source, and configs that put every file of a test under its own tmp folder."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
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

END_MONTH = "2024-12"
# Small enough for a quick test run, big enough that the model has something to learn.
SYNTHETIC_SIZE = {"stores": 6, "items": 25, "months": 48}


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


def demo_config_dict(folder: Path) -> dict:
    """The demo config, with every path moved under ``folder``."""
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    raw["source"]["url"] = f"sqlite:///{folder}/source.db"
    raw["feature_store"]["registry"] = str(folder / "feast" / "registry.db")
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": str(folder / "feast" / "online.db")}
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    raw["model"]["num_boost_round"] = 500
    # Theta alone keeps the statistical baselines in every pipeline test at a fraction of
    # AutoETS's cost (about 20 times cheaper); test_statistical.py covers both.
    raw["evaluation"]["statistical_baselines"] = ["theta"]
    return raw


def write_config(folder: Path, raw: dict) -> Path:
    # The demo's monitoring segment is one of its attributes: a test that reshapes the source
    # without it (other keys, no attributes) drops it, as a user with that source would.
    source, monitoring = raw.get("source", {}), raw.get("monitoring") or {}
    if monitoring.get("segment") not in (
        None,
        *source.get("entity_columns", []),
        *source.get("attributes", []),
    ):
        raw = {**raw, "monitoring": {k: v for k, v in monitoring.items() if k != "segment"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "forecast.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def deployment(tmp_path, synthetic_sales, monkeypatch):
    """A seeded SQLite source and a config for it, selected through FORECAST_CONFIG."""
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database

    path = write_config(tmp_path, demo_config_dict(tmp_path))
    config = load_config(path)
    seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    return config


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test PostgreSQL server; skips, saying so, when it does not answer."""
    import sqlalchemy as sa
    from servers import ADMIN_URL

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
    from servers import REDIS_DB, REDIS_HOST, REDIS_PORT

    client = redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT), db=REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as err:
        pytest.skip(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {err}")
    yield client
    client.close()


@contextmanager
def analyst_role(url: str) -> Iterator[tuple[list[str], object]]:
    """A throwaway analyst role on the PostgreSQL predictions database at ``url``, made by
    forecasting.publishing.postgres.grant_analyst_role: (what it was granted, an engine logged in as it).
    Dropped afterwards, failed or not."""
    import sqlalchemy as sa

    from forecasting.publishing.postgres import grant_analyst_role

    role, password = f"forecast_test_analyst_{secrets.token_hex(4)}", secrets.token_hex(8)
    owner = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        granted = grant_analyst_role(owner, role, password=password)
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


def in_memory_features(config, panel, entity, origin, client=None):
    """What Feast's point-in-time join answers for (entity, origin) rows: the features of the
    entity's feature row at the origin month, computed from the panel (a stand-in for
    ``dataset.retrieve`` where a test needs no Feast)."""
    import numpy as np
    import pandas as pd

    from forecasting.features.catalogue import feature_arrays, feature_names

    arrays = feature_arrays(panel, config)
    column = np.asarray(origin) - panel.first_month
    return pd.DataFrame({name: arrays.values[name][entity, column] for name in feature_names(config)})


def in_memory_features_unordered(config, panel, entity, origin, client=None):
    """``dataset.retrieve_unordered``'s stand-in: ``in_memory_features`` answered in reverse
    order (Feast's order is not the pairs'), with each pair's position in that answer."""
    import numpy as np

    features = in_memory_features(config, panel, entity, origin)
    n = len(features)
    return features.iloc[::-1].reset_index(drop=True), n - 1 - np.arange(n)


def without_feast(patch) -> None:
    """Point-in-time features computed from the panel instead of asked of Feast (``patch``: a
    pytest MonkeyPatch), for tests that need no Feast."""
    from forecasting.features import dataset

    patch.setattr(dataset, "retrieve", in_memory_features)
    patch.setattr(dataset, "retrieve_unordered", in_memory_features_unordered)
