"""The production profile on real servers, no mocks: publishing to PostgreSQL (COPY, atomic,
concurrent), the analyst role, the pipeline on PostgreSQL + Feast's SQL registry + Redis,
the example queries in sql/, the postgres init script, and docker-compose.yml.

Servers: PostgreSQL at FORECAST_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
a user that may create databases and roles) and Redis at FORECAST_TEST_REDIS (default
127.0.0.1:6379) in db FORECAST_TEST_REDIS_DB (default 15). A test whose server does not answer
is skipped, saying which. Every test works in databases of its own (forecast_test_<random>,
dropped afterwards, as are the roles it creates); in Redis, keys are namespaced by a random
Feast project and deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from forecasting.core.config import Config, ConfigError, load_config, parse_config
from forecasting.core.db import make_engine
from forecasting.core.months import month_start
from forecasting.publishing.postgres import grant_analyst_role, temporary_database
from forecasting.publishing.postgres import main as postgres_cli
from forecasting.publishing.publish import publish
from tests.helpers.paths import REPO
from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, feast_keys, query

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="forecast-tests-airflow-"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

KEYS = ["store_id", "item_id"]
MONTH = pd.Period("2024-10", "M")  # the production run's month; sales go on to 2024-12
EVALUATION = {
    "model": {"wape": 0.21},
    "best_baseline": "seasonal_naive",
    "baselines": {"seasonal_naive": {"wape": 0.3}},
}


# --- servers and throwaway databases ------------------------------------------------------


@pytest.fixture
def database(postgres_server) -> str:
    """A fresh database for one test, dropped afterwards; yields its URL."""
    with temporary_database(postgres_server) as url:
        yield url


def engine_for(url: str, **kwargs) -> sa.Engine:
    return sa.create_engine(url, **kwargs)


def run_sql_file(url: str, path: Path) -> pd.DataFrame:
    """A file of sql/ exactly as written (no bind parameters, no escaping)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(path.read_text())
            return pd.DataFrame(result.all(), columns=list(result.keys()))
    finally:
        engine.dispose()


# --- publish -------------------------------------------------------------------------------


def predictions_config(url: str, folder: Path, table: str = "forecasts") -> Config:
    raw = {
        "data_dir": str(folder / "data"),
        "source": {
            "url": "sqlite:///unused.db",
            "table": "sales",
            "entity_columns": KEYS,
            "time_column": "month",
            "target_column": "units",
        },
        "feature_store": {"project": "unused"},
        "predictions": {"url": url, "table": table},
    }
    return parse_config(raw, folder / "forecast.yaml")


def forecast_frame(
    month: pd.Period,
    *,
    stores: int = 20,
    items: int = 50,
    horizon: int = 3,
    value: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per store, item and horizon, as predict.forecast returns them."""
    grid = pd.MultiIndex.from_product(
        [
            np.arange(1, stores + 1, dtype=np.int64),
            np.arange(1, items + 1, dtype=np.int64),
            np.arange(1, horizon + 1),
        ],
        names=[*KEYS, "horizon"],
    ).to_frame(index=False)
    grid["forecast_month"] = [month_start(month + int(h)).date() for h in grid["horizon"]]
    rng = np.random.default_rng(seed)
    grid["prediction"] = value if value is not None else rng.gamma(2.0, 15.0, len(grid))
    return grid[[*KEYS, "forecast_month", "horizon", "prediction"]]


def read_month(url: str, month: pd.Period) -> pd.DataFrame:
    return query(
        url,
        "SELECT * FROM forecasts WHERE run_month = :m ORDER BY store_id, item_id, horizon",
        m=month_start(month).date(),
    )


def test_publish_copies_rows_in_and_republishing_a_month_leaves_identical_rows(database, tmp_path):
    config = predictions_config(database, tmp_path)
    assert make_engine(config.predictions.database).dialect.driver == "psycopg"  # so COPY is used
    frame = forecast_frame(MONTH, seed=1)
    created = datetime(2024, 11, 1, 3, 0, tzinfo=UTC)

    first = publish(
        frame, config, MONTH, model_version="v1", run_id="run-1", evaluation=EVALUATION, created_at=created
    )
    assert (first.rows, first.replaced) == (len(frame), 0)
    before = read_month(database, MONTH)
    assert len(before) == len(frame)
    landed = before[[*KEYS, "forecast_month", "horizon", "prediction"]]
    pd.testing.assert_frame_equal(
        landed.reset_index(drop=True), frame.reset_index(drop=True), check_dtype=False
    )
    assert set(before["model_version"]) == {"v1"} and set(before["run_id"]) == {"run-1"}
    assert (before["run_month"] == date(2024, 10, 1)).all()

    again = publish(
        frame, config, MONTH, model_version="v1", run_id="run-1", evaluation=EVALUATION, created_at=created
    )
    assert (again.rows, again.replaced) == (len(frame), len(frame))
    pd.testing.assert_frame_equal(read_month(database, MONTH), before)

    runs = query(database, "SELECT * FROM forecasts_runs")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (
        run["model_version"],
        run["forecasts"],
        run["holdout_wape"],
        run["best_baseline"],
        run["best_baseline_wape"],
    ) == ("v1", len(frame), 0.21, "seasonal_naive", 0.3)
    # The staging tables are gone with the transaction.
    assert query(database, "SELECT count(*) AS n FROM pg_class WHERE relname LIKE '_stage_%'")["n"][0] == 0


def test_latest_view_on_postgres_shows_the_newest_run_per_entity_and_month(database, tmp_path):
    config = predictions_config(database, tmp_path)
    earlier, later = MONTH - 1, MONTH
    publish(forecast_frame(later, value=2.0), config, later, model_version="later", run_id="r2")
    publish(
        forecast_frame(earlier, value=1.0), config, earlier, model_version="earlier", run_id="r1"
    )  # a backfill

    latest = query(database, "SELECT * FROM forecasts_latest")
    assert not latest.duplicated([*KEYS, "forecast_month"]).any()
    months = pd.to_datetime(latest["forecast_month"]).dt.to_period("M")
    # The earlier run alone forecasts its first month; every month the later run forecasts is its.
    assert set(latest.loc[months == earlier + 1, "model_version"]) == {"earlier"}
    assert set(latest.loc[months > earlier + 1, "model_version"]) == {"later"}
    assert len(latest) == 20 * 50 * 4  # entities x forecast months (Oct run: Nov-Jan; Sep run: Oct-Dec)


def _publish_together(config: Config, jobs: list[tuple[pd.Period, pd.DataFrame, str]]) -> list:
    """Start every publish at the same moment, each from its own thread."""
    barrier = threading.Barrier(len(jobs))

    def work(job):
        month, frame, version = job
        barrier.wait()
        return publish(frame, config, month, model_version=version, run_id=version)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(work, jobs))


def test_concurrent_publishes_of_different_months_both_land_complete(database, tmp_path):
    config = predictions_config(database, tmp_path)
    months = [MONTH - 1, MONTH]
    frames = {m: forecast_frame(m, stores=30, items=100, seed=i) for i, m in enumerate(months)}
    # First on an empty database, where both find the tables and the view missing and would
    # race to create them; then again with the schema in place (replacing both months).
    for round_ in ("fresh", "again"):
        results = _publish_together(config, [(m, frames[m], f"{round_}-{m}") for m in months])
        assert [r.rows for r in results] == [len(frames[m]) for m in months]
        for m in months:
            landed = read_month(database, m)
            assert len(landed) == len(frames[m])
            assert set(landed["model_version"]) == {f"{round_}-{m}"}
            assert np.allclose(landed["prediction"], frames[m]["prediction"])
        runs = query(
            database, "SELECT run_month, model_version, forecasts FROM forecasts_runs ORDER BY run_month"
        )
        assert list(runs["model_version"]) == [f"{round_}-{m}" for m in months]
        assert list(runs["forecasts"]) == [len(frames[m]) for m in months]


def test_concurrent_publishes_of_the_same_month_leave_exactly_one_of_them(database, tmp_path):
    config = predictions_config(database, tmp_path)
    frames = {"a": forecast_frame(MONTH, value=1.0), "b": forecast_frame(MONTH, value=2.0)}
    n = len(frames["a"])
    # On an empty database, then with the month already there (both replace it).
    for expected_replaced in ([0, n], [n, n]):
        results = _publish_together(config, [(MONTH, frames[v], v) for v in frames])
        assert sorted(r.replaced for r in results) == expected_replaced  # one after the other
        landed = read_month(database, MONTH)
        assert len(landed) == n and landed["model_version"].nunique() == 1
        version = landed["model_version"].iloc[0]
        assert (landed["prediction"] == frames[version]["prediction"].iloc[0]).all()
        assert query(database, "SELECT model_version FROM forecasts_runs")["model_version"].tolist() == [
            version
        ]


def test_a_reader_sees_the_old_month_or_the_new_one_never_a_mix(database, tmp_path):
    config = predictions_config(database, tmp_path)
    versions = {"old": 1.0, "new": 2.0}
    frames = {v: forecast_frame(MONTH, stores=40, items=100, value=x) for v, x in versions.items()}
    n = len(frames["old"])
    publish(frames["old"], config, MONTH, model_version="old", run_id="old")

    # One statement, one snapshot: the month's forecasts per version, and the runs row.
    poll = sa.text("""
        SELECT f.model_version, count(*) AS n, min(f.prediction) AS lo, max(f.prediction) AS hi,
               min(r.model_version) AS run_version, min(r.forecasts) AS run_forecasts
        FROM forecasts f LEFT JOIN forecasts_runs r ON r.run_month = f.run_month
        WHERE f.run_month = :m GROUP BY f.model_version""")
    observations: list[list[tuple]] = []
    done = threading.Event()
    failure: list[BaseException] = []

    def reader():
        engine = engine_for(database, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                while not done.is_set():
                    observations.append(
                        [tuple(r) for r in conn.execute(poll, {"m": month_start(MONTH).date()})]
                    )
        except BaseException as err:  # surfaced below
            failure.append(err)
        finally:
            engine.dispose()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            version = "new" if i % 2 == 0 else "old"
            publish(frames[version], config, MONTH, model_version=version, run_id=f"publish-{i}")
            time.sleep(0.05)
    finally:
        done.set()
        thread.join(timeout=60)
    assert not failure, failure
    assert len(observations) >= 10
    for seen in observations:
        assert len(seen) == 1, f"a mix of versions: {seen}"
        version, count, lo, hi, run_version, run_forecasts = seen[0]
        assert count == n, f"a partial month: {seen}"
        assert lo == hi == versions[version], seen
        assert (run_version, run_forecasts) == (version, n), f"runs row out of step: {seen}"
    assert {seen[0][0] for seen in observations} == {"old", "new"}  # it did watch the changes


# --- the analyst role ---------------------------------------------------------------------


@pytest.fixture
def analyst_role(database):
    role = f"forecast_test_analyst_{secrets.token_hex(4)}"
    yield role
    # Its grants and default privileges live in the test database (and on it): drop them there.
    engine = engine_for(database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
                conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
    finally:
        engine.dispose()


def test_analyst_role_reads_tables_and_views_but_cannot_change_them(
    database, tmp_path, analyst_role, monkeypatch
):
    import psycopg

    config = predictions_config(database, tmp_path)
    publish(forecast_frame(MONTH), config, MONTH, model_version="v1", run_id="r1", evaluation=EVALUATION)
    owner = engine_for(database)
    try:
        granted = grant_analyst_role(owner, analyst_role, password="analyst-test-password")
    finally:
        owner.dispose()
    # Every relation the publish made: the forecasts, their runs, drivers, the planners' overrides
    # and what each run did with them, and the views over them.
    assert sorted(granted) == [
        "forecasts",
        "forecasts_churn",
        "forecasts_drivers",
        "forecasts_latest",
        "forecasts_override_outcomes",
        "forecasts_overrides",
        "forecasts_revisions",
        "forecasts_runs",
    ]
    # Again, from the command line: idempotent.
    monkeypatch.setenv("FORECAST_TEST_ANALYST_PASSWORD", "analyst-test-password")
    assert (
        postgres_cli(
            [
                "grant-analyst",
                "--url",
                database,
                "--role",
                analyst_role,
                "--password-env",
                "FORECAST_TEST_ANALYST_PASSWORD",
            ]
        )
        == 0
    )

    # Tables created after the grant (another publish target) are readable too (default privileges).
    publish(
        forecast_frame(MONTH),
        predictions_config(database, tmp_path, table="forecasts_b"),
        MONTH,
        model_version="v1",
        run_id="r1",
    )

    analyst_url = sa.make_url(database).set(username=analyst_role, password="analyst-test-password")
    analyst = engine_for(analyst_url.render_as_string(hide_password=False))
    try:
        with analyst.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar() == analyst_role
            for relation in ("forecasts", "forecasts_runs", "forecasts_latest", "forecasts_b_latest"):
                assert conn.exec_driver_sql(f"SELECT count(*) FROM {relation}").scalar() > 0, relation
        server_version = int(query(database, "SHOW server_version_num")["server_version_num"][0])
        forbidden = [
            "INSERT INTO forecasts_runs (run_month, model_version, run_id, created_at, forecasts) "
            "VALUES ('2030-01-01', 'x', 'x', now(), 0)",
            "UPDATE forecasts SET prediction = 0",
            "DELETE FROM forecasts",
            "DELETE FROM forecasts_runs",
            "TRUNCATE forecasts",
            "DROP VIEW forecasts_latest",
            "DROP TABLE forecasts_runs",
            "DROP TABLE forecasts CASCADE",
            "ALTER TABLE forecasts ADD COLUMN x int",
            "SELECT * FROM forecasts FOR SHARE",  # row locks need UPDATE
            "SELECT * FROM forecasts_publish_lock",  # publish's lock rows are the pipeline's alone
        ]
        if server_version >= 150000:  # before 15, PUBLIC may create in schema public
            forbidden.append("CREATE TABLE analyst_scratch (x int)")
        for statement in forbidden:
            with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError) as info:
                conn.exec_driver_sql(statement)
            assert isinstance(info.value.orig, psycopg.errors.InsufficientPrivilege), statement
    finally:
        analyst.dispose()
    assert len(read_month(database, MONTH)) == len(forecast_frame(MONTH))  # all still there


def _connect_error(url: sa.URL, user: str, password: str, database: str) -> str | None:
    """None if ``user`` may connect to ``database`` (and is who the server says), else the server's error."""
    import psycopg

    try:
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=user,
            password=password,
            dbname=database,
            connect_timeout=10,
        ) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, database)
    except psycopg.OperationalError as err:
        return str(err)
    return None


def _database_acls(url: str) -> dict[str, str | None]:
    """The ACL of every database on the server but the tests' own."""
    acls = query(
        url, "SELECT datname, datacl::text AS acl FROM pg_database WHERE datname NOT LIKE 'forecast_test%'"
    )
    return dict(zip(acls["datname"], acls["acl"], strict=True))


def test_init_script_creates_databases_and_roles(postgres_server, tmp_path):
    """deploy/postgres/init.sh (+ init.sql), as the postgres container runs it, on the real server.

    The server's other databases (Airflow's metadata DB, the maintenance DB ``postgres``) are
    throwaway stand-ins here, passed in PRIVATE_DBS: init.sql closes them to all but their owners.
    """
    import psycopg

    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    url = sa.make_url(postgres_server)
    tag = secrets.token_hex(4)
    names = {
        "PREDICTIONS_DB": f"forecast_test_pred_{tag}",
        "FEAST_REGISTRY_DB": f"forecast_test_reg_{tag}",
        "FORECAST_DB_USER": f"forecast_test_writer_{tag}",
        "ANALYST_ROLE": f"forecast_test_reader_{tag}",
    }
    airflow_db, airflow_owner = f"forecast_test_airflow_{tag}", f"forecast_test_airflow_owner_{tag}"
    maintenance_db = f"forecast_test_maint_{tag}"  # stands in for "postgres"
    databases = [names["PREDICTIONS_DB"], names["FEAST_REGISTRY_DB"], airflow_db, maintenance_db]
    passwords = {
        names["FORECAST_DB_USER"]: "writer-pw",
        names["ANALYST_ROLE"]: "reader-pw",
        airflow_owner: "airflow-pw",
    }
    env = {
        **os.environ,
        **names,
        "FORECAST_DB_PASSWORD": passwords[names["FORECAST_DB_USER"]],
        "ANALYST_PASSWORD": passwords[names["ANALYST_ROLE"]],
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.database or "postgres",  # where psql connects; closed are PRIVATE_DBS only
        "PRIVATE_DBS": f"{airflow_db}, {maintenance_db}",
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
    }
    if url.password:
        env["PGPASSWORD"] = url.password
    admin = engine_for(postgres_server, isolation_level="AUTOCOMMIT")
    acls_before = _database_acls(postgres_server)

    def init() -> None:
        done = subprocess.run(
            ["bash", str(REPO / "deploy" / "postgres" / "init.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def connect_error(user: str, database: str) -> str | None:
        return _connect_error(url, user, passwords[user], database)

    def as_user(user: str, database: str) -> sa.Engine:
        return engine_for(
            url.set(username=user, password=passwords[user], database=database).render_as_string(False)
        )

    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"CREATE ROLE \"{airflow_owner}\" LOGIN PASSWORD '{passwords[airflow_owner]}'"
            )
            conn.exec_driver_sql(f'CREATE DATABASE "{airflow_db}" OWNER "{airflow_owner}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{maintenance_db}"')
        # PostgreSQL's default: every role may connect to a new database (the refusals below are init.sql's).
        assert connect_error(airflow_owner, maintenance_db) is None
        for _ in range(2):  # idempotent
            init()

        # CONNECT is checked whatever the authentication method (this server may trust everyone).
        refused = 'permission denied for database "{}"'
        allowed = {
            names["ANALYST_ROLE"]: {names["PREDICTIONS_DB"]},
            names["FORECAST_DB_USER"]: {names["PREDICTIONS_DB"], names["FEAST_REGISTRY_DB"]},
            airflow_owner: {airflow_db},
        }
        for user, may in allowed.items():
            for database in databases:
                error = connect_error(user, database)
                if database in may:
                    assert error is None, (user, database, error)
                else:
                    assert error is not None and refused.format(database) in error, (user, database, error)
                    assert "CONNECT privilege" in error, error

        # The pipeline creates its tables on its first publish; then init.sh may run again.
        writer = names["FORECAST_DB_USER"]
        writer_url = url.set(username=writer, password=passwords[writer], database=names["PREDICTIONS_DB"])
        config = predictions_config(writer_url.render_as_string(hide_password=False), tmp_path)
        publish(forecast_frame(MONTH, stores=3, items=4), config, MONTH, model_version="v1", run_id="r1")
        init()
        reader = as_user(names["ANALYST_ROLE"], names["PREDICTIONS_DB"])
        try:
            with reader.connect() as conn:
                for relation in ("forecasts", "forecasts_runs", "forecasts_latest"):
                    assert conn.exec_driver_sql(f"SELECT count(*) FROM {relation}").scalar() > 0, relation
            for statement in (
                "INSERT INTO forecasts_runs (run_month, model_version, run_id, created_at, forecasts) "
                "VALUES ('2030-01-01', 'x', 'x', now(), 0)",
                "CREATE TABLE mine (x int)",
                "SELECT * FROM forecasts_publish_lock",  # the pipeline's own
            ):
                with reader.connect() as conn, pytest.raises(sa.exc.ProgrammingError) as info:
                    conn.exec_driver_sql(statement)
                assert isinstance(info.value.orig, psycopg.errors.InsufficientPrivilege), statement
        finally:
            reader.dispose()
    finally:
        with admin.connect() as conn:
            for db in databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for role in (names["ANALYST_ROLE"], names["FORECAST_DB_USER"], airflow_owner):
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()
    # The server's own databases are as they were (init.sql closed only the stand-ins).
    acls_after = _database_acls(postgres_server)
    assert {d: acls_after[d] for d in acls_before if d in acls_after} == acls_before


# --- the pipeline on the production stack --------------------------------------------------


def production_env(data_dir: Path, source_url: str, registry_url: str) -> dict[str, str]:
    """What docker-compose.yml gives config/production.yaml, pointed at this test's servers."""
    return {
        "FORECAST_DATA_DIR": str(data_dir),
        "SOURCE_DB_URL": source_url,
        "FEAST_REGISTRY_URL": registry_url,
        "REDIS_HOST": REDIS_HOST,
        "REDIS_PORT": REDIS_PORT,
        "FEAST_REDIS_DB": str(REDIS_DB),
        "DASK_SCHEDULER": "",  # in-process, as docker-compose.yml's default
    }


def test_production_config_loads_with_its_environment(monkeypatch, tmp_path):
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistryConfig

    from forecasting.features import store

    registry = "postgresql+psycopg://forecast:secret@db:5432/feast_registry"
    for key, value in production_env(
        tmp_path / "data", "postgresql+psycopg://forecast:secret@db/sales", registry
    ).items():
        monkeypatch.setenv(key, value)
    config = load_config(REPO / "config" / "production.yaml")
    demo = load_config(REPO / "config" / "demo.yaml")
    assert config.source.entity_columns == demo.source.entity_columns == KEYS
    assert (config.source.time_column, config.source.target_column) == ("month", "units")
    assert config.source.database.url == "postgresql+psycopg://forecast:secret@db/sales"
    assert config.data_dir == tmp_path / "data"
    assert config.predictions.database.conn_id == "predictions_db"
    assert config.feature_store["registry"]["path"] == registry
    # Feast 0.67 itself accepts the settings: a SQL registry and a Redis online store.
    repo = store.repo_config(config)
    assert isinstance(repo.registry, SqlRegistryConfig) and repo.registry.cache_ttl_seconds == 60
    online = repo.online_store
    assert isinstance(online, RedisOnlineStoreConfig)
    assert online.connection_string == f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}"
    assert online.key_ttl_seconds and online.key_ttl_seconds > 0
    assert repo.offline_store.type == "duckdb"

    monkeypatch.delenv("FEAST_REGISTRY_URL")
    with pytest.raises(ConfigError, match="FEAST_REGISTRY_URL"):
        load_config(REPO / "config" / "production.yaml")


@pytest.fixture(scope="module")
def production_run(postgres_server, redis_client, tmp_path_factory):
    """config/production.yaml driving pipeline.run_month: sales and predictions in one PostgreSQL
    database (the predictions one reached through the Airflow connection predictions_db),
    Feast's SQL registry in another, the online store in Redis."""
    from forecasting.datasets.synthetic import generate_sales, seed_source_database
    from forecasting.orchestration import pipeline

    folder = tmp_path_factory.mktemp("production")
    project = f"forecast_test_{secrets.token_hex(4)}"
    with ExitStack() as stack:
        predictions_url = stack.enter_context(temporary_database(postgres_server))
        registry_url = stack.enter_context(
            temporary_database(postgres_server, prefix="forecast_test_registry")
        )
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        stack.callback(
            lambda: (
                feast_keys(redis_client, project) and redis_client.delete(*feast_keys(redis_client, project))
            )
        )
        for key, value in production_env(folder / "data", predictions_url, registry_url).items():
            patch.setenv(key, value)
        patch.setenv(
            "AIRFLOW_CONN_PREDICTIONS_DB",
            sa.make_url(predictions_url).set(drivername="postgresql").render_as_string(False),
        )

        sales = generate_sales(stores=4, items=10, months=36, end_month="2024-12", seed=11)
        seed_source_database(predictions_url, sales)
        path = REPO / "config" / "production.yaml"
        raw = yaml.safe_load(os.path.expandvars(path.read_text()))
        raw["feature_store"]["project"] = project  # its own keys in Redis
        raw.setdefault("model", {})["num_boost_round"] = 300
        config = parse_config(raw, path)
        results = pipeline.run_month(str(MONTH), "manual__production_test", config)
        # The October run's forecasts for November and December, scored with their actuals.
        from forecasting.data.extract import read_window
        from forecasting.monitoring.accuracy import realised_accuracy

        for later in (MONTH + 1, MONTH + 2):
            realised_accuracy(read_window(config, later), config, later, run_id="manual__monitoring_test")
        yield SimpleNamespace(
            config=config,
            results=results,
            sales=sales,
            project=project,
            predictions_url=predictions_url,
            registry_url=registry_url,
        )


@pytest.mark.slow
def test_pipeline_publishes_through_the_airflow_connection(production_run):
    run = production_run
    published = run.results["publish"]
    assert published["rows"] > 0
    assert sa.make_url(published["url"]).database == sa.make_url(run.predictions_url).database
    forecasts = read_month(run.predictions_url, MONTH)
    assert len(forecasts) == published["rows"] == run.results["predict"]["rows"]
    active = run.sales[pd.to_datetime(run.sales["month"]).dt.to_period("M") == MONTH]
    assert len(forecasts) == len(active) * run.config.horizon
    runs = query(run.predictions_url, "SELECT * FROM forecasts_runs")
    # What the gate chose (the model, or a blend with a baseline) made the published rows.
    assert runs["model_version"].tolist() == [run.results["evaluate"]["forecaster"]]
    assert runs["holdout_wape"].notna().all()


@pytest.mark.slow
def test_online_features_in_redis_equal_the_offline_features_of_the_month(production_run, redis_client):
    from forecasting.core import paths
    from forecasting.features import store
    from forecasting.features.catalogue import feature_names

    run = production_run
    offline = pd.read_parquet(paths.feature_table(run.config) / f"{MONTH}.parquet")
    assert run.results["register_features"]["materialized_entities"] == len(offline)
    online = store.online_features(run.config, offline[KEYS])
    offline[KEYS] = offline[KEYS].astype(str)
    online[KEYS] = online[KEYS].astype(str)
    merged = offline.merge(online, on=KEYS, suffixes=("_offline", "_online"), validate="one_to_one")
    assert len(merged) == len(offline)
    for name in feature_names(run.config):
        a, b = merged[f"{name}_offline"], merged[f"{name}_online"]
        if pd.api.types.is_numeric_dtype(a):
            assert np.allclose(a.astype(float), b.astype(float), equal_nan=True), name
        else:
            assert (a.astype(str) == b.astype(str)).all(), name
    # In Redis itself: one hash per entity in the test's db, expiring (key_ttl_seconds).
    keys = feast_keys(redis_client, run.project)
    assert len(keys) == len(offline)
    assert all(redis_client.ttl(k) > 0 for k in keys)


@pytest.mark.slow
def test_sql_registry_in_postgres_lists_the_feature_view_and_service(production_run):
    from forecasting.features import store

    run = production_run
    engine = engine_for(run.registry_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"projects", "entities", "feature_views", "feature_services", "data_sources"} <= tables
    views = query(
        run.registry_url, "SELECT feature_view_name FROM feature_views WHERE project_id = :p", p=run.project
    )
    services = query(
        run.registry_url,
        "SELECT feature_service_name FROM feature_services WHERE project_id = :p",
        p=run.project,
    )
    entities = query(
        run.registry_url, "SELECT entity_name FROM entities WHERE project_id = :p", p=run.project
    )
    assert views["feature_view_name"].tolist() == [store.FEATURE_VIEW]
    assert services["feature_service_name"].tolist() == [store.FEATURE_SERVICE]
    assert set(KEYS) <= set(entities["entity_name"])
    # ...and Feast reads them back from there.
    assert [v.name for v in store.feature_store(run.config).list_feature_views()] == [store.FEATURE_VIEW]


SQL_FILES = sorted((REPO / "sql").glob("*.sql"))
# The production profile has no plans, so no <table>_scenarios: that query runs against a
# scenarios run on PostgreSQL in test_scenarios.py instead.
PRODUCTION_SQL_FILES = [p for p in SQL_FILES if p.name != "scenario_uplift.sql"]


def test_there_are_example_queries():
    assert {p.name for p in SQL_FILES} >= {
        "latest_forecast_per_entity.sql",
        "store_month_forecast.sql",
        "forecast_vs_actual.sql",
        "model_quality_per_run.sql",
    }


@pytest.mark.parametrize("path", PRODUCTION_SQL_FILES, ids=[p.name for p in PRODUCTION_SQL_FILES])
@pytest.mark.slow
def test_example_query_runs_as_written(production_run, path):
    rows = run_sql_file(production_run.predictions_url, path)
    assert len(rows), f"{path.name} returned no rows"


@pytest.mark.slow
def test_forecast_vs_actual_matches_a_computation_in_pandas(production_run):
    run = production_run
    result = run_sql_file(run.predictions_url, REPO / "sql" / "forecast_vs_actual.sql")
    # Sales end in 2024-12: horizons 1 and 2 of the October run are over, 3 is not.
    assert result["horizon"].tolist() == [1, 2]
    forecasts = read_month(run.predictions_url, MONTH)
    sales = run.sales.assign(month=pd.to_datetime(run.sales["month"]).dt.date)
    joined = forecasts.merge(sales, how="left", left_on=[*KEYS, "forecast_month"], right_on=[*KEYS, "month"])
    joined["units"] = joined["units"].fillna(0)
    for h, row in result.set_index("horizon").iterrows():
        part = joined[joined["horizon"] == h]
        assert row["forecasts"] == len(part)
        assert row["actual_units"] == pytest.approx(part["units"].sum())
        wape = (part["prediction"] - part["units"]).abs().sum() / part["units"].sum()
        assert float(row["wape"]) == pytest.approx(wape, abs=1e-3)


# --- docker-compose.yml ---------------------------------------------------------------------

SERVING = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
AIRFLOW = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# Started only with `docker compose --profile dask`.
DASK = {"dask-scheduler", "dask-worker"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN", re.IGNORECASE)


def interpolate(text: str, env: dict[str, str], used: list[tuple[str, str | None, str]] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} (nested) and $$.

    ``used`` collects (name, default or None, default as written) of every variable read."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            name, op, rest = re.match(
                r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?]|)(.*)$", text[i + 2 : j - 1], re.S
            ).groups()
            default = interpolate(rest, env, used) if op in (":-", "-") else None
            if used is not None:
                used.append((name, default, rest))
            value = env.get(name)
            if op == ":-":
                value = value or default
            elif op == "-":
                value = default if value is None else value
            elif op in (":?", "?") and not value:
                raise KeyError(f"{name}: {rest}")
            out.append(value or "")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def strings(node, path=()):
    """(path, value) of every string value in parsed YAML; a path ends with the value's key."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, (*path, i))
    elif isinstance(node, str):
        yield path, node


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example: {line!r}"
            assert " #" not in value, f".env.example: keep comments on their own line: {line!r}"
            values[name] = value
    return values


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_services_images_healthchecks_and_dependencies(compose):
    services = compose["services"]
    assert set(services) == SERVING | DASK | {"airflow-init"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict) and spec.get("condition") in (
                "service_healthy",
                "service_completed_successfully",
            ), f"{name} -> {dependency}"
            expected = "service_completed_successfully" if dependency == "airflow-init" else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dependency}"
            if expected == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    for name in SERVING:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    # One image for every Airflow service, built from the repo's Dockerfile.
    assert {services[n]["image"] for n in AIRFLOW} == {compose["x-airflow-common"]["image"]}
    assert all(services[n]["build"]["context"] == "." for n in AIRFLOW)
    assert services["airflow-init"].get("restart") == "no"
    assert set(services["airflow-init"]["depends_on"]) == {"postgres", "redis"}
    for name in AIRFLOW - {"airflow-init"}:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert {"postgres", "redis"} <= set(deps), name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    # Workers scale with --scale: nothing that would clash between replicas.
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert [interpolate(p, {}) for p in services["airflow-apiserver"]["ports"]] == ["8080:8080"]
    assert (
        "airflow" in services["airflow-apiserver"]["command"]
        and "api-server" in services["airflow-apiserver"]["command"]
    )
    assert services["airflow-worker"]["command"] == ["airflow", "celery", "worker"]


def test_compose_dask_profile(compose):
    """`docker compose --profile dask up` adds a Dask scheduler and scalable workers; without the
    profile they do not start and every stage works in-process (DASK_SCHEDULER empty)."""
    services = compose["services"]
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    for name in DASK:
        assert services[name]["profiles"] == ["dask"], name
        assert services[name]["image"] == compose["x-airflow-common"]["image"], name  # the same image
        assert services[name]["healthcheck"]["test"], name
    assert all("profiles" not in services[name] for name in SERVING | {"airflow-init"})
    assert scheduler["command"][:2] == ["dask", "scheduler"] and "8786" in scheduler["command"]
    command = [interpolate(str(part), {}) for part in worker["command"]]
    assert command[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert command[command.index("--preload") + 1] == "forecasting.orchestration.dask_worker"
    assert worker["depends_on"] == {"dask-scheduler": {"condition": "service_healthy"}}
    assert "container_name" not in worker and "ports" not in worker  # --scale dask-worker=N
    # Workers see what the tasks see: the forecast settings and the shared files.
    data_dir = environment(services["airflow-worker"])["FORECAST_DATA_DIR"]
    assert f"forecast-data:{data_dir}" in worker["volumes"]
    assert environment(worker) == environment(services["airflow-worker"])
    assert interpolate(environment(services["airflow-worker"])["DASK_SCHEDULER"], {}) == ""
    raw = yaml.safe_load((REPO / "config" / "production.yaml").read_text())
    assert raw["compute"] == {"dask_scheduler": "${DASK_SCHEDULER}"}


def test_compose_dask_commands_run_natively_and_answer_their_healthchecks(tmp_path):
    """The scheduler and worker commands of docker-compose.yml, started here as they are there
    (host names and ports mapped to this machine), answer their healthchecks and run a task."""
    import urllib.request

    from dask.distributed import Client

    from forecasting.orchestration.dask_worker import WORKER_MODULES
    from forecasting.orchestration.localrun import free_ports

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]

    scheduler, dashboard, worker_dashboard = free_ports(3)
    ports = {"8786": str(scheduler), ":8787": f":{dashboard}", ":8789": f":{worker_dashboard}"}
    bin_dir = Path(sys.executable).parent

    def command(name: str) -> list[str]:
        parts = [interpolate(str(p), {}) for p in services[name]["command"]]
        parts = [
            ports.get(p, p).replace("tcp://dask-scheduler:8786", f"tcp://127.0.0.1:{ports['8786']}")
            for p in parts
        ]
        return [str(bin_dir / parts[0]), *parts[1:], "--host", "127.0.0.1"]

    def healthy(name: str, port: str) -> bool:
        """The service's healthcheck URL (localhost<port>/health), on the port mapped here."""
        assert f"localhost{port}/health" in services[name]["healthcheck"]["test"][-1]
        url = f"http://127.0.0.1{ports[port]}/health"
        try:
            return urllib.request.urlopen(url, timeout=5).status == 200
        except OSError:
            return False

    started = []
    try:
        for name in ("dask-scheduler", "dask-worker"):
            log = open(tmp_path / f"{name}.log", "wb")
            started.append(
                subprocess.Popen(command(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        deadline = time.monotonic() + 120
        while not (healthy("dask-scheduler", ":8787") and healthy("dask-worker", ":8789")):
            assert time.monotonic() < deadline, (tmp_path / "dask-worker.log").read_text()[-2000:]
            assert all(p.poll() is None for p in started), (tmp_path / "dask-scheduler.log").read_text()[
                -2000:
            ]
            time.sleep(1)
        with Client(f"tcp://127.0.0.1:{ports['8786']}", timeout="30s") as client:
            # The worker joined with the stages' modules imported (its --preload), before any task.
            names = WORKER_MODULES
            not_loaded = client.run(lambda: [name for name in names if name not in sys.modules])
            assert list(not_loaded.values()) == [[]]
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            assert len(client.scheduler_info()["workers"]) == 1
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            process.wait(30)


def test_compose_volumes_are_named_and_shared(compose):
    services, volumes = compose["services"], set(compose["volumes"])
    assert {"postgres-data", "redis-data", "forecast-data"} <= volumes
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes or source.startswith("./"), f"{name}: {mount}"
    data_dir = environment(services["airflow-worker"])["FORECAST_DATA_DIR"]
    for name in AIRFLOW:  # every worker (and the rest) sees the same forecast files
        assert f"forecast-data:{data_dir}" in services[name]["volumes"], name
    assert any(m.startswith("postgres-data:") for m in services["postgres"]["volumes"])
    assert any(m.startswith("redis-data:") for m in services["redis"]["volumes"])
    for mount in services["postgres"]["volumes"]:
        source = mount.split(":")[0]
        assert not source.startswith("./") or (REPO / source).is_file(), mount


def test_compose_airflow_settings(compose):
    from airflow.configuration import conf

    defaults = env_example()
    known = conf.configuration_description
    deprecated = {(section, key) for section, key, _ in conf.deprecated_options.values()}
    envs = {name: environment(compose["services"][name]) for name in AIRFLOW}
    first = envs["airflow-worker"]
    for name, env in envs.items():
        resolved = {k: interpolate(v, defaults) for k, v in env.items()}
        assert resolved["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert resolved["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/"), name
        assert resolved["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
        assert resolved["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert (
            resolved["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        )
        assert resolved["FORECAST_CONFIG"] == "/opt/airflow/config/production.yaml"
        assert resolved["AIRFLOW_CONN_PREDICTIONS_DB"].startswith("postgresql://")
        # What the api-server signs, the workers must verify: the same secrets everywhere.
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
            assert env[key] == first[key], (name, key)
        for key in env:
            if key.startswith("AIRFLOW__"):
                section, option = (part.lower() for part in key.split("__")[1:3])
                assert option in known.get(section, {}).get("options", {}), f"unknown Airflow option {key}"
                assert (section, option) not in deprecated, f"deprecated Airflow option {key}"
    assert (REPO / "config" / "production.yaml").is_file()
    # The Celery executor lives in a provider the image must install.
    assert "apache-airflow-providers-celery==" in (REPO / "requirements.lock").read_text()


def test_compose_takes_credentials_only_from_the_environment(compose):
    defaults = env_example()
    used: list[tuple[str, str | None, str]] = []
    for path, value in strings(compose):
        stripped = re.sub(r"\$\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "", value)  # the container's own $VARs
        interpolate(stripped, {}, used)
        literal = interpolate(stripped, {name: f"<{name}>" for name in defaults})
        key = str(path[-1])
        # A setting named like a secret is all ${VAR...}; so is the userinfo of any URL.
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            assert re.fullmatch(r"(<[A-Z0-9_]+>)*", literal), f"{'.'.join(map(str, path))}: literal secret"
        for userinfo in re.findall(r"://([^/@\s]*)@", literal):
            assert re.fullmatch(r"(<[A-Z0-9_]+>|:)*", userinfo), f"{'.'.join(map(str, path))}: credentials"
        assert not re.search(r"(password|secret|fernet)\w*\s*[=:]\s*[^<\s$]", literal, re.IGNORECASE), (
            f"{'.'.join(map(str, path))}: {value}"
        )
    names = {name for name, _, _ in used}
    assert names, "docker-compose.yml reads nothing from .env?"
    missing = sorted(names - set(defaults))
    assert not missing, f".env.example does not document: {missing}"
    unused = sorted(set(defaults) - names)
    assert not unused, f".env.example documents variables docker-compose.yml does not use: {unused}"
    # Every fallback is the dev default that .env.example documents, written out (older
    # compose versions do not expand a ${VAR} inside a default).
    for name, default, written in used:
        if default is not None:
            assert "${" not in written, f"nested variable in the default of {name}: {written}"
            assert default == defaults[name], (
                f"${{{name}:-{default}}} but .env.example says {defaults[name]!r}"
            )
    assert ".env" in (REPO / ".gitignore").read_text().split()  # the real one stays out of git


def test_dockerfile_builds_one_image_from_the_repo():
    text = (REPO / "Dockerfile").read_text()
    # python:3.11-slim by default; the base is a build argument (a mirror, a pinned digest).
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim\b", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "requirements.lock" in text and re.search(r"pip install --no-deps -e \.", text)
    assert "requirements-dev" not in text  # no test or dev tools in the production image
    for folder in ("dags", "include", "plugins", "feature_repo", "config"):
        assert re.search(rf"^COPY {folder}/ {folder}/$", text, re.M), folder
        assert (REPO / folder).is_dir() and any((REPO / folder).iterdir()), f"{folder}/ is empty: COPY fails"
    assert re.search(r"^USER airflow$", text, re.M)
    init = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["airflow-init"]["command"]
    script = init[-1].removeprefix("/opt/airflow/")
    assert (REPO / script).is_file() and f"COPY {Path(script).parent}/" in text
    for path in (REPO / script, REPO / "deploy" / "postgres" / "init.sh"):
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, path
    assert ".venv" in (REPO / ".dockerignore").read_text().split()


def test_compose_cli_accepts_the_file():
    """`docker compose config` validates the file, alone and with the host-network override of
    the compose-stack test (Docker Compose installed by scripts/ensure_docker.sh if missing)."""
    from tests.helpers import docker_stack

    try:
        docker_stack.ensure_docker()
    except docker_stack.DockerUnavailable as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Docker Compose here: {err} (the parsing tests above still ran)")
    hostnet = {
        name: "1"
        for name in re.findall(
            r"\$\{(HOSTNET_[A-Z_]+):\?", (REPO / "deploy" / "compose.hostnet.yml").read_text()
        )
    }
    for files in (["docker-compose.yml"], ["docker-compose.yml", "deploy/compose.hostnet.yml"]):
        done = subprocess.run(
            [
                "docker",
                "compose",
                "--env-file",
                ".env.example",
                *[f"--file={f}" for f in files],
                "config",
                "-q",
            ],
            cwd=REPO,
            env={**os.environ, **docker_stack.DOCKER_ENV, **hostnet},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (files, done.stderr)
