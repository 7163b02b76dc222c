"""The Forecasts view's overview and plumbing: the library renders every month's status and the
model against every baseline, the Airflow plugin serves the pages to readers of the DAG only (no
/docs or /openapi.json), its Data Docs route cannot leave the Data Docs folder and serves pages
that need no network."""

from __future__ import annotations

import importlib.util
import re
from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import REPO, demo_config_dict, write_config


@pytest.fixture
def published(tmp_path, monkeypatch):
    from forecasting import paths
    from forecasting.config import load_config
    from forecasting.publish import publish

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
    from forecasting.report import render

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
    from forecasts_view_data import FAILED_TRAIN, FAILED_VALIDATION, RUN_IDS, STOPPED, build_deployment

    from forecasting.report import attempt_statuses, render

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
        'target="_top" href="../dags/monthly_forecast/runs/manual__2025-02-03T10%3A00%3A00%2B00%3A00"' in page
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
    from forecasting.config import load_config
    from forecasting.report import render

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
    from forecasts_view_data import build_deployment

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
        page = client.get("/")
        assert page.status_code == 200 and "2024-06" in page.text
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


def test_realised_accuracy_and_the_biggest_misses_once_monitoring_has_scored(tmp_path):
    from forecasts_view_data import actual, build_deployment, prediction, snapshot

    from forecasting.monitoring import realised_accuracy
    from forecasting.report import render

    config = build_deployment(tmp_path)
    assert "Appears once <code>forecast_monitoring</code> has scored" in render(config)
    for month in ("2024-11", "2024-12"):
        realised_accuracy(snapshot(), config, pd.Period(month, "M"))
    page = render(config)
    chart = page[page.index("<h3>Realised accuracy</h3>") : page.index("Biggest misses")]
    points = re.findall(r'data-series="(ahead\d)" data-month="([^"]+)" data-value="([^"]+)"', chart)
    # WAPE of 2024-12 one month ahead (run 2024-11): sum |prediction - actual| / sum actual.
    entities = [(s, i) for s in (1, 2) for i in (1, 2, 3)]
    errors = sum(abs(prediction(s, i, 1, "2024-11") - actual(s, i, "2024-12")) for s, i in entities)
    wape = errors / sum(actual(s, i, "2024-12") for s, i in entities)
    assert ("ahead1", "2024-12") in {(k, m) for k, m, _ in points}
    assert float(next(v for k, m, v in points if (k, m) == ("ahead1", "2024-12"))) == pytest.approx(wape)
    # The biggest misses of the newest scored month link into the explorer.
    misses = page[page.index("Biggest misses of 2024-12") :]
    assert misses.count("href='explorer?store_id=") == 10  # 6 entities x horizons 1 and 2, top 10
