"""The whole DAG, run by Airflow's dag.test() on the embedded default (SQLite + local files)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pendulum
import pytest
import sqlalchemy as sa

from forecasting.features.demand import CLASSES
from tests.helpers.config import END_MONTH
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # runs the whole DAG

# The run of the 1st of the next month has the data interval of END_MONTH.
LOGICAL_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")


def run_dag(logical_date=LOGICAL_DATE, conf=None):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "monthly_forecast.py")).dags["monthly_forecast"]
    return dag.test(logical_date=logical_date, run_conf=conf)


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def read_table(config, name=None) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        frame = pd.read_sql_table(name or config.predictions.table, conn)
    engine.dispose()
    return frame


def active_entities(sales: pd.DataFrame, month: str) -> set[tuple[int, int]]:
    rows = sales[pd.to_datetime(sales["month"]).dt.to_period("M") == pd.Period(month, "M")]
    return set(zip(rows["store_id"], rows["item_id"], strict=True))


@pytest.mark.usefixtures("airflow_db")
def test_monthly_run_publishes_one_forecast_per_active_entity_and_horizon(
    deployment, synthetic_sales, capsys
):
    dag_run = run_dag()
    assert str(dag_run.state) == "success", task_states(dag_run)

    forecasts = read_table(deployment)
    horizons = deployment.horizon
    expected = active_entities(synthetic_sales, END_MONTH)
    assert len(forecasts) == len(expected) * horizons
    assert not forecasts.duplicated(["run_month", "store_id", "item_id", "horizon"]).any()
    for h in range(1, horizons + 1):
        rows = forecasts[forecasts["horizon"] == h]
        assert set(zip(rows["store_id"], rows["item_id"], strict=True)) == expected
        assert (pd.to_datetime(rows["forecast_month"]).dt.to_period("M") == pd.Period(END_MONTH) + h).all()
    assert (forecasts["prediction"] >= 0).all() and forecasts["prediction"].gt(0).mean() > 0.9
    assert forecasts["model_version"].nunique() == 1
    assert (pd.to_datetime(forecasts["run_month"]).dt.to_period("M") == pd.Period(END_MONTH)).all()
    # Each forecast carries its entity's demand class as of the run month, one per entity.
    assert forecasts["demand_class"].isin(CLASSES).all()
    assert (forecasts.groupby(["store_id", "item_id"])["demand_class"].nunique() == 1).all()
    # And its months of history as of the run month: from its first row (the generator's launches).
    first = pd.to_datetime(synthetic_sales.groupby(["store_id", "item_id"])["month"].min()).dt.to_period("M")
    months = (pd.Period(END_MONTH) - first).map(lambda d: d.n + 1).rename("expected")
    joined = forecasts.join(months, on=["store_id", "item_id"])
    assert (joined["history_months"] == joined["expected"]).all() and joined["history_months"].min() >= 1

    # The model must earn its keep: better WAPE on the holdout than every naive baseline.
    model_dir = deployment.data_dir / "models" / forecasts["model_version"].iloc[0]
    report = json.loads((model_dir / "evaluation.json").read_text())
    best = min(report["baselines"].values(), key=lambda m: m["wape"])
    print(
        f"holdout WAPE model {report['model']['wape']:.3f}, best baseline "
        f"{report['best_baseline']} {best['wape']:.3f}"
    )
    assert report["model"]["wape"] < best["wape"]
    scored = report["demand_classes"]["classes"]
    assert sum(c["rows"] for c in scored.values()) == report["model"]["rows"]
    assert sum(b["rows"] for b in report["ages"]["buckets"].values()) == report["model"]["rows"]
    assert set(report["cold_start"]["used"]) >= {"model", *report["baselines"]}

    # The runs table says which model made the month's forecasts and how it scored.
    runs = read_table(deployment, f"{deployment.predictions.table}_runs")
    assert runs["model_version"].tolist() == [forecasts["model_version"].iloc[0]]
    assert runs["forecasts"].tolist() == [len(forecasts)]

    # The latest view returns one row per entity and forecast month.
    latest = read_table(deployment, f"{deployment.predictions.table}_latest")
    assert len(latest) == len(forecasts)

    # What make run prints, and the SQL helper it points to.
    from forecasting.orchestration.summary import summarize
    from forecasting.publishing.query import main as query_main

    summary = summarize(deployment, END_MONTH)
    assert f"Published {len(forecasts):,} forecasts to table forecasts" in summary
    assert "The model beats the best baseline" in summary and "FROM forecasts_latest" in summary
    assert "By months of history" in summary and "established" in summary
    blend = report["blend"]["baseline"]  # its row is explained where it is shown
    assert f"blend {blend} = the mean of the model's and {blend}'s forecasts" in summary
    # Theta was scored on a sample of entities: the gate compared the model with it there, paired,
    # and the summary says what it did with the sample.
    compared = report["decision"]["sample"]
    assert report["sample"] and compared["entities"] == report["sample"]["entities"]
    assert f"The gate compared {compared['chosen']} (WAPE {compared['chosen_wape']:.3f} there)" in summary
    assert f"-> none is lower beyond noise: {compared['chosen']} stays." in summary
    capsys.readouterr()
    query_main(["SELECT COUNT(*) AS n FROM forecasts_latest"])
    assert capsys.readouterr().out.split() == ["n", str(len(forecasts))]

    # Re-running the same month leaves identical forecasts: same rows, same values, no duplicates.
    # Only run_id and created_at say that a second run happened.
    second = run_dag()
    assert str(second.state) == "success", task_states(second)
    again = read_table(deployment)
    keys = ["run_month", "store_id", "item_id", "horizon"]
    stable = [c for c in forecasts.columns if c not in ("run_id", "created_at")]
    pd.testing.assert_frame_equal(
        forecasts.sort_values(keys)[stable].reset_index(drop=True),
        again.sort_values(keys)[stable].reset_index(drop=True),
    )
    assert again["run_id"].unique().tolist() == [second.run_id]


@pytest.fixture(scope="module")
def backfilled(airflow_db, tmp_path_factory, synthetic_sales):
    """One deployment, two runs: November's, then October's asked for with {"month": "2024-10"}
    (a backfill); what November's left (its rows, some entities' online features) and October's run."""
    from types import SimpleNamespace

    from forecasting.features import store
    from tests.helpers.config import seeded_deployment

    with pytest.MonkeyPatch.context() as patch:
        config = seeded_deployment(tmp_path_factory.mktemp("backfill"), synthetic_sales, patch)
        assert str(run_dag(conf={"month": "2024-11"}).state) == "success"
        november = read_table(config)
        entities = november[["store_id", "item_id"]].drop_duplicates().head(5).astype(str)
        online_before = store.online_features(config, entities)
        october = run_dag(conf={"month": "2024-10"})
        yield SimpleNamespace(
            config=config, november=november, entities=entities, online_before=online_before, october=october
        )


def test_a_run_can_be_asked_for_another_month(backfilled, synthetic_sales):
    """Triggered with {"month": "2024-10"}, the run forecasts from October whatever its dates say
    (its rows: the deployment holds November's run's too)."""
    dag_run, config = backfilled.october, backfilled.config
    assert str(dag_run.state) == "success", task_states(dag_run)
    forecasts = read_table(config)
    forecasts = forecasts[forecasts["run_id"] == dag_run.run_id]
    assert set(pd.to_datetime(forecasts["run_month"]).dt.strftime("%Y-%m")) == {"2024-10"}
    assert len(forecasts) == len(active_entities(synthetic_sales, "2024-10")) * config.horizon


def test_backfilling_an_older_month_keeps_the_newer_one(backfilled, synthetic_sales):
    """A backfill of October after November adds October's forecasts and changes nothing else:
    November's rows, the latest view's choice and the online store (which serves the newest month)."""
    from forecasting.features import store

    deployment, november, entities = backfilled.config, backfilled.november, backfilled.entities
    assert str(backfilled.october.state) == "success"
    both = read_table(deployment)
    months = pd.to_datetime(both["run_month"]).dt.strftime("%Y-%m")
    assert months.value_counts().to_dict() == {
        "2024-11": len(november),
        "2024-10": len(active_entities(synthetic_sales, "2024-10")) * deployment.horizon,
    }
    pd.testing.assert_frame_equal(both[months == "2024-11"].reset_index(drop=True), november)
    latest = read_table(deployment, f"{deployment.predictions.table}_latest")
    december = latest[pd.to_datetime(latest["forecast_month"]) == pd.Timestamp("2024-12-01")]
    by_november = december.merge(november[["store_id", "item_id"]].drop_duplicates())
    # Entities forecast by both runs get November's forecast; the others keep October's.
    assert set(pd.to_datetime(by_november["run_month"]).dt.strftime("%Y-%m")) == {"2024-11"}
    assert (
        len(by_november)
        == november["store_id"].astype(str).add("/" + november["item_id"].astype(str)).nunique()
    )
    pd.testing.assert_frame_equal(store.online_features(deployment, entities), backfilled.online_before)

    # The model registry: the backfill compared October's model with the champion as of October
    # (none yet) and never demoted November's, which stays the champion for new months.
    from forecasting.registry import models

    registry = read_table(deployment, f"{deployment.predictions.table}_models").set_index("model_version")
    assert len(registry) == 2
    by_month = {str(v)[:7]: version for version, v in registry["run_month"].items()}
    assert registry.loc[by_month["2024-11"], "status"] == models.CHAMPION
    assert registry.loc[by_month["2024-10"], "status"] in (models.RETIRED, models.REJECTED)
    assert models.current_champion(deployment)["model_version"] == by_month["2024-11"]
    assert pd.isna(registry.loc[by_month["2024-10"], "champion_version"])


@pytest.fixture
def hierarchy_deployment(tmp_path, synthetic_sales, monkeypatch):
    """The demo deployment with the demo config's hierarchy (total, region, store, category,
    region x category), selected through FORECAST_CONFIG."""
    from tests.helpers.config import seeded_deployment

    return seeded_deployment(tmp_path, synthetic_sales, monkeypatch, hierarchy=True)


def assert_coherent(forecasts: pd.DataFrame, levels: pd.DataFrame, sales: pd.DataFrame) -> None:
    """Every level's prediction is the sum of its entities' published forecasts (within 1e-6)."""
    from forecasting.modeling.hierarchy import bottom_sums

    attributes = sales.drop_duplicates(["store_id", "item_id"], keep="last")[
        ["store_id", "item_id", "region", "category"]
    ]
    bottom = forecasts.merge(attributes, on=["store_id", "item_id"], how="left").astype({"store_id": str})
    sums = bottom_sums(bottom, levels.reset_index(drop=True))
    np.testing.assert_allclose(levels["prediction"].to_numpy(), sums, rtol=1e-9, atol=1e-6)


@pytest.mark.usefixtures("airflow_db")
def test_the_hierarchy_publishes_coherent_non_negative_levels_replaced_on_a_rerun(
    hierarchy_deployment, synthetic_sales, request
):
    """The demo config's levels: published in <table>_levels beside the forecasts, adding up to
    them and never negative, with p10/p90 around every one; a re-run of the month (here its
    publish again, and the same files published to PostgreSQL twice) replaces them."""
    from forecasting.core import paths
    from forecasting.orchestration import pipeline

    config = hierarchy_deployment
    dag_run = run_dag()
    assert str(dag_run.state) == "success", task_states(dag_run)
    forecasts = read_table(config)
    levels = read_table(config, f"{config.predictions.table}_levels")
    expected = {"total", "region", "store_id", "category", "region,category"}
    assert set(levels["level"]) == expected
    stores, regions = synthetic_sales["store_id"].nunique(), synthetic_sales["region"].nunique()
    assert (levels["level"] == "store_id").sum() == stores * config.horizon
    assert (levels["level"] == "region").sum() == regions * config.horizon
    assert (levels[["prediction", "p10", "p90"]] >= 0).all(axis=None)
    assert (levels["p10"] <= levels["prediction"]).all() and (levels["prediction"] <= levels["p90"]).all()
    assert_coherent(forecasts, levels, synthetic_sales)
    assert len(read_table(config, f"{config.predictions.table}_levels_latest")) == len(levels)

    # What evaluate's holdout says of each level, recorded by predict.
    attempt = paths.published_attempt(config, pd.Period(END_MONTH, "M"))
    predicted = json.loads((attempt / "predict.json").read_text())["levels"]
    # The demo's mint_shrink, or bottom-up when it made the entities' holdout WAPE over 1% worse.
    assert predicted["reconciliation"] == ("bottom_up" if "instead_of" in predicted else "mint_shrink")
    entities = predicted["bottom"]
    assert entities["reconciled"]["wape"] <= 1.01 * entities["base"]["wape"]
    assert set(predicted["levels"]) == expected
    for scored in predicted["levels"].values():
        assert scored["reconciled"]["wape"] > 0 and 0 < scored["coverage"]["coverage"] <= 1

    # Publishing the month again replaces its rows: no duplicates, the same predictions; and it
    # applies the overrides planners recorded meanwhile (docs/publishing.md#overrides).
    region = record_overrides(config, synthetic_sales)
    model_dir = json.loads((attempt / "train.json").read_text())["model_dir"]
    again = pipeline.publish(END_MONTH, attempt.name, model_dir, "rerun", config)
    assert again["level_rows"] == len(levels)
    republished = read_table(config, f"{config.predictions.table}_levels")
    assert len(republished) == len(levels) and set(republished["run_id"]) == {"rerun"}
    assert_overrides_applied(config, again, forecasts, republished, synthetic_sales, region)

    # The same attempt published to PostgreSQL, twice: the same rows, coherent there too.
    from forecasting.core.config import Database
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(request.getfixturevalue("postgres_server"), prefix="forecast_levels_e2e") as url:
        predictions = config.predictions.model_copy(update={"database": Database(url=url)})
        on_postgres = config.model_copy(update={"predictions": predictions})
        for run_id in ("first", "second"):
            published = pipeline.publish(END_MONTH, attempt.name, model_dir, run_id, on_postgres)
            assert published["level_rows"] == len(levels)
        there = read_table(on_postgres, f"{config.predictions.table}_levels")
        assert len(there) == len(levels) and set(there["run_id"]) == {"second"}
        assert_coherent(read_table(on_postgres), there, synthetic_sales)


FIRST_FORECAST = pd.Period(END_MONTH, "M") + 1


def record_overrides(config, sales: pd.DataFrame) -> str:
    """A region's total for the first forecast month set by a planner (the library checks it),
    and a typo written through SQL (nothing checks it there); returns the region."""
    from forecasting.publishing.overrides import record_override

    region = str(sorted(sales["region"].unique())[0])
    record_override(
        config,
        level="region",
        level_key=region,
        first_month=str(FIRST_FORECAST),
        last_month=None,
        kind="absolute",
        value=1000.0,
        reason="a regional promotion",
        created_by="planner",
    )
    engine = sa.create_engine(config.predictions.database.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO forecasts_overrides (override_id, version, status, store_id, item_id, first_month, "
                "last_month, kind, value, reason, created_by) VALUES ('typo', 1, 'active', 999, 1, :m, :m, "
                "'percent', 10, 'a typo', 'planner')"
            ),
            {"m": FIRST_FORECAST.to_timestamp().date()},
        )
    engine.dispose()
    return region


def assert_overrides_applied(config, published, before, levels, sales, region) -> None:
    """The region's forecasts of that month add up to its override, the others keep their
    prediction as final, the levels' finals are the sums of the entities'; the typo is refused by
    name (the publish went on), alerted and in the run's summary."""
    from forecasting.orchestration.summary import summarize

    assert published["overrides"]["applied"] == 1 and published["overrides"]["refused"] == 1
    assert published["overrides"]["refusals"] == ["typo: store_id 999, item_id 1 has no forecast in this run"]
    after = read_table(config).sort_values(["store_id", "item_id", "horizon"]).reset_index(drop=True)
    before = before.sort_values(["store_id", "item_id", "horizon"]).reset_index(drop=True)
    np.testing.assert_allclose(after["prediction"], before["prediction"])  # the model's, kept
    attributes = sales.drop_duplicates(["store_id", "item_id"], keep="last")[
        ["store_id", "item_id", "region"]
    ]
    rows = after.merge(attributes, on=["store_id", "item_id"], how="left")
    chosen = (rows["region"].astype(str) == region) & (
        rows["forecast_month"].astype(str).str[:7] == str(FIRST_FORECAST)
    )
    assert chosen.sum() > 1 and rows.loc[chosen, "final"].sum() == pytest.approx(1000.0)
    assert rows.loc[chosen, "override_id"].notna().all() and rows.loc[~chosen, "override_id"].isna().all()
    np.testing.assert_allclose(rows.loc[~chosen, "final"], rows.loc[~chosen, "prediction"])
    assert_coherent(after.assign(prediction=after["final"]), levels.assign(prediction=levels["final"]), sales)
    alerts = read_table(config, f"{config.predictions.table}_alerts")
    assert alerts.loc[alerts["kind"] == "override", "message"].str.contains("typo: store_id 999").any()
    summary = summarize(config, END_MONTH)
    assert f"Overrides   1 applied to {chosen.sum()} forecasts" in summary
    assert "REFUSED typo: store_id 999, item_id 1 has no forecast" in summary
