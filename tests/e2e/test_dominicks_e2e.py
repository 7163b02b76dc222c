"""Real data end to end: Dominick's orange juice sales through the whole DAG (dag.test())."""

from __future__ import annotations

import json

import pendulum
import pytest
import sqlalchemy as sa
import yaml

from tests.e2e.test_pipeline_e2e import read_table, run_dag, task_states
from tests.helpers.config import write_config
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # runs the whole DAG


@pytest.fixture
def dominicks(tmp_path, monkeypatch):
    from forecasting.core.config import load_config
    from forecasting.datasets import dominicks as dom

    raw = yaml.safe_load((REPO / "config" / "dominicks.yaml").read_text())
    raw["data_dir"] = str(tmp_path / "data")
    raw["source"]["url"] = f"sqlite:///{tmp_path}/source.db"
    raw["feature_store"]["registry"] = str(tmp_path / "feast" / "registry.db")
    raw["feature_store"]["online_store"]["path"] = str(tmp_path / "feast" / "online.db")
    raw["predictions"]["url"] = f"sqlite:///{tmp_path}/predictions.db"
    path = write_config(tmp_path, raw)
    config = load_config(path)
    try:
        dom.seed_dominicks(config.source.database.url, table=config.source.table)
    except dom.AptDownloadError as err:
        pytest.skip(f"Dominick's data cannot be fetched here: {err}")
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    return config


@pytest.mark.usefixtures("airflow_db")
def test_dominicks_model_beats_the_naive_baselines(dominicks):
    dag_run = run_dag(pendulum.datetime(1992, 10, 1, tz="UTC"))  # M = September 1992
    assert str(dag_run.state) == "success", task_states(dag_run)

    forecasts = read_table(dominicks)
    engine = sa.create_engine(dominicks.source.database.url)
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT COUNT(*) FROM oj_sales WHERE month >= '1992-09-01' AND month < '1992-10-01'")
        ).scalar()
    engine.dispose()
    assert len(forecasts) == active > 800  # one per store and brand sold in September, horizon 1
    version = forecasts["model_version"].iloc[0]
    report = json.loads((dominicks.data_dir / "models" / version / "evaluation.json").read_text())
    best = report["best_baseline"]
    print(
        f"\nDominick's holdout WAPE: model {report['model']['wape']:.3f}, "
        + ", ".join(f"{name} {m['wape']:.3f}" for name, m in report["baselines"].items())
        + f" (best baseline: {best})"
    )
    assert report["model"]["wape"] < report["baselines"][best]["wape"]
