"""One YAML file drives a deployment: where the sales live, which columns play which role,
the features, the model, and where forecasts go.

Each section of the file is a pydantic model that owns its keys, their defaults and what they
mean (``sections.py``, ``plans.py``); ``Config`` (``deployment.py``) holds them all and checks
what spans sections. Unknown keys are refused, and every error names the file, the dotted key,
the value given and what is expected.

The file is chosen by the ``FORECAST_CONFIG`` environment variable (default: the demo config
shipped in ``config/demo.yaml``). ``${VAR}`` in the file is replaced from the environment, so
secrets stay out of it. Relative paths, including those in ``sqlite:///`` URLs, resolve
against the folder that holds the config file (``loading.py``).

The ``feature_store`` section is Feast's own settings: Feast's models check it
(``forecasting.features.feast_config``), and ``python -m forecasting.orchestration.check_config``
loads a deployment's config with that check, for deploy time.
"""

from forecasting.core.config.base import (
    IDENTIFIER,
    ConfigError,
    Database,
    hide_password,
    resolve_path,
    resolve_sqlite_url,
)
from forecasting.core.config.calendar import CalendarConfig
from forecasting.core.config.deployment import Config, parse_config
from forecasting.core.config.loading import (
    DEFAULT_CONFIG,
    REPO_ROOT,
    expand_variables,
    load_config,
    load_predictions_config,
    predictions_asset_uri,
    unset_variables,
)
from forecasting.core.config.monitoring import IntervalsWatchConfig, MonitoringConfig
from forecasting.core.config.plans import (
    BASE_SCENARIO,
    FILL_EMPTY,
    SCENARIO_NAME_LENGTH,
    PlansConfig,
    ScenariosConfig,
    plan_feature,
)
from forecasting.core.config.sections import (
    DEFAULT_BACKTEST_ORIGINS,
    DEFAULT_MODEL_PARAMS,
    DEFAULT_STATISTICAL_MAX_SERIES,
    DERIVED_FEATURE_GROUPS,
    INTERMITTENT_BASELINES,
    NOTIFIER_TYPES,
    RECONCILIATIONS,
    STATISTICAL_BASELINES,
    AlertsConfig,
    ComputeConfig,
    EvaluationConfig,
    FeatureConfig,
    GateConfig,
    HierarchyConfig,
    ModelConfig,
    NotifierConfig,
    PredictionsConfig,
    SourceConfig,
    TuningConfig,
    ValidationConfig,
)

__all__ = [
    "BASE_SCENARIO",
    "DEFAULT_BACKTEST_ORIGINS",
    "DEFAULT_CONFIG",
    "DEFAULT_MODEL_PARAMS",
    "DEFAULT_STATISTICAL_MAX_SERIES",
    "DERIVED_FEATURE_GROUPS",
    "FILL_EMPTY",
    "IDENTIFIER",
    "INTERMITTENT_BASELINES",
    "NOTIFIER_TYPES",
    "RECONCILIATIONS",
    "REPO_ROOT",
    "SCENARIO_NAME_LENGTH",
    "STATISTICAL_BASELINES",
    "AlertsConfig",
    "CalendarConfig",
    "ComputeConfig",
    "Config",
    "ConfigError",
    "Database",
    "EvaluationConfig",
    "FeatureConfig",
    "GateConfig",
    "HierarchyConfig",
    "IntervalsWatchConfig",
    "ModelConfig",
    "MonitoringConfig",
    "NotifierConfig",
    "PlansConfig",
    "PredictionsConfig",
    "ScenariosConfig",
    "SourceConfig",
    "TuningConfig",
    "ValidationConfig",
    "expand_variables",
    "hide_password",
    "load_config",
    "load_predictions_config",
    "parse_config",
    "plan_feature",
    "predictions_asset_uri",
    "resolve_path",
    "resolve_sqlite_url",
    "unset_variables",
]
