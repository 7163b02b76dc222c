"""SQL that analysts get from us, on SQLite and on PostgreSQL.

* ``python -m forecasting.publishing.query`` is read-only by construction: every write, DDL statement,
  multi-statement string and transaction trick below is refused with a one-line reason and exit
  status 2, and afterwards the tables hold the same rows and the view still exists.
* Every query we print or ship runs on both backends and returns the rows worked out by hand
  below: the ```sql blocks of README.md and of every page in docs/ (parsed from them), the "Try it"
  query of docs/index.md, the ``forecasting.publishing.query "..."`` examples in all of them, every
  file in sql/ and the summary's example query.

The data: two published runs (2024-10 and 2024-11, horizons 1-3) for stores 1-3 x items 1-4,
with prediction = 100 * store + 10 * item + horizon + 0.16 (run 2024-10) or + 0.26 (run 2024-11),
and sales for 2024 of 100 * store + 10 * item units a month, except store 3 / item 4 in December.
PostgreSQL: a throwaway database on the test server (skipped, saying so, when it does not answer).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.datasets.synthetic import seed_source_database
from forecasting.orchestration.summary import example_query
from forecasting.publishing import query
from forecasting.publishing.overrides import record_override
from forecasting.publishing.postgres import temporary_database
from forecasting.publishing.publish import publish
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO

# The README and every docs page; docs/tables.md is generated from the table schemas (its
# statements describe tables, they are not an analyst's queries), so its generator checks it.
DOC_PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "tables.md")]
HOME_PAGE = REPO / "docs" / "index.md"  # "What make run prints", with its "Try it:" query
PUBLISHING_PAGE = REPO / "docs" / "publishing.md"  # the predictions table's example queries
SQL_FILES = sorted((REPO / "sql").glob("*.sql"))
BACKENDS = ["sqlite", "postgresql"]

STORES, ITEMS, HORIZONS = (1, 2, 3), (1, 2, 3, 4), (1, 2, 3)
RUNS = {  # run month: (model version, offset added to every prediction, evaluation)
    "2024-10": ("2024-10-aaaa", 0.16, {"wape": 0.21, "best": "mean_3", "best_wape": 0.30}),
    "2024-11": ("2024-11-bbbb", 0.26, {"wape": 0.25, "best": "seasonal_naive", "best_wape": 0.24}),
}
SALES_MONTHS = pd.period_range("2024-01", "2024-12", freq="M")
NO_SALES_ROW = (3, 4, "2024-12")  # store, item, month without a row in sales


def prediction(store: int, item: int, horizon: int, run: str) -> float:
    return 100 * store + 10 * item + horizon + RUNS[run][1]


def forecasts(run: str) -> pd.DataFrame:
    origin = pd.Period(run, "M")
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "forecast_month": (origin + h).to_timestamp().date(),
                "horizon": h,
                "prediction": prediction(s, i, h, run),
                "p10": prediction(s, i, h, run) - 20,
                "p90": prediction(s, i, h, run) + 30,
                # The value added's steps before it: the model 4 units further off, Theta 10.
                "model_forecast": prediction(s, i, h, run) + 4,
                "statistical_forecast": prediction(s, i, h, run) + 10,
            }
            for s in STORES
            for i in ITEMS
            for h in HORIZONS
        ]
    )


def levels(frame: pd.DataFrame) -> pd.DataFrame:
    """The total's and each store's forecasts: the sums of the entities' (``<table>_levels``; the
    sales below put every store in one region)."""
    by = ["forecast_month", "horizon"]
    total = frame.groupby(by, as_index=False)["prediction"].sum().assign(level="total", level_key="total")
    stores = frame.groupby(["store_id", *by], as_index=False)["prediction"].sum()
    stores = stores.assign(
        level="store_id", level_key=stores["store_id"].astype(str), store_id=stores["store_id"].astype(str)
    )
    out = pd.concat([total, stores], ignore_index=True)
    out["p10"], out["p90"] = 0.9 * out["prediction"], 1.1 * out["prediction"]
    return out


def sales() -> pd.DataFrame:
    rows = [
        {
            "store_id": s,
            "item_id": i,
            "month": m.to_timestamp().date(),
            "units": float(100 * s + 10 * i),
            "price": 2.5,
            "promo": 0,
            "store_size": "medium",
            "region": "north",
            "category": "snacks",
        }
        for s in STORES
        for i in ITEMS
        for m in SALES_MONTHS
        if (s, i, str(m)) != NO_SALES_ROW
    ]
    return pd.DataFrame(rows)


def drivers_of(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    """The drivers of each forecast (docs/drivers.md): level 100 * store + 10 * item, calendar the
    horizon, trend the run's 0.16 or 0.26; they sum to the prediction."""
    from forecasting.modeling.drivers import long_form

    wide = frame.assign(
        driver_level=100.0 * frame["store_id"] + 10.0 * frame["item_id"],
        driver_trend=frame["prediction"]
        - 100.0 * frame["store_id"]
        - 10.0 * frame["item_id"]
        - frame["horizon"],
        driver_calendar=frame["horizon"].astype(float),
        explained=1.0,
    )
    return long_form(wide, ["store_id", "item_id"])


def build(backend: str, folder: Path, stack: ExitStack, request) -> SimpleNamespace:
    """A predictions database with both runs published and the sales copied into it."""
    folder.mkdir(parents=True, exist_ok=True)
    if backend == "postgresql":
        url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
    else:
        url = f"sqlite:///{folder}/predictions.db"
    raw = demo_config_dict(folder, hierarchy=True)
    raw["predictions"] = {"url": url, "table": "forecasts"}
    path = write_config(folder, raw)
    config = load_config(path)
    for run, (version, _, scores) in RUNS.items():
        if run == "2024-11":  # a planner's override the 2024-11 run applies (docs/publishing.md#overrides)
            record_override(
                config,
                entity={"store_id": 1, "item_id": 2},
                first_month="2024-12",
                last_month="2025-01",
                kind="absolute",
                value=200.0,
                reason="a new shelf",
                created_by="alice",
                now=datetime(2024, 11, 20, tzinfo=UTC),
            )
        publish(
            forecasts(run),
            config,
            pd.Period(run, "M"),
            model_version=version,
            run_id=f"manual__{run}",
            evaluation={
                "model": {"wape": scores["wape"]},
                "best_baseline": scores["best"],
                "baselines": {scores["best"]: {"wape": scores["best_wape"]}},
            },
            created_at=datetime(2025, 1, 2, tzinfo=UTC),
            drivers=drivers_of(forecasts(run), run),
            levels=levels(forecasts(run)),
        )
    register_models(config)
    publish_scenarios(config)
    seed_source_database(url, sales())  # forecast_vs_actual.sql reads sales in the same database
    return SimpleNamespace(backend=backend, url=url, config=config, path=path, folder=folder)


def publish_scenarios(config) -> None:
    """What-if scenarios of the 2024-11 run (forecasting.scenarios): the base plan (its published
    forecasts, no promotion planned) and promo_beverages, promoting store 1's items in February
    (horizon 3), 15 units more each."""
    from forecasting.scenarios.publish import publish_scenarios

    base = forecasts("2024-11").assign(scenario="base", overridden=False, plan_price=2.5, plan_promo=0.0)
    promoted = (base["store_id"] == 1) & (base["horizon"] == 3)
    promo = base.assign(scenario="promo_beverages", overridden=promoted)
    promo.loc[promoted, ["prediction", "p10", "p90"]] += 15
    promo.loc[promoted, ["plan_price", "plan_promo"]] = [2.1, 1.0]
    publish_scenarios(
        pd.concat([base, promo], ignore_index=True),
        config,
        pd.Period("2024-11", "M"),
        model_version="2024-11-bbbb",
        run_id="scenarios__2024-11",
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
    )


def register_models(config) -> None:
    """The registry rows of the two runs: October's model promoted first, November's beat it."""
    from forecasting.registry import models

    with models.registry(config) as (conn, table):
        for (run, (version, _, scores)), champion in zip(RUNS.items(), (None, "2024-10-aaaa"), strict=True):
            first = pd.Period(run, "M").to_timestamp().date()
            models.save(
                conn,
                table,
                {
                    "model_version": version,
                    "run_month": first,
                    "created_at": datetime(2025, 1, 2, tzinfo=UTC),
                    "holdout_wape": scores["wape"],
                    "best_baseline": scores["best"],
                    "best_baseline_wape": scores["best_wape"],
                    "blend_baseline": scores["best"],
                    "blend_wape": scores["best_wape"] - 0.01,
                    "champion_version": champion,
                    "champion_wape": None if champion is None else 0.26,
                    "status": models.RETIRED,
                    "champion_since": first,
                    "promoted_at": datetime(2025, 1, 2, tzinfo=UTC),
                    "published": version,
                    "decision": models.PROMOTED,
                    "decided_by": models.GATE,
                    "reason": "test",
                },
            )


def score_realised_accuracy(config) -> None:
    """The realised accuracy of both runs' forecasts for November and December (forecasting.monitoring.accuracy)."""
    from forecasting.monitoring.accuracy import realised_accuracy

    snapshot = sales().assign(month=lambda frame: pd.to_datetime(frame["month"]))
    for month in ("2024-11", "2024-12"):
        realised_accuracy(snapshot, config, pd.Period(month, "M"), run_id=f"monitor__{month}")


@pytest.fixture(scope="module", params=BACKENDS)
def examples_db(request, tmp_path_factory):
    with ExitStack() as stack:
        db = build(request.param, tmp_path_factory.mktemp(f"examples-{request.param}"), stack, request)
        score_realised_accuracy(db.config)
        yield db


@pytest.fixture(scope="module")
def guarded_templates(request, tmp_path_factory):
    """Each backend's database built once (on first use); guarded_db copies it for each test."""
    with ExitStack() as stack:
        built: dict[str, SimpleNamespace] = {}

        def template(backend: str) -> SimpleNamespace:
            if backend not in built:
                folder = tmp_path_factory.mktemp(f"guarded-{backend}")
                built[backend] = build(backend, folder, stack, request)
            return built[backend]

        yield template


@pytest.fixture(params=BACKENDS)
def guarded_db(request, tmp_path, guarded_templates):
    """A fresh copy of the backend's built database for each test, so every bad statement meets
    the same rows: the template's folder copied into the test's, and on PostgreSQL a database
    copied from the template's."""
    from tests.helpers.servers import database_copy

    template = guarded_templates(request.param)
    shutil.copytree(template.folder, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / template.path.name).read_text().replace(str(template.folder), str(tmp_path))
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path}/predictions.db"
        if request.param == "postgresql":
            url = stack.enter_context(database_copy(template.url))
            text = text.replace(template.url, url)
        path = tmp_path / template.path.name
        path.write_text(text)
        config = load_config(path)
        assert config.predictions.database.url == url
        yield SimpleNamespace(backend=request.param, url=url, config=config, path=path, folder=tmp_path)


def plain(value):
    """A value as both backends can be compared: dates as ISO text, numbers as float."""
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def run(db, sql: str) -> list[dict]:
    return records(query.run_query(db.config, sql))


def is_rounded(value: float, digits: int) -> bool:
    return abs(value - round(value, digits)) < 1e-9


# --- every query we print or ship, on both backends ------------------------------------------


def sql_statements(page: Path) -> list[str]:
    """The statements of a page's ```sql blocks: each ends with ';' at the end of a line."""
    statements = []
    for block in re.findall(r"^```sql\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        current: list[str] = []
        for line in block.splitlines():
            current.append(line)
            if line.rstrip().endswith(";"):
                statements.append("\n".join(current))
                current = []
        assert not "".join(current).strip(), f"{page.name}: SQL without a closing ';': {current}"
    return statements


def docs_try_it() -> str:
    """The example query in the home page's "What make run prints" block, as the summary prints it."""
    block = re.search(r"^  Try it:\n(.*?)^    …", HOME_PAGE.read_text(), flags=re.S | re.M)
    assert block, f"{HOME_PAGE.name} has no 'Try it:' block"
    return "\n".join(line.removeprefix("    ") for line in block.group(1).rstrip("\n").splitlines())


def test_docs_show_the_summarys_example_query_exactly():
    demo = load_config(REPO / "config" / "demo.yaml")
    assert docs_try_it() == example_query(demo)


def is_planner_insert(sql: str) -> bool:
    """A planner's INSERT into <table>_overrides (docs/publishing.md#overrides), after its comments."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return re.match(r"\s*INSERT\s+INTO\s+forecasts_overrides\b", text, flags=re.I) is not None


def planner_inserts(db, statements: list[str]) -> list[int]:
    """The rows each INSERT adds, run in order in one transaction, rolled back after (the
    examples' database stays as built)."""
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            added = [conn.execute(sa.text(sql)).rowcount for sql in statements]
            transaction.rollback()
        return added
    finally:
        engine.dispose()


def test_readme_and_docs_sql_blocks_run_on_both_backends(examples_db):
    every = {page.name: sql_statements(page) for page in DOC_PAGES}
    assert every["README.md"], "README.md shows no ```sql block"
    for name, page_statements in every.items():
        writes = [sql for sql in page_statements if is_planner_insert(sql)]
        assert planner_inserts(examples_db, writes) == [1] * len(writes), f"{name}: {writes}"
        for sql in page_statements:
            if sql not in writes:
                assert run(examples_db, sql), f"{name}: returned no rows:\n{sql}"
    # The predictions table's examples, in the order the page shows them.
    assert len([s for s in every[PUBLISHING_PAGE.name] if is_planner_insert(s)]) == 2  # a new one, its change
    statements = [s for s in every[PUBLISHING_PAGE.name] if not is_planner_insert(s)]
    assert len(statements) >= 2
    results = [run(examples_db, sql) for sql in statements]
    for sql, rows in zip(statements, results, strict=True):
        assert rows, f"returned no rows:\n{sql}"
    # Next month's forecast for store 3: December 2024, horizon 1 of the newest run (2024-11).
    assert results[0] == [{"item_id": i, "prediction": pytest.approx(301.26 + 10 * i)} for i in ITEMS]
    # The same rows with their 80% interval.
    assert results[1] == [
        {
            "item_id": i,
            "prediction": pytest.approx(301.26 + 10 * i),
            "p10": pytest.approx(281.26 + 10 * i),
            "p90": pytest.approx(331.26 + 10 * i),
        }
        for i in ITEMS
    ]
    # One row per run, with the scores it was published with.
    runs = sorted(results[2], key=lambda r: r["run_month"])
    assert [r["run_month"] for r in runs] == ["2024-10-01", "2024-11-01"]
    assert [r["model_version"] for r in runs] == ["2024-10-aaaa", "2024-11-bbbb"]
    assert [r["holdout_wape"] for r in runs] == [0.21, 0.25]
    assert [r["best_baseline"] for r in runs] == ["mean_3", "seasonal_naive"]
    assert [r["best_baseline_wape"] for r in runs] == [0.30, 0.24]
    # The overrides: the one in force, the two forecasts of the newest run it set, its outcome.
    [in_force] = results[4]
    assert (in_force["store_id"], in_force["item_id"], in_force["kind"], in_force["value"]) == (
        1,
        2,
        "absolute",
        200,
    )
    assert (in_force["version"], in_force["created_by"], in_force["level"]) == (1, "alice", None)
    changed = results[5]
    assert [(r["forecast_month"], r["final"], r["override_id"]) for r in changed] == [
        ("2024-12-01", 200.0, in_force["override_id"]),
        ("2025-01-01", 200.0, in_force["override_id"]),
    ]
    assert [r["prediction"] for r in changed] == pytest.approx(
        [prediction(1, 2, h, "2024-11") for h in (1, 2)]
    )
    for r in changed:  # the band scaled with the forecast: final / prediction
        assert r["final_p10"] == pytest.approx((r["prediction"] - 20) * 200 / r["prediction"])
    [outcome] = results[6]
    assert (outcome["run_month"], outcome["outcome"], outcome["forecasts"]) == ("2024-11-01", "applied", 2)


def test_the_value_added_example_of_the_monitoring_page(examples_db):
    """docs/monitoring.md's waterfall query: December 2024, one month ahead (the 2024-11 run).
    2,360 units sold; every forecast 1.26 over, but 341.26 for store 3 / item 4, which sold
    nothing; the seasonal naive (November: no December 2023 in the sales) exact but 340 for it;
    the model 4 units and Theta 10 further off than the published forecast; Alice's override set
    store 1 / item 2 to 200, 80 units over what sold (its forecast was 1.26 over)."""
    [waterfall] = [sql for sql in sql_statements(REPO / "docs" / "monitoring.md") if "forecasts_fva" in sql]
    got = [r for r in run(examples_db, waterfall) if r["horizon"] == 1]
    assert [(r["step"], r["forecaster"]) for r in got] == [
        ("naive", "seasonal_naive"),
        ("statistical", "theta"),
        ("model", "2024-11-bbbb"),
        ("published", "2024-11-bbbb"),
        ("final", "overrides"),
    ]
    alice = 200 - (prediction(1, 2, 1, "2024-11") - 1.26)
    errors = [340, 11 * 11.26 + 351.26, 11 * 5.26 + 345.26, 11 * 1.26 + 341.26, 10 * 1.26 + alice + 341.26]
    assert [r["wape"] for r in got] == pytest.approx([e / 2360 for e in errors])
    assert [r["value_added"] for r in got[1:]] == pytest.approx(
        [(errors[k - 1] - errors[k]) / 2360 for k in range(1, 5)]
    )


def test_readme_and_docs_forecasting_query_examples_run_on_both_backends(examples_db):
    # "$(cat sql/<file>.sql)" runs an sql/ file: those are test_every_sql_file_runs_on_both_backends
    shown = {
        page.name: re.findall(r'forecasting\.publishing\.query "([^"]+)"', page.read_text())
        for page in DOC_PAGES
    }
    assert shown["README.md"], "README shows no forecasting.publishing.query example"
    examples = {sql for found in shown.values() for sql in found if not sql.startswith("$(cat sql/")}
    for sql in examples:
        assert run(examples_db, sql), sql
    assert len(run(examples_db, "SELECT * FROM forecasts_runs")) == len(RUNS)


def test_summary_example_query_runs_on_both_backends(examples_db):
    rows = run(examples_db, example_query(examples_db.config))
    # The five highest rounded predictions in forecasts_latest, worked out by hand: store 3 /
    # item 4 from the newest run (343.26, 342.26, 341.26), then its November forecast, which only
    # the 2024-10 run made (341.16), then store 3 / item 3 in February (333.26). Each with its
    # interval, rounded the same way (the rows' p10 and p90 are the prediction - 20 and + 30).
    for r in rows:
        assert float(r["p10"]) == pytest.approx(float(r["prediction"]) - 20, abs=0.11)
        assert float(r["p90"]) == pytest.approx(float(r["prediction"]) + 30, abs=0.11)
    assert [
        (r["store_id"], r["item_id"], r["forecast_month"], r["horizon"], r["prediction"], r["model_version"])
        for r in rows
    ] == [
        (3, 4, "2025-02-01", 3, 343.3, "2024-11-bbbb"),
        (3, 4, "2025-01-01", 2, 342.3, "2024-11-bbbb"),
        (3, 4, "2024-12-01", 1, 341.3, "2024-11-bbbb"),
        (3, 4, "2024-11-01", 1, 341.2, "2024-10-aaaa"),
        (3, 3, "2025-02-01", 3, 333.3, "2024-11-bbbb"),
    ]


def run_file(db, name: str) -> list[dict]:
    return run(db, (REPO / "sql" / name).read_text())


@pytest.mark.parametrize("path", SQL_FILES, ids=[p.name for p in SQL_FILES])
def test_every_sql_file_runs_on_both_backends(examples_db, path):
    assert run(examples_db, path.read_text()), f"{path.name} returned no rows"


def test_latest_forecast_per_entity(examples_db):
    rows = run_file(examples_db, "latest_forecast_per_entity.sql")
    # Every month after the newest run (2024-11): December to February, all from that run.
    assert len(rows) == len(STORES) * len(ITEMS) * len(HORIZONS) == 36
    assert {r["run_month"] for r in rows} == {"2024-11-01"}
    assert {r["model_version"] for r in rows} == {"2024-11-bbbb"}
    assert rows[0] == {
        "store_id": 1,
        "item_id": 1,
        "forecast_month": "2024-12-01",
        "horizon": 1,
        "forecast_units": 111.3,  # 111.26 rounded
        "run_month": "2024-11-01",
        "model_version": "2024-11-bbbb",
    }
    assert [r["forecast_month"] for r in rows[:3]] == ["2024-12-01", "2025-01-01", "2025-02-01"]
    for r in rows:
        assert r["forecast_units"] == pytest.approx(
            round(prediction(r["store_id"], r["item_id"], r["horizon"], "2024-11"), 1)
        )
        assert is_rounded(r["forecast_units"], 1)


STORE_MONTH_DEFAULT = (
    "(SELECT min(f.forecast_month) FROM forecasts AS f\n"
    "            WHERE f.forecast_month > (SELECT max(r.run_month) FROM forecasts_runs AS r))"
)


@pytest.mark.parametrize(
    "month, run_month, offset",
    [
        (None, "2024-11", 1.26),  # default: the month after the newest run, its horizon 1
        ("2025-01-01", "2024-11", 2.26),  # horizon 2 of the newest run
        ("2024-11-01", "2024-10", 1.16),  # only the older run forecast November
    ],
)
def test_store_month_forecast(examples_db, month, run_month, offset):
    sql = (REPO / "sql" / "store_month_forecast.sql").read_text()
    if month is not None:  # as its comment says: write the month as date('YYYY-MM-DD')
        assert STORE_MONTH_DEFAULT in sql
        sql = sql.replace(STORE_MONTH_DEFAULT, f"date('{month}')")
    rows = run(examples_db, sql)
    expected = [round(100 + 10 * i + offset, 1) for i in reversed(ITEMS)]  # store 1, largest first
    assert [r["item_id"] for r in rows] == list(reversed(ITEMS))
    assert [r["forecast_units"] for r in rows] == pytest.approx(expected)
    assert all(is_rounded(r["forecast_units"], 1) for r in rows)
    assert {r["run_month"] for r in rows} == {f"{run_month}-01"}
    assert {r["horizon"] for r in rows} == {int(offset)}
    assert all(r["store_total"] == pytest.approx(sum(expected)) for r in rows)


def test_model_quality_per_run(examples_db):
    rows = run_file(examples_db, "model_quality_per_run.sql")
    assert [r["run_month"] for r in rows] == ["2024-11-01", "2024-10-01"]  # newest first
    assert [r["forecasts"] for r in rows] == [36, 36]
    assert [r["holdout_wape"] for r in rows] == [0.25, 0.21]
    assert [r["best_baseline_wape"] for r in rows] == [0.24, 0.30]
    assert [r["improvement"] for r in rows] == [-0.042, 0.3]  # 1 - 0.25/0.24, 1 - 0.21/0.30
    assert [bool(r["beats_baseline"]) for r in rows] == [False, True]


def test_model_registry(examples_db):
    rows = run_file(examples_db, "model_registry.sql")
    assert [(r["model_version"], r["run_month"], r["status"]) for r in rows] == [
        ("2024-11-bbbb", "2024-11-01", "champion"),  # newest first; the newest promotion is champion
        ("2024-10-aaaa", "2024-10-01", "retired"),
    ]
    assert [(r["holdout_wape"], r["best_baseline_wape"]) for r in rows] == [(0.25, 0.24), (0.21, 0.3)]
    assert [r["blend_wape"] for r in rows] == [0.23, 0.29]
    assert rows[0]["champion_wape"] == 0.26 and pd.isna(rows[1]["champion_wape"])  # no champion yet
    assert [(r["champion_version"], r["published"], r["decided_by"]) for r in rows] == [
        ("2024-10-aaaa", "2024-11-bbbb", "gate"),
        (None, "2024-10-aaaa", "gate"),
    ]


def test_forecast_vs_actual(examples_db):
    rows = run_file(examples_db, "forecast_vs_actual.sql")
    # Sales end in December: the 2024-10 run's horizons 1 (Nov) and 2 (Dec) and the 2024-11
    # run's horizon 1 (Dec) are over. 2,700 units sold in a month, 2,360 in December, when
    # store 3 / item 4 (forecast 340 + horizon + offset) has no row and counts as 0 sold.
    assert [
        {k: r[k] for k in ("run_month", "horizon", "model_version", "forecasts", "with_sales_row")}
        for r in rows
    ] == [
        {
            "run_month": "2024-10-01",
            "horizon": 1,
            "model_version": "2024-10-aaaa",
            "forecasts": 12,
            "with_sales_row": 12,
        },
        {
            "run_month": "2024-10-01",
            "horizon": 2,
            "model_version": "2024-10-aaaa",
            "forecasts": 12,
            "with_sales_row": 11,
        },
        {
            "run_month": "2024-11-01",
            "horizon": 1,
            "model_version": "2024-11-bbbb",
            "forecasts": 12,
            "with_sales_row": 11,
        },
    ]
    assert [r["actual_units"] for r in rows] == [2700, 2360, 2360]
    assert [r["forecast_units"] for r in rows] == [2714, 2726, 2715]  # 2700 + 12 x 1.16, 2.16, 1.26
    # (12 x 1.16) / 2700; (11 x 2.16 + 342.16) / 2360; (11 x 1.26 + 341.26) / 2360
    assert [r["wape"] for r in rows] == [0.005, 0.155, 0.150]
    assert [r["bias"] for r in rows] == [0.005, 0.155, 0.150]


# --- forecasting.publishing.query is read-only -------------------------------------------------------------

READ_ONLY, ONE_STATEMENT, NO_ROWS = "is read-only", "exactly one SQL statement", "returns rows"
INSERT_RUN = (
    "INSERT INTO forecasts_runs (run_month, model_version, run_id, created_at, forecasts) "
    "VALUES ('2030-01-01', 'evil', 'evil', '2030-01-01 00:00:00', 0)"
)
BAD_SQL = {  # statement: why it is refused
    "both": [
        (INSERT_RUN, READ_ONLY),
        ("UPDATE forecasts SET prediction = 0", READ_ONLY),
        ("DELETE FROM forecasts", READ_ONLY),
        ("DELETE FROM forecasts RETURNING run_month", READ_ONLY),
        ("DROP TABLE forecasts_runs", READ_ONLY),
        ("DROP VIEW forecasts_latest", READ_ONLY),
        ("CREATE TABLE evil (x INTEGER)", READ_ONLY),
        ("CREATE TEMP TABLE evil AS SELECT 1 AS x", READ_ONLY),
        ("ALTER TABLE forecasts ADD COLUMN evil INTEGER", READ_ONLY),
        ("SELECT 1; SELECT 2", ONE_STATEMENT),
        ("SELECT count(*) FROM forecasts; DELETE FROM forecasts", ONE_STATEMENT),
        ("DELETE FROM forecasts; COMMIT; SELECT 1", ONE_STATEMENT),
        ("COMMIT; DELETE FROM forecasts", ONE_STATEMENT),
        ("DROP VIEW forecasts_latest; SELECT 1", ONE_STATEMENT),
    ],
    "postgresql": [
        ("SET default_transaction_read_only = off; DELETE FROM forecasts", ONE_STATEMENT),
        ("SET TRANSACTION READ WRITE; DELETE FROM forecasts", ONE_STATEMENT),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; DELETE FROM forecasts", ONE_STATEMENT),
        ("ROLLBACK; SET default_transaction_read_only = off; DROP VIEW forecasts_latest", ONE_STATEMENT),
        ("SET default_transaction_read_only = off", READ_ONLY),
        ("SET TRANSACTION READ WRITE", READ_ONLY),
        ("COMMIT", READ_ONLY),
        ("DO $$BEGIN SET TRANSACTION READ WRITE; DELETE FROM forecasts; END$$", READ_ONLY),
        ("DO $$BEGIN COMMIT; DELETE FROM forecasts; END$$", READ_ONLY),
        ("WITH gone AS (DELETE FROM forecasts RETURNING *) SELECT count(*) AS n FROM gone", READ_ONLY),
        ("TRUNCATE forecasts", READ_ONLY),
        ("EXPLAIN ANALYZE DELETE FROM forecasts", READ_ONLY),
        ("SELECT * FROM forecasts FOR UPDATE", READ_ONLY),
    ],
    "sqlite": [
        ("ATTACH DATABASE '{folder}/attached.db' AS evil", READ_ONLY),
        ("ATTACH DATABASE 'file:{folder}/attached_uri.db?mode=rwc' AS evil", READ_ONLY),
        ("PRAGMA query_only = OFF", READ_ONLY),
        # refused as the PRAGMA compiles, before the driver looks for a second statement
        ("PRAGMA query_only = OFF; DELETE FROM forecasts", READ_ONLY),
        ("VACUUM INTO '{folder}/copy.db'", READ_ONLY),
        ("PRAGMA user_version = 7", READ_ONLY),
        ("REPLACE INTO forecasts_runs SELECT * FROM forecasts_runs", READ_ONLY),
    ],
}
CASES = [(backend, sql, why) for backend in BACKENDS for sql, why in BAD_SQL["both"] + BAD_SQL[backend]]


def test_how_many_bad_inputs_are_tried():
    """For docs/faults.md: 27 statements tried on PostgreSQL, 21 on SQLite."""
    assert {b: sum(1 for c in CASES if c[0] == b) for b in BACKENDS} == {"postgresql": 27, "sqlite": 21}


def state(db) -> dict:
    """Everything a refused statement must leave as it was."""
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            snapshot = {
                "tables": sorted(inspector.get_table_names()),
                "views": sorted(inspector.get_view_names()),
                "forecasts": conn.exec_driver_sql(
                    "SELECT * FROM forecasts ORDER BY run_month, store_id, item_id, horizon"
                ).all(),
                "runs": conn.exec_driver_sql("SELECT * FROM forecasts_runs ORDER BY run_month").all(),
                "latest": conn.exec_driver_sql("SELECT count(*) FROM forecasts_latest").scalar(),
            }
            if db.backend == "sqlite":
                snapshot["user_version"] = conn.exec_driver_sql("PRAGMA user_version").scalar()
    finally:
        engine.dispose()
    snapshot["files"] = sorted(p.name for p in db.folder.iterdir())
    return snapshot


@pytest.fixture
def before(guarded_db):
    snapshot = state(guarded_db)
    assert len(snapshot["forecasts"]) == 72 and len(snapshot["runs"]) == 2 and snapshot["latest"] == 48
    assert "forecasts_latest" in snapshot["views"]
    return snapshot


@pytest.mark.parametrize(
    "guarded_db, sql, why",
    CASES,
    indirect=["guarded_db"],
    ids=[f"{b}-{i}-" + re.sub(r"\W+", "_", sql)[:40].strip("_") for i, (b, sql, _) in enumerate(CASES)],
)
def test_query_refuses_sql_that_could_write(guarded_db, before, sql, why, capsys, monkeypatch):
    sql = sql.format(folder=guarded_db.folder)
    monkeypatch.setenv("FORECAST_CONFIG", str(guarded_db.path))
    with pytest.raises(query.QueryRefused, match=why):
        query.run_query(guarded_db.config, sql)
    assert state(guarded_db) == before, sql
    # The command line: one line on stderr saying why, exit status 2, nothing on stdout.
    capsys.readouterr()
    assert query.main([sql]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("refused: ") and why in err and err.count("\n") == 1, err
    assert state(guarded_db) == before, sql


@pytest.mark.parametrize("guarded_db", BACKENDS, indirect=True)
def test_the_command_refuses_without_a_traceback(guarded_db, before):
    env = {**os.environ, "FORECAST_CONFIG": str(guarded_db.path)}
    done = subprocess.run(
        [sys.executable, "-m", "forecasting.publishing.query", "DELETE FROM forecasts; COMMIT; SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        "refused: forecasting.publishing.query runs exactly one SQL statement"
        + (
            ", not 3\n"  # PostgreSQL's parser counted them before anything was sent
            if guarded_db.backend == "postgresql"
            else ": You can only execute one statement at a time.\n"
        )
    )
    assert state(guarded_db) == before


GOOD_SQL = [
    "SELECT * FROM forecasts_latest WHERE store_id = 2 ORDER BY item_id, forecast_month",
    "SELECT run_month, count(*) AS n, sum(prediction) AS total FROM forecasts GROUP BY run_month ORDER BY run_month",
    "WITH newest AS (SELECT max(run_month) AS m FROM forecasts_runs)\n"
    "SELECT f.store_id, f.item_id, f.prediction FROM forecasts AS f, newest\n"
    "WHERE f.run_month = newest.m AND f.horizon = 1 ORDER BY f.store_id, f.item_id;",
    "SELECT * FROM forecasts_runs WHERE run_month > '2030-01-01'",  # no rows: still fine
]


@pytest.mark.parametrize("guarded_db", BACKENDS, indirect=True)
@pytest.mark.parametrize("sql", GOOD_SQL, ids=["latest", "group-by", "with-select", "empty"])
def test_select_and_with_select_print_what_they_printed_before(guarded_db, before, sql, capsys, monkeypatch):
    engine = sa.create_engine(guarded_db.url)  # what run_query used to do, with write access
    try:
        with engine.connect() as conn:
            expected = pd.read_sql_query(sa.text(sql), conn)
    finally:
        engine.dispose()
    pd.testing.assert_frame_equal(query.run_query(guarded_db.config, sql), expected)
    monkeypatch.setenv("FORECAST_CONFIG", str(guarded_db.path))
    capsys.readouterr()
    assert query.main([sql]) == 0
    out, err = capsys.readouterr()
    assert out == (expected.to_string(index=False) if len(expected) else "(no rows)") + "\n"
    assert err == ""
    assert state(guarded_db) == before


@pytest.mark.parametrize("guarded_db", ["postgresql"], indirect=True)
def test_postgres_session_is_read_only_with_a_statement_timeout(guarded_db):
    settings = query.run_query(
        guarded_db.config,
        "SELECT current_setting('transaction_read_only') AS tx, "
        "current_setting('default_transaction_read_only') AS session, "
        "current_setting('statement_timeout') AS timeout",
        timeout=90,
    )
    assert settings.to_dict(orient="records") == [{"tx": "on", "session": "on", "timeout": "90s"}]


@pytest.mark.parametrize("guarded_db", BACKENDS, indirect=True)
def test_a_query_running_past_the_timeout_is_cancelled(guarded_db, capsys, monkeypatch):
    slow = (
        "SELECT count(*) AS c FROM generate_series(1, 100000) AS a, generate_series(1, 100000) AS b"
        if guarded_db.backend == "postgresql"
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) AS c FROM n"
    )
    monkeypatch.setenv("FORECAST_CONFIG", str(guarded_db.path))
    capsys.readouterr()
    assert query.main(["--timeout", "0.5", slow]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err in (
        "error: canceling statement due to statement timeout\n",
        "error: cancelled after 0.5 s (--timeout)\n",
    )


def test_a_missing_sqlite_database_is_an_error_not_a_new_file(tmp_path):
    raw = demo_config_dict(tmp_path)
    config = load_config(write_config(tmp_path, raw))
    with pytest.raises(query.QueryError, match="no SQLite database"):
        query.run_query(config, "SELECT 1")
    assert not (tmp_path / "predictions.db").exists()


def test_other_databases_are_refused_before_connecting(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["predictions"]["url"] = "mysql+pymysql://reader@db.invalid/predictions"
    config = load_config(write_config(tmp_path, raw))
    with pytest.raises(query.QueryError, match="PostgreSQL and SQLite"):
        query.run_query(config, "SELECT 1")


def test_help_and_docstring_say_read_only_and_one_statement(capsys):
    with pytest.raises(SystemExit) as exit_:
        query.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("read-only", "exactly one statement", "READ ONLY transaction", "mode=ro", "--timeout"):
        assert words in text, words
    assert "read-only" in query.__doc__.splitlines()[0]
