"""The Forecasts view's explorer and charts, without a browser: what the chart draws, the table
shows and the CSV holds are the database's rows and the snapshot's actuals (worked out by hand
in forecasts_view_data.py), on SQLite and on PostgreSQL, and PostgreSQL serves an entity from
the table's index."""

from __future__ import annotations

import io
import re
from contextlib import ExitStack

import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.ui import explorer
from forecasting.ui.charts import Band, Series, line_chart, nice_step
from tests.helpers.forecasts_view_data import (
    HORIZON,
    ITEMS,
    MISSING_ACTUAL,
    RUN_MONTHS,
    STORES,
    actual,
    build_deployment,
    prediction,
)

POINT = re.compile(r'<circle [^>]*data-series="([^"]+)" data-month="([^"]+)" data-value="([^"]+)"')


def chart_points(svg: str) -> dict[str, dict[str, float]]:
    points: dict[str, dict[str, float]] = {}
    for series, month, value in POINT.findall(svg):
        points.setdefault(series, {})[month] = float(value)
    return points


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, tmp_path):
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        yield build_deployment(tmp_path, url)


@pytest.fixture
def sqlite_deployment(tmp_path):
    return build_deployment(tmp_path)


def db_rows(config, store: int, item: int) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(
                sa.text("SELECT * FROM forecasts WHERE store_id = :s AND item_id = :i"),
                conn,
                params={"s": store, "i": item},
            )
    finally:
        engine.dispose()


def month(value) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def test_chart_points_and_table_are_the_database_rows_and_the_actuals(deployment):
    shape = explorer.table_shape(deployment)
    assert shape is not None
    store, item = 2, 3
    found = explorer.entity_forecasts(deployment, shape, {"store_id": store, "item_id": item})
    shown = explorer.shown_rows(found)
    points = chart_points(explorer.chart(found, shown, deployment))

    rows = db_rows(deployment, store, item)
    latest = rows[rows["run_month"].map(month) == RUN_MONTHS[-1]]
    assert points["latest"] == {month(r.forecast_month): r.prediction for r in latest.itertuples()}
    assert points["latest"] == {
        str(pd.Period("2024-12", "M") + h): prediction(store, item, h, "2024-12") for h in (1, 2, 3)
    }
    # Earlier runs' forecasts of months up to the newest run month, per horizon.
    for h in range(1, HORIZON + 1):
        earlier = rows[
            (rows["horizon"] == h)
            & (rows["run_month"].map(month) < RUN_MONTHS[-1])
            & (rows["forecast_month"].map(month) <= RUN_MONTHS[-1])
        ]
        expected = {month(r.forecast_month): r.prediction for r in earlier.itertuples()}
        assert points.get(f"ahead{h}", {}) == expected
    assert points["ahead1"] == {
        "2024-11": prediction(2, 3, 1, "2024-10"),
        "2024-12": prediction(2, 3, 1, "2024-11"),
    }
    assert points["ahead2"] == {"2024-12": prediction(2, 3, 2, "2024-10")}
    assert "ahead3" not in points  # a 3-month-ahead forecast of a past month needs a run before 2024-10
    months = [
        str(m) for m in pd.period_range("2023-01", "2024-12", freq="M") if (2, 3, str(m)) != MISSING_ACTUAL
    ]
    assert points["actual"] == {m: actual(store, item, m) for m in months}

    # The table beside the chart holds the same numbers, newest month first.
    assert shown["month"].tolist() == sorted(shown["month"], reverse=True)
    table = shown.set_index("month")
    assert table.loc["2024-12", "actual"] == actual(2, 3, "2024-12")
    assert table.loc["2024-12", "forecast_1m_ahead"] == prediction(2, 3, 1, "2024-11")
    assert table.loc["2025-02", "latest_forecast"] == prediction(2, 3, 2, "2024-12")
    assert table.loc["2025-02", "latest_horizon"] == 2
    assert pd.isna(table.loc["2025-02", "actual"]) and "2024-06" not in table.index
    assert set(table["latest_model"].dropna()) == {"2024-12-abc2"}


def test_csv_is_the_shown_rows_with_the_entity(sqlite_deployment):
    name, text = explorer.entity_csv(sqlite_deployment, {"store_id": "1", "item_id": "2"})
    assert name == "forecasts_store_id-1_item_id-2.csv"
    csv = pd.read_csv(io.StringIO(text))
    shape = explorer.table_shape(sqlite_deployment)
    found = explorer.entity_forecasts(sqlite_deployment, shape, {"store_id": 1, "item_id": 2})
    shown = explorer.shown_rows(found)
    assert list(csv.columns) == ["store_id", "item_id", *shown.columns]
    assert (csv["store_id"] == 1).all() and (csv["item_id"] == 2).all()
    assert csv["month"].tolist() == shown["month"].tolist()
    pd.testing.assert_series_equal(csv["latest_forecast"], shown["latest_forecast"], check_names=False)
    pd.testing.assert_series_equal(csv["actual"], shown["actual"], check_names=False)


def test_search_by_any_entity_column(deployment):
    shape = explorer.table_shape(deployment)
    assert explorer.find_entities(deployment, {}) == [
        {"store_id": s, "item_id": i} for s in STORES for i in ITEMS
    ]
    assert explorer.find_entities(deployment, {"item_id": 3}) == [
        {"store_id": s, "item_id": 3} for s in STORES
    ]
    assert explorer.find_entities(deployment, {"store_id": 9}) == []
    assert len(explorer.find_entities(deployment, {}, limit=2)) == 3  # one more: "there are more"
    assert explorer.parse_entity(deployment, shape, {"store_id": " 2 ", "item_id": ""}) == {"store_id": 2}
    with pytest.raises(explorer.BadEntity, match="store_id is a number column"):
        explorer.parse_entity(deployment, shape, {"store_id": "2; DROP TABLE forecasts"})


def test_explorer_page_lists_matches_and_opens_an_entity(sqlite_deployment):
    listed = explorer.render_explorer(sqlite_deployment, {"item_id": "3"})
    assert (
        'href="explorer?store_id=1&amp;item_id=3"' in listed
        and 'href="explorer?store_id=2&amp;item_id=3"' in listed
    )
    opened = explorer.render_explorer(sqlite_deployment, {"store_id": "1", "item_id": "3"})
    assert (
        "<svg" in opened
        and 'id="shown-rows"' in opened
        and 'href="explorer.csv?store_id=1&amp;item_id=3"' in opened
    )
    assert "units" in opened and ">month<" in opened  # axis labels
    assert "no prediction interval" in opened  # none published for these rows
    assert "No forecasts for store_id 9, item_id 9" in explorer.render_explorer(
        sqlite_deployment, {"store_id": "9", "item_id": "9"}
    )
    assert "is not a number" in explorer.render_explorer(sqlite_deployment, {"store_id": "x"})
    with pytest.raises(explorer.BadEntity, match="item_id missing"):
        explorer.entity_csv(sqlite_deployment, {"store_id": "1"})


def test_explorer_before_anything_was_published(tmp_path):
    from forecasting.core.config import load_config
    from tests.helpers.config import demo_config_dict, write_config

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    assert "No month has been published yet" in explorer.render_explorer(config, {})
    assert explorer.entity_csv(config, {"store_id": "1", "item_id": "1"}) is None


def test_prediction_interval_becomes_a_band_once_the_table_has_p10_and_p90(sqlite_deployment):
    engine = sa.create_engine(sqlite_deployment.predictions.database.url)
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("forecasts")}
        for bound in ("p10", "p90"):
            if bound not in columns:  # a table published before publish wrote intervals
                conn.exec_driver_sql(f"ALTER TABLE forecasts ADD COLUMN {bound} FLOAT")
        conn.exec_driver_sql("UPDATE forecasts SET p10 = prediction - 5, p90 = prediction + 7")
    engine.dispose()
    shape = explorer.table_shape(sqlite_deployment)
    assert shape.has_interval
    found = explorer.entity_forecasts(sqlite_deployment, shape, {"store_id": 1, "item_id": 1})
    shown = explorer.shown_rows(found)
    latest = shown.dropna(subset=["latest_forecast"])
    assert (latest["p10"] == latest["latest_forecast"] - 5).all() and (
        latest["p90"] == latest["latest_forecast"] + 7
    ).all()
    svg = explorer.chart(found, shown, sqlite_deployment)
    assert 'class="band s-interval"' in svg and "p10–p90" in svg


def test_postgres_serves_one_entity_from_the_tables_index(postgres_server, tmp_path):
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(postgres_server) as url:
        config = build_deployment(tmp_path, url)
        sql, params = explorer.entity_query(
            config, explorer.table_shape(config), {"store_id": 1, "item_id": 2}
        )
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: which index can serve it?
                plan = "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {sql}"), params))
        finally:
            engine.dispose()
    assert "forecasts_entity_month_idx" in plan, plan


# --- the chart itself ------------------------------------------------------------------------


def test_nice_steps():
    assert [nice_step(s) for s in (1, 7, 50, 80, 430, 0.3)] == [0.2, 2, 10, 20, 100, 0.1]


def test_line_chart_places_points_by_month_and_value():
    svg = line_chart(
        [Series("a", "A", [("2024-03", 50.0), ("2024-01", 0.0), ("2024-02", 100.0)]), Series("b", "B", [])],
        bands=[Band("i", "interval", [("2024-02", 80.0, 120.0)])],
        title="t",
        y_label="units",
        marker=("2024-02", "now"),
    )
    circles = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"[^>]*data-month="([^"]+)"', svg)
    by_month = {m: (float(x), float(y)) for x, y, m in circles}
    assert by_month["2024-01"][0] < by_month["2024-02"][0] < by_month["2024-03"][0]
    assert by_month["2024-02"][1] < by_month["2024-03"][1] < by_month["2024-01"][1]  # SVG y grows downwards
    assert 'data-series="b"' not in svg  # empty series are left out
    assert (
        ">units<" in svg and ">month<" in svg and ">now<" in svg and "<title>A, 2024-02: 100</title>" in svg
    )
    assert ">150<" in svg and ">200<" not in svg  # the y axis reaches just past the band's top (120)
    assert line_chart([], title="t", y_label="u").startswith("<p")


@pytest.mark.parametrize("width", [600, 820])
@pytest.mark.parametrize("months", [1, 2, 7, 13, 24, 37, 60, 100, 131, 240])
def test_month_labels_are_apart_and_on_months_that_divide_the_year(width, months):
    """Month labels (about 54 units wide in the charts' 13px font) at least 64 units apart, at
    least two of them on a span of two months or more, and on months that divide the year."""
    first = pd.Period("2019-03", "M")
    points = [(str(first + i), float(i)) for i in range(months)]
    svg = line_chart([Series("a", "A", points)], title="t", y_label="u", width=width)
    labels = re.findall(r'<text class="tick month" x="([\d.]+)"[^>]*>(\d{4}-\d{2})<', svg)
    xs = [float(x) for x, _ in labels]
    assert all(b - a >= 64 for a, b in zip(xs, xs[1:], strict=False)), (width, months, xs)
    assert len(labels) >= min(months, 2)
    steps = {
        (pd.Period(b, "M") - pd.Period(a, "M")).n for (_, a), (_, b) in zip(labels, labels[1:], strict=False)
    }
    assert len(steps) <= 1 and all(12 % s == 0 or s % 12 == 0 for s in steps), steps


def test_names_and_values_are_escaped_in_the_markup():
    """The templates escape what comes from data (series and entity names, model versions,
    gate reasons): markup in them is shown as text, never run."""
    from forecasting.ui import overview

    nasty = """<script>alert("x")</script> & 'q'"""
    svg = line_chart(
        [Series(nasty, nasty, [("2024-01", 1.0), ("2024-02", 2.0)])], title=nasty, y_label=nasty, marker=None
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; &#39;q&#39;" in svg
    assert f'data-series="{nasty}"' not in svg and 'data-series="&lt;script&gt;alert(&#34;x&#34;)' in svg
    month = {
        "month": "2024-06",
        "model_version": nasty,
        "forecasts": 1,
        "holdout_wape": 0.1,
        "best_baseline": nasty,
        "best_baseline_wape": 0.2,
        "evaluation": {"decision": {"outcome": nasty, "reason": nasty}, "baselines": {nasty: {"wape": 0.2}}},
    }
    page = overview._month_quality(month, open_=True)
    assert "<script>" not in page and page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 5
