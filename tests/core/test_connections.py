"""A config may name an Airflow connection instead of a URL, for the source and the predictions."""

from __future__ import annotations

import pandas as pd

from tests.helpers.config import demo_config_dict, write_config


def test_source_and_predictions_through_airflow_connections(tmp_path, monkeypatch, synthetic_sales):
    from forecasting.core.config import load_config
    from forecasting.core.db import make_engine
    from forecasting.data.extract import read_window
    from forecasting.datasets.synthetic import seed_source_database

    seed_source_database(f"sqlite:///{tmp_path}/sales.db", synthetic_sales)
    monkeypatch.setenv("AIRFLOW_CONN_SALES_WAREHOUSE", f"sqlite:///{tmp_path}/sales.db")
    monkeypatch.setenv("AIRFLOW_CONN_PREDICTIONS_DB", "postgresql://postgres@127.0.0.1:5432/postgres")
    raw = demo_config_dict(tmp_path)
    raw["source"] = {**raw["source"], "conn_id": "sales_warehouse"}
    del raw["source"]["url"]
    raw["predictions"] = {"conn_id": "predictions_db", "table": "forecasts"}
    config = load_config(write_config(tmp_path, raw))

    frame = read_window(config, pd.Period("2024-12", "M"))
    assert len(frame) == len(synthetic_sales)
    engine = make_engine(config.predictions.database)
    assert engine.url.drivername == "postgresql+psycopg"  # psycopg 3, whatever the connection said
    assert engine.url.host == "127.0.0.1" and engine.url.database == "postgres"
    engine.dispose()
