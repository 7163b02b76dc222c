"""Planned covariates (config ``plans:``, forecasting.features.plans): the config section, extract (SQLite
and PostgreSQL), the Great Expectations suite, Feast's point-in-time join of the plans into the
training rows and the forecasts, and a revision made after an origin leaving that origin's
backtest forecasts alone.

The plans are ``datasets.synthetic_plans.generate_plans``': every month planned at the start of the
month two before it, a share of them revised in the middle of the month before (the first plan
had the promotion the other way round). The expected values are computed by hand here from that
frame (``as_of``), never by the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers.config import END_MONTH, demo_config_dict, write_config

MONTH = pd.Period(END_MONTH, "M")
KEYS = ["store_id", "item_id"]
PLANS = {"table": "sales_plans", "covariates": ["price", "promo"]}


def plans_config(folder, **plans):
    from forecasting.core.config import load_config

    raw = demo_config_dict(folder)
    raw["plans"] = {**PLANS, **plans}
    return load_config(write_config(folder, raw))


def as_of(plans: pd.DataFrame, month: pd.Period, stamp: pd.Timestamp) -> pd.Series:
    """By hand: the plan for ``month`` as it stood at ``stamp``, per entity (index KEYS)."""
    months = pd.to_datetime(plans["month"]).dt.to_period("M")
    known = plans[(months == month) & (pd.to_datetime(plans["planned_at"]) <= stamp)]
    latest = known.sort_values("planned_at").groupby(KEYS).tail(1)
    return latest.set_index([latest[k].astype(str) for k in KEYS])[["price", "promo"]]


@pytest.fixture(scope="module")
def planned(tmp_path_factory, synthetic_sales):
    """A demo deployment with plans, extracted, validated and registered for M (no model)."""
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.datasets.synthetic_plans import generate_plans, seed_plans_table
    from forecasting.orchestration import pipeline

    folder = tmp_path_factory.mktemp("plans")
    config = plans_config(folder)
    seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
    plans = generate_plans(synthetic_sales, horizon=config.horizon, seed=7)
    seed_plans_table(config.source.database.url, plans)
    attempt = pipeline.extract(END_MONTH, "manual__plans", config)["attempt"]
    for stage in ("validate", "build_features", "register_features"):
        getattr(pipeline, stage)(END_MONTH, attempt, config)
    return config, attempt, plans


# --------------------------------------------------------------------------------- config


def test_config_plans_section(tmp_path):
    from forecasting.core.config import ConfigError, load_config
    from forecasting.features.catalogue import plan_feature_names
    from forecasting.features.dataset import model_features

    config = plans_config(tmp_path, fill={"promo": 0, "price": "empty"})
    pl = config.plans
    assert pl is not None and pl.database == config.source.database  # beside the sales by default
    assert pl.entity_columns == KEYS and pl.month_column == "month" and pl.planned_at == "planned_at"
    assert pl.feature_names == ["plan_price", "plan_promo"] and pl.fill == {"promo": 0.0, "price": "empty"}
    # Both are source covariates too: the model also reads what the plan changes.
    names = ["plan_price", "plan_price_change", "plan_promo", "plan_promo_change"]
    assert plan_feature_names(config) == names
    features = model_features(config)  # the derived features (on by default) come after these
    start = features.index(names[0])
    assert features[start : start + 6] == [*names, "horizon", "target_month_of_year"]

    raw = demo_config_dict(tmp_path)
    without = load_config(write_config(tmp_path / "none", raw))
    assert without.plans is None and plan_feature_names(without) == []
    assert not any(name.startswith("plan_") for name in model_features(without))
    for plans, message in [
        ({"covariates": ["price"]}, "set exactly one of plans.table and plans.query"),
        ({**PLANS, "entity_columns": ["store_id"]}, "plans.entity_columns: must be the source's"),
        ({**PLANS, "covariates": []}, "plans.covariates: must name at least one"),
        ({**PLANS, "fill": {"units": 0}}, "plans.fill.units: is not one of plans.covariates"),
        ({**PLANS, "fill": {"promo": "zero"}}, "plans.fill.promo: must be a number or 'empty'"),
        ({**PLANS, "planed_at": "x"}, "plans.planed_at: unknown key"),
        ({**PLANS, "planned_at": "month"}, "columns given more than one role: month"),
        ({**PLANS, "url": "sqlite:///plans.db", "conn_id": "x"}, "set exactly one of plans.url"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path / "bad", {**raw, "plans": plans}))
    other = load_config(write_config(tmp_path / "url", {**raw, "plans": {**PLANS, "url": "sqlite:///p.db"}}))
    assert other.plans is not None and other.plans.database.url == f"sqlite:///{tmp_path / 'url' / 'p.db'}"


def test_synthetic_plans_have_revisions_and_come_true(synthetic_sales):
    from forecasting.datasets.synthetic_plans import generate_plans

    plans = generate_plans(synthetic_sales, horizon=3, seed=7)
    pd.testing.assert_frame_equal(plans, generate_plans(synthetic_sales, horizon=3, seed=7))
    months = pd.to_datetime(plans["month"]).dt.to_period("M")
    stamps = pd.to_datetime(plans["planned_at"])
    # First plans at the start of the month two before; revisions mid-way through the one before.
    first = stamps == (months - 2).dt.start_time
    assert (first | (stamps == (months - 1).dt.start_time + pd.Timedelta(days=14))).all()
    revisions = plans.groupby([*KEYS, "month"]).size()
    assert set(revisions) == {1, 2} and 0.2 < (revisions == 2).mean() < 0.4
    # The last revision of a month with sales is what happened, the first one of a revised month is not.
    last = plans.sort_values("planned_at").groupby([*KEYS, "month"]).tail(1)
    sold = synthetic_sales.merge(last, on=[*KEYS, "month"], suffixes=("", "_plan"))
    assert len(sold) == len(synthetic_sales)
    assert (sold["promo"] == sold["promo_plan"]).all() and (sold["price"] == sold["price_plan"]).all()
    revised = plans[first].merge(last, on=[*KEYS, "month"], suffixes=("", "_last"))
    changed = revised["planned_at"] != revised["planned_at_last"]
    assert (revised.loc[changed, "promo"] != revised.loc[changed, "promo_last"]).all()
    # Every store and item selling in the last month is planned for the 3 months after it.
    last_month = months.max()
    assert last_month == MONTH + 3 and months[months > MONTH].nunique() == 3


# --------------------------------------------------------------------------------- extract


def test_extract_takes_every_revision_known_at_the_end_of_M(planned):
    from forecasting.core import paths

    config, attempt, plans = planned
    got = pd.read_parquet(paths.plans(config, MONTH, attempt))
    stamps = pd.to_datetime(plans["planned_at"])
    months = pd.to_datetime(plans["month"]).dt.to_period("M")
    # The demo window (60 months) holds all 48 months of sales; plans up to M + horizon.
    wanted = plans[(stamps <= pd.Timestamp("2025-01-01")) & (months <= MONTH + config.horizon)]
    assert len(got) == len(wanted) > 0
    assert got["planned_at"].max() <= pd.Timestamp("2025-01-01")
    # The revisions of M+2 and M+3 were made after M ended (mid M+1, mid M+2): not known at M.
    later = plans[stamps > pd.Timestamp("2025-01-01")]
    assert len(later) > 0 and set(months[later.index]) <= {MONTH + 2, MONTH + 3}
    assert pd.api.types.is_datetime64_dtype(got["month"]) and (got["month"].dt.day == 1).all()
    key = [*KEYS, "month", "planned_at"]
    expected = wanted.assign(month=pd.to_datetime(wanted["month"]), planned_at=stamps[wanted.index])
    pd.testing.assert_frame_equal(
        got[[*key, "price", "promo"]].sort_values(key).reset_index(drop=True),
        expected[[*key, "price", "promo"]].sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_extract_reads_the_plans_from_postgresql_as_from_sqlite(planned, postgres_server, tmp_path):
    """Plans in a database of their own (plans.url), on PostgreSQL: the same revisions."""
    from forecasting.data.extract import read_plans
    from forecasting.datasets.synthetic_plans import seed_plans_table
    from forecasting.publishing.postgres import temporary_database

    config, _, plans = planned
    with temporary_database(postgres_server, prefix="forecast_plans") as url:
        seed_plans_table(url, plans)
        on_postgres = plans_config(tmp_path, url=url)
        assert on_postgres.plans is not None and on_postgres.plans.database.url == url
        from_postgres = read_plans(on_postgres, MONTH)
    from_sqlite = read_plans(config, MONTH)
    key = [*KEYS, "month", "planned_at"]
    pd.testing.assert_frame_equal(
        from_postgres.sort_values(key).reset_index(drop=True),
        from_sqlite.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


# --------------------------------------------------------------------------------- validate


def test_bad_plans_fail_validation_naming_each_problem(planned, tmp_path):
    from forecasting.core import paths
    from forecasting.data.checkpoint import DataValidationError
    from forecasting.data.validate import validate_plans

    config, attempt, _ = planned
    good = pd.read_parquet(paths.plans(config, MONTH, attempt))
    snapshot = pd.read_parquet(paths.snapshot(config, MONTH, attempt))
    bad = good.copy()
    months = bad["month"].dt.to_period("M")
    # An active entity's plans for M+1 gone, one revision twice, a key missing, a text price.
    gone = bad[(months == MONTH + 1)].iloc[0]
    bad = bad[
        ~((bad["store_id"] == gone["store_id"]) & (bad["item_id"] == gone["item_id"]) & (months == MONTH + 1))
    ]
    bad = pd.concat([bad, bad.iloc[[5]]], ignore_index=True)
    bad.loc[7, "item_id"] = None
    bad.loc[9, "price"], bad.loc[9, "price__unreadable"] = np.nan, "n/a"

    with pytest.raises(DataValidationError) as failed:
        validate_plans(bad, snapshot, config, MONTH, tmp_path / "docs")
    message = str(failed.value)
    assert message.startswith(f"Validation of the plans of {MONTH} failed")
    labels = {f["label"]: f["details"] for f in failed.value.failures}
    assert labels["expect_column_values_to_be_null(unplanned__entity_month)"].startswith(
        f"1 active entity-months have no plan (e.g. 'store_id={gone['store_id']}, item_id={gone['item_id']} in {MONTH + 1}')"
    )
    assert any(f["expectation"] == "expect_compound_columns_to_be_unique" for f in failed.value.failures)
    assert any(
        f["column"] == "item_id" and f["expectation"] == "expect_column_values_to_not_be_null"
        for f in failed.value.failures
    )
    assert any(
        f["column"] == "price__unreadable" and "not a number" in f["details"] for f in failed.value.failures
    )
    assert (tmp_path / "docs" / "index.html").is_file()

    # A declared fill rule for every covariate: a missing plan is allowed (the fill says what it means).
    filled = plans_config(tmp_path / "filled", fill={"price": "empty", "promo": 0})
    missing = good[~((good["store_id"] == gone["store_id"]) & (good["item_id"] == gone["item_id"]))]
    report = validate_plans(missing, snapshot, filled, MONTH, tmp_path / "docs2")
    assert report.success and report.rows == len(missing)


# --------------------------------------------------------------------------------- features


def test_training_rows_get_the_plan_of_their_target_month_as_it_stood_at_the_origin(planned):
    from forecasting.core import paths
    from forecasting.core.months import month_end
    from forecasting.features import dataset

    config, attempt, plans = planned
    snapshot = pd.read_parquet(paths.snapshot(config, MONTH, attempt))
    frame = dataset.training_frame(snapshot, config, MONTH)
    assert {"plan_price", "plan_promo"} <= set(frame.columns) and not frame.filter(like="__h").columns.any()
    stale = 0
    for (origin, target), rows in frame.groupby([dataset.ORIGIN, dataset.TARGET_MONTH]):
        expected = as_of(plans, pd.Period(target, "M"), month_end(pd.Period(origin, "M")))
        keys = pd.MultiIndex.from_frame(rows[KEYS])
        want = expected.reindex(keys)
        np.testing.assert_allclose(rows["plan_price"], want["price"].astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(rows["plan_promo"], want["promo"].astype(np.float32))
        for c in ("price", "promo"):  # what the plan changes from the month known at the origin
            change = rows[f"plan_{c}"].to_numpy() - rows[c].to_numpy(dtype=np.float32)
            np.testing.assert_array_equal(rows[f"plan_{c}_change"], change)
        realised = as_of(plans, pd.Period(target, "M"), pd.Timestamp.max).reindex(keys)
        stale += int((rows["plan_promo"].to_numpy() != realised["promo"].to_numpy()).sum())
    # Rows two months ahead saw the first plan, not the revision made after their origin.
    assert stale > 100
    h1 = frame[frame[dataset.HORIZON] == 1]
    assert h1["plan_promo"].notna().all()


def test_forecasts_read_the_plans_for_M_plus_h_as_they_stood_at_the_end_of_M(planned):
    from forecasting.core import paths
    from forecasting.core.months import month_end, month_index
    from forecasting.data.panel import build_panel
    from forecasting.features import dataset
    from forecasting.modeling.predict import active_entities

    config, attempt, plans = planned
    panel = build_panel(pd.read_parquet(paths.snapshot(config, MONTH, attempt)), config, sales_only=True)
    active = active_entities(panel, month_index(MONTH))
    features = dataset.retrieve(config, panel, active, np.full(len(active), month_index(MONTH)))
    keys = pd.MultiIndex.from_frame(panel.keys.iloc[active])
    for h in range(1, config.horizon + 1):
        frame = dataset.with_model_columns(features, np.full(len(active), h), dataset.model_features(config))
        expected = as_of(plans, MONTH + h, month_end(MONTH)).reindex(keys)
        assert expected["promo"].notna().all()
        np.testing.assert_array_equal(frame["plan_promo"], expected["promo"].astype(np.float32))
        np.testing.assert_allclose(frame["plan_price"], expected["price"].astype(np.float32), rtol=1e-6)


def test_a_backfill_keeps_the_revisions_a_later_run_wrote(planned):
    """write_plan_features: revisions stamped after the end of M stay in the files a run of an
    earlier month rewrites, and running M again writes the same files."""
    from forecasting.core import paths
    from forecasting.features.plans import write_plan_features

    config, attempt, _ = planned
    known = pd.read_parquet(paths.plans(config, MONTH, attempt))
    folder = paths.plan_table(config)
    target = MONTH - 2
    before = pd.read_parquet(folder / f"{target}.parquet")
    earlier = MONTH - 4  # a backfill knows only what was planned by the end of M - 4
    write_plan_features(known[known["planned_at"] <= pd.Timestamp(str(earlier + 1))], config, earlier)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / f"{target}.parquet"), before)
    write_plan_features(known, config, MONTH)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / f"{target}.parquet"), before)


# --------------------------------------------------------------------------------- backtest


@pytest.mark.slow  # trains twice
def test_a_revision_after_the_origin_cannot_change_its_backtest_forecast(planned, tmp_path):
    """Revise every plan of M-1 in the middle of M-2 (after origin M-3, before origin M-2):
    the backtest forecasts of origins up to M-3 stay exactly the same, those of M-2 change."""
    import shutil

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.features import store
    from forecasting.features.catalogue import CREATED, TIMESTAMP
    from forecasting.modeling import train
    from forecasting.modeling.backtest import BACKTEST
    from forecasting.modeling.predict import forecast

    config, attempt, _ = planned
    # A copy of the deployment, with a cheaper model and 3 backtest origins (M-3, M-2, M-1).
    raw = __import__("yaml").safe_load(config.path.read_text())
    raw["model"]["num_boost_round"] = 150
    raw["evaluation"]["backtest_origins"] = 3
    raw["data_dir"] = str(tmp_path / "data")
    raw["feature_store"]["registry"] = str(tmp_path / "feast" / "registry.db")
    raw["feature_store"]["online_store"]["path"] = str(tmp_path / "feast" / "online.db")
    shutil.copytree(config.data_dir / "features", tmp_path / "data" / "features")
    cheap = load_config(write_config(tmp_path, raw))
    store.apply(cheap)  # Feast reads the copy's feature files
    snapshot = pd.read_parquet(paths.snapshot(config, MONTH, attempt))

    def backtest() -> pd.DataFrame:
        model = train.train(snapshot, cheap, MONTH)
        holdout = pd.read_parquet(model.directory / "holdout.parquet")
        models.append(model.directory)
        return holdout

    models: list = []
    before = backtest()
    target = MONTH - 1
    path = paths.plan_table(cheap) / f"{target}.parquet"
    plans = pd.read_parquet(path)
    revision = plans.drop_duplicates(KEYS).assign(plan_promo=np.float32(1.0), plan_price=np.float32(0.5))
    revision[TIMESTAMP] = pd.Timestamp(str(MONTH - 2), tz="UTC") + pd.Timedelta(days=15)
    revision[CREATED] = revision[TIMESTAMP]
    paths.write_parquet_atomically(pd.concat([plans, revision], ignore_index=True), path)
    after = backtest()

    origins = pd.PeriodIndex(before[train.ORIGIN], freq="M")
    assert (before[train.ORIGIN] == after[train.ORIGIN]).all()
    untouched = (origins <= MONTH - 3) & before[BACKTEST].notna().to_numpy()
    assert untouched.sum() > 100
    np.testing.assert_array_equal(after[BACKTEST][untouched], before[BACKTEST][untouched])
    np.testing.assert_array_equal(after["plan_promo"][untouched], before["plan_promo"][untouched])
    # Origin M-2 forecasts M-1 with the revision: its plan and its forecasts did change.
    revised = (origins == MONTH - 2) & (pd.PeriodIndex(before[train.TARGET_MONTH], freq="M") == target)
    assert (after["plan_promo"][revised] == 1.0).all() and (before["plan_promo"][revised] < 1).any()
    assert not np.array_equal(after[BACKTEST][revised], before[BACKTEST][revised])

    # The model forecasts M+1..M+3 with the plans; a config without them may not use it.
    forecasts = forecast(snapshot, cheap, MONTH, models[-1])
    assert sorted(forecasts["horizon"].unique()) == [1, 2, 3] and np.isfinite(forecasts["prediction"]).all()
    raw.pop("plans")
    with pytest.raises(RuntimeError, match="reads known-future features .*plan_price"):
        forecast(snapshot, load_config(write_config(tmp_path / "no_plans", raw)), MONTH, models[-1])


def test_dominicks_promotions_stand_in_for_plans_made_a_month_ahead():
    from datetime import date, datetime

    from forecasting.datasets.dominicks import monthly_plans

    monthly = pd.DataFrame(
        {
            "store": [2, 2],
            "brand": [5, 5],
            "month": [date(1991, 1, 1), date(1991, 2, 1)],
            "units": [10.0, 20.0],
            "price": [2.5, 2.0],
            "deal": [0.0, 0.5],
            "feat": [0.25, 0.0],
        }
    )
    plans = monthly_plans(monthly)
    assert plans.columns.tolist() == ["store", "brand", "month", "price", "deal", "feat", "planned_at"]
    assert plans["planned_at"].tolist() == [datetime(1990, 12, 1), datetime(1991, 1, 1)]
    pd.testing.assert_frame_equal(plans.drop(columns="planned_at"), monthly.drop(columns="units"))
