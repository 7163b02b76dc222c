"""The whole DAG, run by Airflow's dag.test() on the embedded default (SQLite + local files)."""

from __future__ import annotations

import json

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


@pytest.mark.usefixtures("airflow_db")
def test_a_run_can_be_asked_for_another_month(deployment, synthetic_sales):
    """Triggered with {"month": "2024-10"}, the run forecasts from October whatever its dates say."""
    dag_run = run_dag(conf={"month": "2024-10"})
    assert str(dag_run.state) == "success", task_states(dag_run)
    forecasts = read_table(deployment)
    assert set(pd.to_datetime(forecasts["run_month"]).dt.strftime("%Y-%m")) == {"2024-10"}
    assert len(forecasts) == len(active_entities(synthetic_sales, "2024-10")) * deployment.horizon


@pytest.mark.usefixtures("airflow_db")
def test_backfilling_an_older_month_keeps_the_newer_one(deployment, synthetic_sales):
    """A backfill of October after November adds October's forecasts and changes nothing else:
    November's rows, the latest view's choice and the online store (which serves the newest month)."""
    from forecasting.features import store

    assert str(run_dag(conf={"month": "2024-11"}).state) == "success"
    november = read_table(deployment)
    entities = november[["store_id", "item_id"]].drop_duplicates().head(5).astype(str)
    online_before = store.online_features(deployment, entities)

    assert str(run_dag(conf={"month": "2024-10"}).state) == "success"
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
    pd.testing.assert_frame_equal(store.online_features(deployment, entities), online_before)

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
