"""Every path part and query key of every route of the Forecasts view, given hostile values (a NUL
byte raw and percent-encoded, integers beyond 64 bits, negative numbers, unicode, '..', a very long
value, nothing): the plugin answers 400 or 404 (the explorer's page, 200 with the error in it),
never 500, on SQLite and PostgreSQL. Before, a NUL in a Data Docs path and a huge integer key in
the explorer both answered 500 (issue 23)."""

from __future__ import annotations

import importlib.util
from contextlib import ExitStack
from urllib.parse import quote

import pytest

from tests.helpers.paths import REPO

HOSTILE = {
    "nul": "\x00",
    "percent-nul": "%00",
    "nul-inside": "index\x00.html",
    "huge-int": "9" * 40,
    "int64-plus-one": str(2**63),
    "negative": "-1",
    "huge-negative": "-" + "9" * 40,
    "unicode": "é€😀",
    "dots": "..",
    "very-long": "x" * 5000,
    "empty": "",
}
# A well-formed Data Docs address of forecasts_view_data's deployment, one part replaced at a time.
MONTH = "2025-01"
ATTEMPT = "manual__2025-02-03T10-00-00-00-00__20250203T100000000000Z"
DOC = "index.html"


# One deployment per backend for the whole module: every route here only reads it (a GET), and
# each test asserts only how a route answers its input.
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request, tmp_path_factory, airflow_db):
    from fastapi.testclient import TestClient

    from tests.helpers.forecasts_view_data import build_deployment

    spec = importlib.util.spec_from_file_location(
        "forecast_quality", REPO / "plugins" / "forecast_quality.py"
    )
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    with ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        config = build_deployment(tmp_path_factory.mktemp(f"hostile-{request.param}"), url)
        monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
        # Stand in for Airflow's auth: what is tested is how each route takes its input.
        plugin.app.dependency_overrides = {
            dep.dependency: (lambda: None) for dep in plugin.app.router.dependencies
        }
        yield TestClient(plugin.app, raise_server_exceptions=False), config


def path_part(value: str) -> str:
    """``value`` as it reaches the route: %00 as typed in the address bar, '..' encoded (a client
    would resolve a bare '..' away before sending it)."""
    if value == "%00":
        return value
    return quote(value, safe="%") if value != ".." else "%2e%2e"


def test_the_well_formed_addresses_answer(client):
    http, config = client
    assert http.get(f"/data-docs/{MONTH}/{ATTEMPT}/{DOC}").status_code == 200
    keys = dict.fromkeys(config.source.entity_columns, "1")
    assert http.get("/explorer.csv", params=keys).status_code == 200
    assert http.get("/assets/jquery.min.js").status_code == 200


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("part", ["month", "attempt", "path"])
def test_a_hostile_data_docs_path_part_is_400_or_404(client, part, value):
    http, _ = client
    parts = {"month": MONTH, "attempt": ATTEMPT, "path": DOC} | {part: path_part(value)}
    response = http.get(f"/data-docs/{parts['month']}/{parts['attempt']}/{parts['path']}")
    assert response.status_code in (400, 404), (response.status_code, response.text[:300])


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_asset_name_is_404(client, value):
    http, _ = client
    response = http.get(f"/assets/{path_part(value)}")
    assert response.status_code == 404, (response.status_code, response.text[:300])


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("key", ["store_id", "item_id", "unknown_key", "zoom"])
def test_a_hostile_explorer_key_is_never_a_server_error(client, key, value):
    http, config = client
    given = dict.fromkeys(config.source.entity_columns, "1") | {key: value}
    page = http.get("/explorer", params=given)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    csv = http.get("/explorer.csv", params=given)
    if key in ("unknown_key", "zoom"):  # ignored by the CSV: the entity is named in full
        assert csv.status_code == 200
    else:
        assert csv.status_code in (400, 404), (csv.status_code, csv.text[:300])
    alone = http.get("/explorer", params={key: value})  # a search by one key
    assert alone.status_code == 200, (alone.status_code, alone.text[:300])


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_the_overview_ignores_a_hostile_query(client, value):
    http, _ = client
    assert http.get("/", params={"month": value}).status_code == 200


def test_the_scenarios_page_ignores_a_hostile_scenario_or_level(client):
    from tests.helpers.scenarios_view_data import add_scenarios

    http, config = client
    add_scenarios(config)  # the config file the app reads, rewritten with scenarios published
    for value in HOSTILE.values():  # one deployment for all: each request reads, none writes
        for given in ({"scenario": value}, {"level": value}, {"scenario": value, "level": value}):
            page = http.get("/scenarios", params=given)
            assert page.status_code == 200, (value[:20], page.status_code, page.text[:300])
            assert 'id="chosen-scenario">price_cut against base' in page.text
