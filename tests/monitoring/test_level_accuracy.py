"""Realised accuracy of the hierarchy's levels (forecasting.monitoring.level_accuracy), on SQLite
and PostgreSQL, with test_monitoring's hand-made data: every number worked out below.

Levels: the total and the category (snacks: items 1 and 2, drinks: item 3) over stores 1-2. The
run of 2024-10 published each level as the sum of its entities' forecasts (the truth + 0.5 each)
with p10/p90 at the prediction -/+ 4; the run of 2024-11 (the truth - 2 each) with a band of -/+ 1.
Store 2 / item 3 sold nothing in December: the drinks' December actual is store 1's alone.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pandas as pd
import pytest

from forecasting.core.config import load_config
from forecasting.data.panel import key_text
from forecasting.monitoring.accuracy import realised_accuracy
from forecasting.publishing.publish import publish
from tests.helpers.config import demo_config_dict, write_config
from tests.monitoring.test_monitoring import (
    CATEGORY,
    ITEMS,
    MISSING,
    OFFSETS,
    STORES,
    forecasts,
    rows,
    sales,
    units,
)

BANDS = {"2024-10": 4.0, "2024-11": 1.0, "2024-12": 1.0}


def level_forecasts(run: str, offset: float) -> pd.DataFrame:
    """The levels as publish receives them from predict: one row per group and horizon."""
    origin = pd.Period(run, "M")
    made = []
    for h in (1, 2, 3):
        month = origin + h
        groups = {("total", "total", None): [(s, i) for s in STORES for i in ITEMS]}
        for category in ("drinks", "snacks"):
            members = [(s, i) for s in STORES for i in ITEMS if CATEGORY[i] == category]
            groups[("category", category, category)] = members
        for (level, key, category), members in groups.items():
            prediction = sum(units(s, i, month) + offset for s, i in members)
            made.append(
                {
                    "level": level,
                    "level_key": key,
                    "category": category,
                    "forecast_month": month.to_timestamp().date(),
                    "horizon": h,
                    "prediction": prediction,
                    "p10": prediction - BANDS[run],
                    "p90": prediction + BANDS[run],
                }
            )
    return pd.DataFrame(made)


def members() -> pd.DataFrame:
    frame = forecasts("2024-10", 0.0)[["store_id", "item_id"]].drop_duplicates().reset_index(drop=True)
    text = pd.DataFrame({k: key_text(frame[k]) for k in ("store_id", "item_id")})
    return text.assign(category=[CATEGORY[int(i)] for i in text["item_id"]])


@pytest.fixture(params=["sqlite", "postgresql"])
def with_levels(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "postgresql":
            from forecasting.publishing.postgres import temporary_database

            url = stack.enter_context(temporary_database(request.getfixturevalue("postgres_server")))
        else:
            url = f"sqlite:///{tmp_path}/predictions.db"
        raw = demo_config_dict(tmp_path, hierarchy=True)
        raw["hierarchy"]["levels"] = [[], ["category"]]
        raw["predictions"] = {"url": url, "table": "forecasts"}
        config = load_config(write_config(tmp_path, raw))
        for run, offset in OFFSETS.items():
            publish(
                forecasts(run, offset),
                config,
                pd.Period(run, "M"),
                model_version=f"{run}-model",
                run_id=run,
                levels=level_forecasts(run, offset),
                members=members(),
            )
        yield config


def test_each_level_is_scored_on_its_groups_totals_with_its_own_bands(with_levels):
    config = with_levels
    result = realised_accuracy(sales(), config, pd.Period("2024-12", "M"))

    found = rows(
        config,
        "SELECT * FROM forecasts_accuracy WHERE forecast_month = '2024-12-01' AND segment_column = 'level'",
    )
    scored = {(r["run_month"][:7], r["horizon"], r["segment"]): r for r in found}
    # December is horizon 2 of the run of 2024-10 and horizon 1 of 2024-11's.
    assert set(scored) == {
        (run, h, level) for run, h in (("2024-10", 2), ("2024-11", 1)) for level in ("total", "category")
    }

    december = pd.Period("2024-12", "M")
    sold = {
        (s, i): 0.0 if (s, i, "2024-12") == MISSING else units(s, i, december) for s in STORES for i in ITEMS
    }
    total = sum(sold.values())
    by_category = {c: sum(v for (s, i), v in sold.items() if CATEGORY[i] == c) for c in ("snacks", "drinks")}
    for run, h in (("2024-10", 2), ("2024-11", 1)):
        offset = OFFSETS[run]
        forecast_total = sum(units(s, i, december) + offset for s in STORES for i in ITEMS)
        row = scored[(run, h, "total")]
        assert row["forecasts"] == 1 and row["model_version"] == f"{run}-model"
        assert row["actual_sum"] == pytest.approx(total)
        assert row["prediction_sum"] == pytest.approx(forecast_total)
        assert row["wape"] == pytest.approx(abs(forecast_total - total) / total)
        # The category level: two groups, the WAPE over their totals.
        forecast = {
            c: sum(units(s, i, december) + offset for s in STORES for i in ITEMS if CATEGORY[i] == c)
            for c in by_category
        }
        row = scored[(run, h, "category")]
        assert row["forecasts"] == 2
        errors = sum(abs(forecast[c] - by_category[c]) for c in by_category)
        assert row["wape"] == pytest.approx(errors / total)
        # Each group's own band. Snacks: 2024-10's (+-4) holds their actual (2 over), 2024-11's
        # (+-1) does not (8 under). Drinks: neither, 47 and 42 over (store 2 / item 3's 46 unsold).
        inside = [forecast[c] - BANDS[run] <= by_category[c] <= forecast[c] + BANDS[run] for c in by_category]
        assert row["interval_forecasts"] == 2
        assert row["coverage"] == pytest.approx(np.mean(inside))
    assert scored[("2024-10", 2, "category")]["coverage"] == 0.5
    assert scored[("2024-11", 1, "category")]["coverage"] == 0.0

    # The naive baselines forecast the group series as of the run month: the total's last value
    # (last_value) at the run of 2024-11 is November's total.
    november = pd.Period("2024-11", "M")
    last_total = sum(units(s, i, november) for s in STORES for i in ITEMS)
    assert scored[("2024-11", 1, "total")]["last_value_wape"] == pytest.approx(
        abs(last_total - total) / total
    )

    # Each group's forecast beside its actual, for sorting by error and the revision alert.
    errors = rows(config, "SELECT * FROM forecasts_level_errors ORDER BY run_month, level, level_key")
    assert len(errors) == 2 * 3  # two runs x (the total and two categories)
    drinks = next(r for r in errors if r["run_month"] == "2024-11-01" and r["level_key"] == "drinks")
    assert drinks["actual"] == pytest.approx(by_category["drinks"])
    assert (
        drinks["error"] == pytest.approx(drinks["prediction"] - by_category["drinks"]) and drinks["error"] > 0
    )
    assert drinks["p10"] == pytest.approx(drinks["prediction"] - 1)

    # The monitor stage's result carries them by level and horizon; the entities' rows are unchanged.
    by_level = {(r["run_month"], r["horizon"], r["level"]) for r in result.scores.by_level()}
    assert by_level == set(scored)
    segments = rows(config, "SELECT DISTINCT segment_column FROM forecasts_accuracy")
    assert {r["segment_column"] for r in segments} == {"(all)", "category", "history_months", "level"}


def test_without_a_hierarchy_nothing_is_scored_by_level(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["predictions"] = {"url": f"sqlite:///{tmp_path}/predictions.db", "table": "forecasts"}
    config = load_config(write_config(tmp_path, raw))
    publish(forecasts("2024-11", 0.0), config, pd.Period("2024-11", "M"), model_version="m", run_id="r")
    result = realised_accuracy(sales(), config, pd.Period("2024-12", "M"))
    assert result.scores.by_level() == []


def test_the_forecasts_view_shows_the_newest_months_accuracy_by_level(with_levels):
    from forecasting.ui.monitoring import level_accuracy, render_monitoring

    config = with_levels
    realised_accuracy(sales(), config, pd.Period("2024-12", "M"))
    month, shown = level_accuracy(config)
    stored = rows(config, "SELECT * FROM forecasts_accuracy WHERE segment_column = 'level'")
    assert month == "2024-12"
    assert [(r["level"], r["horizon"], r["run_month"]) for r in shown] == [
        ("category", 1, "2024-11"),
        ("total", 1, "2024-11"),
        ("category", 2, "2024-10"),
        ("total", 2, "2024-10"),
    ]
    by_key = {(r["segment"], r["horizon"]): r for r in stored}
    for r in shown:
        row = by_key[(r["level"], r["horizon"])]
        assert (r["groups"], r["wape"], r["coverage"]) == (
            row["forecasts"],
            pytest.approx(row["wape"]),
            row["coverage"],
        )
    page = str(render_monitoring(config))
    assert "id='level-accuracy'" in page and "By level · 2024-12" in page
    assert page.count("<tr data-level=") == 4


def test_a_level_group_moved_beyond_what_its_newest_month_explains_raises_one_alert_per_level(with_levels):
    from forecasting.monitoring.alert_checks import level_revision_alerts
    from forecasting.monitoring.revisions import level_revisions

    config = with_levels
    december = pd.Period("2024-12", "M")
    realised_accuracy(sales(), config, december)  # December's actuals: each group's surprise
    # The run of 2024-12 forecasts snacks 1.5 times and drinks 0.45 times what 2024-11's did
    # (the same truth - 2 a series) for January and February, the months both runs forecast.
    factor = {"total": 1.0, "snacks": 1.5, "drinks": 0.45}
    levels = level_forecasts("2024-12", OFFSETS["2024-11"])
    levels["prediction"] *= levels["level_key"].map(factor)
    total = levels["level"] == "total"  # the sum of the categories, as reconciled levels are
    by_month = levels[levels["level"] == "category"].groupby("forecast_month")["prediction"].sum()
    levels.loc[total, "prediction"] = levels.loc[total, "forecast_month"].map(by_month)
    levels[["p10", "p90"]] = np.nan
    publish(
        forecasts("2024-12", OFFSETS["2024-11"]),
        config,
        december,
        model_version="2024-12-model",
        run_id="2024-12",
        levels=levels,
        members=members(),
    )

    moved = level_revisions(config, december).set_index("level_key")
    assert set(moved.index) == {"total", "snacks", "drinks"}
    assert (moved["previous_run"] == "2024-11").all()
    assert moved.loc["snacks", "revision"] == pytest.approx(0.5)
    assert moved.loc["drinks", "revision"] == pytest.approx(-0.55)
    # December came in off the 2024-11 run's forecast of it: drinks far under (store 2 / item 3
    # sold nothing), which explains most of their cut; snacks 8 units over on 4 series.
    sold = {
        c: sum(
            units(s, i, december)
            for s in STORES
            for i in ITEMS
            if CATEGORY[i] == c and (s, i, "2024-12") != MISSING
        )
        for c in ("snacks", "drinks")
    }
    for c in ("snacks", "drinks"):
        forecast = sum(units(s, i, december) - 2 for s in STORES for i in ITEMS if CATEGORY[i] == c)
        assert moved.loc[c, "surprise"] == pytest.approx((sold[c] - forecast) / forecast)
        assert moved.loc[c, "unexplained"] == pytest.approx(
            moved.loc[c, "revision"] - moved.loc[c, "surprise"]
        )
    assert abs(moved.loc["drinks", "unexplained"]) < 0.25 < moved.loc["snacks", "unexplained"]

    alerts = level_revision_alerts(config, december)
    assert [(a.kind, a.metric, a.subject) for a in alerts] == [
        ("revision", "level_revision", "level category")
    ]
    assert "snacks +50.0%" in alerts[0].message and "drinks" not in alerts[0].message
    assert alerts[0].value == pytest.approx(0.5) and alerts[0].threshold == 0.25
    # Off by config: no alert.
    quiet = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"max_level_revision": None})}
    )
    assert level_revision_alerts(quiet, december) == []


def test_the_next_run_pools_each_levels_realised_errors_of_the_months_before_it(with_levels):
    from forecasting.monitoring.coverage import realised_level_errors

    config = with_levels
    realised_accuracy(sales(), config, pd.Period("2024-12", "M"))
    pooled = realised_level_errors(config, pd.Period("2025-01", "M"))
    stored = rows(config, "SELECT level, horizon, prediction, actual FROM forecasts_level_errors")
    assert len(pooled) == len(stored) == 6 and set(pooled["level"]) == {"total", "category"}
    assert sorted(pooled["forecast"]) == pytest.approx(sorted(r["prediction"] for r in stored))
    assert sorted(pooled["actual"]) == pytest.approx(sorted(r["actual"] for r in stored))
    # M's own month is not pooled (the run of M reads what it read the first time), nor one
    # beyond monitoring.intervals.realised_months.
    assert realised_level_errors(config, pd.Period("2024-12", "M")).empty
    assert realised_level_errors(config, pd.Period("2025-01", "M"), months=0).empty
