"""Training rows get the features known at their forecast origin, never later ones (no leakage).

Runs the real Feast point-in-time join (SQLite registry) that training uses, on each offline store
a deployment may configure: DuckDB (the configs' choice) and ``file`` (Feast's dask store). The
feature files are float32, as ``features.build_features`` writes them.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers.config import END_MONTH, demo_config_dict, write_config
from tests.helpers.paths import REPO

MONTH = pd.Period(END_MONTH, "M")
SENTINEL = -999.0
OFFLINE_STORES = ("duckdb", "file")
# Each offline store as a fixture's param: Feast's ``file`` store joins the whole panel in Dask,
# tens of seconds a test where DuckDB takes one or two, so its tests are slow.
STORE_PARAMS = ["duckdb", pytest.param("file", marks=pytest.mark.slow)]
KEYS = ["store_id", "item_id"]


def test_every_config_uses_an_offline_store_tested_here():
    for path in sorted((REPO / "config").glob("*.yaml")):
        store = yaml.safe_load(path.read_text())["feature_store"].get("offline_store", {"type": "dask"})
        assert {"dask": "file"}.get(store["type"], store["type"]) in OFFLINE_STORES, path.name


def as_float32(folder: Path) -> None:
    """Numeric feature columns as float32, as features.build_features writes them."""
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        schema = pa.schema(
            [f.with_type(pa.float32()) if pa.types.is_float64(f.type) else f for f in table.schema],
            metadata=table.schema.metadata,
        )
        if schema != table.schema:
            pq.write_table(table.cast(schema), path)


@pytest.fixture(params=STORE_PARAMS)
def deployment(request, tmp_path, synthetic_sales, monkeypatch):
    """conftest's deployment, with Feast's offline store set to each store in turn."""
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database

    raw = demo_config_dict(tmp_path)
    raw["feature_store"]["offline_store"] = {"type": request.param}
    path = write_config(tmp_path, raw)
    config = load_config(path)
    seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    return config


@pytest.fixture
def applied(deployment):
    from forecasting.core import paths
    from forecasting.data import extract
    from forecasting.features import catalogue as features
    from forecasting.features import store

    snapshot = extract.read_window(deployment, MONTH)
    features.build_features(snapshot, deployment, MONTH)
    as_float32(paths.feature_table(deployment))
    store.apply(deployment)
    assert store.offline_store_type(deployment) == deployment.feature_store["offline_store"]["type"]
    return deployment, snapshot


def test_training_rows_carry_the_features_of_their_origin(applied):
    from forecasting.modeling import train

    config, snapshot = applied
    frame = train.training_set(snapshot, config, MONTH)
    assert len(frame) > 1000 and set(frame[train.HORIZON]) == {1, 2, 3}

    sales = snapshot.assign(origin_month=snapshot["month"].dt.to_period("M").astype(str))
    sales[KEYS] = sales[KEYS].astype(str)
    joined = frame.merge(
        sales[[*KEYS, "origin_month", "units"]],
        on=[*KEYS, "origin_month"],
        how="left",
    )
    # lag 1 is the origin month's own sales (0 where the entity had no row that month) ...
    np.testing.assert_allclose(joined["sales_lag_1"], joined["units"].fillna(0.0))
    # ... and the label is a later month's: the feature and the label never come from one row.
    later = pd.PeriodIndex(frame[train.TARGET_MONTH], freq="M") > pd.PeriodIndex(
        frame[train.ORIGIN], freq="M"
    )
    assert later.all()


def test_a_feature_stamped_after_the_origin_never_reaches_a_training_row(applied):
    from forecasting.core import paths
    from forecasting.features import store
    from forecasting.features.catalogue import CREATED, TIMESTAMP
    from forecasting.modeling import train

    config, snapshot = applied
    folder = paths.feature_table(config)
    # A restatement of month t's features with sentinel values, stamped mid-way through t+1:
    # later than every training row whose origin is t, earlier than those whose origin is t+1.
    month = MONTH - 4
    late = pd.read_parquet(folder / f"{month}.parquet")
    late["sales_lag_1"] = SENTINEL
    late[TIMESTAMP] = late[TIMESTAMP] + pd.Timedelta(days=15)
    late[CREATED] = late[TIMESTAMP]
    paths.write_parquet_atomically(late, folder / f"{month}-late-restatement.parquet")

    frame = train.training_set(snapshot, config, MONTH)
    assert (pd.PeriodIndex(frame[train.ORIGIN], freq="M") == month).sum() > 0
    assert not (frame["sales_lag_1"] == SENTINEL).any()

    # Feast does serve the restated values to a row stamped after them: the file was read.
    probe = late[KEYS].head(5).assign(**{TIMESTAMP: late[TIMESTAMP].iloc[0] + pd.Timedelta(hours=1)})
    assert (store.historical_features(config, probe)["sales_lag_1"] == SENTINEL).all()


def offline_table(config) -> pd.DataFrame:
    from forecasting.features import store

    return pd.concat([pd.read_parquet(p) for p in store.feature_files(config)], ignore_index=True)


def expected_features(rows: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The point-in-time join by hand: per row, the entity's latest feature row stamped at or
    before the row's timestamp and no more than the TTL before it (else nulls)."""
    from forecasting.features.catalogue import TIMESTAMP
    from forecasting.features.store import FEATURE_TTL

    right = table[[*KEYS, TIMESTAMP, *names]].rename(columns={TIMESTAMP: "_stamp"})
    right["_stamp"] = right["_stamp"].astype(rows[TIMESTAMP].dtype)  # µs or ns: merge_asof wants one
    return pd.merge_asof(
        rows.sort_values(TIMESTAMP),
        right.sort_values("_stamp"),
        left_on=TIMESTAMP,
        right_on="_stamp",
        by=KEYS,
        tolerance=pd.Timedelta(FEATURE_TTL),
        direction="backward",
        allow_exact_matches=True,
    ).drop(columns="_stamp")


def test_extra_columns_come_back_unchanged_and_every_row_exactly_once(applied):
    from forecasting.core import paths
    from forecasting.core.months import month_end
    from forecasting.features import store
    from forecasting.features.catalogue import TIMESTAMP, feature_names

    config, _ = applied
    table = offline_table(config)
    names = feature_names(config)
    last = table[table[TIMESTAMP] == table[TIMESTAMP].max()]
    entities = last[KEYS].drop_duplicates().head(20).reset_index(drop=True)
    newest = month_end(MONTH).tz_localize("UTC")
    stamps = [
        newest,  # the newest month's own features (stamped exactly then)
        newest + pd.Timedelta(hours=1),
        newest + pd.Timedelta(days=35),  # within the 40-day TTL: still the newest month's
        newest + pd.Timedelta(days=45),  # beyond it: nulls, though the entity has older rows
        month_end(MONTH - 6).tz_localize("UTC"),
        pd.Timestamp("2000-01-01", tz="UTC"),  # before any feature row
    ]
    rows = entities.merge(pd.DataFrame({TIMESTAMP: stamps}), how="cross")
    unknown = pd.DataFrame({"store_id": ["no-such-store"], "item_id": ["x"], TIMESTAMP: [newest]})
    # Every (entity, timestamp) twice, as training asks for several horizons of one origin.
    rows = pd.concat([rows, rows, unknown], ignore_index=True)
    rng = np.random.default_rng(3)
    rows = rows.sample(frac=1.0, random_state=5).reset_index(drop=True)
    rows["_row"] = rng.choice(np.arange(10**12, 10**12 + 10**6), size=len(rows), replace=False)
    before = rows.copy()
    # A half-written feature file (paths.write_parquet_atomically's temp file) is not read.
    (paths.feature_table(config) / ".tmp-half-written.parquet").write_bytes(b"PAR1 not yet")

    result = store.historical_features(config, rows)

    pd.testing.assert_frame_equal(rows, before)  # the caller's frame is left alone
    assert len(result) == len(rows)
    assert result["_row"].dtype == np.int64
    assert result[TIMESTAMP].dtype == rows[TIMESTAMP].dtype
    assert sorted(result["_row"]) == sorted(rows["_row"])  # each row exactly once
    assert list(result.columns[: len(rows.columns)]) == list(rows.columns)
    assert set(result.columns) == {*rows.columns, *names}
    got = result.set_index("_row").loc[rows["_row"]].reset_index()
    pd.testing.assert_frame_equal(got[KEYS], rows[KEYS])
    assert (got[TIMESTAMP] == rows[TIMESTAMP]).all()

    # float32 stays float32 (Feast's schema says Float32), text stays text.
    float32 = [n for n in names if table[n].dtype == np.float32]
    assert float32 and all(result[n].dtype == np.float32 for n in float32)
    view = store.feature_store(config).get_feature_view(store.FEATURE_VIEW)
    assert {f.name: str(f.dtype) for f in view.features}["sales_lag_1"] == "Float32"

    expected = expected_features(rows, table, names).set_index("_row").loc[rows["_row"]].reset_index()
    for name in names:
        a, b = got[name], expected[name]
        if name in float32:
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=name)
        else:
            assert (a.isna() == b.isna()).all() and (a[a.notna()] == b[b.notna()]).all(), name
    # The cases above all occurred: values within the TTL, and nulls of each kind.
    lag = got.set_index(TIMESTAMP)["sales_lag_1"]
    assert lag.loc[newest + pd.Timedelta(days=35)].notna().all()
    assert lag.loc[newest + pd.Timedelta(days=45)].isna().all()
    assert lag.loc[pd.Timestamp("2000-01-01", tz="UTC")].isna().all()
    assert got.loc[got["store_id"] == "no-such-store", "sales_lag_1"].isna().all()


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_materialized_online_features_equal_the_offline_ones(applied, online, request, tmp_path):
    """apply + materialize + online_features on each offline store, into SQLite and Redis: the
    newest month's float32 values arrive unchanged."""
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.features import store
    from forecasting.features.catalogue import feature_names

    config, _ = applied
    if online == "redis":
        from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, feast_keys

        client = request.getfixturevalue("redis_client")  # skips when Redis does not answer
        project = f"pit_test_{secrets.token_hex(4)}"
        raw = yaml.safe_load(Path(config.path).read_text())
        raw["feature_store"]["project"] = project
        raw["feature_store"]["online_store"] = {
            "type": "redis",
            "connection_string": f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}",
        }
        config = load_config(write_config(tmp_path / "redis", raw))
        request.addfinalizer(lambda: [client.delete(k) for k in feast_keys(client, project)])
        store.apply(config)

    offline = pd.read_parquet(paths.feature_table(config) / f"{MONTH}.parquet")
    assert store.materialize(config, MONTH) == len(offline)
    online_values = store.online_features(config, offline[KEYS])
    merged = offline.merge(online_values, on=KEYS, suffixes=("", "_online"), validate="one_to_one")
    assert len(merged) == len(offline)
    for name in feature_names(config):
        a, b = merged[name], merged[f"{name}_online"]
        if a.dtype == np.float32:
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(dtype=np.float32), err_msg=name)
        else:
            assert (a.isna() == b.isna()).all() and (a[a.notna()] == b[b.notna()]).all(), name


def test_nanosecond_timestamps_are_refused_by_name_where_duckdb_cannot_materialize_them(applied):
    """Feast's DuckDB store casts the stamps to a naive TIMESTAMP to materialize, which DuckDB
    cannot do from nanoseconds (pandas' default unit); the dask store can."""
    from forecasting.features import store
    from forecasting.features.catalogue import CREATED, TIMESTAMP

    config, _ = applied
    first = store.feature_files(config)[0]
    table = pq.read_table(first)
    for column in (TIMESTAMP, CREATED):
        i = table.schema.get_field_index(column)
        table = table.set_column(i, column, table[column].cast(pa.timestamp("ns", tz="UTC")))
    pq.write_table(table, first)
    if store.offline_store_type(config) == "duckdb":
        with pytest.raises(ValueError, match="nanoseconds"):
            store.materialize(config, MONTH)
    else:
        assert store.materialize(config, MONTH) > 0


# --------------------------------------------------------------------------------- plans


@pytest.fixture(params=STORE_PARAMS)
def planned(request, tmp_path, synthetic_sales):
    """A deployment with plans (``plans:``) on each offline store: the sales features and the
    plans known at the end of M in the offline tables, the definitions applied."""
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.data import extract
    from forecasting.datasets.synthetic import seed_source_database
    from forecasting.datasets.synthetic_plans import generate_plans, seed_plans_table
    from forecasting.features import catalogue as features
    from forecasting.features import plans, store

    raw = demo_config_dict(tmp_path)
    raw["feature_store"]["offline_store"] = {"type": request.param}
    raw["plans"] = {"table": "sales_plans", "covariates": ["price", "promo"]}
    config = load_config(write_config(tmp_path, raw))
    seed_source_database(config.source.database.url, synthetic_sales, table=config.source.table)
    seed_plans_table(config.source.database.url, generate_plans(synthetic_sales, horizon=config.horizon))
    snapshot = extract.read_window(config, MONTH)
    features.build_features(snapshot, config, MONTH)
    as_float32(paths.feature_table(config))
    plans.write_plan_features(extract.read_plans(config, MONTH), config, MONTH)
    store.apply(config)
    return config, snapshot


def test_a_plan_revised_after_the_origin_never_reaches_the_origins_row(planned):
    """A revision of the plan for month o + 2, made in the middle of o + 1: the rows of origin o
    (horizon 2) keep the plan as it stood at the end of o; those of origin o + 1 (horizon 1)
    get the revision."""
    from forecasting.core import paths
    from forecasting.core.months import month_end
    from forecasting.features import dataset, plans, store
    from forecasting.features.catalogue import CREATED, TIMESTAMP
    from forecasting.modeling import train

    config, snapshot = planned
    origin = MONTH - 6
    target = origin + 2
    path = paths.plan_table(config) / f"{target}.parquet"
    table = pd.read_parquet(path)
    before = train.training_set(snapshot, config, MONTH)
    revision = table.drop_duplicates(KEYS).assign(plan_price=np.float32(SENTINEL))
    revision[TIMESTAMP] = month_end(origin).tz_localize("UTC") + pd.Timedelta(days=15)
    revision[CREATED] = revision[TIMESTAMP]
    paths.write_parquet_atomically(pd.concat([table, revision], ignore_index=True), path)

    after = train.training_set(snapshot, config, MONTH)
    is_target = after[dataset.TARGET_MONTH] == str(target)
    of_origin = is_target & (after[dataset.ORIGIN] == str(origin))
    assert of_origin.sum() > 50 and not (after.loc[of_origin, "plan_price"] == SENTINEL).any()
    # Nothing the revision should not reach changed at all ...
    untouched = ~(is_target & (after[dataset.ORIGIN] == str(origin + 1)))
    pd.testing.assert_frame_equal(after[untouched], before[untouched])
    # ... and the revision was read: origin o + 1's rows for month o + 2 have it.
    assert (after.loc[is_target & ~untouched, "plan_price"] == SENTINEL).all()

    # Feast hands the revision to a row stamped after it, and the earlier plan to one before it.
    probe = revision[KEYS].head(3).assign(**{plans.PLAN_MONTH: str(target)})
    late = probe.assign(**{TIMESTAMP: revision[TIMESTAMP].iloc[0] + pd.Timedelta(hours=1)})
    early = probe.assign(**{TIMESTAMP: revision[TIMESTAMP].iloc[0] - pd.Timedelta(hours=1)})
    assert (store.plan_features(config, late)["plan_price"] == SENTINEL).all()
    assert (store.plan_features(config, early)["plan_price"] != SENTINEL).all()


def test_an_unordered_answer_is_put_back_in_order_and_a_lost_or_doubled_row_is_refused(applied, monkeypatch):
    """``retrieve_unordered`` (what train uses: one reordering instead of two): taken by its
    positions, Feast's answer is each pair's own features (as computed from the panel); an answer
    with a row missing or twice is an error, never a misalignment. One real retrieval."""
    from forecasting.data.panel import build_panel
    from forecasting.features import dataset, store
    from forecasting.features.catalogue import feature_arrays

    config, snapshot = applied
    panel = build_panel(snapshot, config, sales_only=True)
    rows = dataset.labelled(panel, config, MONTH)
    entity, origin, _ = dataset.pairs(rows)
    entity, origin = entity[::20], origin[::20]  # a few hundred pairs of every origin: enough here
    answers = []
    real = store.historical_features
    monkeypatch.setattr(store, "historical_features", lambda c, r: answers.append(real(c, r)) or answers[-1])
    features, position = dataset.retrieve_unordered(config, panel, entity, origin)
    assert sorted(position.tolist()) == list(range(len(entity)))
    ordered = features.take(position)
    # What the feature file holds for each pair: its entity's features at its origin month.
    arrays = feature_arrays(build_panel(snapshot, config), config)  # the same entities, in order
    for name in ("sales_lag_1", "sales_lag_12", "sales_mean_3"):
        expected = arrays.values[name][entity, origin - panel.first_month]
        np.testing.assert_allclose(ordered[name].to_numpy(float), expected, rtol=1e-6)

    for broken in (lambda f: f.iloc[1:], lambda f: pd.concat([f.iloc[:1], f.iloc[:-1]])):
        monkeypatch.setattr(store, "historical_features", lambda c, r, b=broken: b(answers[0]))
        with pytest.raises(RuntimeError, match=f"Feast returned .* rows for {len(entity)} entity rows"):
            dataset.retrieve_unordered(config, panel, entity, origin)
