"""The explorer's drivers and revisions panels (forecasting.ui.explain) on the hand-made
deployment of tests/helpers/forecasts_view_data.py, on SQLite and PostgreSQL: the drivers of the
newest run sum to its forecasts, a blend says how much its model explains, a baseline says it has
none, and the revisions are every run's forecast of a month, oldest first."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.modeling.drivers import blended, long_form
from forecasting.publishing.publish import publish
from forecasting.ui import explain
from forecasting.ui.explorer import render_explorer
from tests.helpers.forecasts_view_data import RUN_MONTHS, build_deployment, forecasts, prediction

LATEST = RUN_MONTHS[-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, tmp_path):
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        yield build_deployment(tmp_path, url)


def test_the_newest_runs_drivers_sum_to_its_forecasts(deployment):
    panel = explain.drivers_panel(deployment, {"store_id": 2, "item_id": 3}, LATEST)
    assert panel["state"] == "shown" and panel["months"] == ["2025-01", "2025-02", "2025-03"]
    assert [row["family"] for row in panel["rows"]] == ["level", "trend", "calendar"]
    for h in range(1, len(panel["months"]) + 1):
        column = sum(float(row["cells"][h - 1]["value"]) for row in panel["rows"])
        assert column == pytest.approx(prediction(2, 3, h, LATEST))
        assert panel["totals"][h - 1] == f"{prediction(2, 3, h, LATEST):,.1f}"
    assert not panel["partly"] and panel["explained"] == ["100%"] * 3
    html = render_explorer(deployment, {"store_id": "2", "item_id": "3"})
    assert 'id="drivers-table"' in html and 'id="revisions-table"' in html


def test_revisions_show_every_runs_forecast_of_a_month(deployment):
    panel = explain.revisions_panel(deployment, {"store_id": 1, "item_id": 2})
    january = next(row for row in panel["rows"] if row["month"] == "2025-01")
    # January 2025 was forecast by runs 2024-10 (h 3), 2024-11 (h 2) and 2024-12 (h 1).
    assert [step["run"] for step in january["path"]] == list(RUN_MONTHS)
    expected = [prediction(1, 2, 3 - k, run) for k, run in enumerate(RUN_MONTHS)]
    assert [float(step["value"].replace(",", "")) for step in january["path"]] == pytest.approx(
        expected, abs=0.06
    )
    change = expected[-1] - expected[-2]
    assert january["change"] == f"{change:+.2f}" == "-0.99" and january["sign"] == "down"
    # March 2025 only the newest run forecast: nothing to revise.
    assert "2025-03" not in [row["month"] for row in panel["rows"]]


def test_a_blend_says_what_its_model_explains_and_a_baseline_has_no_drivers(deployment):
    frame = forecasts(LATEST)
    model_part = frame["prediction"].to_numpy()
    statistical = 0.5 * model_part  # the blend's other member forecast half as much
    blend = frame.assign(prediction=(model_part + statistical) / 2)
    wide = frame.assign(driver_level=model_part)
    explained = blended(wide, model_part, blend["prediction"].to_numpy(), members=2)
    rows = pd.concat([blend, explained], axis=1)
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    name = f"blend:{LATEST}-abc2+seasonal_naive"
    period = pd.Period(LATEST, "M")
    drivers = long_form(rows, ["store_id", "item_id"])
    publish(blend, deployment, period, model_version=name, run_id="blend", created_at=stamp, drivers=drivers)
    panel = explain.drivers_panel(deployment, {"store_id": 1, "item_id": 1}, LATEST)
    assert panel["partly"] and panel["explained"] == ["67%"] * 3  # the model's half of a blend of 1 and 0.5
    assert [row["family"] for row in panel["rows"]] == ["level", "baselines"]
    assert panel["models"] == [name]
    publish(frame, deployment, period, model_version="baseline:seasonal_naive", run_id="b", created_at=stamp)
    assert explain.drivers_panel(deployment, {"store_id": 1, "item_id": 1}, LATEST)["state"] == "none"
    html = render_explorer(deployment, {"store_id": "1", "item_id": "1"})
    assert 'data-drivers="none"' in html and "baseline:seasonal_naive" in html


def test_a_database_without_the_drivers_table_says_so(deployment):
    engine = sa.create_engine(deployment.predictions.database.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP VIEW forecasts_churn")
        conn.exec_driver_sql("DROP VIEW forecasts_revisions")
        conn.exec_driver_sql("DROP TABLE forecasts_drivers")
    engine.dispose()
    assert explain.drivers_panel(deployment, {"store_id": 1, "item_id": 1}, LATEST)["state"] == "no-table"
    assert explain.revisions_panel(deployment, {"store_id": 1, "item_id": 1})["state"] == "no-table"
    html = render_explorer(deployment, {"store_id": "1", "item_id": "1"})
    assert "forecasts_drivers</code> yet" in html
