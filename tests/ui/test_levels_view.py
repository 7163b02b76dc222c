"""The planners' pages without a browser, on SQLite and PostgreSQL: the newest run's numbers per
entity and level group (forecasting.ui.plan_data) are the published rows and the snapshot's
actuals (worked out by hand from forecasts_view_data's formulas), a level's list is sorted,
filtered and cut as asked, a group's chart draws its members' summed actuals and its
``<table>_levels`` rows, the downloads hold the list's rows, and the overview shows the totals by
level, the biggest changes, the biased series and the alerts."""

from __future__ import annotations

import io
from contextlib import ExitStack

import pandas as pd
import pytest

from forecasting.ui import levels, planner
from forecasting.ui.export import export
from forecasting.ui.plan_data import plan_data
from tests.helpers.forecasts_view_data import (
    ITEMS,
    MISSING_ACTUAL,
    STORES,
    actual,
    add_monitoring,
    build_deployment,
    category,
    prediction,
)
from tests.ui.test_explorer import chart_points

LATEST, PREVIOUS = "2024-12", "2024-11"
ENTITIES = [(s, i) for s in STORES for i in ITEMS]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"levels-{request.param}")
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        config = build_deployment(folder, url, hierarchy=True)
        add_monitoring(config)  # the tracking signal and the alerts
        yield config


def members(level: str, key: str) -> list[tuple[int, int]]:
    def group(s: int, i: int) -> str:
        return {"total": "total", "region": "north", "store_id": str(s), "category": category(i)}[level]

    return [(s, i) for s, i in ENTITIES if group(s, i) == key]


def real_actual(s: int, i: int, month: str) -> float:
    return 0.0 if (s, i, month) == MISSING_ACTUAL else actual(s, i, month)


def one_ahead_errors(entities: list[tuple[int, int]]) -> list[float]:
    """The summed 1-month-ahead forecasts of 2024-11 (run 2024-10) and 2024-12 (run 2024-11)
    minus the summed actuals."""
    out = []
    for run, month in (("2024-10", "2024-11"), ("2024-11", "2024-12")):
        forecast = sum(prediction(s, i, 1, run) for s, i in entities)
        out.append(forecast - sum(real_actual(s, i, month) for s, i in entities))
    return out


def tracking(errors: list[float]) -> tuple[float, float]:
    mae = sum(abs(e) for e in errors) / len(errors)
    return mae, sum(errors) / mae


def volume(entities, run=LATEST) -> float:
    return sum(prediction(s, i, h, run) for s, i in entities for h in (1, 2, 3))


def change(entities) -> tuple[float, float]:
    """(previous, change) over 2025-01 and 2025-02, which both runs forecast."""
    now = sum(prediction(s, i, h, LATEST) for s, i in entities for h in (1, 2))
    before = sum(prediction(s, i, h, PREVIOUS) for s, i in entities for h in (2, 3))
    return before, now - before


def test_every_entity_and_group_has_its_forecast_change_error_and_bias(deployment):
    data = plan_data(deployment)
    assert data is not None and (data.latest_run, data.previous_run) == (LATEST, PREVIOUS)
    assert data.months == ["2025-01", "2025-02", "2025-03"]
    entities = data.entities.set_index(["store_id", "item_id"])
    for s, i in ENTITIES:
        row = entities.loc[(s, i)]
        previous, moved = change([(s, i)])
        mae, signal = tracking(one_ahead_errors([(s, i)]))  # as <table>_tracking_signal has it
        assert row["volume"] == pytest.approx(volume([(s, i)]))
        assert row["next"] == pytest.approx(prediction(s, i, 1, LATEST))
        assert (row["previous"], row["change"]) == (pytest.approx(previous), pytest.approx(moved))
        assert (row["error"], row["bias"]) == (pytest.approx(mae), pytest.approx(signal))
        assert row["category"] == category(i) and row["region"] == "north"
    groups = data.groups.set_index(["level", "level_key"])
    for level, key in [("total", "total"), ("region", "north"), ("store_id", "2"), ("category", "snacks")]:
        row, inside = groups.loc[(level, key)], members(level, key)
        previous, moved = change(inside)
        mae, signal = tracking(one_ahead_errors(inside))
        assert row["members"] == len(inside)
        assert row["volume"] == pytest.approx(volume(inside))
        assert (row["p10"], row["p90"]) == (
            pytest.approx(0.9 * row["next"]),
            pytest.approx(1.1 * row["next"]),
        )
        assert (row["previous"], row["change"]) == (pytest.approx(previous), pytest.approx(moved))
        assert (row["error"], row["bias"]) == (pytest.approx(mae), pytest.approx(signal))


def test_a_list_is_filtered_sorted_and_cut_as_asked(deployment):
    data = plan_data(deployment)
    chosen = levels.selection(data, {"level": "entity", "sort": "volume", "min_volume": "650"})
    wanted = sorted((e for e in ENTITIES if volume([e]) >= 650), key=lambda e: -volume([e]))
    assert list(zip(chosen.rows["store_id"], chosen.rows["item_id"], strict=True)) == wanted
    assert chosen.matched == len(wanted) and "members" not in chosen.columns

    groups = levels.selection(data, {"level": "category", "sort": "change"})
    assert groups.rows["level_key"].tolist() == ["snacks", "dairy"]  # |change| 4 entities' > 2 entities'
    cut = levels.selection(data, {"level": "entity", "sort": "volume", "limit": "2"})
    assert len(cut.rows) == 2 and cut.matched == len(ENTITIES)
    inside = levels.selection(data, {"level": "category", "key": "dairy", "min_change": "0.5"})
    dairy = [e for e in members("category", "dairy") if abs(change([e])[1] / change([e])[0]) >= 0.005]
    assert sorted(zip(inside.rows["store_id"], inside.rows["item_id"], strict=True)) == sorted(dairy)
    for given in ({"level": "nope"}, {"sort": "price"}, {"min_bias": "x"}, {"level": "entity", "key": "1"}):
        with pytest.raises(levels.BadSelection):
            levels.selection(data, given)


def test_a_groups_chart_is_its_members_actuals_and_its_levels_rows(deployment):
    data = plan_data(deployment)
    chart, latest = levels.group_chart(deployment, data, "category", "snacks")
    points = chart_points(str(chart))
    inside = members("category", "snacks")
    months = [str(m) for m in pd.period_range("2023-01", "2024-12", freq="M")]
    assert points["actual"] == pytest.approx(
        {m: sum(real_actual(s, i, m) for s, i in inside) for m in months}
    )
    made = {
        str(pd.Period(LATEST, "M") + h): sum(prediction(s, i, h, LATEST) for s, i in inside)
        for h in (1, 2, 3)
    }
    assert points["latest"] == pytest.approx(made)
    assert points["ahead1"] == pytest.approx(
        {
            "2024-11": sum(prediction(s, i, 1, "2024-10") for s, i in inside),
            "2024-12": sum(prediction(s, i, 1, "2024-11") for s, i in inside),
        }
    )
    assert latest["p90"].tolist() == pytest.approx([1.1 * made[m] for m in sorted(made)])
    page = levels.render_levels(deployment, {"level": "category", "key": "snacks"})
    for s, i in inside:  # its members, each linked to the entity explorer
        assert f'href="explorer?store_id={s}&amp;item_id={i}"' in page


def test_downloads_hold_the_lists_rows(deployment):
    data = plan_data(deployment)
    given = {"level": "store_id", "sort": "bias"}
    shown = levels.selection(data, given).rows
    name, media, content = export(deployment, given, "csv")
    assert name == "forecasts_store_id_by-bias.csv" and media == "text/csv"
    csv = pd.read_csv(io.StringIO(content.decode()), dtype={"level_key": str})
    assert csv["level_key"].tolist() == shown["level_key"].tolist() == ["1", "2"]
    assert csv["volume"].tolist() == pytest.approx(shown["volume"].tolist())
    assert set(csv["run_month"]) == {LATEST}
    name, media, content = export(deployment, {"level": "entity", "limit": "3"}, "parquet")
    frame = pd.read_parquet(io.BytesIO(content))
    assert name.endswith(".parquet") and len(frame) == 3
    assert frame[["store_id", "item_id"]].values.tolist() == [[2, 3], [2, 2], [2, 1]]  # by volume
    with pytest.raises(levels.BadSelection):
        export(deployment, given, "xlsx")


def test_the_overview_shows_totals_by_level_changes_biased_series_and_alerts(deployment, monkeypatch):
    data = plan_data(deployment)
    totals = {t["level"]: t for t in planner.totals_by_level(data)}
    assert list(totals) == ["total", "region", "store_id", "category"]
    total = totals["total"]["rows"][0]["months"]
    assert total["2025-01"]["prediction"] == levels.cell(
        "next", sum(prediction(s, i, 1, LATEST) for s, i in ENTITIES)
    )
    moved = sum(prediction(s, i, 1, LATEST) - prediction(s, i, 2, PREVIOUS) for s, i in ENTITIES)
    assert total["2025-01"]["change"]["text"].startswith(levels.cell("change", moved))
    assert total["2025-03"]["change"] is None  # the previous run did not forecast 2025-03
    assert [r["key"] for r in totals["store_id"]["rows"]] == ["2", "1"]  # largest first

    changed = planner.biggest_changes(data)
    assert [g["name"] for g in changed["groups"]][:2] == ["region north", "category snacks"]
    assert len(changed["entities"]) == len(ENTITIES)
    assert planner.biased(data)["entity_count"] == 0  # two scored months: |signal| <= 2
    monkeypatch.setattr(planner, "BIASED", 1.5)
    found = planner.biased(data)
    assert found["entity_count"] == len(ENTITIES) and found["entities"][0]["bias"] == "-2.00"

    page = planner.render_overview(deployment)
    assert 'id="totals-by-level"' in page and 'data-level="category" data-key="dairy"' in page
    assert 'id="planner-alerts"' in page and "MemoryError" in page  # the task failure's alert
    assert "month-status" not in page  # the engineers' detail is on the Runs page


def test_without_a_hierarchy_or_monitoring_the_overview_shows_the_entities_total(tmp_path):
    config = build_deployment(tmp_path)  # no hierarchy, no forecast_monitoring yet
    data = plan_data(config)
    assert data is not None and data.groups.empty and not data.biased_signals
    [total] = planner.totals_by_level(data)
    moved = sum(prediction(s, i, 2, LATEST) - prediction(s, i, 3, PREVIOUS) for s, i in ENTITIES)
    assert total["rows"][0]["months"]["2025-02"]["change"]["text"].startswith(levels.cell("change", moved))
    chosen = levels.selection(data, {"sort": "bias"})  # every entity: the only list
    assert chosen.level == "entity" and chosen.rows["bias"].isna().all() and chosen.matched == len(ENTITIES)
    page = planner.render_overview(config)
    assert "The config has no <code>hierarchy</code>" in page
    assert "No entity has been scored yet" in page and "No alerts table yet" in page


def test_a_level_published_before_the_hierarchy_changed_is_not_shown(tmp_path):
    """The config drops a level (region) the published runs have rows of: the pages show the
    config's levels and still open."""
    import yaml

    from forecasting.core.config import load_config
    from tests.helpers.config import write_config

    published = build_deployment(tmp_path, hierarchy=True)
    raw = yaml.safe_load(published.path.read_text())
    raw["hierarchy"] = {"levels": [[], ["store_id"]]}
    config = load_config(write_config(tmp_path, raw))
    data = plan_data(config)
    assert data is not None and set(data.groups["level"]) == {"total", "store_id"}
    assert "region" not in set(data.group_months["level"])
    assert "forecast by level" in planner.render_overview(config)
    assert levels.selection(data, {"level": "store_id"}).matched == len({s for s, _ in ENTITIES})


def test_after_a_publish_the_pages_show_the_numbers_held_while_the_new_ones_are_read(tmp_path):
    from datetime import UTC, datetime

    from forecasting.publishing.publish import publish
    from forecasting.ui.plan_data import refreshing
    from tests.helpers.forecasts_view_data import forecasts, levels_of

    config = build_deployment(tmp_path, hierarchy=True)
    assert plan_data(config).latest_run == LATEST  # nothing held yet: read at once
    publish(
        forecasts("2025-01"),
        config,
        pd.Period("2025-01", "M"),
        model_version="2025-01-abc3",
        run_id="scheduled__2025-02-01T00:00:00+00:00",
        created_at=datetime(2025, 2, 1, tzinfo=UTC),
        levels=levels_of(forecasts("2025-01")),
    )
    held = plan_data(config)
    assert held.stale and held.latest_run == LATEST  # at once: the numbers held, marked
    assert 'id="stale-numbers"' in planner.render_overview(config)
    reader = refreshing(config)
    if reader is not None:
        reader.join(60)
    fresh = plan_data(config)
    assert not fresh.stale and (fresh.latest_run, fresh.previous_run) == ("2025-01", LATEST)
    assert fresh.entities["next"].tolist() == pytest.approx(
        [prediction(s, i, 1, "2025-01") for s, i in ENTITIES]
    )
