"""The whole config of a deployment (``Config``) and ``parse_config``, which builds it from the
parsed YAML section by section and checks what no one section can: whether the history is
long enough for the horizon, and whether the monitoring segment is a source column."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.core.config.base import (
    IDENTIFIER,
    ConfigError,
    Section,
    config_error,
    refused,
    resolve_path,
)
from forecasting.core.config.calendar import CalendarConfig
from forecasting.core.config.monitoring import MonitoringConfig
from forecasting.core.config.plans import PlansConfig
from forecasting.core.config.sections import (
    AlertsConfig,
    ComputeConfig,
    EvaluationConfig,
    FeatureConfig,
    GateConfig,
    HierarchyConfig,
    ModelConfig,
    PredictionsConfig,
    SourceConfig,
    ValidationConfig,
)


class Config(BaseModel):
    """A deployment's config: one model per section of the file."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    path: Path = Field(description="The config file.")
    data_dir: Path = Field(
        description="Where snapshots, features, models and reports go (relative: to the file)."
    )
    source: SourceConfig = Field(description="Where the sales live and which columns play which role.")
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig, description="Validation's tolerances."
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig, description="The features of each series.")
    # With ${VAR}s filled in: what the pipeline hands Feast (may hold secrets).
    feature_store: dict[str, Any] = Field(
        repr=False, description="Feast's own settings (checked by feast_repo_config)."
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The XGBoost model and its fit.")
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Scoring against the baselines."
    )
    predictions: PredictionsConfig = Field(description="Where forecasts are published.")
    horizon: int = Field(
        default=1, ge=1, description="Months ahead forecast: 1 to horizon after the last month of data."
    )
    # What goes into feature_store.yaml, whose reader (Feast) fills the ${VAR}s in from its environment.
    feature_store_unexpanded: dict[str, Any] | None = Field(
        default=None,
        repr=False,
        description="feature_store as written in the file, ${VAR}s kept (paths resolved).",
    )
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Where the heavy work runs.")
    gate: GateConfig = Field(
        default_factory=GateConfig, description="When a challenger replaces the champion."
    )
    monitoring: MonitoringConfig = Field(
        default_factory=MonitoringConfig, description="Accuracy reports and drift."
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert rules and notifiers.")
    plans: PlansConfig | None = Field(
        default=None, description="Planned covariates of future months (null: none)."
    )
    calendar: CalendarConfig | None = Field(
        default=None, description="Trading days and holidays of the target month as features (null: none)."
    )
    hierarchy: HierarchyConfig | None = Field(
        default=None, description="Aggregation levels reconciled with the entities (null: none)."
    )

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# The file's keys: every field but those parse_config derives.
FILE_KEYS = sorted(set(Config.model_fields) - {"path", "feature_store_unexpanded"})
_REQUIRED = ("source", "feature_store", "predictions")


def parse_config(raw: Any, path: Path, unexpanded: Any = None) -> Config:
    """Build a Config from parsed YAML, naming the key at fault when something is off.

    ``unexpanded`` is the same YAML before ``${VAR}`` substitution, if there was one: its
    ``feature_store`` section is kept (as ``feature_store_unexpanded``) for feature_store.yaml.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in FILE_KEYS)
    if unknown:
        raise _unknown(path, unknown[0])
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise config_error(path, missing[0], "is required")
    base = path.parent
    context: dict[str, Any] = {"base": base}
    source = _section(SourceConfig, raw, "source", path, context)
    sections: dict[str, Any] = {
        "source": source,
        **{
            key: _section(model, raw, key, path, context)
            for key, model in (("validation", ValidationConfig), ("features", FeatureConfig))
        },
        **_feature_store(raw, unexpanded, path),
        **{
            key: _section(model, raw, key, path, context)
            for key, model in (
                ("model", ModelConfig),
                ("evaluation", EvaluationConfig),
                ("predictions", PredictionsConfig),
                ("compute", ComputeConfig),
                ("gate", GateConfig),
                ("monitoring", MonitoringConfig),
                ("alerts", AlertsConfig),
            )
        },
    }
    if raw.get("plans") is not None:
        sections["plans"] = _section(PlansConfig, raw, "plans", path, {**context, "source": source})
    if raw.get("calendar") is not None:
        sections["calendar"] = _section(CalendarConfig, raw, "calendar", path, context)
    if raw.get("hierarchy") is not None:
        sections["hierarchy"] = _section(HierarchyConfig, raw, "hierarchy", path, context)
    data_dir = raw.get("data_dir")
    if data_dir is None:
        raise config_error(path, "data_dir", "is required")
    if not isinstance(data_dir, str):
        raise config_error(path, "data_dir", f"must be str, got {data_dir!r}")
    try:
        config = Config(
            path=path, data_dir=resolve_path(data_dir, base), horizon=raw.get("horizon", 1), **sections
        )
    except ValidationError as err:
        raise refused(err, path, "", Config) from None
    _check_history(config)
    _check_segment(config)
    _check_hierarchy(config)
    return config


def _unknown(path: Path, key: str) -> ConfigError:
    close = difflib.get_close_matches(key, FILE_KEYS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return config_error(path, key, f"unknown key{hint} (expected one of: {', '.join(FILE_KEYS)})")


def _section(model: type[Section], raw: dict[str, Any], key: str, path: Path, context: dict[str, Any]) -> Any:
    """The section ``key`` of the file, as its model; its errors name the file and the key."""
    try:
        return model.model_validate(raw.get(key), context=context)
    except ValidationError as err:
        raise refused(err, path, key, model) from None


def _check_history(config: Config) -> None:
    """The window must hold, for horizon h, an origin with a full feature lookback and a target
    month h months later before the validation and holdout months."""
    path, horizon, source = config.path, config.horizon, config.source
    validation_months, holdout_months = config.model.validation_months, config.evaluation.holdout_months
    training_origins = config.model.training_origins
    if training_origins is not None:
        # Training targets come before the validation and holdout months, h months after an origin.
        least = validation_months + holdout_months + horizon
        if training_origins < least:
            raise config_error(
                path,
                "model.training_origins",
                f"{training_origins} leaves no origin to train horizon {horizon} on: it must be at "
                f"least {least} (model.validation_months {validation_months} + "
                f"evaluation.holdout_months {holdout_months} + horizon {horizon})",
            )
    lookback = config.features.lookback_months
    needed = lookback + validation_months + holdout_months + horizon
    if source.history_months is None or source.history_months >= needed:
        return
    longest = source.history_months - lookback - validation_months - holdout_months
    parts = (
        f"feature lookback {lookback} + model.validation_months {validation_months} + "
        f"evaluation.holdout_months {holdout_months} + horizon {horizon}"
    )
    if longest >= 1:
        raise config_error(
            path,
            "horizon",
            f"{horizon} is longer than source.history_months {source.history_months} can label: "
            f"no training row would have a target {horizon} months after its origin. The longest "
            f"horizon it can train is {longest}; forecasting {horizon} months ahead needs "
            f"history_months of at least {needed} ({parts})",
        )
    raise config_error(
        path,
        "source.history_months",
        f"{source.history_months} leaves no month to train on: it must be at least {needed} ({parts})",
    )


def _check_segment(config: Config) -> None:
    segment, source = config.monitoring.segment, config.source
    columns = [*source.entity_columns, *source.attributes]
    if segment is not None and segment not in columns:
        raise config_error(
            config.path,
            "monitoring.segment",
            f"must be one of the entity columns or attributes ({', '.join(columns)}), got {segment!r}",
        )


def _check_hierarchy(config: Config) -> None:
    """Every level groups by entity columns and attributes, and none is the entities themselves."""
    if config.hierarchy is None:
        return
    source = config.source
    columns = [*source.entity_columns, *source.attributes]
    for i, level in enumerate(config.hierarchy.levels):
        unknown = [c for c in level if c not in columns]
        if unknown:
            raise config_error(
                config.path,
                f"hierarchy.levels[{i}]",
                f"{unknown[0]!r} is not an entity column or attribute ({', '.join(columns)})",
            )
        if set(source.entity_columns) <= set(level):
            raise config_error(
                config.path,
                f"hierarchy.levels[{i}]",
                f"{level!r} groups by every entity column: that is the entities themselves (the forecasts table)",
            )


# --- the feature_store section: Feast's settings, its paths resolved against the config file --


def _feature_store(raw: dict[str, Any], unexpanded: Any, path: Path) -> dict[str, Any]:
    """``feature_store`` and ``feature_store_unexpanded``: the section with its ${VAR}s filled
    in, and as written; relative paths in both resolved against the config's folder."""
    settings = raw.get("feature_store")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: feature_store must be a mapping")
    if "project" not in settings or not IDENTIFIER.match(str(settings["project"])):
        raise config_error(path, "feature_store.project", "must be a name of letters, digits and underscores")
    written = unexpanded.get("feature_store") if isinstance(unexpanded, dict) else None
    base = path.parent
    return {
        "feature_store": _resolve_feast_paths(settings, base),
        "feature_store_unexpanded": _resolve_feast_paths(
            settings, base, written if isinstance(written, dict) else None
        ),
    }


def _resolve_feast_paths(
    fs: dict[str, Any], base: Path, written: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Feast resolves relative paths against its repo; ours resolve against the config file.

    ``fs`` has its ${VAR}s filled in and decides what is a path. With ``written`` (the same
    section before substitution) the paths of ``written`` are resolved instead, ${VAR}s kept.
    """
    out = dict(fs if written is None else written)
    # Both forms have the same shape (substitution only changes strings).
    registry, online = fs.get("registry"), fs.get("online_store")
    registry_out: Any = out.get("registry")
    online_out: Any = out.get("online_store")
    if isinstance(registry, str) and "://" not in registry:
        out["registry"] = _resolve_feast_path(registry_out, registry, base)
    elif (
        isinstance(registry, dict)
        and registry.get("registry_type", "file") == "file"
        and isinstance(registry.get("path"), str)
    ):
        out["registry"] = {
            **registry_out,
            "path": _resolve_feast_path(registry_out["path"], registry["path"], base),
        }
    if (
        isinstance(online, dict)
        and online.get("type", "sqlite") == "sqlite"
        and isinstance(online.get("path"), str)
    ):
        out["online_store"] = {
            **online_out,
            "path": _resolve_feast_path(online_out["path"], online["path"], base),
        }
    return out


def _resolve_feast_path(written: str, value: str, base: Path) -> str:
    """The path ``written`` (``value`` once its ${VAR}s are filled in), resolved against ``base``."""
    if written == value:
        return str(resolve_path(value, base))
    # ${VAR}s stay for Feast to fill in; a path that is relative once filled in starts at base.
    if Path(value).expanduser().is_absolute():
        return str(Path(written).expanduser()) if written.startswith("~") else written
    return str(base / written)
