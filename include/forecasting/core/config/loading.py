"""Reading the config file: which file, ``${VAR}`` from the environment, and the predictions
Asset URI the DAG files read from it when they are parsed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from forecasting.core.config.base import IDENTIFIER, ConfigError, config_error, refused
from forecasting.core.config.deployment import Config, parse_config
from forecasting.core.config.sections import PredictionsConfig
from forecasting.core.names import predictions_asset_uri_for

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_CONFIG = REPO_ROOT / "config" / "demo.yaml"


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load and check the config at ``path``, else ``$FORECAST_CONFIG``, else the demo config.

    The ``feature_store`` section is checked by Feast's own models where Feast is used
    (``forecasting.features.feast_config``): importing Feast takes seconds.
    """
    path = Path(path or os.environ.get("FORECAST_CONFIG") or DEFAULT_CONFIG).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (set FORECAST_CONFIG)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    # Substituted into parsed values, so a value from the environment can't change the file's shape.
    expanded = expand_variables(raw)
    unset = sorted(unset_variables(expanded))
    if unset:
        raise ConfigError(f"{path}: environment variables not set: {', '.join(unset)}")
    return parse_config(expanded, path, unexpanded=raw)


def load_predictions_config(path: str | os.PathLike | None = None) -> PredictionsConfig:
    """The ``predictions`` section alone, for tools that only read the predictions database
    (``python -m forecasting.publishing.query``): only its ``${VAR}``s must be set, only it is
    checked. The same file as ``load_config``."""
    path = Path(path or os.environ.get("FORECAST_CONFIG") or DEFAULT_CONFIG).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (set FORECAST_CONFIG)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict) or "predictions" not in raw:
        raise config_error(path, "predictions", "is required")
    section = expand_variables(raw["predictions"])
    unset = sorted(unset_variables(section))
    if unset:
        raise ConfigError(f"{path}: environment variables not set: {', '.join(unset)}")
    try:
        return PredictionsConfig.model_validate(section, context={"base": path.parent})
    except ValidationError as err:
        raise refused(err, path, "predictions", PredictionsConfig) from None


def predictions_asset_uri(path: str | os.PathLike | None = None) -> str:
    """The Airflow Asset URI of the deployment's predictions table: ``x-forecast://<table>``.

    DAG files call this when they are parsed (the publish task's outlet, the monitoring DAG's
    schedule), so it reads the ``predictions.table`` key alone: no ``${VAR}``s filled in, no
    checks and no error. A config that cannot be read names the default table; its tasks then
    fail naming what is wrong, as they do without this.
    """
    table = PredictionsConfig.model_fields["table"].default
    try:
        raw = yaml.safe_load(Path(path or os.environ.get("FORECAST_CONFIG") or DEFAULT_CONFIG).read_text())
        written = raw["predictions"].get("table", table)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        written = table
    if isinstance(written, str) and IDENTIFIER.match(written):
        table = written
    return predictions_asset_uri_for(table)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_variables(value: Any) -> Any:
    """Replace ``${VAR}`` in every string value with the environment's value (unset ones stay)."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: expand_variables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_variables(v) for v in value]
    return value


def unset_variables(value: Any) -> set[str]:
    """Names of ``${VAR}`` left in the parsed values (expand_variables keeps those it cannot fill)."""
    if isinstance(value, str):
        return set(_VARIABLE.findall(value))
    if isinstance(value, dict):
        return set().union(*map(unset_variables, value.values()))
    if isinstance(value, list):
        return set().union(*map(unset_variables, value))
    return set()
