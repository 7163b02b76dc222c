"""Planners' overrides (<table>_overrides) on SQLite and PostgreSQL: one recorded is applied by the
next publish to ``final`` (``prediction`` kept), a level's spread over its entities in proportion
and the levels kept the sums of the finals; superseded, withdrawn and expired versions are not
applied, every version stays (the audit trail); an entity, level or month the run did not
forecast is refused, named, at entry and at the publish, which goes on; the planner role inserts
overrides and writes nothing else."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.core.config import load_config
from forecasting.publishing.overrides import OverrideError, read_overrides, record_override, withdraw_override
from tests.helpers.config import demo_config_dict, write_config
from tests.publishing.test_levels import REGION, forecasts_for, levels_for

JUNE = pd.Period("2024-06", "M")  # its run forecasts 2024-07 and 2024-08, dated 2024-07-01


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request, tmp_path):
    raw = demo_config_dict(tmp_path, hierarchy=True)
    raw["hierarchy"] = {"levels": [[], ["region"], ["store_id"]]}
    if request.param == "sqlite":
        yield load_config(write_config(tmp_path, raw))
        return
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(request.getfixturevalue("postgres_server"), prefix="forecast_overrides") as url:
        raw["predictions"]["url"] = url
        yield load_config(write_config(tmp_path, raw))


def members(frame: pd.DataFrame) -> pd.DataFrame:
    keys = frame[["store_id", "item_id"]].drop_duplicates().astype(str)
    return keys.assign(region=keys["store_id"].astype(int).map(REGION), store_id=keys["store_id"])


def publish_june(config):
    from forecasting.publishing.publish import publish

    frame = forecasts_for("2024-06", 10.0)
    return publish(
        frame,
        config,
        JUNE,
        model_version="v1",
        run_id="run-1",
        created_at=datetime(2024, 7, 1, tzinfo=UTC),
        levels=levels_for(frame),
        members=members(frame),
    )


def read(config, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        frame = pd.read_sql(sql, conn)
    engine.dispose()
    return frame


def row(config, store: int, item: int, month: str) -> pd.Series:
    found = read(
        config,
        f"SELECT * FROM forecasts WHERE store_id = {store} AND item_id = {item} AND forecast_month = '{month}-01'",
    )
    assert len(found) == 1
    return found.iloc[0]


def entity(store: int, item: int) -> dict:
    return {"store_id": store, "item_id": item}


def test_an_override_recorded_is_applied_by_the_next_publish_as_final(config):
    before = publish_june(config)
    assert before.overrides == {"applied": 0, "refused": 0, "adjusted_forecasts": 0, "refusals": []}
    plain = row(config, 1, 1, "2024-07")
    assert plain["final"] == plain["prediction"] and plain["override_id"] is None
    promo = record_override(
        config,
        entity=entity(1, 1),
        first_month="2024-07",
        last_month="2024-08",
        kind="percent",
        value=50,
        reason="end-cap promotion",
        created_by="alice",
    )
    south = record_override(
        config,
        level="region",
        level_key="south",
        first_month="2024-08",
        last_month="2024-08",
        kind="absolute",
        value=30,
        reason="a second store opens",
        created_by="bob",
    )
    north = record_override(
        config,
        level="region",
        level_key="north",
        first_month="2024-07",
        last_month="2024-07",
        kind="delta",
        value=-8,
        reason="road works",
        created_by="bob",
    )
    after = publish_june(config)
    assert after.overrides["applied"] == 3 and after.overrides["refused"] == 0
    # Store 1 (north): items 1 and 2 forecast 12 and 13 in July; north's delta of -8 is spread in
    # proportion (21 -> 17), then item 1's +50% applies on top.
    july = {i: row(config, 1, i, "2024-07") for i in (1, 2)}
    assert [july[i]["prediction"] for i in (1, 2)] == [12.0, 13.0]
    np.testing.assert_allclose(july[2]["final"], 13 * 17 / 25)
    np.testing.assert_allclose(july[1]["final"], 12 * 17 / 25 * 1.5)
    assert july[1]["override_id"] == promo["override_id"] and july[2]["override_id"] == north["override_id"]
    # The band moves with the forecast: scaled by final / prediction.
    np.testing.assert_allclose(july[1]["final_p10"], july[1]["p10"] * july[1]["final"] / 12)
    np.testing.assert_allclose(july[1]["final_p90"], july[1]["p90"] * july[1]["final"] / 12)
    assert row(config, 2, 1, "2024-08")["final"] == 30.0  # south's one entity in August
    august = row(config, 1, 1, "2024-08")
    np.testing.assert_allclose(august["final"], 1.5 * august["prediction"])
    # The levels stay the sums of the entities' finals; their predictions the model's.
    coherent = read(
        config,
        "SELECT l.level, l.level_key, l.forecast_month, l.final, l.prediction, "
        "SUM(f.final) AS finals, SUM(f.prediction) AS predictions FROM forecasts_levels l "
        "JOIN forecasts f ON f.run_month = l.run_month AND f.forecast_month = l.forecast_month "
        "AND (l.level = 'total' OR (l.level = 'store_id' AND l.level_key = CAST(f.store_id AS VARCHAR(9))) "
        "OR (l.level = 'region' AND l.level_key = CASE WHEN f.store_id = 1 THEN 'north' ELSE 'south' END)) "
        "GROUP BY l.level, l.level_key, l.forecast_month, l.final, l.prediction",
    )
    assert len(coherent) == 10
    np.testing.assert_allclose(coherent["final"], coherent["finals"])
    np.testing.assert_allclose(coherent["prediction"], coherent["predictions"])
    runs = read(config, "SELECT overrides_applied, overrides_refused FROM forecasts_runs")
    assert runs.iloc[0].tolist() == [3, 0]
    outcomes = read(config, "SELECT * FROM forecasts_override_outcomes ORDER BY override_id")
    assert set(outcomes["outcome"]) == {"applied"}
    assert dict(zip(outcomes["override_id"], outcomes["forecasts"], strict=True)) == {
        promo["override_id"]: 2,
        south["override_id"]: 1,
        north["override_id"]: 2,
    }


def test_superseded_withdrawn_and_expired_overrides_are_not_applied_and_every_version_stays(config):
    publish_june(config)
    common = {"first_month": "2024-07", "last_month": "2024-07", "kind": "absolute", "created_by": "carol"}
    first = record_override(config, entity=entity(1, 1), value=40, reason="first guess", **common)
    changed = record_override(
        config, entity=entity(1, 1), value=50, reason="confirmed", supersedes=first["override_id"], **common
    )
    assert (changed["override_id"], changed["version"]) == (first["override_id"], 2)
    dropped = record_override(config, entity=entity(1, 2), value=99, reason="a promotion", **common)
    withdrawn = withdraw_override(config, dropped["override_id"], "promotion cancelled", "carol")
    assert withdrawn["version"] == 2 and withdrawn["status"] == "withdrawn"
    # Expires on the day June's run is made (July 1st): that run skips it.
    record_override(
        config, entity=entity(2, 1), value=77, reason="until July", expires_on="2024-07-01", **common
    )
    result = publish_june(config)
    assert result.overrides["applied"] == 1
    assert row(config, 1, 1, "2024-07")["final"] == 50.0
    kept = row(config, 1, 2, "2024-07")
    assert kept["final"] == kept["prediction"] and kept["override_id"] is None
    assert row(config, 2, 1, "2024-07")["final"] == row(config, 2, 1, "2024-07")["prediction"]
    with pytest.raises(OverrideError, match="withdrawn already"):
        withdraw_override(config, dropped["override_id"], "again", "carol")
    trail = read_overrides(config)
    assert sorted(zip(trail["override_id"], trail["version"], trail["status"], strict=True)) == sorted(
        [
            (first["override_id"], 1, "active"),
            (first["override_id"], 2, "active"),
            (dropped["override_id"], 1, "active"),
            (dropped["override_id"], 2, "withdrawn"),
            (trail.loc[trail["value"] == 77, "override_id"].iloc[0], 1, "active"),
        ]
    )
    assert trail.loc[trail["version"] == 2, "reason"].tolist().count("promotion cancelled") == 1


def test_a_bad_entity_level_or_month_is_refused_named_at_entry_and_at_the_publish(config):
    publish_june(config)
    common = {"kind": "percent", "value": 10, "reason": "typo", "created_by": "dave"}
    with pytest.raises(OverrideError, match="store_id 9, item_id 9 has no forecast"):
        record_override(config, entity=entity(9, 9), first_month="2024-07", last_month="2024-07", **common)
    with pytest.raises(
        OverrideError, match=r"2025-01 of store_id 1, item_id 1 are not among .*2024-07\.\.2024-08"
    ):
        record_override(config, entity=entity(1, 1), first_month="2025-01", last_month="2025-01", **common)
    with pytest.raises(OverrideError, match="level 'regoin' is no level"):
        record_override(
            config, level="regoin", level_key="north", first_month="2024-07", last_month=None, **common
        )
    with pytest.raises(OverrideError, match="region west has no forecast"):
        record_override(
            config, level="region", level_key="west", first_month="2024-07", last_month=None, **common
        )
    # Through SQL nothing checks them at entry: the publish refuses them, names them and goes on.
    engine = sa.create_engine(config.predictions.database.url)
    values = {
        "version": 1,
        "status": "active",
        "first_month": date(2024, 7, 1),
        "last_month": date(2024, 8, 1),
    }
    values |= {"kind": "percent", "value": 10.0, "reason": "typo", "created_by": "dave"}
    with engine.begin() as conn:
        insert = "INSERT INTO forecasts_overrides ({}) VALUES ({})"
        for extra in (
            {"override_id": "typo-entity", "store_id": 9, "item_id": 9},
            {"override_id": "typo-level", "level": "regoin", "level_key": "north"},
            {
                "override_id": "far-month",
                "store_id": 1,
                "item_id": 1,
                "first_month": date(2030, 1, 1),
                "last_month": date(2030, 1, 1),
            },
            {"override_id": "infinite", "store_id": 2, "item_id": 1, "kind": "delta", "value": float("inf")},
            {"override_id": "good", "store_id": 1, "item_id": 1},
        ):
            cells = values | extra
            conn.execute(sa.text(insert.format(", ".join(cells), ", ".join(f":{c}" for c in cells))), cells)
    engine.dispose()
    result = publish_june(config)
    assert result.overrides["applied"] == 1 and result.overrides["refused"] == 4
    refusals = " | ".join(result.overrides["refusals"])
    assert "typo-entity: store_id 9, item_id 9 has no forecast in this run" in refusals
    assert "typo-level: level 'regoin' is no level of the hierarchy" in refusals
    assert "far-month: forecast months 2030-01 of store_id 1, item_id 1 are not among this run's" in refusals
    assert "infinite: value inf does not make a finite forecast" in refusals
    assert row(config, 2, 1, "2024-07")["final"] == row(config, 2, 1, "2024-07")["prediction"]
    outcomes = read(config, "SELECT override_id, outcome, message FROM forecasts_override_outcomes")
    assert dict(zip(outcomes["override_id"], outcomes["outcome"], strict=True)) == {
        "typo-entity": "refused",
        "typo-level": "refused",
        "far-month": "refused",
        "infinite": "refused",
        "good": "applied",
    }
    assert read(config, "SELECT overrides_refused FROM forecasts_runs")["overrides_refused"].tolist() == [4]
    np.testing.assert_allclose(row(config, 1, 1, "2024-07")["final"], 1.1 * 12)


def test_the_table_refuses_a_malformed_row_whoever_writes_it(config):
    publish_june(config)
    engine = sa.create_engine(config.predictions.database.url)
    good = {"override_id": "x", "version": 1, "status": "active", "store_id": 1, "item_id": 1}
    good |= {"first_month": date(2024, 7, 1), "last_month": date(2024, 7, 1), "kind": "absolute"}
    good |= {"value": 5.0, "reason": "ok", "created_by": "erin"}
    bad = [
        {"kind": "double"},
        {"value": -1.0},
        {"reason": "  "},
        {"last_month": date(2024, 6, 1)},
        {"level": "region", "level_key": "north"},  # both an entity and a level
        {"store_id": None},  # half an entity
        {"status": "deleted"},
        {"version": 0},
    ]
    try:
        for change in bad:
            cells = good | change
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(
                    sa.text(
                        f"INSERT INTO forecasts_overrides ({', '.join(cells)}) "
                        f"VALUES ({', '.join(f':{c}' for c in cells)})"
                    ),
                    cells,
                )
        with engine.begin() as conn:  # and the good one goes in, created_at by the database
            cells = ", ".join(good)
            conn.execute(
                sa.text(
                    f"INSERT INTO forecasts_overrides ({cells}) VALUES ({', '.join(f':{c}' for c in good)})"
                ),
                good,
            )
            stamped = conn.execute(sa.text("SELECT created_at FROM forecasts_overrides")).scalar_one()
        assert stamped is not None
    finally:
        engine.dispose()


def test_the_planner_role_inserts_overrides_and_writes_nothing_else(config):
    url = config.predictions.database.url
    if url.startswith("sqlite"):
        pytest.skip("roles are PostgreSQL's")
    from forecasting.publishing.overrides import grant_planner_role
    from tests.helpers.servers import analyst_role

    owner = sa.create_engine(url)
    with pytest.raises(OverrideError, match="publish a month first"):
        grant_planner_role(owner, "forecast_test_planner_early")
    owner.dispose()
    publish_june(config)
    with analyst_role(url, planner=True) as (granted, planner):
        assert {"forecasts", "forecasts_overrides", "forecasts_override_outcomes"} <= set(granted)
        with planner.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO forecasts_overrides (override_id, version, status, store_id, item_id, "
                    "first_month, last_month, kind, value, reason, created_by) VALUES ('sql-1', 1, 'active', "
                    "1, 1, DATE '2024-07-01', DATE '2024-07-01', 'absolute', 42, 'from SQL', CURRENT_USER)"
                )
            )
            assert conn.execute(sa.text("SELECT count(*) FROM forecasts")).scalar_one() == 6
        for statement in (
            "UPDATE forecasts_overrides SET value = 1",
            "DELETE FROM forecasts_overrides",
            "UPDATE forecasts SET prediction = 0",
            "INSERT INTO forecasts_override_outcomes VALUES (DATE '2024-06-01', 'x', 1, 'applied', 0, 'x')",
            "DELETE FROM forecasts_runs",
            "CREATE TABLE planner_scratch (x int)",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), planner.begin() as conn:
                conn.execute(sa.text(statement))
    publish_june(config)
    assert row(config, 1, 1, "2024-07")["final"] == 42.0
    trail = read_overrides(config)
    assert trail["created_by"].str.startswith("forecast_test_planner_").all()


def test_the_command_line_records_lists_withdraws_and_refuses_naming_the_typo(config, monkeypatch, capsys):
    from forecasting.publishing.overrides import main

    if not config.predictions.database.url.startswith("sqlite"):
        pytest.skip("the library's checks are the same on PostgreSQL (above)")
    monkeypatch.setenv("FORECAST_CONFIG", str(config.path))
    publish_june(config)
    add = ["add", "--months", "2024-07:2024-08", "--kind", "delta", "--value", "5", "--by", "frank"]
    assert main([*add, "--entity", "store_id=1", "--entity", "item_id=2", "--reason", "display"]) == 0
    recorded = capsys.readouterr().out
    override_id = recorded.split()[1]
    assert recorded.startswith(f"Recorded {override_id} version 1 (active)")
    assert main([*add, "--entity", "store_id=1", "--entity", "item_id=99", "--reason", "typo"]) == 2
    assert (
        "Refused: store_id 1, item_id 99 has no forecast in the newest published run"
        in capsys.readouterr().err
    )
    assert main([*add, "--level", "total", "--reason", "inflation"]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert override_id in listed and "display" in listed and "inflation" in listed
    assert main(["withdraw", override_id, "--reason", "display moved", "--by", "frank"]) == 0
    assert f"Recorded {override_id} version 2 (withdrawn)" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert override_id not in capsys.readouterr().out
    result = publish_june(config)
    assert result.overrides["applied"] == 1  # the total's delta, spread over every entity
    totals = read(
        config,
        "SELECT forecast_month, SUM(final) - SUM(prediction) AS added FROM forecasts GROUP BY forecast_month",
    )
    np.testing.assert_allclose(totals["added"], [5.0, 5.0])
