"""The Forecasts view's Overrides page behind Airflow's real authentication (JWTs of the simple
auth manager, no stand-ins): a planner (Airflow's User role) records an override through the
form, the next publish applies it to ``final`` and the overview and the page say so; a typo is
refused, named, with what was typed kept; a viewer reads the page but cannot record nor withdraw,
and an anonymous request is refused; on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import re
from contextlib import ExitStack
from datetime import UTC, datetime

import pandas as pd
import pytest

from forecasting.publishing.overrides import read_overrides
from forecasting.publishing.query import run_query
from tests.helpers.forecasts_view_data import RUN_IDS, RUN_MONTHS, forecasts, prediction
from tests.helpers.paths import REPO

NEWEST = RUN_MONTHS[-1]  # its run forecasts 2025-01..2025-03


@pytest.fixture(params=["sqlite", "postgresql"])
def view(request, tmp_path, monkeypatch, airflow_db):
    """(the plugin's app under test, the deployment, Authorization headers of a planner and a viewer)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from tests.helpers.forecasts_view_data import build_deployment

    spec = importlib.util.spec_from_file_location(
        "forecast_quality", REPO / "plugins" / "forecast_quality.py"
    )
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    auth = create_auth_manager()
    headers = {
        role: {
            "Authorization": f"Bearer {auth.generate_jwt(SimpleAuthManagerUser(username=name, role=role))}"
        }
        for name, role in (("pat", "user"), ("vic", "viewer"))
    }
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        config = build_deployment(tmp_path, url)
        monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
        yield TestClient(plugin.app, raise_server_exceptions=False), config, headers


def republish(config) -> dict:
    from forecasting.publishing.publish import publish

    return publish(
        forecasts(NEWEST),
        config,
        pd.Period(NEWEST, "M"),
        model_version="v-again",
        run_id=RUN_IDS[NEWEST],
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
    ).overrides


FORM = {
    "store_id": "2",
    "item_id": "3",
    "first_month": "2025-02",
    "last_month": "2025-03",
    "kind": "absolute",
    "value": "500",
    "reason": "a new shelf",
}


def test_a_planner_records_through_the_form_and_the_next_publish_applies_it(view):
    http, config, headers = view
    posted = http.post("/overrides", data=FORM, headers=headers["user"], follow_redirects=False)
    assert posted.status_code == 303, posted.text[:500]
    page = http.get(posted.headers["location"], headers=headers["user"])
    [recorded] = read_overrides(config).to_dict(orient="records")
    assert recorded["created_by"] == "pat" and recorded["value"] == 500.0 and recorded["version"] == 1
    assert f"Recorded <code>{recorded['override_id']}</code> version 1 (active)" in page.text
    assert f"data-override='{recorded['override_id']}'" in page.text  # in force
    assert "store_id 2, item_id 3" in page.text and "a new shelf" in page.text

    assert republish(config)["applied"] == 1
    finals = run_query(
        config,
        f"SELECT forecast_month, prediction, final, override_id FROM forecasts WHERE run_month = '{NEWEST}-01' "
        "AND store_id = 2 AND item_id = 3 ORDER BY forecast_month",
    )
    assert finals["final"].tolist() == [finals["prediction"].iloc[0], 500.0, 500.0]
    assert finals["override_id"].tolist() == [None, recorded["override_id"], recorded["override_id"]]
    overview = http.get("/", headers=headers["viewer"]).text
    assert f"the run of {NEWEST} applied <b>1</b> to its <code>final</code> forecasts" in overview
    explorer = http.get("/explorer", params={"store_id": "2", "item_id": "3"}, headers=headers["viewer"]).text
    assert 'data-column="latest_final"' in explorer  # the final figures beside the newest run's
    drawn = re.findall(r'data-series="final" data-month="([^"]+)" data-value="([^"]+)"', explorer)
    # January keeps the model's forecast as its final; February and March are the override's.
    january = pytest.approx(prediction(2, 3, 1, NEWEST))
    assert [(month, float(value)) for month, value in drawn] == [
        ("2025-01", january),
        ("2025-02", 500),
        ("2025-03", 500),
    ]
    outcomes = http.get("/overrides", headers=headers["viewer"]).text
    assert f"The run of {NEWEST} applied <b>1</b> override" in outcomes and "refused" not in outcomes

    withdrawn = http.post(
        "/withdraw",
        data={"override_id": recorded["override_id"], "reason": "shelf cancelled"},
        headers=headers["user"],
        follow_redirects=False,
    )
    assert withdrawn.status_code == 303
    assert (
        "version 2 (withdrawn): the next publish no longer applies it"
        in http.get(withdrawn.headers["location"], headers=headers["user"]).text
    )
    assert republish(config)["applied"] == 0
    assert sorted(read_overrides(config)["version"]) == [1, 2]  # the audit trail keeps both


def test_a_typo_is_refused_named_and_the_form_kept(view):
    http, config, headers = view
    typo = FORM | {"item_id": "33"}
    refused = http.post("/overrides", data=typo, headers=headers["user"])
    assert refused.status_code == 400
    assert "Refused: store_id 2, item_id 33 has no forecast in the newest published run" in refused.text
    assert 'name="item_id" value="33"' in refused.text and 'value="a new shelf"' in refused.text
    late = http.post(
        "/overrides", data=FORM | {"first_month": "2026-01", "last_month": ""}, headers=headers["user"]
    )
    assert (
        late.status_code == 400
        and "forecast months 2026-01 of store_id 2, item_id 3 are not among" in late.text
    )
    for field, value in (("value", "lots"), ("first_month", "\x00"), ("store_id", "9" * 40), ("reason", " ")):
        answer = http.post("/overrides", data=FORM | {field: value}, headers=headers["user"])
        assert answer.status_code == 400 and "Refused: " in answer.text, (field, answer.text[:300])
    assert read_overrides(config).empty


def test_a_viewer_reads_but_cannot_record_nor_withdraw_and_anonymous_is_refused(view):
    http, config, headers = view
    assert http.get("/overrides", headers=headers["viewer"]).status_code == 200
    assert http.post("/overrides", data=FORM, headers=headers["viewer"]).status_code == 403
    assert http.post("/overrides", data=FORM).status_code in (401, 403)
    assert http.get("/overrides").status_code in (401, 403)
    assert read_overrides(config).empty
    assert (
        http.post("/overrides", data=FORM, headers=headers["user"], follow_redirects=False).status_code == 303
    )
    [made] = read_overrides(config)["override_id"]
    withdraw = {"override_id": made, "reason": "not mine"}
    assert http.post("/withdraw", data=withdraw, headers=headers["viewer"]).status_code == 403
    assert read_overrides(config)["version"].tolist() == [1]


def test_before_anything_is_published_the_page_says_so_and_a_form_is_refused(
    tmp_path, monkeypatch, airflow_db
):
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from forecasting.core.config import load_config
    from tests.helpers.config import demo_config_dict, write_config

    spec = importlib.util.spec_from_file_location(
        "forecast_quality", REPO / "plugins" / "forecast_quality.py"
    )
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="pat", role="user"))
    http = TestClient(plugin.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})
    page = http.get("/overrides")
    assert page.status_code == 200 and "No override recorded yet" in page.text
    refused = http.post("/overrides", data=FORM)
    assert refused.status_code == 400 and "Refused: nothing is published to forecasts yet" in refused.text
    database = tmp_path / "predictions.db"
    assert not database.exists()  # reading the page made no database
