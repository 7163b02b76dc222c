"""The drivers and revisions of real runs: two months of the pipeline on the synthetic data,
the model's, a blend's and a baseline's forecasts of the first published in turn. Each published
row's drivers sum to its prediction; a blend names its baselines' part; a baseline has none; the
second month's run revises the months the first also forecast. On SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import ExitStack

import pandas as pd
import pytest

from forecasting.core.config import load_config
from forecasting.datasets.synthetic import seed_source_database
from forecasting.orchestration import pipeline
from forecasting.publishing.query import run_query
from tests.helpers.config import END_MONTH, demo_config_dict, write_config

FIRST, SECOND = str(pd.Period(END_MONTH, "M") - 1), END_MONTH


def sums(config) -> pd.DataFrame:
    """Per published row: its prediction, its drivers' sum and how much they explain."""
    return run_query(
        config,
        "SELECT f.run_month, f.store_id, f.item_id, f.horizon, f.prediction, f.model_version, f.history_months, "
        "COUNT(d.family) AS families, SUM(d.contribution) AS total, MIN(d.explained) AS explained, "
        "SUM(CASE WHEN d.family = 'baselines' THEN d.contribution ELSE 0 END) AS baselines "
        "FROM forecasts f LEFT JOIN forecasts_drivers d ON d.run_month = f.run_month "
        "AND d.store_id = f.store_id AND d.item_id = f.item_id AND d.horizon = f.horizon "
        "GROUP BY f.run_month, f.store_id, f.item_id, f.horizon, f.prediction, f.model_version, f.history_months",
    )


@pytest.mark.slow  # runs the whole pipeline for two months, on each backend
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_drivers_and_revisions_of_two_monthly_runs(tmp_path, synthetic_sales, monkeypatch, request, backend):
    with ExitStack() as stack:
        raw = demo_config_dict(tmp_path)
        if backend == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
            raw["predictions"]["url"] = url
        raw["model"]["num_boost_round"] = 60
        raw["evaluation"]["statistical_baselines"] = []
        raw["evaluation"]["backtest_origins"] = 0
        raw["features"] = {"lags": [1, 2, 3, 12], "rolling_windows": [3]}
        path = write_config(tmp_path, raw)
        config = load_config(path)
        seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
        monkeypatch.setenv("FORECAST_CONFIG", str(path))

        first = pipeline.run_month(FIRST, "manual__first", config)
        attempt, model_dir = first["extract"]["attempt"], first["train"]["model_dir"]
        version = first["train"]["model_version"]
        for forecaster in (version, f"blend:{version}+seasonal_naive", "baseline:seasonal_naive"):
            made = pipeline.predict(FIRST, attempt, model_dir, config, forecaster)
            published = pipeline.publish(FIRST, attempt, model_dir, "manual__first", config)
            found = sums(config)
            assert set(found["model_version"]) == {forecaster}
            assert len(found) == made["rows"] == published["rows"]
            if forecaster.startswith("baseline:"):
                assert published["driver_rows"] == 0 and (found["families"] == 0).all()
                continue
            assert published["driver_rows"] == made["driver_rows"] == found["families"].sum()
            pd.testing.assert_series_equal(found["total"], found["prediction"], check_names=False, rtol=1e-5)
            # Half of a blend is the model's, the rest seasonal_naive's; a new item's forecast may be
            # averaged with its siblings' (modeling.cold_start), whose half no driver explains either.
            model_part = found["prediction"] - found["baselines"]
            pd.testing.assert_series_equal(
                found["explained"], model_part / found["prediction"], check_names=False, rtol=1e-6
            )
            if forecaster == version:
                established = found["history_months"] >= config.features.lookback_months
                assert (found.loc[established, "baselines"] == 0).all() and established.any()
        second = pipeline.run_month(SECOND, "manual__second", config)
        assert second["publish"]["rows"] > 0
        revisions = run_query(config, f"SELECT * FROM forecasts_revisions WHERE run_month = '{SECOND}-01'")
        revised = revisions[revisions["previous_prediction"].notna()]
        horizon = config.horizon
        assert len(revised) == len(revisions) * (horizon - 1) // horizon  # all but the newest month
        assert (revised["previous_run_month"].astype(str).str[:7] == FIRST).all()
        assert (
            revised["change"] - (revised["prediction"] - revised["previous_prediction"])
        ).abs().max() < 1e-9
        [churn] = run_query(config, "SELECT * FROM forecasts_churn").to_dict(orient="records")
        assert churn["revised"] == len(revised)
        assert churn["churn"] == pytest.approx(
            revised["change"].abs().sum() / revised["previous_prediction"].sum()
        )
