"""load_config: the shipped configs load, FORECAST_CONFIG picks the file, relative paths and
${VAR} are resolved, and every broken file is refused with a ConfigError naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forecasting.core.config import DEFAULT_CONFIG, DEFAULT_MODEL_PARAMS, ConfigError, load_config
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.paths import REPO


def test_demo_config_loads():
    config = load_config(REPO / "config" / "demo.yaml")

    assert config.path == (REPO / "config" / "demo.yaml").resolve()
    assert config.data_dir == (REPO / "data" / "demo").resolve()
    src = config.source
    assert src.database.url == f"sqlite:///{(REPO / 'data' / 'demo' / 'source.db').resolve()}"
    assert src.database.conn_id is None
    assert (src.table, src.query) == ("sales", None)
    assert src.entity_columns == ["store_id", "item_id"]
    assert (src.time_column, src.target_column) == ("month", "units")
    assert src.covariates == ["price", "promo"]
    assert src.attributes == ["store_size", "region", "category"]
    assert src.history_months == 120
    # The modelling settings are the library's common defaults (the file sets only data).
    assert config.features.lags == [*range(1, 14), 24]
    assert config.features.rolling_windows == [3, 6, 12]
    assert config.features.derived == ["seasonal", "relative"]
    assert config.features.lookback_months == 24
    assert config.model.scale_by_recent_mean is True
    assert config.horizon == 3
    assert config.evaluation.holdout_months == 6
    assert config.model.validation_months == 3
    # Params the file leaves out come from the defaults.
    assert config.model.params == DEFAULT_MODEL_PARAMS
    assert config.feature_store["project"] == "demand_forecast"
    assert config.feature_store["registry"] == str(
        (REPO / "data" / "demo" / "feast" / "registry.db").resolve()
    )
    assert config.predictions.table == "forecasts"
    assert (
        config.predictions.database.url
        == f"sqlite:///{(REPO / 'data' / 'demo' / 'predictions.db').resolve()}"
    )


def test_dominicks_config_loads():
    config = load_config(REPO / "config" / "dominicks.yaml")

    assert config.data_dir == (REPO / "data" / "dominicks").resolve()
    assert config.source.table == "oj_sales"
    assert config.source.entity_columns == ["store", "brand"]
    assert config.source.covariates == ["price", "deal", "feat"]
    assert len(config.source.attributes) == 11
    assert config.source.history_months is None  # all 27 months: the 24-month lag keeps every origin
    assert config.horizon == 1
    assert config.feature_store["project"] == "dominicks"
    assert config.feature_store["online_store"]["path"] == str(
        (REPO / "data" / "dominicks" / "feast" / "online.db").resolve()
    )


# What a shipped config may set: data, where things go and how they are checked, never how the
# model is built (issue 22: one set of modelling defaults, the library's, for every data set).
DATA_SECTIONS = {
    "data_dir",
    "source",
    "plans",
    "validation",
    "feature_store",
    "evaluation",
    "horizon",
    "monitoring",
    "alerts",
    "compute",
    "predictions",
    "hierarchy",
}
MODELLING_EVALUATION_KEYS = {"statistical_baselines", "backtest_origins"}


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_set_only_their_data(path, tmp_path, monkeypatch):
    raw = yaml.safe_load(path.read_text())
    # config/production.yaml's variables, as docker-compose.yml sets them.
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOURCE_DB_URL", "postgresql+psycopg://forecast:dummy@db/sales")
    for name in ("FEAST_REGISTRY_URL", "REDIS_HOST", "REDIS_PORT", "FEAST_REDIS_DB", "DASK_SCHEDULER"):
        monkeypatch.setenv(name, "1" if name != "DASK_SCHEDULER" else "")
    assert set(raw) <= DATA_SECTIONS, f"{path.name} sets {sorted(set(raw) - DATA_SECTIONS)}"
    assert not set(raw.get("evaluation") or {}) & MODELLING_EVALUATION_KEYS
    config = load_config(path)
    assert config.features.lags == [*range(1, 14), 24]
    assert config.model.scale_by_recent_mean is True


def test_forecast_config_env_selects_the_file(tmp_path, monkeypatch):
    raw = demo_config_dict(tmp_path)
    raw["horizon"] = 5
    path = write_config(tmp_path, raw)

    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    chosen = load_config()
    assert chosen.path == path.resolve()
    assert chosen.horizon == 5

    # An explicit path wins over the variable.
    assert load_config(REPO / "config" / "demo.yaml").horizon == 3

    monkeypatch.delenv("FORECAST_CONFIG")
    assert load_config().path == DEFAULT_CONFIG.resolve()


def test_missing_config_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECAST_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="FORECAST_CONFIG"):
        load_config()


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "deploy" / "conf"
    raw = demo_config_dict(folder)
    raw["data_dir"] = "../data"
    raw["source"]["url"] = "sqlite:///db/source.db"
    raw["feature_store"]["registry"] = "feast/registry.db"
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": "../feast/online.db"}
    raw["predictions"]["url"] = "sqlite:///../out/predictions.db?timeout=5"
    path = write_config(folder, raw)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter

    config = load_config(path)

    deploy = (tmp_path / "deploy").resolve()
    assert config.data_dir == deploy / "data"
    assert config.source.database.url == f"sqlite:///{deploy / 'conf' / 'db' / 'source.db'}"
    assert config.predictions.database.url == f"sqlite:///{deploy / 'out' / 'predictions.db'}?timeout=5"
    assert config.feature_store["registry"] == str(deploy / "conf" / "feast" / "registry.db")
    assert config.feature_store["online_store"]["path"] == str(deploy / "feast" / "online.db")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////abs/source.db",
        "sqlite:///:memory:",
        "postgresql://user@host:5432/db",
    ],
)
def test_absolute_and_non_file_urls_are_kept(tmp_path, url):
    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = url
    assert load_config(write_config(tmp_path, raw)).source.database.url == url


def test_variables_are_expanded_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FC_TEST_DB_URL", "postgresql://forecaster:s3cret@db:5432/sales")
    monkeypatch.setenv("FC_TEST_SCHEMA", "retail")
    monkeypatch.setenv("FC_TEST_PROJECT", "from_env")
    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = "${FC_TEST_DB_URL}"
    raw["source"]["schema"] = "${FC_TEST_SCHEMA}"
    raw["feature_store"]["project"] = "${FC_TEST_PROJECT}"

    config = load_config(write_config(tmp_path, raw))

    assert config.source.database.url == "postgresql://forecaster:s3cret@db:5432/sales"
    assert config.source.database.schema == "retail"
    assert config.feature_store["project"] == "from_env"


def test_unset_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("FC_TEST_UNSET_PASSWORD", raising=False)
    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = "postgresql://forecaster:${FC_TEST_UNSET_PASSWORD}@db/sales"
    with pytest.raises(ConfigError, match="FC_TEST_UNSET_PASSWORD"):
        load_config(write_config(tmp_path, raw))


def test_conn_id_instead_of_url(tmp_path):
    raw = demo_config_dict(tmp_path)
    del raw["source"]["url"]
    raw["source"]["conn_id"] = "sales_warehouse"
    config = load_config(write_config(tmp_path, raw))
    assert config.source.database.url is None
    assert config.source.database.conn_id == "sales_warehouse"


def test_query_instead_of_table(tmp_path):
    raw = demo_config_dict(tmp_path)
    del raw["source"]["table"]
    raw["source"]["query"] = "SELECT * FROM sales"
    config = load_config(write_config(tmp_path, raw))
    assert (config.source.table, config.source.query) == (None, "SELECT * FROM sales")


def test_null_history_months_means_all_history(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["source"]["history_months"] = None
    assert load_config(write_config(tmp_path, raw)).source.history_months is None


def _drop(section, key):
    def edit(raw):
        del raw[section][key]

    return edit


def _set(section, key, value):
    def edit(raw):
        (raw if section is None else raw.setdefault(section, {}))[key] = value

    return edit


def _both_table_and_query(raw):
    raw["source"]["query"] = "SELECT * FROM sales"


def _no_prediction_database(raw):
    del raw["predictions"]["url"]


def _url_and_conn_id(raw):
    raw["predictions"]["conn_id"] = "predictions_db"


def _no_table_nor_query(raw):
    del raw["source"]["table"]


BAD_CONFIGS = {
    "missing entity_columns": (_drop("source", "entity_columns"), "source.entity_columns"),
    "empty entity_columns": (_set("source", "entity_columns", []), "source.entity_columns"),
    "both table and query": (_both_table_and_query, "source.table and source.query"),
    "neither table nor query": (_no_table_nor_query, "source.table and source.query"),
    "neither url nor conn_id in predictions": (
        _no_prediction_database,
        "predictions.url and predictions.conn_id",
    ),
    "both url and conn_id in predictions": (_url_and_conn_id, "predictions.url and predictions.conn_id"),
    "unknown top-level key": (_set(None, "horizn", 2), "horizn"),
    "unknown key in source": (_set("source", "entity_column", ["store_id"]), "source.entity_column"),
    "bad entity column name": (
        _set("source", "entity_columns", ["store_id", "units; drop table"]),
        "source.entity_columns",
    ),
    "bad target column name": (_set("source", "target_column", "units; drop table"), "source.target_column"),
    "bad covariate name": (_set("source", "covariates", ["price", "promo--"]), "source.covariates"),
    "horizon 0": (_set(None, "horizon", 0), "horizon"),
    "horizon not a number": (_set(None, "horizon", "three"), "horizon"),
    "history_months below 13": (_set("source", "history_months", 12), "source.history_months"),
    "column with two roles": (_set("source", "covariates", ["price", "units"]), "units"),
    "non-list lags": (_set("features", "lags", 3), "features.lags"),
    "non-positive lag": (_set("features", "lags", [0, 1]), "features.lags"),
    "feature_store.project missing": (_drop("feature_store", "project"), "feature_store.project"),
    "bad predictions table": (_set("predictions", "table", "forecasts; drop"), "predictions.table"),
    "missing data_dir": (lambda raw: raw.pop("data_dir"), "data_dir"),
    "missing source": (lambda raw: raw.pop("source"), "source"),
}


@pytest.mark.parametrize("edit, key", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_rejected_naming_the_key(tmp_path, edit, key):
    raw = demo_config_dict(tmp_path)
    edit(raw)
    path = write_config(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # "<file>: <dotted key>: <what is wrong>"; the tmp folder's name must not make the match.
    prefix = f"{path.resolve()}: "
    message = str(err.value)
    assert message.startswith(prefix)
    assert key in message.removeprefix(prefix)


def test_two_roles_message_says_so(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["source"]["attributes"] = ["store_size", "region", "store_id"]
    with pytest.raises(ConfigError, match=r"source: columns given more than one role: store_id"):
        load_config(write_config(tmp_path, raw))


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = Path(tmp_path) / "broken.yaml"
    path.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = Path(tmp_path) / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


def test_only_braced_variables_expand_and_values_cannot_reshape_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FC_TEST_TABLE", "sales\nhorizon: 99")
    monkeypatch.setenv("HOME", "/should/not/appear")
    raw = demo_config_dict(tmp_path)
    raw["source"]["table"] = "${FC_TEST_TABLE}"
    raw["source"]["url"] = "sqlite:////tmp/$HOME/x.db"
    config = load_config(write_config(tmp_path, raw))
    assert config.source.table == "sales\nhorizon: 99" and config.horizon == raw["horizon"]
    assert config.source.database.url == "sqlite:////tmp/$HOME/x.db"


def test_history_too_short_to_train_is_refused(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["source"]["history_months"] = 20  # lookback 24 + validation 3 + holdout 6 + 1 = 34
    with pytest.raises(ConfigError, match=r"source\.history_months: 20 leaves no month to train on"):
        load_config(write_config(tmp_path, raw))


def test_a_horizon_longer_than_the_history_can_label_is_refused_naming_the_limit(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["source"]["history_months"] = 60  # 60 - lookback 24 - validation 3 - holdout 6 = 27
    raw["horizon"] = 100
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, raw))
    assert "horizon: 100 is longer than source.history_months 60 can label" in str(err.value)
    assert "The longest horizon it can train is 27" in str(err.value)
    assert "history_months of at least 133" in str(err.value)

    raw["horizon"] = 27
    assert load_config(write_config(tmp_path, raw)).horizon == 27


def test_feature_store_keeps_its_variables_beside_their_values(tmp_path, monkeypatch):
    """Feast gets the values; feature_store.yaml gets the section as written (${VAR}s kept, paths
    resolved against the config's folder), so a secret from the environment stays off the disk."""
    monkeypatch.setenv("FC_TEST_REGISTRY_URL", "postgresql+psycopg://feast:s3cret@db/feast_registry")
    raw = demo_config_dict(tmp_path)
    raw["feature_store"]["registry"] = {"registry_type": "sql", "path": "${FC_TEST_REGISTRY_URL}"}
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": "feast/online.db"}
    config = load_config(write_config(tmp_path, raw))

    assert config.feature_store["registry"]["path"] == "postgresql+psycopg://feast:s3cret@db/feast_registry"
    assert config.feature_store_unexpanded["registry"]["path"] == "${FC_TEST_REGISTRY_URL}"
    online = str(tmp_path.resolve() / "feast" / "online.db")
    assert config.feature_store["online_store"]["path"] == online
    assert config.feature_store_unexpanded["online_store"]["path"] == online
    assert "s3cret" not in repr(config)


def test_loading_a_config_does_not_import_feast():
    """Feast takes seconds to import: load_config leaves its check to the Feast users."""
    code = "import sys; from forecasting.core.config import load_config; load_config(); print('feast' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_printed_config_never_shows_a_password(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["source"]["url"] = "postgresql+psycopg://reader:Pa55-source@db:5432/sales"
    raw["predictions"]["url"] = "postgresql+psycopg://writer@db/predictions?password=Pa55-predictions"
    config = load_config(write_config(tmp_path, raw))
    printed = repr(config)
    assert "Pa55" not in printed
    assert "reader:***@db:5432/sales" in printed and "predictions?password=***" in printed
    assert config.source.database.url.endswith("reader:Pa55-source@db:5432/sales")  # the value is kept


def test_a_typo_is_refused_with_its_dotted_path_and_the_key_meant(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["model"]["num_boost_rounds"] = 100
    with pytest.raises(
        ConfigError, match=r"model\.num_boost_rounds: unknown key \(did you mean num_boost_round\?\)"
    ):
        load_config(write_config(tmp_path, raw))
    raw = demo_config_dict(tmp_path)
    raw["alerts"] = {"notifiers": [{"type": "smtp", "to": "planner@example.com", "conn": "smtp_ops"}]}
    with pytest.raises(
        ConfigError, match=r"alerts\.notifiers\[0\]\.conn: unknown key \(did you mean conn_id\?\)"
    ):
        load_config(write_config(tmp_path, raw))


def test_null_for_a_setting_with_a_default_names_the_default(tmp_path):
    raw = demo_config_dict(tmp_path)
    raw["gate"] = {"blend": None}
    with pytest.raises(
        ConfigError, match=r"gate\.blend: must be bool, got None \(leave it out for the default, True\)"
    ):
        load_config(write_config(tmp_path, raw))


def test_every_setting_says_what_it_is():
    """Each section's fields carry their default and a description, once."""
    from pydantic import BaseModel

    from forecasting.core.config import Config

    def models(model: type[BaseModel]) -> set[type[BaseModel]]:
        found = {model}
        for info in model.model_fields.values():
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                for inner in (arg, *getattr(arg, "__args__", ())):
                    if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                        found |= models(inner)
        return found

    sections = models(Config)
    assert len(sections) >= 15
    undescribed = [
        f"{m.__name__}.{n}" for m in sections for n, i in m.model_fields.items() if not i.description
    ]
    assert undescribed == []


def test_the_value_added_and_the_intervals_watch_settings(tmp_path):
    raw = demo_config_dict(tmp_path)
    defaults = load_config(write_config(tmp_path, raw)).monitoring
    assert defaults.fva_statistical == "theta"
    watch = defaults.intervals
    assert (watch.min_coverage, watch.max_coverage, watch.months, watch.realised_months) == (0.7, 0.9, 2, 3)
    raw["monitoring"] = {"fva_statistical": None, "intervals": {"min_coverage": 0.75, "realised_months": 0}}
    set_ = load_config(write_config(tmp_path, raw)).monitoring
    assert set_.fva_statistical is None and set_.intervals.min_coverage == 0.75
    assert (set_.intervals.max_coverage, set_.intervals.realised_months) == (0.9, 0)
    for bad, message in (
        (
            {"fva_statistical": "prophet"},
            r"monitoring\.fva_statistical: must be one of auto_ets, theta or null",
        ),
        ({"intervals": {"min_coverage": 0.9, "max_coverage": 0.8}}, r"monitoring\.intervals\.max_coverage: "),
        ({"intervals": {"months": -1}}, r"monitoring\.intervals\.months"),
        ({"intervals": {"window": 3}}, r"monitoring\.intervals\.window: unknown key"),
    ):
        raw["monitoring"] = bad
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path, raw))
