"""<table>_levels: the hierarchy's levels published in the forecasts' transaction, replaced on a
re-run of the month, with a latest view and the analyst's grant, on SQLite and PostgreSQL; and
the coherence check (forecasting.publishing.checks.check_levels) fails closed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.data.checkpoint import DataValidationError
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.servers import analyst_role

REGION = {1: "north", 2: "south"}  # store -> region
ENTITIES = ((1, 1), (1, 2), (2, 1))


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request, tmp_path):
    raw = demo_config_dict(tmp_path, hierarchy=True)
    raw["hierarchy"] = {"levels": [[], ["region"], ["store_id"]]}
    if request.param == "sqlite":
        yield load_config(write_config(tmp_path, raw))
        return
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(request.getfixturevalue("postgres_server"), prefix="forecast_levels") as url:
        raw["predictions"]["url"] = url
        yield load_config(write_config(tmp_path, raw))


def forecasts_for(month: str, value: float) -> pd.DataFrame:
    origin = pd.Period(month, "M")
    return pd.DataFrame(
        [
            {
                "store_id": s,
                "item_id": i,
                "forecast_month": (origin + h).to_timestamp().date(),
                "horizon": h,
                "prediction": value * s + i + h,
                "p10": value * s + i + h - 1,
                "p90": value * s + i + h + 1,
            }
            for s, i in ENTITIES
            for h in (1, 2)
        ]
    )


def members_of(forecasts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"region": forecasts["store_id"].map(REGION), "store_id": forecasts["store_id"].astype(str)}
    )


def levels_for(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The levels of ``forecasts`` added up, with bounds around them."""
    bottom = pd.concat(
        [members_of(forecasts), forecasts[["forecast_month", "horizon", "prediction"]]], axis=1
    )
    parts = []
    for level, columns in (("total", []), ("region", ["region"]), ("store_id", ["store_id"])):
        if columns:
            sums = bottom.groupby([*columns, "forecast_month", "horizon"], as_index=False)["prediction"].sum()
            sums["level_key"] = sums[columns[0]]
        else:
            sums = bottom.groupby(["forecast_month", "horizon"], as_index=False)["prediction"].sum()
            sums["level_key"] = "total"
        parts.append(sums.assign(level=level))
    out = pd.concat(parts, ignore_index=True)
    out["p10"], out["p90"] = 0.9 * out["prediction"], 1.1 * out["prediction"]
    return out


def publish(config, month, frame, levels, run_id="run-1"):
    from forecasting.publishing.publish import publish as run

    return run(
        frame,
        config,
        pd.Period(month, "M"),
        model_version="v1",
        run_id=run_id,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        levels=levels,
    )


def read(config, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn)
    engine.dispose()
    return frame


def test_levels_are_published_with_the_forecasts_and_replaced_on_a_rerun(config):
    june = forecasts_for("2024-06", 10.0)
    first = publish(config, "2024-06", june, levels_for(june))
    assert first.level_rows == 2 * (1 + 2 + 2)  # horizons x (total, two regions, two stores)
    again = publish(config, "2024-06", june, levels_for(june), run_id="run-2")
    assert again.level_rows == first.level_rows
    published = read(config, "SELECT * FROM forecasts_levels")
    assert len(published) == first.level_rows and set(published["run_id"]) == {"run-2"}
    assert published.loc[published["level"] == "total", ["region", "store_id"]].isna().all(axis=None)
    assert set(published.loc[published["level"] == "region", "region"]) == {"north", "south"}
    # Coherent in the database: the total is the sum of the forecasts published beside it.
    check = read(
        config,
        "SELECT l.horizon, l.prediction, SUM(f.prediction) AS bottom FROM forecasts_levels l "
        "JOIN forecasts f ON f.run_month = l.run_month AND f.horizon = l.horizon "
        "WHERE l.level = 'total' GROUP BY l.horizon, l.prediction",
    )
    np.testing.assert_allclose(check["prediction"], check["bottom"], atol=1e-6)


def test_the_latest_view_prefers_the_newest_run(config):
    may, june = forecasts_for("2024-05", 10.0), forecasts_for("2024-06", 20.0)
    publish(config, "2024-05", may, levels_for(may))
    publish(config, "2024-06", june, levels_for(june))
    latest = read(
        config,
        "SELECT forecast_month, run_month, prediction FROM forecasts_levels_latest WHERE level = 'total'",
    )
    months = pd.to_datetime(latest["forecast_month"]).dt.to_period("M").astype(str)
    # 2024-07 was forecast by both runs: June's (the newer data) is the one shown.
    july = latest[months == "2024-07"]
    assert len(july) == 1 and pd.Timestamp(july["run_month"].iloc[0]).to_period("M") == pd.Period("2024-06")
    assert sorted(months) == ["2024-06", "2024-07", "2024-08"]


def test_without_levels_the_forecasts_publish_as_before(config):
    published = publish(config, "2024-06", forecasts_for("2024-06", 10.0), None)
    assert published.level_rows is None and published.rows == 6
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        assert "forecasts_levels" not in sa.inspect(conn).get_table_names()
    engine.dispose()


def test_the_analyst_reads_the_levels(config):
    if config.predictions.database.url.startswith("sqlite"):
        pytest.skip("roles are PostgreSQL's")
    june = forecasts_for("2024-06", 10.0)
    publish(config, "2024-06", june, levels_for(june))
    with analyst_role(config.predictions.database.url) as (granted, analyst):
        assert {"forecasts_levels", "forecasts_levels_latest"} <= set(granted)
        with analyst.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM forecasts_levels_latest").scalar() == 10
        with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("DELETE FROM forecasts_levels")


@pytest.mark.parametrize("config", ["sqlite"], indirect=True)
def test_the_coherence_check_fails_closed(config, tmp_path):
    from forecasting.publishing.checks import check_levels

    june = forecasts_for("2024-06", 10.0)
    levels = levels_for(june)
    members = members_of(june)
    report = check_levels(levels, june, members, config, pd.Period("2024-06", "M"), tmp_path / "ok")
    assert report.success
    off = levels.copy()
    off.loc[off["level"] == "region", "prediction"] += 1e-3  # no longer the sum of its stores
    with pytest.raises(DataValidationError) as failed:
        check_levels(off, june, members, config, pd.Period("2024-06", "M"), tmp_path / "off")
    assert any("coherence_gap" in str(f) for f in failed.value.report.failures)
