"""The "Forecast quality" page: the library renders it, the Airflow plugin serves it to readers of
the DAG only, and its Data Docs route cannot leave the Data Docs folder."""

from __future__ import annotations

import importlib.util
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
    assert page.index("2024-06") < page.index("2024-05")  # newest first
    assert "0.250" in page and "0.410" in page and "mean_3" in page
    assert page.count(">does not beat it<") == 1 and page.count(">beats it<") == 1
    assert 'href="data-docs/2024-06/scheduled__2024-06__20240701T000000000000Z/index.html"' in page
    assert "data-docs/2024-05" not in page and "20240702" not in page and "manual__" not in page


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


def test_plugin_refuses_anonymous_users(plugin, published):
    from fastapi.testclient import TestClient

    response = TestClient(plugin.app).get("/")
    assert response.status_code in (401, 403)


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
