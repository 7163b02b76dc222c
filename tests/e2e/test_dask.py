"""The same month on a real Dask cluster (a LocalCluster of 2 worker processes) and in-process.

Both runs read plans (config ``plans:``) and fit on targets scaled by each series' recent mean
(``model.scale_by_recent_mean``); the cluster run's predictions table and Feast registry are
PostgreSQL databases whose URLs hold a password. Every byte this process writes to the cluster
(the client's tasks to the scheduler, the scheduler's to the workers) is captured: the password
is never among them.

What runs on the workers gives the same answer as in-process, exactly: the feature files (each
chunk of entities a task), Feast's point-in-time retrieval of features and plans (each chunk of
entity rows a task, Feast's registry a snapshot) and prediction with a given booster. Training
differs by design: xgboost.dask splits the rows among the workers, merges their quantile
sketches and sums their histograms in another order, so the trees differ a little. The
tolerance for that, checked here: forecasts correlate at r >= 0.99, their total is within 2%,
and both models beat the best baseline with holdout WAPEs within 5% of each other. Measured on
this data (the same on every run): r = 0.998, totals 1.6% apart, WAPEs 0.260 and 0.263; the
demo config without plans or scaling: r = 0.9993, 0.4%.
"""

from __future__ import annotations

import json
import pickle
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.config import END_MONTH, demo_config_dict, write_config

pytestmark = pytest.mark.slow

KEYS = ["store_id", "item_id", "horizon"]
PASSWORD = "dask-test-Secret-7f3a9c"
PLANS = {"table": "sales_plans", "covariates": ["price", "promo"], "scenarios": {"table": "sales_scenarios"}}


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    # Workers as docker-compose.yml starts them: with the stages' modules preloaded.
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        preload=["forecasting.orchestration.dask_worker"],
    ) as local:
        yield local


@pytest.fixture(scope="module")
def secret_urls(postgres_server):
    """A predictions database and a Feast registry database on PostgreSQL, their URLs with a
    password (the test server trusts local connections, so any password is accepted)."""
    import sqlalchemy as sa

    from forecasting.publishing.postgres import temporary_database

    def with_password(url: str) -> str:
        return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)

    with (
        temporary_database(postgres_server, prefix="forecast_dask_predictions") as predictions,
        temporary_database(postgres_server, prefix="forecast_dask_registry") as registry,
    ):
        yield {"predictions": with_password(predictions), "registry": with_password(registry)}


def run(folder: Path, sales: pd.DataFrame, scheduler: str | None, secret_urls: dict | None = None):
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.datasets.synthetic_plans import (
        generate_plans,
        generate_scenarios,
        seed_plans_table,
        seed_scenarios_table,
    )
    from forecasting.orchestration import pipeline

    raw = demo_config_dict(folder)
    raw["model"]["num_boost_round"] = 300
    raw["model"]["scale_by_recent_mean"] = True
    # Time: two backtest fits show the backtest on the cluster as well as six; the naive
    # baselines are the ones the models are compared with (statistical ones run in-process).
    raw["evaluation"]["backtest_origins"] = 2
    raw["evaluation"]["statistical_baselines"] = []
    raw["plans"] = PLANS
    if scheduler:
        raw["compute"] = {"dask_scheduler": scheduler}
    if secret_urls:
        raw["predictions"] = {"url": secret_urls["predictions"], "table": "forecasts"}
        raw["feature_store"]["registry"] = {"registry_type": "sql", "path": secret_urls["registry"]}
    config = load_config(write_config(folder, raw))
    seed_source_database(config.source.database.url, sales, table=config.source.table)
    plans = generate_plans(sales, horizon=config.horizon, seed=7)
    seed_plans_table(config.source.database.url, plans)
    # What-if scenarios too: run_month forecasts them after the publish (their retrieval on the cluster).
    seed_scenarios_table(config.source.database.url, generate_scenarios(sales, plans, horizon=config.horizon))
    results = pipeline.run_month(END_MONTH, "manual__dask_test", config)
    return config, results


@contextmanager
def wire():
    """Every message this process writes over TCP (a LocalCluster's client and scheduler both
    live here), as the bytes that go out: uncompressed, so a string sent is a string seen."""
    import dask
    from distributed.comm import tcp

    messages: list[bytes] = []
    original = tcp.to_frames

    async def recording(*args, **kwargs):
        frames = await original(*args, **kwargs)
        messages.append(b"".join(bytes(memoryview(f)) for f in frames))
        return frames

    with pytest.MonkeyPatch.context() as patch, dask.config.set({"distributed.comm.compression": False}):
        patch.setattr(tcp, "to_frames", recording)
        yield messages


@pytest.fixture(scope="module")
def both(cluster, synthetic_sales, secret_urls, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    in_process = run(folder / "in_process", synthetic_sales, None)
    with wire() as messages:
        on_cluster = run(folder / "cluster", synthetic_sales, cluster.scheduler_address, secret_urls)
    return {"in_process": in_process, "cluster": on_cluster, "wire": messages}


def runs(both) -> dict:
    return {name: both[name] for name in ("in_process", "cluster")}


def evaluation(results) -> dict:
    return json.loads(Path(results["evaluate"]["report"]).read_text())


def test_no_secret_is_sent_to_the_workers(both):
    config, _ = both["cluster"]
    # The run's config holds the password (predictions URL, Feast's registry URL)...
    assert PASSWORD in str(config.predictions.database.url)
    assert PASSWORD in config.feature_store["registry"]["path"]
    sent = both["wire"]
    # ...the capture saw the work go out (the tasks' settings, the training rows' columns)...
    assert sum(map(len, sent)) > 100_000
    assert any(b"forecasting.core.config" in m and b"entity_columns" in m for m in sent)
    assert any(b"plan_promo" in m for m in sent) and any(b"sales_lag_1" in m for m in sent)
    # ...and never the password, in any message of the run.
    assert not [m for m in sent if PASSWORD.encode() in m]


def test_a_worker_config_holds_no_database_and_no_secret(tmp_path):
    """Every place a config can hold a password holds one; the worker's copy holds none of them,
    and no database at all."""
    from pydantic import BaseModel

    from forecasting.core.compute import WorkerConfig
    from forecasting.core.config import Database, load_config

    def postgres(name: str) -> str:
        return f"postgresql+psycopg://forecast:{PASSWORD}@db:5432/{name}"

    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = postgres("sales")
    raw["plans"] = {
        **PLANS,
        "url": postgres("plans"),
        "scenarios": {"table": "what_if", "url": postgres("what_if")},
    }
    raw["predictions"] = {"url": postgres("forecasts"), "table": "forecasts"}
    raw["feature_store"]["registry"] = {"registry_type": "sql", "path": postgres("feast_registry")}
    raw["feature_store"]["online_store"] = {
        "type": "postgres",
        "host": "db",
        "user": "feast",
        "password": PASSWORD,
    }
    raw["alerts"] = {"notifiers": [{"type": "smtp", "to": ["planner@example.com"]}]}
    config = load_config(write_config(tmp_path, raw))
    assert config.plans is not None and config.plans.scenarios is not None

    sent = WorkerConfig.of(config)
    assert PASSWORD.encode() not in pickle.dumps(sent)
    assert b"planner@example.com" not in pickle.dumps(sent)

    def databases(value) -> list:
        if isinstance(value, Database):
            return [value]
        if isinstance(value, BaseModel):
            return [d for name in type(value).model_fields for d in databases(getattr(value, name))]
        return []

    found = databases(sent.config)
    assert len(found) == 4 and all(d == Database() for d in found)  # source, plans, scenarios, predictions
    # What the work reads is all there.
    assert sent.config.source.entity_columns == config.source.entity_columns
    assert sent.config.plans is not None and sent.config.plans.covariates == config.plans.covariates
    assert (sent.config.features, sent.config.model, sent.config.horizon) == (
        config.features,
        config.model,
        config.horizon,
    )
    assert sent.offline_store == {"type": "duckdb"} and sent.registry is None


def test_a_worker_config_opens_with_a_snapshot_of_feasts_registry(both):
    """The cluster run's registry is a PostgreSQL database: the worker reads a copy of it."""
    from forecasting.core.compute import WorkerConfig
    from forecasting.features import store

    config, _ = both["cluster"]
    sent = WorkerConfig.of(config, feast_registry=store.registry_snapshot(config))
    assert sent.registry and PASSWORD.encode() not in pickle.dumps(sent)
    with sent.opened() as opened:
        assert opened.data_dir == config.data_dir
        assert opened.feature_store["registry"]["registry_type"] == "file"
        assert store.offline_store_type(opened) == "duckdb"
        feast = store.feature_store(opened)
        assert {s.name for s in feast.list_feature_services()} == {store.FEATURE_SERVICE, store.PLAN_SERVICE}
        assert feast.get_feature_view(store.FEATURE_VIEW).ttl == store.FEATURE_TTL


def test_a_workers_offline_store_settings_come_from_its_environment(tmp_path, monkeypatch):
    """The offline store's section goes as the file writes it: a ${VAR} is the worker's to fill in."""
    from forecasting.core.compute import WorkerConfig
    from forecasting.core.config import load_config

    monkeypatch.setenv("FC_TEST_OFFLINE_STORE", "duckdb")
    raw = demo_config_dict(tmp_path)
    raw["feature_store"]["offline_store"] = {"type": "${FC_TEST_OFFLINE_STORE}"}
    sent = WorkerConfig.of(load_config(write_config(tmp_path, raw)))
    assert sent.offline_store == {"type": "${FC_TEST_OFFLINE_STORE}"}
    with sent.opened() as opened:
        assert opened.feature_store["offline_store"] == {"type": "duckdb"}
    monkeypatch.delenv("FC_TEST_OFFLINE_STORE")
    with pytest.raises(RuntimeError, match="not set on this worker: FC_TEST_OFFLINE_STORE"):
        with sent.opened():
            pass


def test_feature_and_plan_files_are_identical(both):
    from forecasting.core import paths

    for table in (paths.feature_table, paths.plan_table):
        files = {}
        for name, (config, _) in runs(both).items():
            files[name] = {p.name: p.read_bytes() for p in sorted(table(config).glob("*.parquet"))}
        assert files["cluster"] and files["cluster"] == files["in_process"], table.__name__


def test_feasts_retrieval_on_the_workers_equals_in_process(both, cluster):
    from dask.distributed import Client

    from forecasting.data.panel import build_panel
    from forecasting.features import dataset

    config, results = both["cluster"]
    snapshot = pd.read_parquet(results["extract"]["snapshot"])
    panel = build_panel(snapshot, config, sales_only=True)
    rows = dataset.labelled(panel, config, pd.Period(END_MONTH, "M"))
    entity, origin, _ = dataset.pairs(rows)
    # With the plans (one column per covariate and horizon) and without.
    for case in (config, config.model_copy(update={"plans": None})):
        local = dataset.retrieve(case, panel, entity, origin)
        with Client(cluster.scheduler_address) as client:
            remote = dataset.retrieve(case, panel, entity, origin, client)
        assert len(local) == len(entity) > 1000
        assert ("plan_promo__h3" in local.columns) == (case.plans is not None)
        pd.testing.assert_frame_equal(remote, local)


def test_prediction_on_the_workers_equals_in_process(both, cluster):
    from dask.distributed import Client

    from forecasting.features import dataset
    from forecasting.modeling import booster as model

    config, results = both["cluster"]
    booster, metadata = model.load(Path(results["train"]["model_dir"]))
    assert booster.attr(model.SCALE_ATTRIBUTE) == model.RECENT_MEAN
    unscaled = booster.copy()
    unscaled.set_attr(**{model.SCALE_ATTRIBUTE: None})
    holdout = pd.read_parquet(Path(results["train"]["model_dir"]) / "holdout.parquet")
    X = dataset.design_matrix(holdout, config, metadata["categories"])
    with Client(cluster.scheduler_address) as client:
        for fitted in (booster, unscaled):
            np.testing.assert_array_equal(model.predict(fitted, X, client), model.predict(fitted, X))
    assert not np.allclose(model.predict(booster, X), model.predict(unscaled, X))


def test_an_unscaled_model_fitted_on_the_workers_forecasts_like_one_fitted_in_process(both, cluster):
    """An unscaled (``scale_by_recent_mean: false``) fit, on the holdout rows: same tolerance."""
    from dask.distributed import Client

    from forecasting.features import dataset
    from forecasting.modeling import booster as model

    config, results = both["cluster"]
    plain = config.model_copy(
        update={"model": config.model.model_copy(update={"scale_by_recent_mean": False})}
    )
    _, metadata = model.load(Path(results["train"]["model_dir"]))
    holdout = pd.read_parquet(Path(results["train"]["model_dir"]) / "holdout.parquet")
    X = dataset.design_matrix(holdout, plain, metadata["categories"])
    y = holdout[dataset.LABEL].to_numpy()
    local = model.fit(X, y, plain, num_boost_round=100)
    with Client(cluster.scheduler_address) as client:
        remote = model.fit(X, y, plain, num_boost_round=100, client=client)
    assert remote.attr(model.SCALE_ATTRIBUTE) is None
    a, b = model.predict(local, X), model.predict(remote, X)
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    assert abs(b.sum() - a.sum()) / a.sum() <= 0.02


def test_forecasts_agree_within_the_stated_tolerance(both):
    forecasts = {
        name: pd.read_parquet(results["predict"]["forecasts"]).set_index(KEYS)["prediction"]
        for name, (_, results) in runs(both).items()
    }
    a, b = forecasts["in_process"], forecasts["cluster"].reindex(forecasts["in_process"].index)
    assert len(a) == len(forecasts["cluster"]) and b.notna().all()  # the same rows
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    assert abs(b.sum() - a.sum()) / a.sum() <= 0.02


def test_both_models_read_the_plans_and_beat_the_best_baseline_with_close_holdout_wapes(both):
    from forecasting.modeling import booster as model

    for name, (_, results) in runs(both).items():
        booster, metadata = model.load(Path(results["train"]["model_dir"]))
        assert {"plan_price", "plan_promo"} <= set(metadata["features"]), name
        assert booster.attr(model.SCALE_ATTRIBUTE) == model.RECENT_MEAN, name
    reports = {name: evaluation(results) for name, (_, results) in runs(both).items()}
    for name, report in reports.items():
        best = report["baselines"][report["best_baseline"]]["wape"]
        assert report["model"]["wape"] < best, name
    a, b = reports["in_process"]["model"]["wape"], reports["cluster"]["model"]["wape"]
    assert abs(b - a) / a <= 0.05
    # Scored on the same rows.
    assert reports["in_process"]["model"]["rows"] == reports["cluster"]["model"]["rows"]


def test_scenarios_forecast_on_the_workers_as_in_process_with_the_same_model(both):
    """The cluster run's scenarios (Feast's retrieval on the workers) equal the same model's
    scenarios forecast in this process, row for row; the base is the published forecasts."""
    from forecasting.scenarios.forecast import forecast_scenarios

    config, results = both["cluster"]
    made = results["forecast_scenarios"]
    assert made["base_differs_from_published"] == 0
    assert set(made["scenarios"]) == {"base", "promo_beverages", "no_promo"}
    assert made["changed"]["promo_beverages"] > 0  # the promotion moves forecasts on the cluster too
    on_cluster = pd.read_parquet(made["forecasts"])
    attempt = results["extract"]["attempt"]
    in_process = forecast_scenarios(config, pd.Period(END_MONTH, "M"), attempt)  # no client: here
    order = ["scenario", *KEYS]
    pd.testing.assert_frame_equal(
        on_cluster.sort_values(order).reset_index(drop=True),
        in_process.frame.sort_values(order).reset_index(drop=True),
    )
    assert results["publish_scenarios"]["rows"] == len(on_cluster)
