"""What-if scenarios (config ``plans.scenarios``, forecasting.scenarios, the forecast_scenarios
DAG's stages): alternative plans forecast by the model M's run published, into
``<table>_scenarios`` on SQLite and PostgreSQL.

One small demo deployment with plans and ``datasets.synthetic_plans.generate_scenarios``' scenarios
(``promo_beverages``: every beverage promoted in M+3; ``no_promo``: no promotion at all) runs
M's monthly stages once (a cheap model); the tests forecast and publish its scenarios. The
expected values come from the published forecasts and the scenario rows, never from the code
under test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from tests.helpers.config import END_MONTH, demo_config_dict, write_config
from tests.helpers.paths import REPO
from tests.helpers.servers import analyst_role

MONTH = pd.Period(END_MONTH, "M")
KEYS = ["store_id", "item_id"]
ROW = [*KEYS, "horizon"]
PLANS = {"table": "sales_plans", "covariates": ["price", "promo"], "scenarios": {"table": "sales_scenarios"}}


def scenarios_config(folder, predictions_url: str | None = None, **scenarios):
    from forecasting.core.config import load_config

    raw = demo_config_dict(folder)
    raw["plans"] = {**PLANS, "scenarios": {**PLANS["scenarios"], **scenarios}}
    raw["model"]["num_boost_round"] = 150  # a cheap model: scenarios need one, not a good one
    raw["evaluation"]["backtest_origins"] = 0
    raw["evaluation"]["statistical_baselines"] = []
    if predictions_url is not None:
        raw["predictions"]["url"] = predictions_url
    return load_config(write_config(folder, raw))


def table_rows(config, table: str) -> pd.DataFrame:
    from forecasting.core.db import make_engine

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return pd.DataFrame()
            return pd.read_sql_query(sa.text(f"SELECT * FROM {table}"), conn)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, synthetic_sales):
    """M's monthly stages run once on SQLite (the model published), and its scenarios seeded."""
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.datasets.synthetic_plans import (
        generate_plans,
        generate_scenarios,
        seed_plans_table,
        seed_scenarios_table,
    )
    from forecasting.orchestration import after_publish, pipeline

    folder = tmp_path_factory.mktemp("scenarios")
    config = scenarios_config(folder)
    url = config.source.database.url
    seed_source_database(url, synthetic_sales, table=config.source.table)
    plans = generate_plans(synthetic_sales, horizon=config.horizon, seed=7)
    seed_plans_table(url, plans)
    scenarios = generate_scenarios(synthetic_sales, plans, horizon=config.horizon)
    seed_scenarios_table(url, scenarios)
    attempt = pipeline.extract(END_MONTH, "manual__scenarios", config)["attempt"]
    for stage in ("validate", "build_features", "register_features"):
        getattr(pipeline, stage)(END_MONTH, attempt, config)
    model_dir = pipeline.train(END_MONTH, attempt, config)["model_dir"]
    decided = pipeline.evaluate(END_MONTH, attempt, model_dir, config)
    assert not decided["forecaster"].startswith("baseline:"), decided  # scenarios need the model
    pipeline.predict(END_MONTH, attempt, model_dir, config, decided["forecaster"])
    pipeline.check_forecasts(END_MONTH, attempt, config)
    pipeline.publish(END_MONTH, attempt, model_dir, "manual__scenarios", config)
    made = after_publish.forecast_scenarios(END_MONTH, "scenarios__1", None, config)
    return SimpleNamespace(
        config=config,
        attempt=attempt,
        plans=plans,
        scenarios=scenarios,
        made=made,
        frame=pd.read_parquet(made["forecasts"]),
        forecasts=pd.read_parquet(config.data_dir / "runs" / END_MONTH / attempt / "forecasts.parquet"),
        folder=folder,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request, deployed, tmp_path_factory):
    """The deployment's config publishing to SQLite, or to a throwaway PostgreSQL database that
    holds M's published forecasts too (published there the way publish does)."""
    from forecasting.publishing.publish import publish

    if request.param == "sqlite":
        yield deployed.config
        return
    from forecasting.core.config import load_config
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(request.getfixturevalue("postgres_server"), prefix="forecast_scenarios") as url:
        raw = yaml.safe_load(deployed.config.path.read_text())  # the same data_dir and Feast
        raw["predictions"]["url"] = url
        config = load_config(write_config(tmp_path_factory.mktemp("pg"), raw))
        publish(deployed.forecasts, config, MONTH, model_version=deployed.made["model_version"], run_id="pg")
        yield config


def publish_made(config, deployed, run_id: str = "scenarios__1"):
    from forecasting.scenarios.publish import publish_scenarios

    return publish_scenarios(
        deployed.frame, config, MONTH, model_version=deployed.made["model_version"], run_id=run_id
    )


# --------------------------------------------------------------------------------- config


def test_config_scenarios_section(tmp_path):
    from forecasting.core.config import ConfigError, load_config

    config = scenarios_config(tmp_path)
    sc = config.plans.scenarios
    assert sc is not None and sc.table == "sales_scenarios" and sc.query is None
    assert sc.database == config.plans.database == config.source.database  # beside the plans by default
    assert sc.scenario_column == "scenario" and sc.base == "base"
    named = scenarios_config(
        tmp_path / "named", base="as_planned", scenario_column="what_if", url="sqlite:///s.db"
    )
    assert named.plans.scenarios.base == "as_planned" and named.plans.scenarios.scenario_column == "what_if"
    assert named.plans.scenarios.database.url == f"sqlite:///{tmp_path / 'named' / 's.db'}"

    raw = demo_config_dict(tmp_path)
    for scenarios, message in [
        ({}, "set exactly one of plans.scenarios.table and plans.scenarios.query"),
        ({"table": "s", "query": "SELECT 1"}, "set exactly one of plans.scenarios.table"),
        ({"table": "s", "scenario": "x"}, "plans.scenarios.scenario: unknown key"),
        (
            {"table": "s", "scenario_column": "item_id"},
            "plans.scenarios.scenario_column: 'item_id' is already",
        ),
        ({"table": "s", "base": "x" * 65}, "plans.scenarios.base: must be a name of 1 to 64 characters"),
        ({"table": "s", "url": "sqlite:///a.db", "conn_id": "b"}, "set exactly one of plans.scenarios.url"),
    ]:
        bad = {**raw, "plans": {**PLANS, "scenarios": scenarios or {"scenario_column": "scenario"}}}
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path / "bad", bad))
    without = load_config(write_config(tmp_path / "none", {**raw, "plans": {**PLANS, "scenarios": None}}))
    assert without.plans is not None and without.plans.scenarios is None


def test_synthetic_scenarios_promote_beverages_in_the_last_month_or_nothing(synthetic_sales):
    from forecasting.datasets.synthetic_plans import PROMO_DISCOUNT, generate_plans, generate_scenarios

    plans = generate_plans(synthetic_sales, horizon=3, seed=7)
    scenarios = generate_scenarios(synthetic_sales, plans, horizon=3)
    pd.testing.assert_frame_equal(scenarios, generate_scenarios(synthetic_sales, plans, horizon=3))
    assert set(scenarios["scenario"]) == {"promo_beverages", "no_promo"}
    months = pd.to_datetime(scenarios["month"]).dt.to_period("M")
    promo = scenarios[scenarios["scenario"] == "promo_beverages"]
    assert set(months[promo.index]) == {MONTH + 3} and (promo["promo"] == 1).all()
    beverages = set(synthetic_sales.loc[synthetic_sales["category"] == "beverages", "item_id"])
    assert set(promo["item_id"]) <= beverages and len(promo) > 10
    none = scenarios[scenarios["scenario"] == "no_promo"]
    assert set(months[none.index]) == {MONTH + 1, MONTH + 2, MONTH + 3} and (none["promo"] == 0).all()
    # no_promo's price is the regular one: the plan's, undone where the plan promotes (by hand).
    known = plans[pd.to_datetime(plans["planned_at"]) <= pd.Timestamp("2025-01-01")]
    latest = known.sort_values("planned_at").groupby([*KEYS, "month"]).tail(1)
    both = none.merge(latest, on=[*KEYS, "month"], suffixes=("", "_plan"))
    assert len(both) == len(none)
    regular = np.where(both["promo_plan"] == 1, both["price_plan"] / PROMO_DISCOUNT, both["price_plan"])
    np.testing.assert_allclose(both["price"], regular, atol=0.006)


# --------------------------------------------------------------------------------- forecast


def test_base_scenario_is_the_published_forecasts(deployed, backend):
    """In the database: every base row equals the row M's run published, to the last bit."""
    publish_made(backend, deployed)
    rows = table_rows(backend, "forecasts_scenarios")
    published = table_rows(backend, "forecasts")
    published = published[pd.to_datetime(published["run_month"]).dt.to_period("M") == MONTH]
    base = rows[rows["scenario"] == "base"]
    both = base.merge(published, on=ROW, suffixes=("", "_published"), validate="one_to_one")
    assert len(both) == len(base) == len(published) > 0
    for column in ("prediction", "p10", "p90", "forecast_month", "model_version"):
        assert (both[column] == both[f"{column}_published"]).all(), column
    assert not base["overridden"].astype(bool).any() and base["p10"].notna().all()
    assert deployed.made["base_differs_from_published"] == 0


def test_a_promotion_moves_exactly_the_forecasts_it_plans(deployed):
    """promo_beverages plans beverages in M+3: only forecasts whose plan it changes move (up),
    every other forecast is the base's exactly; its rows read the scenario's plan."""
    frame = deployed.frame
    base = frame[frame["scenario"] == "base"].set_index(ROW).sort_index()
    promo = frame[frame["scenario"] == "promo_beverages"].set_index(ROW).sort_index()
    assert promo.index.equals(base.index)
    planned = deployed.scenarios[deployed.scenarios["scenario"] == "promo_beverages"]
    expected = pd.MultiIndex.from_arrays([planned["store_id"], planned["item_id"], np.full(len(planned), 3)])
    overridden = promo.index[promo["overridden"].to_numpy()]
    assert set(overridden) == set(expected)
    # Where the base plan promoted the item already, the scenario changes nothing.
    plan_changed = (promo["plan_promo"] != base["plan_promo"]) | (promo["plan_price"] != base["plan_price"])
    moved = promo["prediction"] != base["prediction"]
    assert not (moved & ~plan_changed).any()
    assert (plan_changed <= promo["overridden"]).all()
    assert moved[plan_changed].mean() > 0.8  # a promotion the model knows about moves the forecast
    assert (promo.loc[moved, "prediction"] > base.loc[moved, "prediction"]).mean() > 0.8  # and lifts it
    scenario_plan = planned.set_index([planned["store_id"], planned["item_id"], np.full(len(planned), 3)])
    np.testing.assert_array_equal(promo.loc[overridden, "plan_promo"], 1.0)
    np.testing.assert_allclose(
        promo.loc[overridden, "plan_price"],
        scenario_plan.loc[overridden, "price"].astype(np.float32),
        rtol=1e-6,
    )
    assert (promo["p10"] <= promo["prediction"]).all() and (promo["prediction"] <= promo["p90"]).all()
    assert deployed.made["changed"]["promo_beverages"] == int(moved.sum())
    assert deployed.made["overridden"]["promo_beverages"] == len(planned)


def test_rerunning_replaces_the_months_rows(deployed, backend):
    first = publish_made(backend, deployed, run_id="scenarios__1")
    again = publish_made(backend, deployed, run_id="scenarios__2")
    rows = table_rows(backend, "forecasts_scenarios")
    assert again.replaced == first.rows == again.rows == len(rows) == len(deployed.frame)
    assert set(rows["run_id"]) == {"scenarios__2"}
    assert not rows.duplicated(["run_month", "scenario", *ROW]).any()
    # Fewer scenarios the second time: the dropped one's rows go too.
    only_base = deployed.frame[deployed.frame["scenario"] == "base"]
    from forecasting.scenarios.publish import publish_scenarios

    publish_scenarios(only_base, backend, MONTH, model_version=deployed.made["model_version"], run_id="r3")
    assert set(table_rows(backend, "forecasts_scenarios")["scenario"]) == {"base"}
    publish_made(backend, deployed)


def test_bad_scenario_rows_are_refused_with_nothing_written(deployed, backend):
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.orchestration import after_publish
    from forecasting.scenarios.read import forecasts_path

    publish_made(backend, deployed)
    before = table_rows(backend, "forecasts_scenarios")
    good = deployed.scenarios
    bad = good.astype({"promo": object}).copy()
    bad.loc[0, "store_id"] = 99  # an entity M's forecasts do not cover
    bad = pd.concat([bad, bad.iloc[[3]]], ignore_index=True)  # one row twice
    bad.loc[5, "promo"] = "yes"  # text where a number belongs
    bad.loc[6, "scenario"] = "base"  # the base plan's name
    bad.loc[7, ["price", "promo"]] = None  # plans nothing
    bad.loc[8, "scenario"] = None
    engine = sa.create_engine(deployed.config.source.database.url)
    try:
        bad.to_sql("sales_scenarios", engine, if_exists="replace", index=False)
        with pytest.raises(DataValidationError) as failed:
            after_publish.forecast_scenarios(END_MONTH, "bad", deployed.attempt, backend)
    finally:
        from forecasting.datasets.synthetic_plans import seed_scenarios_table

        seed_scenarios_table(deployed.config.source.database.url, good)
        engine.dispose()
    assert str(failed.value).startswith(f"Validation of the scenarios of {MONTH} failed")
    details = {f["label"]: f["details"] for f in failed.value.failures}
    assert details["expect_column_values_to_be_null(unknown__entity)"] == (
        f"1 entities that {MONTH}'s forecasts do not cover: store_id=99, item_id={good.loc[0, 'item_id']}"
    )
    assert any(f["expectation"] == "expect_compound_columns_to_be_unique" for f in failed.value.failures)
    assert any(
        f["column"] == "promo__unreadable" and "not a number" in f["details"] for f in failed.value.failures
    )
    assert details["expect_column_values_to_not_be_in_set(scenario)"].startswith("1 unexpected")
    assert details["expect_column_values_to_be_between(covariates__set, min 1)"].startswith("1 rows set no")
    assert any(
        f["column"] == "scenario" and f["expectation"] == "expect_column_values_to_not_be_null"
        for f in failed.value.failures
    )
    # Nothing written, nothing left for publish_scenarios: the table keeps M's rows.
    after = table_rows(backend, "forecasts_scenarios")
    pd.testing.assert_frame_equal(after, before)
    assert not forecasts_path(deployed.config, MONTH, deployed.attempt).exists()
    folder = deployed.config.data_dir / "runs" / END_MONTH / deployed.attempt
    assert (folder / "forecast_scenarios.failed.json").is_file()
    assert (folder / "scenario_docs" / "index.html").is_file()
    made = after_publish.forecast_scenarios(END_MONTH, "scenarios__1", deployed.attempt, deployed.config)
    pd.testing.assert_frame_equal(pd.read_parquet(made["forecasts"]), deployed.frame)  # the good ones again
    assert not (folder / "forecast_scenarios.failed.json").exists()


def test_scenario_values_outside_their_history_are_refused_naming_each(deployed):
    """Price -100, price 1e300 and promo 7 were forecast and published (issue 23, fault 13): a
    covariate stays within 10 times its history (a 0/1 flag within the values it took)."""
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.datasets.synthetic_plans import seed_scenarios_table
    from forecasting.orchestration import after_publish
    from forecasting.scenarios.read import HISTORY_MAX_FACTOR

    good = deployed.scenarios
    bad = good.copy()
    bad.loc[0, "price"] = -100.0
    bad.loc[1, "price"] = 1e300
    bad.loc[2, "promo"] = 7
    bad.loc[3, "price"] = 2.5 * max(deployed.plans["price"].max(), 1)  # a bold plan, not a slip
    try:
        seed_scenarios_table(deployed.config.source.database.url, bad)
        with pytest.raises(DataValidationError) as failed:
            after_publish.forecast_scenarios(END_MONTH, "bad-ranges", deployed.attempt, deployed.config)
    finally:
        seed_scenarios_table(deployed.config.source.database.url, good)
    high = HISTORY_MAX_FACTOR * max(deployed.plans["price"].max(), 0)
    details = {f["label"]: f["details"] for f in failed.value.failures}
    assert len(details) == 2, details

    def row(i: int) -> str:
        r = bad.loc[i]
        return f"scenario={r['scenario']!r}, store_id={r['store_id']}, item_id={r['item_id']} in {pd.Timestamp(r['month']):%Y-%m}"

    assert details[f"expect_column_values_to_be_between(price, min 0, max {high:g})"] == (
        f"2 unexpected of {len(bad)} rows: {row(0)}: price -100; {row(1)}: price 1e+300"
    )
    assert details["expect_column_values_to_be_in_set(promo, {0, 1})"] == (
        f"1 unexpected of {len(bad)} rows: {row(2)}: promo 7"
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_analyst_reads_the_scenarios(deployed, backend):
    publish_made(backend, deployed)
    with analyst_role(backend.predictions.database.url) as (granted, analyst):
        assert "forecasts_scenarios" in granted
        with analyst.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM forecasts_scenarios").scalar()
            assert count == len(deployed.frame)
        with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("DELETE FROM forecasts_scenarios")


def test_the_uplift_query_compares_two_scenarios(deployed, backend):
    """sql/scenario_uplift.sql, as shipped (promo_beverages against base), against the uplift
    worked out from the published frame."""
    from forecasting.publishing.query import run_query

    publish_made(backend, deployed)
    got = run_query(backend, (REPO / "sql" / "scenario_uplift.sql").read_text())
    frame = deployed.frame
    base = frame[frame["scenario"] == "base"]
    promo = frame[frame["scenario"] == "promo_beverages"]
    both = promo.merge(base, on=ROW, suffixes=("", "_base"))
    both = both[both["overridden"] | both["overridden_base"]]
    assert len(got) == len(both) > 0
    uplift = got["uplift_units"].astype(float).tolist()
    assert uplift == sorted(uplift, reverse=True)  # largest first
    got = got.set_index(ROW).sort_index()
    both = both.set_index(ROW).sort_index()
    np.testing.assert_allclose(
        got["uplift_units"].astype(float), (both["prediction"] - both["prediction_base"]).round(1), atol=0.051
    )
    np.testing.assert_allclose(got["scenario_promo"].astype(float), both["plan_promo"])
    np.testing.assert_allclose(got["compared_promo"].astype(float), both["plan_promo_base"])


def test_a_baseline_or_blend_forecaster_is_refused(deployed, tmp_path):
    """A month whose published forecaster is a baseline: no scenario could change its forecasts;
    or a blend: half of each forecast is a baseline's."""
    from forecasting.core import paths
    from forecasting.core.errors import DataError, is_permanent
    from forecasting.orchestration import after_publish

    config = scenarios_config(tmp_path)
    attempt = "manual__baseline__20250101T000000000000Z"
    folder = paths.run_dir(config, MONTH, attempt)
    shutil.copytree(deployed.config.data_dir / "runs" / END_MONTH / deployed.attempt, folder)
    published = paths.read_json(folder / "publish.json")
    paths.write_json_atomically(
        {**published, "model_version": "baseline:seasonal_naive"}, folder / "publish.json"
    )
    with pytest.raises(DataError, match="made by baseline:seasonal_naive, which reads no plans") as refused:
        after_publish.forecast_scenarios(END_MONTH, "x", None, config)
    assert is_permanent(refused.value)
    assert paths.read_json(folder / "forecast_scenarios.failed.json")["permanent"]
    # A blend of the model with a baseline: a scenario would move its forecasts only half as far.
    blend = f"blend:{published['model_version']}+seasonal_naive"
    paths.write_json_atomically({**published, "model_version": blend}, folder / "publish.json")
    with pytest.raises(
        DataError, match=re.escape(f"made by {blend}, half of each from a baseline")
    ) as refused:
        after_publish.forecast_scenarios(END_MONTH, "x", None, config)
    assert is_permanent(refused.value)


def test_a_month_republished_by_a_baseline_has_its_scenario_rows_withdrawn(deployed, backend, tmp_path):
    """M re-run and published by a baseline: the scenario rows of the model published before no
    longer describe M's forecasts. The refusal withdraws them (M's only), saying so."""
    from forecasting.core import paths
    from forecasting.orchestration import after_publish
    from forecasting.scenarios.forecast import NoScenariosForecaster
    from forecasting.scenarios.publish import publish_scenarios, withdraw_scenarios

    publish_made(backend, deployed)
    version = deployed.made["model_version"]
    publish_scenarios(deployed.frame, backend, MONTH - 1, model_version=version, run_id="earlier")
    config = scenarios_config(tmp_path, predictions_url=backend.predictions.database.url)
    attempt = "manual__rerun__20250101T000000000000Z"
    folder = paths.run_dir(config, MONTH, attempt)
    shutil.copytree(deployed.config.data_dir / "runs" / END_MONTH / deployed.attempt, folder)
    published = paths.read_json(folder / "publish.json")
    paths.write_json_atomically({**published, "model_version": "baseline:mean_3"}, folder / "publish.json")
    try:
        with pytest.raises(NoScenariosForecaster) as refused:
            after_publish.forecast_scenarios(END_MONTH, "x", None, config)
        message = str(refused.value)
        assert "made by baseline:mean_3, which reads no plans" in message
        assert f"Withdrew {END_MONTH}'s earlier scenario rows from forecasts_scenarios" in message
        assert f"{len(deployed.frame):,} of {version}" in message
        rows = table_rows(backend, "forecasts_scenarios")
        months = pd.to_datetime(rows["run_month"]).dt.to_period("M")
        assert set(months) == {MONTH - 1} and len(rows) == len(deployed.frame)  # another month's stay
        summed = table_rows(backend, "forecasts_scenario_totals")  # the page's sums go with them
        assert set(pd.to_datetime(summed["run_month"]).dt.to_period("M")) == {MONTH - 1}
        # Nothing left to withdraw: the plain refusal.
        with pytest.raises(NoScenariosForecaster) as again:
            after_publish.forecast_scenarios(END_MONTH, "x", None, config)
        assert "Withdrew" not in str(again.value)
    finally:
        withdraw_scenarios(backend, MONTH - 1)
        publish_made(backend, deployed)


def test_a_config_without_scenarios_has_nothing_to_forecast(deployed, tmp_path):
    from forecasting.core.config import load_config
    from forecasting.core.errors import DataError
    from forecasting.scenarios.forecast import forecast_scenarios
    from forecasting.scenarios.read import scenarios_configured

    raw = demo_config_dict(tmp_path)
    raw["plans"] = {k: v for k, v in PLANS.items() if k != "scenarios"}
    config = load_config(write_config(tmp_path, raw))
    assert not scenarios_configured(config) and scenarios_configured(deployed.config)
    with pytest.raises(DataError, match="no plans.scenarios section"):
        forecast_scenarios(config, MONTH, deployed.attempt)


# --------------------------------------------------------------------------------- end to end


def run_scenarios_dag(month: str | None):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "forecast_scenarios.py")).dags["forecast_scenarios"]
    dag_run = dag.test(run_conf={"month": month})
    return dag_run, {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.mark.slow  # runs the DAG under dag.test()
@pytest.mark.usefixtures("airflow_db")
def test_the_dag_forecasts_and_publishes_the_months_scenarios(deployed, monkeypatch, capsys):
    from forecasting.orchestration.summary import summarize

    monkeypatch.setenv("FORECAST_CONFIG", str(deployed.config.path))
    dag_run, states = run_scenarios_dag(END_MONTH)
    assert str(dag_run.state) == "success", states
    assert set(states.values()) == {"success"} and set(states) == {
        "months_published",
        "forecast_scenarios",
        "publish_scenarios",
    }
    rows = table_rows(deployed.config, "forecasts_scenarios")
    assert set(rows["run_id"]) == {dag_run.run_id} and len(rows) == len(deployed.frame)
    assert set(rows["scenario"]) == {"base", "promo_beverages", "no_promo"}
    text = summarize(deployed.config, END_MONTH)
    assert "Scenarios   2 and the base plan ('base') forecast by" in text
    assert f"promo_beverages      plans {deployed.made['overridden']['promo_beverages']:,} forecasts" in text

    # A deployment without plans.scenarios: every task skips, the run succeeds, nothing changes.
    raw = yaml.safe_load(deployed.config.path.read_text())
    raw["plans"].pop("scenarios")
    monkeypatch.setenv("FORECAST_CONFIG", str(write_config(deployed.folder / "without", raw)))
    dag_run, states = run_scenarios_dag(END_MONTH)
    assert set(states.values()) == {"skipped"}, states
    pd.testing.assert_frame_equal(table_rows(deployed.config, "forecasts_scenarios"), rows)


@pytest.mark.slow  # trains a second model, without plans
def test_the_plans_comparison_reads_both_evaluations(deployed, synthetic_sales, tmp_path):
    """summary --compare-plans (make dominicks): the model's holdout WAPE without and with plans,
    from each config's published run of M, on the same holdout."""
    import yaml

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.orchestration import pipeline
    from forecasting.orchestration.summary import RunFailed, main, plans_comparison

    raw = yaml.safe_load(deployed.config.path.read_text())
    raw.pop("plans")
    raw["data_dir"] = str(tmp_path / "data")
    raw["feature_store"]["registry"] = str(tmp_path / "feast" / "registry.db")
    raw["feature_store"]["online_store"]["path"] = str(tmp_path / "feast" / "online.db")
    raw["feature_store"]["project"] = "without_plans"
    raw["predictions"]["url"] = f"sqlite:///{tmp_path}/predictions.db"
    without = load_config(write_config(tmp_path, raw))
    attempt = pipeline.extract(END_MONTH, "manual__without", without)["attempt"]
    for stage in ("validate", "build_features", "register_features"):
        getattr(pipeline, stage)(END_MONTH, attempt, without)
    model_dir = pipeline.train(END_MONTH, attempt, without)["model_dir"]
    decided = pipeline.evaluate(END_MONTH, attempt, model_dir, without)
    pipeline.predict(END_MONTH, attempt, model_dir, without, decided["forecaster"])
    pipeline.publish(END_MONTH, attempt, model_dir, "manual__without", without)

    text = plans_comparison(without, deployed.config, END_MONTH)
    evaluations = []
    for config in (without, deployed.config):
        run = paths.published_attempt(config, MONTH)
        evaluations.append(
            paths.read_json(Path(paths.read_json(run / "evaluate.json")["model_dir"]) / "evaluation.json")
        )
    lines = text.splitlines()
    assert lines[0].startswith(f"With and without plans: {END_MONTH}, the same holdout")
    assert f"{evaluations[0]['model']['rows']:,} forecasts" in lines[0]
    assert lines[2].split()[:3] == ["forecast.yaml", "none", f"{evaluations[0]['model']['wape']:.3f}"]
    assert lines[3].split()[:4] == [
        "forecast.yaml",
        "price,",
        "promo",
        f"{evaluations[1]['model']['wape']:.3f}",
    ]
    before, after = evaluations[0]["model"]["wape"], evaluations[1]["model"]["wape"]
    assert f"({before:.3f} -> {after:.3f})" in lines[4]
    assert main([END_MONTH, "--compare-plans", str(without.path), str(deployed.config.path)]) == 0

    # Another holdout is refused: the two WAPEs would not be comparable.
    path = Path(decided["model_dir"]) / "evaluation.json"
    kept = path.read_text()
    try:
        evaluation = paths.read_json(path)
        paths.write_json_atomically(
            {**evaluation, "holdout_target_months": evaluation["holdout_target_months"][1:]}, path
        )
        with pytest.raises(RunFailed, match="scored on different holdouts"):
            plans_comparison(without, deployed.config, END_MONTH)
    finally:
        path.write_text(kept)


# --------------------------------------------------------------------------------- read and seed


def test_scenarios_are_read_for_Ms_months_from_a_query_or_postgresql_alike(
    deployed, postgres_server, tmp_path
):
    from forecasting.datasets.synthetic_plans import seed_scenarios_table
    from forecasting.publishing.postgres import temporary_database
    from forecasting.scenarios.read import read_scenarios

    key = ["scenario", *KEYS, "month"]
    from_sqlite = read_scenarios(deployed.config, MONTH).sort_values(key).reset_index(drop=True)
    assert len(from_sqlite) == len(deployed.scenarios)
    assert pd.api.types.is_datetime64_dtype(from_sqlite["month"])
    later = deployed.scenarios.iloc[[0]].assign(month=(MONTH + 4).start_time.date())  # M+4: not M's
    with temporary_database(postgres_server, prefix="forecast_scenarios_read") as url:
        seed_scenarios_table(url, pd.concat([deployed.scenarios, later], ignore_index=True))
        from_postgres = read_scenarios(scenarios_config(tmp_path / "pg", url=url), MONTH)
    pd.testing.assert_frame_equal(
        from_postgres.sort_values(key).reset_index(drop=True), from_sqlite, check_dtype=False
    )
    query = "SELECT * FROM sales_scenarios WHERE promo = 1 -- the promotions only"
    url = deployed.config.source.database.url
    queried = read_scenarios(scenarios_config(tmp_path / "q", table=None, query=query, url=url), MONTH)
    assert (
        set(queried["scenario"]) == {"promo_beverages"}
        and len(queried) == (deployed.scenarios["promo"] == 1).sum()
    )


def test_the_synthetic_script_seeds_a_configs_plans_and_scenarios(tmp_path, monkeypatch, capsys):
    from forecasting.datasets import synthetic, synthetic_plans

    config = scenarios_config(tmp_path)
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    sizes = ["--stores", "3", "--items", "8", "--months", "30", "--end-month", END_MONTH, "--seed", "3"]
    assert synthetic.main(sizes) == 0
    printed = capsys.readouterr().out
    assert (
        "plan revisions to table sales_plans" in printed
        and "scenario rows to table sales_scenarios" in printed
    )
    sales = synthetic.generate_sales(3, 8, 30, END_MONTH, 3)
    plans = synthetic_plans.generate_plans(sales, horizon=config.horizon, seed=3)
    engine = sa.create_engine(config.source.database.url)
    try:
        with engine.connect() as conn:
            counts = {
                t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                for t in ("sales", "sales_plans", "sales_scenarios")
            }
    finally:
        engine.dispose()
    scenarios = synthetic_plans.generate_scenarios(sales, plans, horizon=config.horizon)
    assert counts == {"sales": len(sales), "sales_plans": len(plans), "sales_scenarios": len(scenarios)}
