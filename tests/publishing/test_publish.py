"""The predictions table: one transaction per month, replaced on re-run, with a latest view."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.helpers.config import demo_config_dict, write_config


@pytest.fixture
def config(tmp_path):
    from forecasting.core.config import load_config

    return load_config(write_config(tmp_path, demo_config_dict(tmp_path)))


def forecasts_for(
    month: str, value: float, entities=((1, 1), (1, 2), (2, 1)), horizons=(1, 2)
) -> pd.DataFrame:
    origin = pd.Period(month, "M")
    rows = [
        {
            "store_id": s,
            "item_id": i,
            "forecast_month": (origin + h).to_timestamp().date(),
            "horizon": h,
            "prediction": value + h,
        }
        for s, i in entities
        for h in horizons
    ]
    return pd.DataFrame(rows)


def publish(config, month, frame, version="v1", run_id="run-1"):
    from forecasting.publishing.publish import publish as run

    return run(
        frame,
        config,
        pd.Period(month, "M"),
        model_version=version,
        run_id=run_id,
        evaluation={
            "model": {"wape": 0.2},
            "best_baseline": "mean_3",
            "baselines": {"mean_3": {"wape": 0.3}},
        },
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def read(config, suffix="") -> pd.DataFrame:
    engine = sa.create_engine(config.predictions.database.url)
    with engine.connect() as conn:
        frame = pd.read_sql_table(config.predictions.table + suffix, conn)
    engine.dispose()
    return frame


def test_republishing_a_month_replaces_its_rows(config):
    first = publish(config, "2024-06", forecasts_for("2024-06", 10.0))
    assert (first.rows, first.replaced) == (6, 0)
    before = read(config)
    again = publish(config, "2024-06", forecasts_for("2024-06", 10.0), run_id="run-2")
    assert (again.rows, again.replaced) == (6, 6)
    after = read(config)
    assert len(after) == 6
    pd.testing.assert_frame_equal(before.drop(columns="run_id"), after.drop(columns="run_id"))
    assert set(after["run_id"]) == {"run-2"}


def test_months_are_kept_apart_and_the_latest_view_prefers_the_newest_data(config):
    publish(config, "2024-05", forecasts_for("2024-05", 100.0), version="may")
    publish(config, "2024-06", forecasts_for("2024-06", 200.0), version="june")
    table = read(config)
    assert len(table) == 12
    latest = read(config, "_latest")
    # July 2024 was forecast by May's run (horizon 2) and June's run (horizon 1): June's wins.
    july = latest[pd.to_datetime(latest["forecast_month"]) == pd.Timestamp("2024-07-01")]
    assert len(july) == 3 and set(july["model_version"]) == {"june"}
    june = latest[pd.to_datetime(latest["forecast_month"]) == pd.Timestamp("2024-06-01")]
    assert set(june["model_version"]) == {"may"}
    assert not latest.duplicated(["store_id", "item_id", "forecast_month"]).any()

    runs = read(config, "_runs").sort_values("run_month")
    assert runs["model_version"].tolist() == ["may", "june"]
    assert runs["holdout_wape"].tolist() == [0.2, 0.2] and runs["best_baseline"].tolist() == ["mean_3"] * 2


def test_a_failed_publish_leaves_the_month_as_it_was(config):
    publish(config, "2024-06", forecasts_for("2024-06", 10.0))
    before = read(config)
    broken = forecasts_for("2024-06", 99.0)
    broken.loc[4, "prediction"] = None  # violates NOT NULL after the delete and part of the insert
    with pytest.raises(sa.exc.IntegrityError):
        publish(config, "2024-06", broken, run_id="broken")
    pd.testing.assert_frame_equal(before, read(config))


def test_entity_keys_keep_the_source_types(config):
    publish(config, "2024-06", forecasts_for("2024-06", 10.0))
    engine = sa.create_engine(config.predictions.database.url)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns(config.predictions.table)}
    engine.dispose()
    assert isinstance(columns["store_id"]["type"], sa.BigInteger | sa.Integer)
    assert isinstance(columns["forecast_month"]["type"], sa.Date)
    frame = read(config)
    assert frame["store_id"].dtype.kind == "i"
    assert pd.to_datetime(frame["run_month"]).dt.date.eq(date(2024, 6, 1)).all()
