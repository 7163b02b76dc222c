"""No password reaches the disk or the logs.

One whole DAG run (Airflow's dag.test) of the production profile, config/production.yaml with
its ${VAR}s (Feast's SQL registry on PostgreSQL, the Redis online store), where the URLs of the
source, the predictions database and the Feast registry all carry one distinctive password
(the test server trusts local connections, so the password is accepted and ignored). Afterwards
no file under data_dir (parquet, JSON, HTML, YAML, models, whatever the run wrote), no line of
the task logs and no row of Feast's registry holds it; feature_store.yaml keeps
${FEAST_REGISTRY_URL} (only its owner may read it), and Feast and its CLI still read it.

Servers as in test_production.py; the databases (forecast_test_*) are dropped afterwards and
the Feast keys in Redis (a random project) deleted.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pendulum
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from forecasting.publishing.postgres import temporary_database
from tests.e2e.test_local_run import TASKS
from tests.helpers.paths import REPO
from tests.helpers.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, feast_keys

PASSWORD = f"Pw{secrets.token_hex(10)}Leak"  # URL-safe, and nothing else on disk looks like it
LOGICAL_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")  # M = 2024-12, the synthetic sales' last month


def with_password(url: str) -> str:
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def run_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "monthly_forecast.py")).dags["monthly_forecast"]
    return dag.test(logical_date=LOGICAL_DATE)


@pytest.fixture
def secret_deployment(tmp_path, postgres_server, redis_client, synthetic_sales, monkeypatch):
    """config/production.yaml (predictions by url:), every URL with PASSWORD, env as compose sets it."""
    from forecasting.datasets.synthetic import seed_source_database

    project = f"forecast_test_{secrets.token_hex(4)}"
    with ExitStack() as stack:
        urls = {
            name: with_password(
                stack.enter_context(temporary_database(postgres_server, prefix=f"forecast_test_{name}"))
            )
            for name in ("source", "predictions", "registry")
        }
        stack.callback(lambda: (keys := feast_keys(redis_client, project)) and redis_client.delete(*keys))
        seed_source_database(urls["source"], synthetic_sales)

        raw = yaml.safe_load((REPO / "config" / "production.yaml").read_text())
        assert raw["source"]["url"] == "${SOURCE_DB_URL}"
        assert raw["feature_store"]["registry"]["path"] == "${FEAST_REGISTRY_URL}"
        raw["predictions"] = {"url": "${PREDICTIONS_DB_URL}", "table": "forecasts"}
        raw["feature_store"]["project"] = project
        raw.setdefault("model", {})["num_boost_round"] = 300
        path = tmp_path / "conf" / "forecast.yaml"  # outside data_dir: it holds ${VAR}s only
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert PASSWORD not in path.read_text()

        env = {
            "FORECAST_CONFIG": str(path),
            "FORECAST_DATA_DIR": str(tmp_path / "data"),
            "SOURCE_DB_URL": urls["source"],
            "PREDICTIONS_DB_URL": urls["predictions"],
            "FEAST_REGISTRY_URL": urls["registry"],
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PORT": REDIS_PORT,
            "FEAST_REDIS_DB": str(REDIS_DB),
            "DASK_SCHEDULER": "",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {"data_dir": tmp_path / "data", "urls": urls, "env": env}


def files_holding(folder: Path, secret: str) -> list[str]:
    """Files under ``folder`` whose bytes (or, for parquet, decoded values and metadata) hold it."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if secret.encode() in path.read_bytes():
            found.append(str(path))
        elif path.suffix == ".parquet":  # compressed pages: look at the values too
            table = pq.read_table(path)
            if secret in str(table.schema.metadata) or secret in table.to_pandas().to_csv():
                found.append(str(path))
    return found


def registry_rows_holding(url: str, secret: str) -> list[str]:
    """Tables of Feast's SQL registry with a row holding it (as text, or in a bytea column's hex)."""
    engine = sa.create_engine(url)
    hits = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                text = " ".join(r[0] for r in conn.exec_driver_sql(f'SELECT t::text FROM "{table}" t'))
                if secret in text or secret.encode().hex() in text:
                    hits.append(table)
    finally:
        engine.dispose()
    return hits


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_production_run_writes_and_logs_no_password(secret_deployment, capfd, caplog):
    from feast.repo_config import load_repo_config

    from forecasting.features import store

    caplog.set_level(logging.INFO)
    data_dir = secret_deployment["data_dir"]
    urls = secret_deployment["urls"]

    dag_run = run_dag()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()  # a logger holding the original stdout may buffer it (no tty in CI)
    logs = capfd.readouterr()
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", (states, logs.err[-3000:].replace(PASSWORD, "<PASSWORD>"))
    assert set(states.values()) == {"success"} and sorted(states) == sorted(TASKS)  # every task ran

    # The logs: every task's output as it went to the terminal, and every log record.
    for line in ("Extracted", "Feast:", "Holdout evaluation", "Published"):  # they are the task logs
        assert line in logs.out + logs.err + caplog.text, line
    assert PASSWORD not in logs.out and PASSWORD not in logs.err
    assert PASSWORD not in caplog.text
    assert "Feast reads settings other than the pipeline's" not in caplog.text
    log_folder = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if log_folder.is_dir():
        assert files_holding(log_folder, PASSWORD) == []

    # Every file the run wrote under data_dir, the stage records under runs/ among them.
    written = [p for p in data_dir.rglob("*") if p.is_file()]
    stages = {p.stem: p for p in written if p.suffix == ".json" and "runs" in p.relative_to(data_dir).parts}
    assert set(stages) >= {"extract", "validate", "build_features", "register_features", "train", "predict"}
    assert "publish" in stages and any(p.suffix == ".html" for p in written)
    assert files_holding(data_dir, PASSWORD) == []
    # The predictions URL is recorded (where the forecasts went), its password hidden.
    publish = yaml.safe_load(stages["publish"].read_text())
    recorded = sa.make_url(publish["url"])
    assert (recorded.database, recorded.password) == (sa.make_url(urls["predictions"]).database, "***")
    # Nor does Feast keep its settings in its registry.
    assert registry_rows_holding(urls["registry"], PASSWORD) == []

    # feature_store.yaml names the variable, and only its owner may read it (and its folder).
    fs_yaml = data_dir / "feast" / "feature_store.yaml"
    assert stat.S_IMODE(fs_yaml.stat().st_mode) == 0o600
    assert stat.S_IMODE(fs_yaml.parent.stat().st_mode) == 0o700
    written_settings = yaml.safe_load(fs_yaml.read_text())
    assert written_settings["registry"]["path"] == "${FEAST_REGISTRY_URL}"
    # ...which Feast fills in from the environment: the same settings as the pipeline's.
    repo = load_repo_config(store.FEATURE_REPO, fs_yaml)
    assert sa.make_url(repo.registry.path).password == PASSWORD
    assert sa.make_url(repo.registry.path).database == sa.make_url(urls["registry"]).database
    assert repo.online_store.connection_string == f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}"
    # The feast CLI too: it lists what the run registered, from the SQL registry.
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "feast"),
            "-c",
            str(store.FEATURE_REPO),
            "-f",
            str(fs_yaml),
            "feature-views",
            "list",
        ],
        env={**os.environ, **secret_deployment["env"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.replace(PASSWORD, "<PASSWORD>")
    assert store.FEATURE_VIEW in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_feature_store_yaml_is_private_and_keeps_variables(tmp_path, monkeypatch):
    """Without servers: the file is written 0600 (replacing an older world-readable one) in a
    0700 folder, ${VAR}s kept, paths resolved against the config's folder."""
    from feast.repo_config import load_repo_config

    from forecasting.core.config import load_config
    from forecasting.features import store

    monkeypatch.setenv("FC_TEST_FEAST_DIR", str(tmp_path / "feast-files"))
    monkeypatch.setenv("FC_TEST_REDIS", f"localhost:6379,db=3,password={PASSWORD}")
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = "data"
    raw["source"]["url"] = "sqlite:///source.db"
    raw["predictions"]["url"] = "sqlite:///predictions.db"
    raw["feature_store"]["registry"] = "${FC_TEST_FEAST_DIR}/registry.db"
    raw["feature_store"]["online_store"] = {"type": "redis", "connection_string": "${FC_TEST_REDIS}"}
    path = tmp_path / "conf" / "forecast.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    assert config.feature_store["online_store"]["connection_string"].endswith(PASSWORD)
    assert PASSWORD not in repr(config)

    old = config.data_dir / "feast" / "feature_store.yaml"
    old.parent.mkdir(parents=True)
    old.write_text("an older copy\n")
    old.chmod(0o644)
    old.parent.chmod(0o755)
    written = store.write_feature_store_yaml(config)

    assert written == old
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    assert PASSWORD.encode() not in written.read_bytes()
    assert [p.name for p in written.parent.iterdir()] == ["feature_store.yaml"]  # no temp file left
    settings = yaml.safe_load(written.read_text())
    assert settings["registry"] == "${FC_TEST_FEAST_DIR}/registry.db"  # absolute once filled in
    assert settings["online_store"]["connection_string"] == "${FC_TEST_REDIS}"
    repo = load_repo_config(store.FEATURE_REPO, written)
    assert repo.registry.path == str(tmp_path / "feast-files" / "registry.db")
    assert repo.online_store.connection_string.endswith(f"password={PASSWORD}")


def test_a_relative_path_with_a_variable_starts_at_the_config_folder(tmp_path, monkeypatch):
    from forecasting.core.config import load_config

    monkeypatch.setenv("FC_TEST_FEAST_SUBDIR", "feast-files")
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = "data"
    raw["feature_store"]["registry"] = "${FC_TEST_FEAST_SUBDIR}/registry.db"
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": "../${FC_TEST_FEAST_SUBDIR}/online.db"}
    path = tmp_path / "conf" / "forecast.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    conf = path.parent.resolve()
    assert config.feature_store["registry"] == str(conf / "feast-files" / "registry.db")
    assert config.feature_store_unexpanded["registry"] == str(conf / "${FC_TEST_FEAST_SUBDIR}/registry.db")
    unexpanded = config.feature_store_unexpanded["online_store"]["path"]
    assert os.path.normpath(os.path.expandvars(unexpanded)) == config.feature_store["online_store"]["path"]


def test_a_config_error_from_feast_does_not_quote_the_registry_url(tmp_path):
    from forecasting.core.config import ConfigError, parse_config
    from forecasting.features import store

    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["feature_store"]["registry"] = {
        "registry_type": "sql",
        "path": f"postgresql+psycopg://forecast:{PASSWORD}@db/feast_registry",
        "cache_ttl_seconds": "soon",
    }
    with pytest.raises(ConfigError, match=r"feature_store\.registry\.cache_ttl_seconds") as info:
        store.repo_config(parse_config(raw, tmp_path / "forecast.yaml"))
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


def test_a_variable_feast_would_read_otherwise_is_reported_without_its_value(tmp_path, monkeypatch, caplog):
    """Feast substitutes ${VAR} into the text of feature_store.yaml before parsing it: a value
    that is YAML syntax there does not read back as the pipeline's setting. Said, not quoted."""
    from forecasting.core.config import load_config
    from forecasting.features import store

    monkeypatch.setenv("FC_TEST_DESCRIPTION", f"odd: {PASSWORD}")
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = "data"
    raw["feature_store"]["project_description"] = "${FC_TEST_DESCRIPTION}"
    path = tmp_path / "forecast.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    with caplog.at_level(logging.WARNING, logger="forecasting.features.store"):
        written = store.write_feature_store_yaml(config)
    assert "Feast reads settings other than the pipeline's" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD.encode() not in written.read_bytes()
