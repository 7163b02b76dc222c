"""The feature_store section is checked against Feast's own settings models: a typo or a bad
value anywhere in it (top level, online/offline store, registry, ...) is a ConfigError naming
the key path, wherever Feast is used (store.repo_config) and at deploy time
(``python -m forecasting.orchestration.check_config``, which deploy/airflow/init.sh runs). Feast alone accepts
unknown top-level keys (``onlin_store:`` silently meant a SQLite file under feature_repo/) and
some unknown nested ones (a registry mapping's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from forecasting.core.config import ConfigError, load_config
from forecasting.features.feast_config import feast_repo_config
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO

SQL_REGISTRY = {"registry_type": "sql", "path": "postgresql+psycopg://forecast:pw@db:5432/feast_registry"}
REDIS = {"type": "redis", "connection_string": "redis:6379,db=1"}

# name: (changes to the demo's feature_store section, the key path named, what the message says)
TYPOS = {
    "top-level typo": ({"onlin_store": {"type": "sqlite"}}, "feature_store.onlin_store", "unknown key"),
    "top-level typo of the registry": ({"registy": "x.db"}, "feature_store.registy", "unknown key"),
    "field name instead of its key": (
        {"batch_engine_config": "local"},
        "feature_store.batch_engine_config",
        "unknown key",
    ),
    "top-level bad value": (
        {"entity_key_serialization_version": "three"},
        "feature_store.entity_key_serialization_version",
        "valid integer",
    ),
    "unknown provider": ({"provider": "locall"}, "feature_store.provider", "not a provider Feast knows"),
    "sqlite online store typo": (
        {"online_store": {"type": "sqlite", "pathh": "online.db"}},
        "feature_store.online_store.pathh",
        "extra inputs are not permitted",
    ),
    "unknown online store type": (
        {"online_store": {"type": "sqllite", "path": "online.db"}},
        "feature_store.online_store.type",
        "not a type Feast knows",
    ),
    "redis online store typo": (
        {"online_store": {**REDIS, "connection_strin": "redis:6379"}},
        "feature_store.online_store.connection_strin",
        "extra inputs are not permitted",
    ),
    "redis online store bad value": (
        {"online_store": {**REDIS, "key_ttl_seconds": "90 days"}},
        "feature_store.online_store.key_ttl_seconds",
        "valid integer",
    ),
    "redis online store bad choice": (
        {"online_store": {**REDIS, "redis_type": "clusterr"}},
        "feature_store.online_store.redis_type",
        "'redis_cluster'",
    ),
    "offline store typo": (
        {"offline_store": {"type": "file", "path": "features/"}},
        "feature_store.offline_store.path",
        "extra inputs are not permitted",
    ),
    "unknown offline store type": (
        {"offline_store": {"type": "fil"}},
        "feature_store.offline_store.type",
        "not a type",
    ),
    "sql registry typo": (
        {"registry": {**SQL_REGISTRY, "cache_ttl_secondz": 60}},
        "feature_store.registry.cache_ttl_secondz",
        "unknown key",
    ),
    "sql registry bad value": (
        {"registry": {**SQL_REGISTRY, "sqlalchemy_config_kwargs": "echo"}},
        "feature_store.registry.sqlalchemy_config_kwargs",
        "valid dictionary",
    ),
    "unknown registry type": (
        {"registry": {**SQL_REGISTRY, "registry_type": "postgres"}},
        "feature_store.registry.registry_type",
        "Feast's types: file, remote, snowflake.registry, sql",
    ),
    "file registry mapping typo": (
        {"registry": {"path": "registry.db", "cache_ttl_second": 60}},
        "feature_store.registry.cache_ttl_second",
        "unknown key",
    ),
    "registry of the wrong shape": (
        {"registry": 5},
        "feature_store.registry",
        "must be a file path or a mapping",
    ),
    "batch engine typo": (
        {"batch_engine": {"type": "local", "workers": 2}},
        "feature_store.batch_engine.workers",
        "extra inputs are not permitted",
    ),
    "materialization typo": (
        {"materialization": {"pull_latest": True}},
        "feature_store.materialization.pull_latest",
        "unknown key",
    ),
}


def config_with(tmp_path, changes: dict, drop: tuple[str, ...] = ()):
    raw = demo_config_dict(tmp_path)
    raw["feature_store"].update(changes)
    for key in drop:
        del raw["feature_store"][key]
    return load_config(write_config(tmp_path, raw))


@pytest.mark.parametrize("changes, key, says", TYPOS.values(), ids=TYPOS.keys())
def test_feast_refuses_a_bad_feature_store_section_naming_the_key(tmp_path, changes, key, says):
    from forecasting.features import store

    config = config_with(tmp_path, changes)  # load_config alone does not import Feast
    with pytest.raises(ConfigError) as info:
        store.repo_config(config)  # what every Feast use goes through
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'forecast.yaml'}: {key}: "), message
    assert says in message, message
    assert "pw@" not in message  # no value is quoted (a registry URL may hold a password)

    # The same in the deploy-time check (python -m forecasting.orchestration.check_config).
    with pytest.raises(ConfigError, match=re.escape(f": {key}: ")):
        feast_repo_config(load_config(config.path))


def test_a_missing_registry_is_named(tmp_path):
    from forecasting.features import store

    with pytest.raises(ConfigError, match=r"forecast\.yaml: feature_store\.registry: is required"):
        store.repo_config(config_with(tmp_path, {}, drop=("registry",)))


def test_the_shipped_configs_pass(monkeypatch, tmp_path):
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistryConfig

    from forecasting.features import store

    for name in ("demo", "dominicks"):
        repo = store.repo_config(load_config(REPO / "config" / f"{name}.yaml"))
        assert isinstance(repo.online_store, SqliteOnlineStoreConfig), name
    for key, value in {
        "FORECAST_DATA_DIR": str(tmp_path / "data"),
        "SOURCE_DB_URL": "postgresql+psycopg://forecast:dummy@db/sales",
        "FEAST_REGISTRY_URL": "postgresql+psycopg://forecast:dummy@db:5432/feast_registry",
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6379",
        "FEAST_REDIS_DB": "1",
        "DASK_SCHEDULER": "",
    }.items():
        monkeypatch.setenv(key, value)
    repo = store.repo_config(load_config(REPO / "config" / "production.yaml"))
    assert isinstance(repo.registry, SqlRegistryConfig) and repo.registry.cache_ttl_seconds == 60
    assert isinstance(repo.online_store, RedisOnlineStoreConfig)
    assert repo.repo_path == store.FEATURE_REPO


def test_cli_says_ok_for_a_good_config(monkeypatch, capsys):
    from forecasting.orchestration.check_config import main

    monkeypatch.setenv("FORECAST_CONFIG", str(REPO / "config" / "dominicks.yaml"))
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == f"Forecast config OK: {REPO / 'config' / 'dominicks.yaml'}"
    assert main([str(REPO / "config" / "demo.yaml")]) == 0
    assert "config/demo.yaml" in capsys.readouterr().out


def test_cli_refuses_a_typo_with_exit_code_1(tmp_path):
    """As deploy/airflow/init.sh runs it: python -m forecasting.orchestration.check_config, FORECAST_CONFIG set."""
    raw = demo_config_dict(tmp_path)
    raw["feature_store"]["online_store"] = {"type": "sqlite", "pathh": "online.db"}
    path = write_config(tmp_path, raw)
    done = subprocess.run(
        [sys.executable, "-m", "forecasting.orchestration.check_config"],
        env={**os.environ, "FORECAST_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{path}: feature_store.online_store.pathh: extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr and "OK" not in done.stdout


def test_init_script_checks_the_config_with_feast():
    script = (REPO / "deploy" / "airflow" / "init.sh").read_text()
    commands = [
        line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "python -m forecasting.orchestration.check_config" in commands
    assert "set -euo pipefail" in commands  # so its exit code 1 stops airflow-init


def test_feature_repo_yaml_for_the_demo_passes():
    """feature_repo/feature_store.yaml (the demo's settings for the feast CLI) is a valid section too."""
    from forecasting.features.feast_config import _feast_repo_config

    raw = yaml.safe_load((REPO / "feature_repo" / "feature_store.yaml").read_text())
    _feast_repo_config(raw, REPO / "feature_repo" / "feature_store.yaml")


@pytest.mark.parametrize("with_plans", [False, True], ids=["sales", "sales-and-plans"])
def test_feast_plan_works_before_any_data_exists(tmp_path, with_plans):
    """`feast plan` on a fresh checkout: no data_dir, no feature files, no registry yet. The
    feature_repo's definitions (copied, with settings pointing into tmp_path) still load, with
    the plans' view and service when the config has a plans: section."""
    import shutil

    raw = demo_config_dict(tmp_path)
    if with_plans:
        raw["plans"] = {"table": "sales_plans", "covariates": ["price", "promo"]}
    config_path = write_config(tmp_path, raw)
    repo = tmp_path / "feature_repo"
    repo.mkdir()
    shutil.copy(REPO / "feature_repo" / "definitions.py", repo)
    settings = yaml.safe_load((REPO / "feature_repo" / "feature_store.yaml").read_text())
    settings["registry"] = raw["feature_store"]["registry"]
    settings["online_store"] = raw["feature_store"]["online_store"]
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(settings))
    assert not (tmp_path / "data").exists() and not (tmp_path / "feast").exists()

    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "feast"), "-c", str(repo), "plan"],
        env={**os.environ, "FORECAST_CONFIG": str(config_path), "PYTHONPATH": str(REPO / "include")},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Created feature view sales_history" in done.stdout
    assert "shown as String until features are built" in done.stderr  # the attributes' types
    if with_plans:
        assert "Created feature view plans" in done.stdout
        assert "Created feature service demand_model_plans" in done.stdout
        assert "Created entity target_month" in done.stdout
    else:
        assert " plans" not in done.stdout


def test_every_feast_field_says_what_it_is(tmp_path):
    """Each feature is described once (features.catalogue): its name, its Feast field's
    description and the lookback all come from there."""
    from forecasting.features.catalogue import catalogue, feature_names
    from forecasting.features.store import build_definitions

    config = load_config(write_config(tmp_path, demo_config_dict(tmp_path)))
    view = build_definitions(config).view
    described = {field.name: field.description for field in view.schema}
    assert [f.name for f in catalogue(config)] == feature_names(config)
    for feature in catalogue(config):
        assert described[feature.name] == feature.description and feature.description
    assert described["sales_lag_1"] == "units in month t" and described["sales_lag_3"] == "units in month t-2"
    assert max(f.lookback for f in catalogue(config)) == config.features.lookback_months
