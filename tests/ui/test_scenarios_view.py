"""The explorer's chart context (price, promotions, the same month last year, the entity's
scenarios, the zoom) and the Scenarios page, without a browser, on SQLite and PostgreSQL: what
the charts draw, the tables show and the CSV holds are the snapshot's covariates, the plans as
they stood at the end of the run month, and ``forecasts_scenarios``' rows (worked out by hand in
scenarios_view_data.py)."""

from __future__ import annotations

import io
import re
from contextlib import ExitStack

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.ui import entity_chart, explorer, scenarios
from tests.helpers.forecasts_view_data import ITEMS, STORES, actual, build_deployment, prediction
from tests.helpers.scenarios_view_data import (
    RUN,
    SCENARIO_MONTHS,
    build_scenarios_deployment,
    moved,
    planned_price,
    planned_promo,
    price,
    promo,
    scenario_prediction,
    scenario_rows,
)

POINT = re.compile(r'<circle [^>]*data-series="([^"]+)" data-month="([^"]+)" data-value="([^"]+)"')
SHADE = re.compile(r'<rect [^>]*data-series="([^"]+)" data-month="([^"]+)" data-value="([^"]+)"')
FORECAST_MONTHS = ("2025-01", "2025-02", "2025-03")


def drawn(svg: str, pattern: re.Pattern = POINT) -> dict[str, dict[str, float]]:
    points: dict[str, dict[str, float]] = {}
    for series, month, value in pattern.findall(svg):
        points.setdefault(series, {})[month] = float(value)
    return points


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(request, tmp_path_factory):
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        yield build_scenarios_deployment(tmp_path_factory.mktemp(f"scenarios-view-{request.param}"), url)


def entity_view(config, store: int, item: int):
    shape = explorer.table_shape(config)
    assert shape is not None
    found = explorer.entity_forecasts(config, shape, {"store_id": store, "item_id": item})
    return found, explorer.shown_rows(found)


def test_the_entitys_price_promotions_last_year_and_scenarios_are_its_rows(deployment):
    store, item = 1, 3
    found, shown = entity_view(deployment, store, item)
    rows = shown.set_index("month")
    # Up to the run month the snapshot's covariates; after it the plans as they stood at its end
    # (the revision planned after it, price 99, is not what the forecasts read).
    for month in rows.index:
        if month <= RUN:
            assert rows.at[month, "price"] == pytest.approx(price(item, month))
            assert rows.at[month, "promo"] == promo(month)
        else:
            assert rows.at[month, "price"] == pytest.approx(planned_price(item, month))
            assert rows.at[month, "promo"] == planned_promo(month)
    for month in FORECAST_MONTHS:
        a_year_before = str(pd.Period(month, "M") - 12)
        assert rows.at[month, entity_chart.LAST_YEAR] == actual(store, item, a_year_before)
        base = prediction(store, item, FORECAST_MONTHS.index(month) + 1, RUN)
        assert rows.at[month, "latest_forecast"] == pytest.approx(base)
        for scenario in SCENARIO_MONTHS:
            expected = scenario_prediction(scenario, store, item, month, base)
            assert rows.at[month, f"scenario_{scenario}"] == pytest.approx(expected)
    assert rows[entity_chart.LAST_YEAR].notna().sum() == len(FORECAST_MONTHS)  # beside forecasts only

    chart = explorer.chart_of(found, deployment)
    sales = drawn(entity_chart.sales_chart(chart, shown))
    for column in (entity_chart.LAST_YEAR, "scenario_promo_snacks", "scenario_price_cut", "latest_forecast"):
        series = {"latest_forecast": "latest", entity_chart.LAST_YEAR: "last_year"}.get(column, column)
        present = shown.dropna(subset=[column])
        assert sales[series] == dict(zip(present["month"], present[column], strict=True))
    panel = entity_chart.covariates_chart(chart, shown)
    assert panel is not None
    prices = drawn(panel)
    assert prices["price"] == {m: rows.at[m, "price"] for m in rows.index if m <= RUN}
    assert prices["price_planned"] == {m: rows.at[m, "price"] for m in FORECAST_MONTHS}
    promotions = drawn(panel, SHADE)["promo"]
    assert set(promotions) == {m for m in rows.index if rows.at[m, "promo"] == 1}
    assert "2025-02" in promotions and "2024-11" in promotions


def test_zoom_cuts_the_charts_and_the_numbers_not_the_csv(deployment):
    store, item = 2, 1
    given = {"store_id": str(store), "item_id": str(item)}
    for zoom, first in (("12", "2024-01"), ("all", "2023-01")):
        page = explorer.render_explorer(deployment, {**given, "zoom": zoom})
        months = {m for series in drawn(page).values() for m in series}
        assert min(months) == first and max(months) == "2025-03"
        table = page.split('id="shown-rows"')[1]
        shown_months = re.findall(r"<tr><td class=\"n\">(\d{4}-\d{2})</td>", table)
        assert min(shown_months) == first and len(shown_months) == len(set(shown_months))
        assert f'<b data-zoom="{zoom}">' in page
    for bad in ("7", "'; DROP TABLE forecasts; --", ""):  # anything else: every month
        page = explorer.render_explorer(deployment, {**given, "zoom": bad})
        assert '<b data-zoom="all">' in page
    name, text = explorer.entity_csv(deployment, {**given, "zoom": "12"})
    csv = pd.read_csv(io.StringIO(text))
    _, shown = entity_view(deployment, store, item)
    assert len(csv) == len(shown) and csv["month"].min() == "2023-01"
    assert list(csv.columns) == ["store_id", "item_id", *shown.columns]
    assert csv.set_index("month")["price"].to_dict() == pytest.approx(
        shown.set_index("month")["price"].to_dict()
    )


def expected_totals(scenario: str) -> pd.DataFrame:
    rows = scenario_rows()
    rows["month"] = [f"{pd.Timestamp(m):%Y-%m}" for m in rows["forecast_month"]]
    totals = rows.pivot_table(index="month", columns="scenario", values="prediction", aggfunc="sum")
    return pd.DataFrame({"base": totals["base"], "scenario": totals[scenario]})


def test_scenarios_page_is_the_tables_totals_movers_and_groups(deployment):
    run = scenarios.newest_run(deployment)
    assert run is not None and (run["month"], run["model_version"]) == (RUN, f"{RUN}-abc2")
    assert run["publication"][0] == "scenarios__2025-01-02"  # the run that published them
    totals = scenarios.month_totals(deployment, RUN)
    listed = {s["name"]: s for s in scenarios.scenario_list(totals, "base")}
    assert sorted(listed) == sorted(SCENARIO_MONTHS)
    for name, month in SCENARIO_MONTHS.items():
        expected = expected_totals(name)
        assert listed[name]["total"] == pytest.approx(expected["scenario"].sum())
        assert listed[name]["difference"] == pytest.approx((expected["scenario"] - expected["base"]).sum())
        planned = sum(moved(name, s, i, month) for s in STORES for i in ITEMS)
        assert listed[name]["planned"] == planned and listed[name]["forecasts"] == 18
        by_month = scenarios.compared(totals, "base", name).set_index("month")
        assert by_month["base"].to_dict() == pytest.approx(expected["base"].to_dict())
        assert by_month["difference"].to_dict() == pytest.approx(
            (expected["scenario"] - expected["base"]).to_dict()
        )
        assert by_month.at[month, "planned"] == planned
        assert by_month.at[month, "share"] == pytest.approx(
            by_month.at[month, "difference"] / expected.at[month, "base"]
        )

    movers = scenarios.movers(deployment, RUN, "base", "promo_snacks")
    snacks = sorted(
        ((s, i, 0.2 * prediction(s, i, 3, RUN)) for s in STORES for i in ITEMS if i % 2),
        key=lambda m: -m[2],
    )
    assert list(zip(movers["store_id"], movers["item_id"], strict=True)) == [(s, i) for s, i, _ in snacks]
    assert movers["difference"].tolist() == pytest.approx([d for _, _, d in snacks])

    grouped = scenarios.grouped_totals(deployment, RUN, ["store_id"])
    pd.testing.assert_frame_equal(  # one scan serves both: the month totals are the groups' sums
        scenarios.totals_of(grouped).sort_values(["scenario", "forecast_month"]).reset_index(drop=True),
        totals.sort_values(["scenario", "forecast_month"]).reset_index(drop=True)[
            list(scenarios.totals_of(grouped).columns)
        ],
        check_dtype=False,
    )
    groups = scenarios.level_totals(grouped, "base", "price_cut", ["store_id"]).set_index("store_id")
    assert groups.index.tolist() == [1, 2]  # store 1 moves, store 2 does not
    assert groups.at[1, "difference"] == pytest.approx(5 * len(ITEMS))
    assert groups.at[2, "difference"] == 0
    assert groups.at[2, "base"] == pytest.approx(
        sum(prediction(2, i, h, RUN) for i in ITEMS for h in (1, 2, 3))
    )


def test_scenarios_page_shows_the_chosen_scenario_and_refuses_nothing_it_does_not_know(deployment):
    page = scenarios.render_scenarios(deployment, {"scenario": "promo_snacks", "level": "store_id"})
    assert 'id="chosen-scenario">promo_snacks against base' in page
    assert '<tr data-scenario="promo_snacks" class=chosen>' in page
    assert 'href="explorer?store_id=2&amp;item_id=3"' in page  # the biggest mover, into the explorer
    drawn_totals = drawn(page)
    expected = expected_totals("promo_snacks")
    assert drawn_totals["scenario"] == pytest.approx(expected["scenario"].to_dict())
    assert drawn_totals["base"] == pytest.approx(expected["base"].to_dict())
    for hostile in ("nope", "promo_snacks' OR '1'='1", "base"):  # not a scenario: the first one
        page = scenarios.render_scenarios(deployment, {"scenario": hostile, "level": "x; DROP"})
        assert 'id="chosen-scenario">price_cut against base' in page
    entity = explorer.render_explorer(deployment, {"store_id": "1", "item_id": "1"})
    assert "beside the forecast: price_cut, promo_snacks" in entity


def summary_rows(config) -> pd.DataFrame:
    from forecasting.core.db import make_engine

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text("SELECT * FROM forecasts_scenario_totals"), conn)
    finally:
        engine.dispose()


def rewrite(config, sql: str) -> None:
    from forecasting.core.db import make_engine

    engine = make_engine(config.predictions.database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_the_summary_rows_are_the_hand_worked_sums(deployment):
    rows = summary_rows(deployment)
    assert set(rows["run_id"]) == {"scenarios__2025-01-02"}
    months = rows[rows["part"] == "month"]
    for scenario in ("base", *SCENARIO_MONTHS):
        mine = months[months["scenario"] == scenario].sort_values("position")
        expected = expected_totals("promo_snacks" if scenario == "base" else scenario)
        column = "base" if scenario == "base" else "scenario"
        assert [f"{pd.Timestamp(m):%Y-%m}" for m in mine["forecast_month"]] == list(FORECAST_MONTHS)
        assert mine["total"].tolist() == pytest.approx(expected[column].tolist())
        assert mine["forecasts"].tolist() == [len(STORES) * len(ITEMS)] * 3
        planned = [
            sum(moved(scenario, s, i, m) for s in STORES for i in ITEMS) if scenario != "base" else 0
            for m in FORECAST_MONTHS
        ]
        assert mine["planned"].tolist() == planned
    groups = rows[(rows["part"] == "group") & (rows["scenario"] == "price_cut")].sort_values("position")
    assert set(rows.loc[rows["part"] == "group", "level"]) == {"store_id"}  # category is no entity column
    assert groups["store_id"].tolist() == [1, 2] and groups["forecasts"].tolist() == [9, 9]
    assert groups["difference"].tolist() == pytest.approx([5.0 * len(ITEMS), 0.0])
    base_of_store = [sum(prediction(s, i, h, RUN) for i in ITEMS for h in (1, 2, 3)) for s in STORES]
    assert groups["base_total"].tolist() == pytest.approx(base_of_store)
    movers = rows[(rows["part"] == "mover") & (rows["scenario"] == "promo_snacks")].sort_values("position")
    snacks = sorted(
        ((s, i, 0.2 * prediction(s, i, 3, RUN)) for s in STORES for i in ITEMS if i % 2), key=lambda m: -m[2]
    )
    assert list(zip(movers["store_id"], movers["item_id"], strict=True)) == [(s, i) for s, i, _ in snacks]
    assert movers["difference"].tolist() == pytest.approx([d for _, _, d in snacks])
    assert movers["total"].tolist() == pytest.approx([1.2 * prediction(s, i, 3, RUN) for s, i, _ in snacks])
    assert set(movers["level"]) == {"store_id,item_id"} and set(movers["forecasts"]) == {1}


def comparable(page: str) -> str:
    """The page without its own server time, each number's full value to 12 digits: the scan sums
    a month's groups (its one pass serves both), the summary the month's rows, and a sum of
    floats in another order may differ in its last bits (what the page writes never does here)."""
    page = re.sub(r"served in \d+ ms", "served in - ms", page)
    return re.sub(r'data-value="(-?[0-9.e+-]+)"', lambda m: f'data-value="{float(m.group(1)):.12g}"', page)


def test_the_page_from_the_summary_is_the_page_from_the_months_rows(deployment, monkeypatch):
    views = [{"scenario": s, "level": lv} for s in (*SCENARIO_MONTHS, "") for lv in ("store_id", "")]
    scenarios.clear_cache()

    def scan(*args):
        raise AssertionError("the first view scanned the month's rows")

    with monkeypatch.context() as patched:  # the summary alone serves every first view
        for step in ("grouped_totals", "month_totals", "movers"):
            patched.setattr(scenarios, step, scan)
        from_summary = [comparable(scenarios.render_scenarios(deployment, v)) for v in views]
    rewrite(deployment, "ALTER TABLE forecasts_scenario_totals RENAME TO kept_totals")  # published before it
    try:
        scenarios.clear_cache()
        from_scan = [comparable(scenarios.render_scenarios(deployment, v)) for v in views]
    finally:
        rewrite(deployment, "ALTER TABLE kept_totals RENAME TO forecasts_scenario_totals")
        scenarios.clear_cache()
    assert from_summary == from_scan
    assert 'href="explorer?store_id=2&amp;item_id=3"' in from_summary[0]  # promo_snacks' biggest mover
    # Another publication's sums (the month re-published by a release before the table): the scan.
    rewrite(deployment, "UPDATE forecasts_scenario_totals SET run_id = 'older'")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(scenarios, "movers", scan)
            with pytest.raises(AssertionError, match="scanned"):
                scenarios.render_scenarios(deployment, views[0])
    finally:
        rewrite(deployment, "UPDATE forecasts_scenario_totals SET run_id = 'scenarios__2025-01-02'")
        scenarios.clear_cache()


def test_pages_before_any_scenario_say_so(tmp_path):
    config = build_deployment(tmp_path)  # published forecasts, no scenarios table, no plans
    page = scenarios.render_scenarios(config, {})
    assert 'id="no-scenarios"' in page and "no <code>plans.scenarios</code> section" in page
    found, shown = entity_view(config, 1, 1)
    assert not [c for c in shown.columns if c.startswith(entity_chart.SCENARIO_PREFIX)]
    # The view's snapshot has constant price 1 and no promotion: a flat price, nothing shaded.
    panel = entity_chart.covariates_chart(explorer.chart_of(found, config), shown)
    assert panel is not None and not drawn(panel, SHADE)
    assert set(drawn(panel)["price"].values()) == {1.0}


def test_a_republished_month_is_read_again_not_served_from_the_cache(tmp_path):
    from datetime import UTC, datetime

    from forecasting.scenarios.publish import publish_scenarios

    config = build_scenarios_deployment(tmp_path)
    listed = re.compile(r'<tr data-scenario="promo_snacks".*?<td class="n" data-value="([^"]+)"', re.S)
    before = float(listed.search(scenarios.render_scenarios(config, {"level": "store_id"})).group(1))
    assert before == pytest.approx(expected_totals("promo_snacks")["scenario"].sum())
    rows = scenario_rows()
    rows.loc[rows["scenario"] == "promo_snacks", "prediction"] += 1.0  # forecast_scenarios run again
    publish_scenarios(
        rows,
        config,
        pd.Period(RUN, "M"),
        model_version="again",
        run_id="scenarios__again",
        created_at=datetime(2025, 1, 3, tzinfo=UTC),
    )
    after = float(listed.search(scenarios.render_scenarios(config, {"level": "store_id"})).group(1))
    assert after == pytest.approx(before + len(rows[rows["scenario"] == "promo_snacks"]))
    summed = summary_rows(config)  # the month's sums replaced with its rows
    assert (
        set(summed["run_id"]) == {"scenarios__again"}
        and not summed.duplicated(["part", "level", "scenario", "position"]).any()
    )
