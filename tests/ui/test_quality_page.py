"""The Forecasts view's overview and plumbing: the library renders every month's status and the
model against every baseline, the Airflow plugin serves the pages to readers of the DAG only (no
/docs or /openapi.json), its Data Docs route cannot leave the Data Docs folder and serves pages
that need no network. Its monitoring sections (realised accuracy against every naive baseline,
the newest drift, the alerts) show what the monitoring tables hold, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import re
from contextlib import ExitStack
from datetime import UTC, datetime

import pandas as pd
import pytest

from forecasting.publishing.query import run_query
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO


@pytest.fixture
def published(tmp_path, monkeypatch):
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.publishing.publish import publish

    path = write_config(tmp_path, demo_config_dict(tmp_path))
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    config = load_config(path)
    frame = pd.DataFrame(
        {
            "store_id": [1, 2],
            "item_id": [1, 1],
            "forecast_month": [pd.Timestamp("2024-07-01").date()] * 2,
            "horizon": [1, 1],
            "prediction": [3.0, 4.0],
        }
    )
    for month, wape in (("2024-05", 0.41), ("2024-06", 0.25)):
        publish(
            frame,
            config,
            pd.Period(month, "M"),
            model_version=f"{month}-abc",
            run_id=f"scheduled__{month}",
            evaluation={
                "model": {"wape": wape},
                "best_baseline": "mean_3",
                "baselines": {"mean_3": {"wape": 0.3}},
            },
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
    june = pd.Period("2024-06", "M")
    published_attempt = "scheduled__2024-06__20240701T000000000000Z"
    docs = paths.data_docs(config, june, published_attempt)
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>validation of 2024-06</html>")
    paths.write_json_atomically({"run_id": "scheduled__2024-06"}, docs.parent / "publish.json")
    # Later attempts of the same month (the same run cleared and run again, and a manual run)
    # that failed validation: their reports are not the published one.
    for attempt in (
        "scheduled__2024-06__20240702T000000000000Z",
        "manual__2024-07-03__20240703T000000000000Z",
    ):
        failed = paths.data_docs(config, june, attempt)
        failed.mkdir(parents=True)
        (failed / "index.html").write_text("<html>a failed validation</html>")
    (tmp_path / "secret.txt").write_text("not for the browser")
    return config


def test_page_lists_each_month_against_its_baseline(published):
    from forecasting.ui.overview import render

    page = render(published)
    assert page.index("<b>2024-06</b>") < page.index("<b>2024-05</b>")  # newest first
    assert "0.250" in page and "0.410" in page and "mean_3" in page
    assert (
        page.count(">does not beat the best baseline<") == 1 and page.count(">beats the best baseline<") == 1
    )
    docs = "data-docs/2024-06/scheduled__2024-06__20240701T000000000000Z/index.html"
    assert f'href="{docs}"' in page
    assert "data-docs/2024-05" not in page


def test_every_attempt_of_every_month_has_its_status_and_links(tmp_path):
    from forecasting.ui.overview import attempt_statuses, render
    from tests.helpers.forecasts_view_data import (
        FAILED_TRAIN,
        FAILED_VALIDATION,
        RUN_IDS,
        STOPPED,
        build_deployment,
    )

    config = build_deployment(tmp_path)
    statuses = attempt_statuses(config, {STOPPED[1]: "failed"})
    assert [(a.month, a.status) for a in statuses] == [
        ("2025-02", "stopped"),
        ("2025-01", "failed validation"),
        ("2024-12", "failed"),
        ("2024-12", "published"),
        ("2024-11", "published"),
        ("2024-10", "published"),
    ]
    assert [a.run_id for a in statuses] == [
        STOPPED[1],
        FAILED_VALIDATION[1],
        FAILED_TRAIN[1],
        RUN_IDS["2024-12"],
        RUN_IDS["2024-11"],
        RUN_IDS["2024-10"],
    ]
    failed_validation, failed_train = statuses[1], statuses[2]
    assert [f["label"] for f in failed_validation.failures] == [
        "expect_column_values_to_not_be_null(store_id)",
        "expect_table_row_count_to_be_between(rows of 2025-01)",
    ]
    assert (
        failed_validation.validation_page
        == "validations/snapshot_2025-01/__none__/20250101T000000Z/result.html"
    )
    assert failed_train.stage == "train" and "MemoryError: out of memory" in failed_train.message
    assert attempt_statuses(config)[0].status == "running or stopped"  # Airflow not asked
    assert attempt_statuses(config, {STOPPED[1]: "running"})[0].status == "running"

    page = render(config, {STOPPED[1]: "failed"})
    # Each attempt links to its own Airflow run (in the whole window) and its own validation page.
    assert (
        'data-airflow-page href="../dags/monthly_forecast/runs/manual__2025-02-03T10%3A00%3A00%2B00%3A00"'
        in page
    )
    attempt = "manual__2025-02-03T10-00-00-00-00__20250203T100000000000Z"
    assert (
        f'href="data-docs/2025-01/{attempt}/validations/snapshot_2025-01/__none__/20250101T000000Z/result.html"'
        in page
    )
    assert "3 unexpected of 481 rows" in page and "out of memory" in page
    # Model against every baseline, all metrics and per horizon, for every published month.
    assert page.count("<tr class=chosen><td>model</td>") == 3
    assert "seasonal_naive" in page and "WAPE h=3" in page and "RMSE" in page and "bias %" in page
    assert "0.212" in page  # 2024-12's model WAPE (0.20 + 12/1000)


def test_page_before_any_run(tmp_path):
    from forecasting.core.config import load_config
    from forecasting.ui.overview import render

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    assert "No month has been published yet" in render(config)


@pytest.fixture
def plugin(airflow_db):
    spec = importlib.util.spec_from_file_location(
        "forecast_quality", REPO / "plugins" / "forecast_quality.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_registers_its_app_and_nav_link(plugin):
    (app,) = plugin.ForecastQualityPlugin.fastapi_apps
    assert app["url_prefix"] == "/forecast-quality" and app["app"] is plugin.app
    (view,) = plugin.ForecastQualityPlugin.external_views
    assert view["destination"] == "nav" and not view["href"].startswith("/")
    # The UI appends the iframe's path to /plugin/<url_route>: the same name twice read
    # /plugin/forecast-quality/forecast-quality/.
    assert view["url_route"] != app["url_prefix"].strip("/")


@pytest.mark.parametrize(
    "path", ["/", "/explorer", "/explorer.csv?store_id=1&item_id=1", "/assets/jquery.min.js"]
)
def test_plugin_refuses_anonymous_users(plugin, published, path):
    from fastapi.testclient import TestClient

    response = TestClient(plugin.app).get(path)
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_plugin_does_not_expose_its_api_docs(plugin, published, path):
    from fastapi.testclient import TestClient

    plugin.app.dependency_overrides = {
        dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
    }
    try:
        assert TestClient(plugin.app).get(path).status_code == 404
    finally:
        plugin.app.dependency_overrides = {}


def test_data_docs_pages_are_served_without_cdn_links(plugin, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tests.helpers.forecasts_view_data import build_deployment

    config = build_deployment(tmp_path)
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    plugin.app.dependency_overrides = {
        dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
    }
    try:
        client = TestClient(plugin.app)
        attempt = "manual__2025-02-03T10-00-00-00-00__20250203T100000000000Z"
        page = client.get(
            f"/data-docs/2025-01/{attempt}/validations/snapshot_2025-01/__none__/20250101T000000Z/result.html"
        )
        assert page.status_code == 200 and "validation of 2025-01" in page.text
        assert "https://" not in page.text.replace("<!-- offline: https://", "")  # nothing to fetch
        depth = "../" * 7  # data-docs/<month>/<attempt>/validations/<suite>/__none__/<time>/
        for asset in ("bootstrap.min.css", "jquery.min.js", "bootstrap.min.js"):
            assert f'"{depth}assets/{asset}"' in page.text
            assert client.get(f"/assets/{asset}").status_code == 200
        assert '<img src="../../../../static/images/logo-long.png">' in page.text
        index = client.get(f"/data-docs/2025-01/{attempt}/index.html").text
        assert '<script src="../../../assets/jquery.min.js"></script>' in index
        assert client.get("/assets/..%2Fexplorer.py").status_code == 404
        assert client.get("/assets/README.md").status_code == 404
    finally:
        plugin.app.dependency_overrides = {}


def test_plugin_serves_the_page_and_data_docs_to_readers(plugin, published):
    from fastapi.testclient import TestClient

    # Stand in for Airflow's auth: what is tested here is the page, the files and the path check.
    plugin.app.dependency_overrides = {
        dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
    }
    try:
        client = TestClient(plugin.app)
        page = client.get("/runs")  # the engineers' detail: every month's runs
        assert page.status_code == 200 and "2024-06" in page.text
        assert client.get("/").status_code == 200  # the planners' overview
        assert client.get("/levels", params={"level": "entity"}).status_code == 200
        levels_csv = client.get("/levels.csv", params={"level": "entity", "sort": "change"})
        assert levels_csv.status_code == 200 and levels_csv.text.startswith("store_id,item_id,")
        assert client.get("/levels.xlsx").status_code == 400  # CSV or Parquet only
        assert client.get("/levels.csv", params={"level": "nope"}).status_code == 400
        explorer = client.get("/explorer", params={"store_id": "1", "item_id": "1"})
        assert explorer.status_code == 200 and "<svg" in explorer.text
        csv = client.get("/explorer.csv", params={"store_id": "1", "item_id": "1"})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert "store_id,item_id,month" in csv.text and "2024-07" in csv.text
        assert 'filename="forecasts_store_id-1_item_id-1.csv"' in csv.headers["content-disposition"]
        assert client.get("/explorer.csv", params={"store_id": "x", "item_id": "1"}).status_code == 400
        assert client.get("/explorer.csv", params={"store_id": "7", "item_id": "7"}).status_code == 404
        docs = "/data-docs/2024-06/scheduled__2024-06__20240701T000000000000Z"
        assert client.get(f"{docs}/index.html").text == "<html>validation of 2024-06</html>"
        assert client.get(f"{docs}/../../../../secret.txt").status_code == 404
        assert client.get(f"{docs}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt").status_code == 404
        assert client.get("/data-docs/2024-05/scheduled__2024-05/index.html").status_code == 404
    finally:
        plugin.app.dependency_overrides = {}


@pytest.mark.parametrize(
    "month",
    [
        "garbage",
        "99999-99",
        "%00",
        "2024-6",
        "2024-06-17T00:00",
        "now",
        "2024-13",
        "2024-00",
        "-2024-06",
        "2024-06%0a",
    ],
)
def test_plugin_answers_400_for_anything_but_a_month(plugin, published, month):
    from fastapi.testclient import TestClient

    plugin.app.dependency_overrides = {
        dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
    }
    try:
        response = TestClient(plugin.app).get(
            f"/data-docs/{month}/scheduled__2024-06__20240701T000000000000Z/index.html"
        )
        assert response.status_code == 400, response.text
        assert "not a month" in response.json()["detail"]
    finally:
        plugin.app.dependency_overrides = {}


@pytest.mark.parametrize("run", ["..", ".", "%2e%2e", "a b", "%00", "x" * 300])
def test_plugin_answers_400_or_404_for_an_attempt_that_is_not_an_attempt_folder(plugin, published, run):
    from fastapi.testclient import TestClient

    plugin.app.dependency_overrides = {
        dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
    }
    try:
        response = TestClient(plugin.app).get(f"/data-docs/2024-06/{run}/index.html")
        assert response.status_code in (400, 404), response.text
    finally:
        plugin.app.dependency_overrides = {}


@pytest.fixture(params=["sqlite", "postgresql"])
def view_deployment(request, tmp_path):
    """forecasts_view_data's deployment, its predictions on SQLite or PostgreSQL."""
    from tests.helpers.forecasts_view_data import build_deployment

    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        yield build_deployment(tmp_path, url)


def section(page: str, start: str, end: str | None = None) -> str:
    begin = page.index(start)
    return page[begin : page.index(end, begin) if end else len(page)]


POINT = re.compile(r'<circle [^>]*data-series="([^"]+)" data-month="([^"]+)" data-value="([^"]+)"')


def test_no_monitoring_yet_says_so(view_deployment):
    from forecasting.ui.overview import render

    page = render(view_deployment)
    assert "id='no-monitoring'" in page and "No monitoring yet." in page
    assert "forecasts_accuracy" in page and "forecasts_drift" in page and "forecasts_alerts" in page
    assert "<h3>Realised accuracy</h3>" not in page and "id='drift'" not in page


def test_monitoring_sections_show_the_accuracy_drift_and_alerts_tables(view_deployment):
    from forecasting.modeling.baselines import NAIVE_BASELINES as BASELINES
    from forecasting.ui.overview import render
    from tests.helpers.forecasts_view_data import (
        DRIFT,
        ITEMS,
        MAX_WAPE,
        STORES,
        actual,
        add_monitoring,
        prediction,
    )

    config = view_deployment
    add_monitoring(config)
    page = render(config)
    assert "no-monitoring" not in page

    # Realised accuracy: per horizon, the model and every naive baseline, as in the table.
    stored = run_query(
        config,
        "SELECT forecast_month, horizon, wape, "
        + ", ".join(f"{b}_wape" for b in BASELINES)
        + " FROM forecasts_accuracy WHERE segment_column = '(all)'",
    )
    assert sorted(stored["horizon"].unique()) == [1, 2]
    for horizon in (1, 2):
        block = section(page, f"<details class='accuracy' data-horizon='{horizon}'", "</details>")
        drawn: dict[str, dict[str, float]] = {}
        for series, month, value in POINT.findall(block):
            drawn.setdefault(series, {})[month] = float(value)
        mine = stored[stored["horizon"] == horizon]
        months = [f"{pd.Timestamp(v):%Y-%m}" for v in mine["forecast_month"]]
        assert drawn["model"] == dict(zip(months, mine["wape"], strict=True))
        for b in BASELINES:
            assert drawn[b] == dict(zip(months, mine[f"{b}_wape"], strict=True)), b
        # A legend entry per line, axis labels, and the numbers in a table beside the chart.
        assert re.findall(r'legend-item" data-series="([^"]+)"', block) == ["model", *BASELINES]
        assert ">WAPE (lower is better)</text>" in block and ">forecast month</text>" in block
        for month, wape in zip(months, mine["wape"], strict=True):
            row = section(block, f"<tr data-month='{month}' data-horizon='{horizon}'>", "</tr>")
            assert f"data-col='model'>{wape:.3f}</td>" in row
    assert "<details class='accuracy' data-horizon='1' open>" in page
    # 2024-12 one month ahead (the 2024-11 run) by hand: sum |forecast - actual| / sum actual.
    entities = [(s, i) for s in STORES for i in ITEMS]
    wape = sum(abs(prediction(s, i, 1, "2024-11") - actual(s, i, "2024-12")) for s, i in entities) / sum(
        actual(s, i, "2024-12") for s, i in entities
    )
    h1 = section(page, "<details class='accuracy' data-horizon='1'", "</details>")
    assert float(re.search(r'data-series="model" data-month="2024-12" data-value="([^"]+)"', h1)[1]) == (
        pytest.approx(wape)
    )
    # The biggest misses of the newest scored month link into the explorer.
    misses = section(page, "Biggest misses of 2024-12", "</table>")
    assert misses.count("href='explorer?store_id=") == 10  # 6 entities x horizons 1 and 2, top 10

    # Drift: the newest month's rows, the flagged ones highlighted and named.
    drift = section(page, "<h3>Drift of 2024-12</h3>", "<h3>Alerts</h3>")
    flagged = [feature for _, feature, *_, drifted in DRIFT["2024-12"] if drifted]
    assert re.findall(r"<tr data-feature='([^']+)' data-drifted='true' class=flagged>", drift) == flagged
    assert flagged == ["price", "units", "vanished_entities"]  # features, the target, entity shares
    assert len(re.findall(r"<tr data-feature=", drift)) == len(DRIFT["2024-12"])
    assert (
        "Drifted in 2024-12: <code>price</code>, <code>units</code>, <code>vanished_entities</code>." in drift
    )
    price = section(drift, "<tr data-feature='price'", "</tr>")
    assert all(f">{v}</td>" in price for v in ("0.850", "0.620", "3e-12", "0.20"))
    assert ">16.7%</td>" in section(drift, "<tr data-feature='vanished_entities'", "</tr>")
    assert "against the training window 2023-11..2024-11 of <code>2024-12-abc2</code>" in drift
    assert "Earlier months: 2024-11: nothing drifted." in drift

    # Alerts: every row of the table, newest first.
    alerts = run_query(
        config,
        "SELECT alert_id, month, kind, subject, value, threshold FROM forecasts_alerts "
        "ORDER BY raised_at DESC, alert_id DESC",
    )
    shown = section(page, "<h3>Alerts</h3>", "</table>")
    assert [int(a) for a in re.findall(r"<tr data-alert='(\d+)'", shown)] == list(alerts["alert_id"])
    assert re.findall(r"<tr data-alert='\d+' data-kind='([^']+)'>", shown) == list(alerts["kind"])
    assert list(alerts["kind"])[:2] == ["task_failure", "drift"] and len(alerts) == 7
    first = section(shown, "<tr data-alert=", "</tr>")
    assert (
        "2025-01-05 09:30" in first and "smtp to ops@example.com" in first and "<code>train</code>" in first
    )
    oldest = alerts.iloc[-1]  # 2024-11's one-month-ahead WAPE above MAX_WAPE
    assert (f"{pd.Timestamp(oldest['month']):%Y-%m}", oldest["subject"]) == ("2024-11", "horizon 1")
    assert f"<td class='n'>{oldest['value']:.4g}</td><td class='n'>{MAX_WAPE:.4g}</td>" in shown
    assert "logged only" in shown


def test_the_value_added_waterfall_and_the_interval_coverage_beside_the_accuracy(
    view_deployment, monkeypatch
):
    """Each step's WAPE and value added as <table>_fva holds them; 2024-12 one month ahead by
    hand: every published forecast 10.89 under (12 - 1 - 0.11), the model's 0.89 under, the
    statistical one 15.89 under; and the share of actuals inside p10-p90 beside the WAPE."""
    import sqlalchemy as sa

    from forecasting.monitoring.accuracy import realised_accuracy
    from forecasting.ui.overview import render
    from tests.helpers.forecasts_view_data import ITEMS, STORES, actual, add_monitoring, snapshot

    config = view_deployment
    engine = sa.create_engine(config.predictions.database.url)
    with engine.begin() as conn:  # 2024-11's band holds December's actuals, 2024-10's does not
        conn.exec_driver_sql("UPDATE forecasts SET p10 = prediction - 12, p90 = prediction + 12")
        conn.exec_driver_sql("UPDATE forecasts SET p90 = prediction + 1 WHERE run_month < '2024-11-01'")
    engine.dispose()
    add_monitoring(config)
    page = render(config)
    block = section(page, "<h3 id='value-added'>", "</table>")
    stored = run_query(config, "SELECT * FROM forecasts_fva WHERE segment_column = '(all)'")
    assert len(stored) == 3 * 5  # 2024-11 (horizon 1), 2024-12 (horizons 1 and 2): five steps each
    for record in stored.to_dict(orient="records"):
        month = f"{pd.Timestamp(record['forecast_month']):%Y-%m}"
        row = section(block, f"<tr data-month='{month}' data-horizon='{record['horizon']}'>", "</tr>")
        cell = section(row, f"data-step='{record['step']}'>", "</td>")
        assert f"{record['wape']:.3f}" in cell
        if record["step"] != "naive":
            assert f"{record['value_added']:+.3f}" in cell
    sold = sum(actual(s, i, "2024-12") for s in STORES for i in ITEMS)
    december = section(block, "<tr data-month='2024-12' data-horizon='1'>", "</tr>")
    entities = len(STORES) * len(ITEMS)
    for step, miss in (("statistical", 15.89), ("model", 0.89), ("published", 10.89), ("final", 10.89)):
        assert f"data-step='{step}'>{entities * miss / sold:.3f}" in december, step
    assert f"{(15.89 - 0.89) * entities / sold:+.3f}" in section(december, "data-step='model'>", "</td>")
    assert "id='planners'" not in page  # no override yet
    # Once a planner overrides: Ana set store 1 / item 1's December forecast (one month ahead of
    # the November run) to what sold; recorded as the view records it, applied as publish applies
    # it (final, override_id and the run's outcome); scored again, her row says so.
    from forecasting.publishing import overrides

    monkeypatch.setattr(
        overrides, "_check", lambda *args: None
    )  # checked against November, not the newest run
    recorded = overrides.record_override(
        config,
        first_month="2024-12",
        last_month="2024-12",
        kind="absolute",
        value=actual(1, 1, "2024-12"),
        reason="store event",
        created_by="ana",
        entity={"store_id": 1, "item_id": 1},
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE forecasts SET final = :final, override_id = :id WHERE run_month = '2024-11-01' "
                "AND horizon = 1 AND store_id = 1 AND item_id = 1"
            ),
            {"final": actual(1, 1, "2024-12"), "id": recorded["override_id"]},
        )
        conn.execute(
            sa.text(
                "INSERT INTO forecasts_override_outcomes (run_month, override_id, version, outcome, forecasts, message) "
                "VALUES ('2024-11-01', :id, 1, 'applied', 1, 'store 1 / item 1')"
            ),
            {"id": recorded["override_id"]},
        )
    engine.dispose()
    realised_accuracy(snapshot(), config, pd.Period("2024-12", "M"))
    ana = section(render(config), "<tr data-month='2024-12' data-planner='ana'>", "</tr>")
    missed = 10.89 / actual(1, 1, "2024-12")  # published 10.89 under, the override exact
    assert f"<td class='n'>1</td><td class='n'>{missed:.3f}</td><td class='n'>0.000</td>" in ana
    assert f"good'>{missed:+.3f}</td>" in ana
    h1 = section(page, "<details class='accuracy' data-horizon='1'", "</details>")
    assert "data-col='coverage'>100%</td>" in section(h1, "<tr data-month='2024-12'", "</tr>")
    assert "data-col='coverage'>0%</td>" in section(h1, "<tr data-month='2024-11'", "</tr>")


def test_alerts_before_any_month_is_scored(view_deployment):
    from forecasting.monitoring.alerts import Alert, raise_alerts
    from forecasting.ui.overview import render

    failure = Alert(
        "monthly_forecast", "2025-01", "task_failure", "task_state", "extract", None, None, "boom"
    )
    raise_alerts(view_deployment, [failure])
    page = render(view_deployment)
    assert "id='no-accuracy'" in page and "id='no-drift'" in page and "No monitoring yet" not in page
    assert re.findall(r"data-kind='([^']+)'", section(page, "<h3>Alerts</h3>")) == ["task_failure"]


def test_accuracy_of_several_models_for_one_month_is_pooled_by_their_errors(tmp_path):
    """Rows of two model versions for one forecast month and horizon (e.g. a run that published
    a baseline for some entities): one point, their absolute errors over their actuals."""
    from forecasting.core.config import load_config
    from forecasting.core.db import make_engine
    from forecasting.monitoring.accuracy import ensure_monitoring_schema
    from forecasting.ui.monitoring import accuracy_trend
    from tests.monitoring.test_alerts import accuracy_row

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    small = {**accuracy_row("2024-11", 1, 0.2, 0.25), "model_version": "a", "actual_sum": 100.0}
    large = {**accuracy_row("2024-11", 1, 0.1, 0.3), "model_version": "b", "actual_sum": 300.0}
    for row, naive in ((small, (0.25, 0.5, 0.4)), (large, (0.3, 0.2, 0.6))):
        row.update(zip(("last_value_wape", "mean_3_wape", "seasonal_naive_wape"), naive, strict=True))
    engine = make_engine(config.predictions.database)
    with engine.begin() as conn:
        accuracy, _ = ensure_monitoring_schema(conn, config, {"store_id": "int64", "item_id": "int64"})
        later = {
            **accuracy_row("2024-12", 1, 0.3, 0.2),
            "last_value_wape": 0.2,
            "mean_3_wape": None,
            "seasonal_naive_wape": 0.25,
        }
        conn.execute(accuracy.insert(), [small, large, later])
    engine.dispose()

    november, december = accuracy_trend(config)
    assert (november["month"], november["forecasts"], november["model_versions"]) == (
        "2024-11",
        20,
        ["a", "b"],
    )
    assert november["wape"] == pytest.approx((0.2 * 100 + 0.1 * 300) / 400)
    assert november["wape_last_value"] == pytest.approx((0.25 * 100 + 0.3 * 300) / 400)
    assert november["wape_mean_3"] == pytest.approx((0.5 * 100 + 0.2 * 300) / 400)
    assert (november["best_naive"], november["fva"]) == ("mean_3", pytest.approx(0.275 - 0.125))
    # One row: its own numbers; a baseline without a WAPE (nothing sold at its origin) is left out.
    assert december["wape"] == 0.3 and december["wape_mean_3"] is None
    assert (december["best_naive"], december["fva"]) == ("last_value", pytest.approx(0.2 - 0.3))
