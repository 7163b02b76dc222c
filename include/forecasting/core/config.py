"""One YAML file drives a deployment: where the sales live, which columns play which role,
the features, the model, and where forecasts go.

The file is chosen by the ``FORECAST_CONFIG`` environment variable (default: the demo config
shipped in ``config/demo.yaml``). ``${VAR}`` in the file is replaced from the environment, so
secrets stay out of it. Relative paths, including those in ``sqlite:///`` URLs, resolve
against the folder that holds the config file.

The ``feature_store`` section is Feast's own settings. ``feast_repo_config`` checks it with
Feast's models (Feast is imported only there: it takes seconds), and
``python -m forecasting.core.config`` loads a deployment's config with that check, for deploy time.
"""

from __future__ import annotations

import copy
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import yaml

from forecasting.core.names import predictions_asset_uri_for

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / "config" / "demo.yaml"


class ConfigError(ValueError):
    """A config file that cannot drive a run; the message names the offending key."""


@dataclass(frozen=True)
class Database:
    """A database named either by a SQLAlchemy URL or by an Airflow connection id."""

    url: str | None = None
    conn_id: str | None = None
    schema: str | None = None

    def __repr__(self) -> str:
        # A traceback or a test report may print a config: never with the password in it.
        return f"Database(url={hide_password(self.url)!r}, conn_id={self.conn_id!r}, schema={self.schema!r})"


@overload
def hide_password(url: str) -> str: ...
@overload
def hide_password(url: None) -> None: ...
def hide_password(url: str | None) -> str | None:
    """``scheme://user:secret@host/db?password=secret`` with both secrets shown as ***."""
    if url is None:
        return None
    url = re.sub(r"(://[^/?#@:]*:)[^/?#@]*@", r"\1***@", url)
    return re.sub(r"([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


@dataclass(frozen=True)
class SourceConfig:
    database: Database
    table: str | None
    query: str | None
    entity_columns: list[str]
    time_column: str
    target_column: str
    covariates: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    history_months: int | None = 60


# What a plan of no value for a covariate means (``plans.fill``): left empty, the model sees
# "no plan" as a missing value.
FILL_EMPTY = "empty"
# The scenario the base plan's forecasts are published as in <table>_scenarios (``plans.scenarios.base``).
BASE_SCENARIO = "base"
SCENARIO_NAME_LENGTH = 64  # <table>_scenarios.scenario is a VARCHAR(64)


@dataclass(frozen=True)
class ScenariosConfig:
    """What-if scenarios: alternative plans (see forecasting.scenarios.scenarios).

    A table or query with one row per scenario, entity and month: the values a scenario plans
    for some or all of the planned covariates (a null keeps the base plan's). Entity and month
    columns are the plans'."""

    database: Database
    table: str | None
    query: str | None
    scenario_column: str = "scenario"
    base: str = BASE_SCENARIO  # the name the base plan's forecasts get


@dataclass(frozen=True)
class PlansConfig:
    """Planned covariates (prices, promotions...) of future months: known-future features.

    A table or query with one row per entity, target month and revision: the month's planned
    values as they stood from ``planned_at`` on (see forecasting.data.plans)."""

    database: Database
    table: str | None
    query: str | None
    entity_columns: list[str]  # the source's entity columns
    month_column: str  # a date/timestamp in the month planned for
    covariates: list[str]  # numeric; each becomes the feature plan_<covariate>
    planned_at: str  # when the plan (revision) was made: a timestamp
    # Per covariate: what a missing plan means, a constant or FILL_EMPTY (left empty). A
    # covariate without one must be planned for every active entity and forecast month.
    fill: dict[str, float | str] = field(default_factory=dict)
    scenarios: ScenariosConfig | None = None  # no plans.scenarios: no what-if scenarios

    @property
    def feature_names(self) -> list[str]:
        return [plan_feature(c) for c in self.covariates]


def plan_feature(covariate: str) -> str:
    """The feature a planned covariate becomes: its value planned for the target month."""
    return f"plan_{covariate}"


@dataclass(frozen=True)
class ValidationConfig:
    # Month M may hold this fraction fewer or more rows than month M-1 (and M's forecasts than
    # the previous published run's).
    row_count_tolerance: float = 0.5
    # No forecast may exceed this many times its entity's largest month in the snapshot.
    forecast_max_to_history_max: float = 10.0


# Groups of features the model derives from Feast's when it assembles a row
# (``dataset.with_model_columns``); ``features.derived`` names the ones a config turns on.
DERIVED_FEATURE_GROUPS = ("seasonal", "relative")


@dataclass(frozen=True)
class FeatureConfig:
    lags: list[int] = field(default_factory=lambda: [1, 2, 3, 6, 12])
    rolling_windows: list[int] = field(default_factory=lambda: [3, 6, 12])
    derived: list[str] = field(default_factory=list)

    @property
    def lookback_months(self) -> int:
        """How many months of history the widest feature reads."""
        return max([*self.lags, *self.rolling_windows])


@dataclass(frozen=True)
class ModelConfig:
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    validation_months: int = 3
    seed: int = 42
    # Origins at most this many months before M (None: every month of the window).
    training_origins: int | None = None
    # Fit on a uniform sample of about this many labelled rows when there are more (None: all).
    max_training_rows: int | None = 200_000
    # Fit each row relative to its series' recent mean (a log-link objective's base margin).
    scale_by_recent_mean: bool = False


# The statistical forecasters evaluation can score as baselines (forecasting.modeling.statistical).
STATISTICAL_BASELINES = ("auto_ets", "theta")
DEFAULT_STATISTICAL_MAX_SERIES = 100
DEFAULT_BACKTEST_ORIGINS = 6


@dataclass(frozen=True)
class EvaluationConfig:
    holdout_months: int = 6
    # Scored beside the naive baselines, on the same rows as the model ([]: none).
    statistical_baselines: list[str] = field(default_factory=lambda: list(STATISTICAL_BASELINES))
    # More entities than this in the holdout: the statistical baselines (and, on the same rows,
    # the model and the naive ones) are scored on a seeded sample of this many (None: all).
    # An AutoETS and a Theta fit per entity and holdout origin cost about 35 ms: 100 entities x 8
    # origins keep that under half a minute at any scale.
    statistical_max_series: int | None = DEFAULT_STATISTICAL_MAX_SERIES
    # Processes statsforecast fits them in (None: one per core). Each is a fresh interpreter
    # importing statsforecast (about 2 s), so it pays from a few hundred series on.
    statistical_jobs: int | None = None
    # Rolling-origin backtest: each of the last this many origins of the holdout gets a model
    # fitted on the targets up to it (0: none). At most holdout_months: an earlier origin's fit
    # would reuse a number of trees early stopping chose on targets after it.
    backtest_origins: int = DEFAULT_BACKTEST_ORIGINS


@dataclass(frozen=True)
class GateConfig:
    """When a newly trained model (the challenger) replaces the champion (see forecasting.registry.gate).

    Both margins are relative: the challenger's holdout WAPE must be below the champion's times
    (1 - min_improvement) and below the best baseline's times (1 - min_margin_over_baseline).
    """

    min_improvement: float = 0.0
    min_margin_over_baseline: float = 0.0
    # When neither the challenger nor the champion beats the best baseline, publish the mean of the
    # challenger's and that baseline's forecasts if it does (by the same margin).
    blend: bool = True


@dataclass(frozen=True)
class PredictionsConfig:
    database: Database
    table: str = "forecasts"


@dataclass(frozen=True)
class MonitoringConfig:
    """How realised accuracy is reported (forecasting.monitoring.accuracy) and drift detected
    (forecasting.monitoring.drift)."""

    # An entity column or attribute: <table>_accuracy also has one row per value of it.
    segment: str | None = None
    # A feature (or the target) drifted when its population stability index against the
    # training window is at least this (0.1-0.2: a moderate shift, above 0.2: a significant one)
    # and the two-sample Kolmogorov-Smirnov test rejects "same distribution" at ks_alpha.
    psi_threshold: float = 0.2
    ks_alpha: float = 0.01
    # PSI's bins: this many quantiles of the training window (plus one for missing values).
    psi_bins: int = 10
    # The share of new entities (no row before M) or vanished ones (a row in M-1, none in M)
    # that counts as drift.
    entity_share_threshold: float = 0.1
    # Rows compared at most, on each side (a seeded uniform sample of the rows beyond that).
    drift_sample_rows: int = 100_000
    # The reference is the last this many months of the model's training window (None: all of
    # it): a full year has every season once, without years of trend (prices follow inflation).
    reference_months: int | None = 12


# Notifier types an alerts.notifiers entry may name (forecasting.monitoring.alerts builds them).
NOTIFIER_TYPES = ("smtp",)


@dataclass(frozen=True)
class NotifierConfig:
    """One Airflow notifier alerts go through: ``smtp`` is the SMTP provider's SmtpNotifier."""

    type: str
    to: list[str]
    conn_id: str = "smtp_default"
    from_email: str | None = None  # None: the connection's from_email


@dataclass(frozen=True)
class AlertsConfig:
    """When to alert (beside task failures and drift) and through which notifiers; without
    notifiers, alerts are logged and written to <table>_alerts only."""

    notifiers: list[NotifierConfig] = field(default_factory=list)
    # Realised WAPE of a horizon's forecasts above this (None: no such alert).
    max_wape: float | None = None
    # Realised WAPE worse than the best naive forecast's this many months in a row (0: never).
    worse_than_naive_months: int = 3


@dataclass(frozen=True)
class ComputeConfig:
    # A Dask scheduler ("tcp://host:8786") runs the heavy work on its cluster; None: in-process.
    dask_scheduler: str | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    data_dir: Path
    source: SourceConfig
    validation: ValidationConfig
    features: FeatureConfig
    # Feast's settings with ${VAR}s filled in (what the pipeline hands Feast; may hold secrets).
    feature_store: dict[str, Any] = field(repr=False)
    model: ModelConfig
    evaluation: EvaluationConfig
    predictions: PredictionsConfig
    horizon: int = 1
    # The same settings as written in the file, ${VAR}s kept (paths resolved like the above):
    # what goes into feature_store.yaml, whose reader (Feast) fills them in from its environment.
    feature_store_unexpanded: dict[str, Any] | None = field(default=None, repr=False)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    plans: PlansConfig | None = None  # no plans section: no planned covariates

    @property
    def base_dir(self) -> Path:
        return self.path.parent


DEFAULT_MODEL_PARAMS: dict[str, Any] = {
    # Sales are non-negative, count-like and skewed with some zero months: Tweedie fits them
    # (it beat squared and absolute error on the holdout of both the demo data and Dominick's).
    "objective": "reg:tweedie",
    "tweedie_variance_power": 1.3,
    "tree_method": "hist",
    "max_depth": 6,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
}

_TOP_LEVEL_KEYS = {
    "data_dir",
    "source",
    "validation",
    "features",
    "feature_store",
    "model",
    "evaluation",
    "predictions",
    "horizon",
    "compute",
    "gate",
    "monitoring",
    "alerts",
    "plans",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_config(path: str | os.PathLike | None = None, *, check_feast: bool = False) -> Config:
    """Load and check the config at ``path``, else ``$FORECAST_CONFIG``, else the demo config.

    ``check_feast`` also checks the ``feature_store`` section with Feast's own models
    (``feast_repo_config``), which imports Feast (seconds); every Feast use checks it anyway.
    """
    path = Path(path or os.environ.get("FORECAST_CONFIG") or DEFAULT_CONFIG).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (set FORECAST_CONFIG)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    # Substituted into parsed values, so a value from the environment can't change the file's shape.
    expanded = _expand_variables(raw)
    unset = sorted(_unset_variables(expanded))
    if unset:
        raise ConfigError(f"{path}: environment variables not set: {', '.join(unset)}")
    config = parse_config(expanded, path, unexpanded=raw)
    if check_feast:
        feast_repo_config(config)
    return config


def predictions_asset_uri(path: str | os.PathLike | None = None) -> str:
    """The Airflow Asset URI of the deployment's predictions table: ``x-forecast://<table>``.

    DAG files call this when they are parsed (the publish task's outlet, the monitoring DAG's
    schedule), so it reads the ``predictions.table`` key alone: no ``${VAR}``s filled in, no
    checks and no error. A config that cannot be read names the default table; its tasks then
    fail naming what is wrong, as they do without this.
    """
    table = "forecasts"
    try:
        raw = yaml.safe_load(Path(path or os.environ.get("FORECAST_CONFIG") or DEFAULT_CONFIG).read_text())
        written = raw["predictions"].get("table", table)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        written = table
    if isinstance(written, str) and _IDENTIFIER.match(written):
        table = written
    return predictions_asset_uri_for(table)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_variables(value: Any) -> Any:
    """Replace ``${VAR}`` in every string value with the environment's value (unset ones stay)."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _expand_variables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_variables(v) for v in value]
    return value


def _unset_variables(value: Any) -> set[str]:
    """Names of ``${VAR}`` left in the parsed values (expandvars keeps those it cannot fill)."""
    if isinstance(value, str):
        return set(_VARIABLE.findall(value))
    if isinstance(value, dict):
        return set().union(*map(_unset_variables, value.values()))
    if isinstance(value, list):
        return set().union(*map(_unset_variables, value))
    return set()


def _backtest_origins(ev: _Section) -> int:
    """``evaluation.backtest_origins``: 0 (none) up to ``holdout_months``; unset, the default
    capped at ``holdout_months``."""
    holdout_months = ev.optional("holdout_months", int, default=6, minimum=1)
    if "backtest_origins" not in ev.raw:
        return min(DEFAULT_BACKTEST_ORIGINS, holdout_months)
    if ev.raw["backtest_origins"] is None:
        raise ev.error("backtest_origins", "must be int (0 for no backtest), got None")
    origins = ev.optional("backtest_origins", int, minimum=0)
    if origins > holdout_months:
        raise ev.error(
            "backtest_origins",
            f"{origins} is more than evaluation.holdout_months {holdout_months}: the fit of an origin "
            "before the holdout would reuse a number of trees early stopping chose on later targets",
        )
    return origins


def parse_config(raw: Any, path: Path, unexpanded: Any = None) -> Config:
    """Build a Config from parsed YAML, naming the key at fault when something is off.

    ``unexpanded`` is the same YAML before ``${VAR}`` substitution, if there was one: its
    ``feature_store`` section is kept (as ``feature_store_unexpanded``) for feature_store.yaml.
    """
    section = _Section(raw, "", path)
    section.reject_unknown(_TOP_LEVEL_KEYS)
    base = path.parent

    src = section.child("source")
    src.reject_unknown(
        {
            "url",
            "conn_id",
            "schema",
            "table",
            "query",
            "entity_columns",
            "time_column",
            "target_column",
            "covariates",
            "attributes",
            "history_months",
        }
    )
    table, query = src.exactly_one("table", "query")
    entity_columns = src.identifiers("entity_columns", required=True)
    if not entity_columns:
        raise src.error("entity_columns", "must name at least one column")
    source = SourceConfig(
        database=_database(src, base),
        table=table,
        query=query,
        entity_columns=entity_columns,
        time_column=src.identifier("time_column"),
        target_column=src.identifier("target_column"),
        covariates=src.identifiers("covariates"),
        attributes=src.identifiers("attributes"),
        history_months=src.optional("history_months", int, default=60, minimum=13),
    )
    roles = [
        *source.entity_columns,
        source.time_column,
        source.target_column,
        *source.covariates,
        *source.attributes,
    ]
    duplicated = sorted({c for c in roles if roles.count(c) > 1})
    if duplicated:
        raise src.error("", f"columns given more than one role: {', '.join(duplicated)}")

    val = section.child("validation", required=False)
    val.reject_unknown({"row_count_tolerance", "forecast_max_to_history_max"})
    validation = ValidationConfig(
        row_count_tolerance=val.optional("row_count_tolerance", float, default=0.5, minimum=0.0),
        forecast_max_to_history_max=val.optional(
            "forecast_max_to_history_max", float, default=10.0, minimum=1.0
        ),
    )

    feat = section.child("features", required=False)
    feat.reject_unknown({"lags", "rolling_windows", "derived"})
    features = FeatureConfig(
        lags=feat.positive_ints("lags", [1, 2, 3, 6, 12]),
        rolling_windows=feat.positive_ints("rolling_windows", [3, 6, 12]),
        derived=feat.choices("derived", DERIVED_FEATURE_GROUPS, default=[]),
    )

    fs = section.child("feature_store")
    fs_raw = dict(fs.raw)
    if "project" not in fs_raw or not _IDENTIFIER.match(str(fs_raw["project"])):
        raise fs.error("project", "must be a name of letters, digits and underscores")
    written = unexpanded.get("feature_store") if isinstance(unexpanded, dict) else None
    fs_unexpanded = _resolve_feast_paths(fs_raw, base, written if isinstance(written, dict) else None)
    fs_raw = _resolve_feast_paths(fs_raw, base)

    mod = section.child("model", required=False)
    mod.reject_unknown(
        {
            "params",
            "num_boost_round",
            "early_stopping_rounds",
            "validation_months",
            "seed",
            "training_origins",
            "max_training_rows",
            "scale_by_recent_mean",
        }
    )
    params = mod.optional("params", dict, default={})
    model = ModelConfig(
        params={**DEFAULT_MODEL_PARAMS, **params},
        num_boost_round=mod.optional("num_boost_round", int, default=2000, minimum=1),
        early_stopping_rounds=mod.optional("early_stopping_rounds", int, default=50, minimum=1),
        validation_months=mod.optional("validation_months", int, default=3, minimum=1),
        seed=mod.optional("seed", int, default=42),
        training_origins=mod.optional("training_origins", int, default=None, minimum=1),
        # null in the file: fit on every labelled row however many there are.
        max_training_rows=mod.optional("max_training_rows", int, default=200_000, minimum=1000)
        if mod.raw.get("max_training_rows", 0) is not None
        else None,
        scale_by_recent_mean=mod.optional("scale_by_recent_mean", bool, default=False),
    )
    if model.scale_by_recent_mean and not str(model.params.get("objective", "")).startswith(
        ("reg:tweedie", "count:poisson", "reg:gamma")
    ):
        raise mod.error(
            "scale_by_recent_mean",
            f"needs a log-link objective (reg:tweedie, count:poisson, reg:gamma), "
            f"not {model.params.get('objective')!r}",
        )

    ev = section.child("evaluation", required=False)
    ev.reject_unknown(
        {
            "holdout_months",
            "statistical_baselines",
            "statistical_max_series",
            "statistical_jobs",
            "backtest_origins",
        }
    )
    evaluation = EvaluationConfig(
        holdout_months=ev.optional("holdout_months", int, default=6, minimum=1),
        statistical_baselines=ev.choices(
            "statistical_baselines", STATISTICAL_BASELINES, default=list(STATISTICAL_BASELINES)
        ),
        # null in the file: score them on every entity however many there are.
        statistical_max_series=ev.optional(
            "statistical_max_series", int, default=DEFAULT_STATISTICAL_MAX_SERIES, minimum=1
        )
        if ev.raw.get("statistical_max_series", 0) is not None
        else None,
        statistical_jobs=ev.optional("statistical_jobs", int, default=None, minimum=1),
        backtest_origins=_backtest_origins(ev),
    )

    pred = section.child("predictions")
    pred.reject_unknown({"url", "conn_id", "schema", "table"})
    predictions = PredictionsConfig(
        database=_database(pred, base),
        table=pred.optional("table", str, default="forecasts"),
    )
    if not _IDENTIFIER.match(predictions.table):
        raise pred.error("table", "must be a plain table name")

    horizon = section.optional("horizon", int, default=1, minimum=1)
    if model.training_origins is not None:
        # Training targets come before the validation and holdout months, h months after an origin.
        least = model.validation_months + evaluation.holdout_months + horizon
        if model.training_origins < least:
            raise mod.error(
                "training_origins",
                f"{model.training_origins} leaves no origin to train horizon {horizon} on: it must be at "
                f"least {least} (model.validation_months {model.validation_months} + "
                f"evaluation.holdout_months {evaluation.holdout_months} + horizon {horizon})",
            )
    # A training row for horizon h needs an origin with a full feature lookback and a target
    # month before the validation and holdout months: the window must hold all of them.
    lookback, validation_months = features.lookback_months, model.validation_months
    holdout_months = evaluation.holdout_months
    needed = lookback + validation_months + holdout_months + horizon
    if source.history_months is not None and source.history_months < needed:
        longest = source.history_months - lookback - validation_months - holdout_months
        parts = (
            f"feature lookback {lookback} + model.validation_months {validation_months} + "
            f"evaluation.holdout_months {holdout_months} + horizon {horizon}"
        )
        if longest >= 1:
            raise section.error(
                "horizon",
                f"{horizon} is longer than source.history_months {source.history_months} can label: "
                f"no training row would have a target {horizon} months after its origin. The longest "
                f"horizon it can train is {longest}; forecasting {horizon} months ahead needs "
                f"history_months of at least {needed} ({parts})",
            )
        raise src.error(
            "history_months",
            f"{source.history_months} leaves no month to train on: it must be at least {needed} ({parts})",
        )

    comp = section.child("compute", required=False)
    comp.reject_unknown({"dask_scheduler"})
    # An empty address (an empty ${DASK_SCHEDULER}) means in-process, as no address does.
    compute = ComputeConfig(dask_scheduler=comp.optional("dask_scheduler", str) or None)
    if compute.dask_scheduler is not None and "://" not in compute.dask_scheduler:
        raise comp.error(
            "dask_scheduler",
            f"must be a scheduler address like tcp://host:8786, got {compute.dask_scheduler!r}",
        )

    gt = section.child("gate", required=False)
    gt.reject_unknown({"min_improvement", "min_margin_over_baseline", "blend"})
    margins = {
        key: gt.optional(key, float, default=0.0, minimum=0.0)
        for key in ("min_improvement", "min_margin_over_baseline")
    }
    for key, value in margins.items():
        if value >= 1:
            raise gt.error(key, f"is a relative margin below 1 (0.02 = 2% lower WAPE), got {value!r}")
    gate = GateConfig(**margins, blend=gt.optional("blend", bool, default=True) is not False)

    mon = section.child("monitoring", required=False)
    mon.reject_unknown(
        {
            "segment",
            "psi_threshold",
            "ks_alpha",
            "psi_bins",
            "entity_share_threshold",
            "drift_sample_rows",
            "reference_months",
        }
    )
    monitoring = MonitoringConfig(
        segment=mon.optional("segment", str),
        psi_threshold=mon.optional("psi_threshold", float, default=0.2, minimum=0.0),
        ks_alpha=mon.optional("ks_alpha", float, default=0.01, minimum=0.0),
        psi_bins=mon.optional("psi_bins", int, default=10, minimum=2),
        entity_share_threshold=mon.optional("entity_share_threshold", float, default=0.1, minimum=0.0),
        drift_sample_rows=mon.optional("drift_sample_rows", int, default=100_000, minimum=1000),
        # null in the file: the whole training window.
        reference_months=mon.optional("reference_months", int, default=12, minimum=1)
        if mon.raw.get("reference_months", 0) is not None
        else None,
    )
    for key in ("ks_alpha", "entity_share_threshold"):
        if getattr(monitoring, key) > 1:
            raise mon.error(key, f"is a share between 0 and 1, got {getattr(monitoring, key)!r}")
    if monitoring.segment is not None and monitoring.segment not in [*entity_columns, *source.attributes]:
        raise mon.error(
            "segment",
            f"must be one of the entity columns or attributes "
            f"({', '.join([*entity_columns, *source.attributes])}), got {monitoring.segment!r}",
        )

    alerts = _alerts(section.child("alerts", required=False))
    plans = _plans(section.child("plans"), source, base) if section.raw.get("plans") is not None else None

    data_dir = section.optional("data_dir", str)
    if data_dir is None:
        raise section.error("data_dir", "is required")
    return Config(
        path=path,
        data_dir=_resolve_path(data_dir, base),
        source=source,
        validation=validation,
        features=features,
        feature_store=fs_raw,
        model=model,
        evaluation=evaluation,
        predictions=predictions,
        horizon=horizon,
        feature_store_unexpanded=fs_unexpanded,
        compute=compute,
        gate=gate,
        monitoring=monitoring,
        alerts=alerts,
        plans=plans,
    )


def _plans(pl: _Section, source: SourceConfig, base: Path) -> PlansConfig:
    """The ``plans`` section: where the plans live (the source's database unless it names one)
    and which columns play which role."""
    pl.reject_unknown(
        {
            "url",
            "conn_id",
            "schema",
            "table",
            "query",
            "entity_columns",
            "month_column",
            "covariates",
            "planned_at",
            "fill",
            "scenarios",
        }
    )
    table, query = pl.exactly_one("table", "query")
    if pl.raw.get("url") is None and pl.raw.get("conn_id") is None:
        # The plans live beside the sales, unless the section says where.
        database = Database(
            url=source.database.url,
            conn_id=source.database.conn_id,
            schema=pl.optional("schema", str, default=source.database.schema),
        )
    else:
        database = _database(pl, base)
    entity_columns = pl.identifiers("entity_columns") or list(source.entity_columns)
    if entity_columns != source.entity_columns:
        raise pl.error(
            "entity_columns",
            f"must be the source's entity columns ({', '.join(source.entity_columns)}), got {entity_columns!r}",
        )
    covariates = pl.identifiers("covariates", required=True)
    if not covariates:
        raise pl.error("covariates", "must name at least one planned column")
    month_column = pl.identifier("month_column") if "month_column" in pl.raw else source.time_column
    planned_at = pl.identifier("planned_at") if "planned_at" in pl.raw else "planned_at"
    roles = [*entity_columns, month_column, planned_at, *covariates]
    duplicated = sorted({c for c in roles if roles.count(c) > 1})
    if duplicated:
        raise pl.error("", f"columns given more than one role: {', '.join(duplicated)}")
    taken = {*source.covariates, *source.attributes, *source.entity_columns}
    clashing = [plan_feature(c) for c in covariates if plan_feature(c) in taken]
    if clashing:
        raise pl.error("covariates", f"{clashing[0]} is already a source column: rename it there")
    raw_fill = pl.raw.get("fill") or {}
    if not isinstance(raw_fill, dict):
        raise pl.error("fill", f"must map covariates to a number or {FILL_EMPTY!r}, got {raw_fill!r}")
    fill: dict[str, float | str] = {}
    for covariate, value in raw_fill.items():
        if covariate not in covariates:
            raise pl.error(f"fill.{covariate}", f"is not one of plans.covariates ({', '.join(covariates)})")
        if value == FILL_EMPTY:
            fill[covariate] = FILL_EMPTY
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            fill[covariate] = float(value)
        else:
            raise pl.error(f"fill.{covariate}", f"must be a number or {FILL_EMPTY!r}, got {value!r}")
    scenarios = None
    if pl.raw.get("scenarios") is not None:
        scenarios = _scenarios(pl.child("scenarios"), database, [*entity_columns, month_column], base)
    return PlansConfig(
        database=database,
        table=table,
        query=query,
        entity_columns=entity_columns,
        month_column=month_column,
        covariates=covariates,
        planned_at=planned_at,
        fill=fill,
        scenarios=scenarios,
    )


def _scenarios(sc: _Section, plans_database: Database, keys: list[str], base: Path) -> ScenariosConfig:
    """The ``plans.scenarios`` section: where the scenarios live (the plans' database unless it
    names one), the scenario column and the base scenario's name."""
    sc.reject_unknown({"url", "conn_id", "schema", "table", "query", "scenario_column", "base"})
    table, query = sc.exactly_one("table", "query")
    if sc.raw.get("url") is None and sc.raw.get("conn_id") is None:
        database = Database(
            url=plans_database.url,
            conn_id=plans_database.conn_id,
            schema=sc.optional("schema", str, default=plans_database.schema),
        )
    else:
        database = _database(sc, base)
    scenario_column = sc.identifier("scenario_column") if "scenario_column" in sc.raw else "scenario"
    if scenario_column in keys:
        raise sc.error("scenario_column", f"{scenario_column!r} is already an entity or month column")
    name = sc.optional("base", str, default=BASE_SCENARIO)
    if not name or not name.strip() or len(name) > SCENARIO_NAME_LENGTH:
        raise sc.error("base", f"must be a name of 1 to {SCENARIO_NAME_LENGTH} characters, got {name!r}")
    return ScenariosConfig(
        database=database, table=table, query=query, scenario_column=scenario_column, base=name
    )


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _alerts(al: _Section) -> AlertsConfig:
    """The ``alerts`` section: its rules, and its notifiers (each checked key by key)."""
    al.reject_unknown({"notifiers", "max_wape", "worse_than_naive_months"})
    raw = al.raw.get("notifiers") or []
    if not isinstance(raw, list):
        raise al.error("notifiers", f"must be a list of notifiers (type: smtp, to: [...]), got {raw!r}")
    notifiers = []
    for i, entry in enumerate(raw):
        item = _Section(entry, f"{al.name}.notifiers[{i}]", al.path)
        item.reject_unknown({"type", "to", "conn_id", "from_email"})
        kind = item.raw.get("type")
        if kind not in NOTIFIER_TYPES:
            raise item.error("type", f"must be one of {', '.join(NOTIFIER_TYPES)}, got {kind!r}")
        to = item.raw.get("to")
        to = [to] if isinstance(to, str) else to
        if not to or not isinstance(to, list) or not all(isinstance(a, str) and _EMAIL.match(a) for a in to):
            raise item.error("to", f"must be an email address or a list of them, got {item.raw.get('to')!r}")
        from_email = item.optional("from_email", str)
        if from_email is not None and not _EMAIL.match(from_email):
            raise item.error("from_email", f"must be an email address, got {from_email!r}")
        conn_id = item.optional("conn_id", str, default="smtp_default")
        if not conn_id:
            raise item.error("conn_id", "must name an Airflow connection")
        notifiers.append(NotifierConfig(type=kind, to=list(to), conn_id=conn_id, from_email=from_email))
    return AlertsConfig(
        notifiers=notifiers,
        max_wape=al.optional("max_wape", float, minimum=0.0),
        worse_than_naive_months=al.optional("worse_than_naive_months", int, default=3, minimum=0),
    )


def _resolve_path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Make the path of a relative ``sqlite:///`` URL relative to ``base``."""
    prefix, sep, rest = url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or rest.startswith("/") or rest in ("", ":memory:"):
        return url
    path, q, query = rest.partition("?")
    return f"{prefix}:///{_resolve_path(path, base)}{q}{query}"


def _database(section: _Section, base: Path) -> Database:
    url, conn_id = section.exactly_one("url", "conn_id")
    return Database(
        url=resolve_sqlite_url(url, base) if url else None,
        conn_id=conn_id,
        schema=section.optional("schema", str),
    )


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
        return str(_resolve_path(value, base))
    # ${VAR}s stay for Feast to fill in; a path that is relative once filled in starts at base.
    if Path(value).expanduser().is_absolute():
        return str(Path(written).expanduser()) if written.startswith("~") else written
    return str(base / written)


class _Section:
    """A mapping in the config with its dotted name, for error messages that name the key."""

    def __init__(self, raw: Any, name: str, path: Path):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {name or 'the file'} must be a mapping")
        self.raw, self.name, self.path = raw, name, path

    def error(self, key: str, message: str) -> ConfigError:
        where = ".".join(p for p in (self.name, key) if p) or "config"
        return ConfigError(f"{self.path}: {where}: {message}")

    def reject_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            raise self.error(unknown[0], f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def child(self, key: str, required: bool = True) -> _Section:
        if key not in self.raw and required:
            raise self.error(key, "is required")
        return _Section(self.raw.get(key), ".".join(p for p in (self.name, key) if p), self.path)

    def exactly_one(self, first: str, second: str) -> tuple[str | None, str | None]:
        """The two string keys of which the section must set exactly one (e.g. table or query)."""
        a, b = self.optional(first, str), self.optional(second, str)
        if (a is None) == (b is None):
            raise self.error("", f"set exactly one of {self.name}.{first} and {self.name}.{second}")
        return a, b

    def optional(self, key: str, kind: type, default: Any = None, minimum: float | None = None) -> Any:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"must be {kind.__name__}, got {value!r}")
        if minimum is not None and value < minimum:  # type: ignore[operator]  # kind is numeric here
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        return value

    def identifier(self, key: str) -> str:
        value = self.optional(key, str)
        if value is None:
            raise self.error(key, "is required")
        if not _IDENTIFIER.match(value):
            raise self.error(key, f"must be a plain column name, got {value!r}")
        return value

    def identifiers(self, key: str, required: bool = False) -> list[str]:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and _IDENTIFIER.match(v) for v in value):
            raise self.error(key, f"must be a list of plain column names, got {value!r}")
        return value

    def choices(self, key: str, allowed: tuple[str, ...], default: list[str]) -> list[str]:
        """A list of names from ``allowed``, each once, in the file's order (null: none)."""
        value = self.raw.get(key, default)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
            raise self.error(key, f"must be a list of {', '.join(allowed)} (or [] for none), got {value!r}")
        return list(dict.fromkeys(value))

    def positive_ints(self, key: str, default: list[int]) -> list[int]:
        value = self.raw.get(key, default)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise self.error(key, f"must be a non-empty list of positive whole numbers, got {value!r}")
        return sorted(set(value))


# --- the feature_store section, checked by Feast itself --------------------------------------

# What the pipeline assumes where the section says nothing (Feast's own defaults in 0.67).
FEAST_DEFAULTS: dict[str, Any] = {"provider": "local", "entity_key_serialization_version": 3}


def feast_repo_config(config: Config):
    """Feast's ``RepoConfig`` of the ``feature_store`` section, every part of it built and checked
    by Feast's own models; a key Feast does not know or a value it refuses is a ConfigError naming
    the key path (``feature_store.online_store.pathh: ...``). Imports Feast.

    Feast itself accepts unknown top-level keys (``onlin_store:`` would silently mean the default
    SQLite online store) and builds the nested store configs, which refuse unknown keys, only when
    first used. Here they are all built at once. No message quotes a value: a registry URL may
    hold a password.
    """
    return _feast_repo_config({**FEAST_DEFAULTS, **config.feature_store}, config.path)


def _feast_repo_config(settings: dict[str, Any], path: Path):
    from feast import repo_config as feast
    from feast.infra.provider import PROVIDERS_CLASS_FOR_TYPE
    from pydantic import BaseModel

    settings = copy.deepcopy(settings)  # Feast's validators fill in defaults in place
    section = _Section(settings, "feature_store", path)
    keys = _model_keys(feast.RepoConfig) - {"repo_path"}  # the pipeline sets repo_path
    unknown = sorted(str(k) for k in settings if k not in keys)
    if unknown:
        raise section.error(unknown[0], f"unknown key (Feast's keys: {', '.join(sorted(keys))})")
    if "registry" not in settings:
        raise section.error("registry", "is required (a file path, or a mapping with registry_type and path)")
    provider = settings.get("provider")
    if isinstance(provider, str) and "." not in provider and provider not in PROVIDERS_CLASS_FOR_TYPE:
        raise section.error(
            "provider",
            f"{provider!r} is not a provider Feast knows ({', '.join(sorted(PROVIDERS_CLASS_FOR_TYPE))})",
        )
    auth = settings.get("auth")
    if auth is not None:
        if not isinstance(auth, dict):
            raise section.error("auth", f"must be a mapping, got {type(auth).__name__}")
        if auth.get("type") not in feast.ALLOWED_AUTH_TYPES:
            raise _Section(auth, "feature_store.auth", path).error(
                "type", f"must be one of {', '.join(feast.ALLOWED_AUTH_TYPES)}"
            )

    # The nested sections first, each with the model Feast picks for it (RepoConfig's validators
    # build some of them, but their errors would not say which section they are about).
    # key: (the key naming its type, its default, Feast's types, Feast's lookup of a type's model)
    nested = {
        "registry": (
            "registry_type",
            None,
            feast.REGISTRY_CLASS_FOR_TYPE,
            feast.get_registry_config_from_type,
        ),
        "online_store": (
            "type",
            "sqlite",
            feast.ONLINE_STORE_CLASS_FOR_TYPE,
            feast.get_online_config_from_type,
        ),
        "offline_store": (
            "type",
            "dask",
            feast.OFFLINE_STORE_CLASS_FOR_TYPE,
            feast.get_offline_config_from_type,
        ),
        "batch_engine": (
            "type",
            None,
            feast.BATCH_ENGINE_CLASS_FOR_TYPE,
            feast.get_batch_engine_config_from_type,
        ),
        "feature_server": (
            "type",
            "local",
            feast.FEATURE_SERVER_CONFIG_CLASS_FOR_TYPE,
            feast.get_feature_server_config_from_type,
        ),
    }
    for key, (type_key, default, types, lookup) in nested.items():
        value = settings.get(key)
        kind: Any
        if value is None or (key == "online_store" and str(value).lower() in ("none", "null")):
            continue
        if isinstance(value, str):
            kind, values = value, {}
        elif isinstance(value, dict):
            kind, values = value.get(type_key, default), value
        else:
            shape = "a file path or a mapping" if key == "registry" else "a mapping or a type name"
            raise section.error(key, f"must be {shape}, got {type(value).__name__}")
        where = _Section(values, f"feature_store.{key}", path)
        if key == "registry" and (isinstance(value, str) or kind is None):
            model = feast.RegistryConfig  # a file path or URI, or a mapping without registry_type
            values = {"path": value} if isinstance(value, str) else values
        elif not isinstance(kind, str):
            raise where.error(type_key, "is required" if kind is None else "must be a type name")
        else:
            hint = f"Feast's types: {', '.join(sorted(t for t in types if not t.startswith('feast.')))}"
            model = _feast_call(where, type_key, lambda kind=kind, lookup=lookup: lookup(kind), (kind, hint))
        _checked(where, lambda model=model, values=values: model(**values), model)

    repo = _feast_call(section, "", lambda: feast.RepoConfig(**settings), model=feast.RepoConfig)
    # Feast builds these on first use: build them now, through Feast's own code.
    for key, attribute in [
        ("registry", "registry"),
        ("online_store", "online_store"),
        ("offline_store", "offline_store"),
        ("batch_engine", "batch_engine"),
        ("auth", "auth_config"),
    ]:
        given = settings.get(key) if isinstance(settings.get(key), dict) else None
        _checked(
            _Section(given, f"feature_store.{key}", path),
            lambda attribute=attribute: getattr(repo, attribute),
        )
    # Typed settings that RepoConfig builds itself (materialization, ...): unknown keys too.
    for name, info in feast.RepoConfig.model_fields.items():
        value = getattr(repo, name, None)
        if isinstance(value, BaseModel) and (info.alias or name) in settings:
            _checked(
                _Section(settings[info.alias or name], f"feature_store.{info.alias or name}", path),
                lambda v=value: v,
            )
    return repo


def _model_keys(model: type) -> set[str]:
    """The keys a pydantic model reads: each field's alias, else its name."""
    return {f.alias or name for name, f in model.model_fields.items()}  # type: ignore[attr-defined]


def _checked(where: _Section, build, model: type | None = None):
    """Build a Feast settings model from the mapping ``where``; a key the model has no field for
    is refused, also where the model itself would keep or drop it silently."""
    built = _feast_call(where, "", build, model=model)
    fields = getattr(type(built), "model_fields", None)
    if fields is not None and where.raw:
        allowed = {*fields, *(f.alias for f in fields.values() if f.alias)}
        unknown = sorted(str(k) for k in where.raw if k not in allowed)
        if unknown:
            keys = ", ".join(sorted(_model_keys(type(built))))
            raise where.error(unknown[0], f"unknown key ({type(built).__name__}'s keys: {keys})")
    return built


def _feast_call(
    where: _Section, key: str, call, lookup: tuple[str, str] | None = None, model: type | None = None
):
    """``call()``; its failure is a ConfigError naming the key, and quoting no value.

    ``lookup`` (type name, hint) when ``call`` looks a type name up; ``model`` when it builds one.
    """
    from feast.errors import FeastError
    from pydantic import ValidationError

    try:
        return call()
    except ValidationError as err:
        problems = err.errors(include_url=False, include_input=False, include_context=False)
        first = problems[0]
        at = ".".join(p for p in (key, *map(str, first["loc"])) if p)
        message = _scrub(first["msg"][:1].lower() + first["msg"][1:], where.raw)
        if first["type"] == "extra_forbidden" and model is not None and err.title == model.__name__:
            message += f" ({model.__name__}'s keys: {', '.join(sorted(_model_keys(model)))})"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        raise where.error(at, message) from None
    except (FeastError, ImportError, AssertionError, KeyError, TypeError, AttributeError, ValueError) as err:
        # Unknown type names (Feast imports them as classes), missing keys, wrong shapes.
        detail = str(err).strip() if isinstance(err, FeastError | ImportError) else ""
        detail = _scrub(detail or f"{type(err).__name__}: {err}".rstrip(": "), where.raw)
        if lookup is not None:
            kind, hint = lookup
            hint = detail if isinstance(err, ImportError) else hint
            raise where.error(key, f"{kind!r} is not a type Feast knows ({hint})") from None
        raise where.error(key, f"refused by Feast: {detail}") from None


def _scrub(text: str, values: Any) -> str:
    """``text`` without the URLs and connection strings among ``values`` (they may hold passwords)."""
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list):
        for value in values:
            text = _scrub(text, value)
    elif isinstance(values, str) and len(values) >= 8 and re.search(r"[:/@=]", values):
        text = text.replace(values, "***")
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m forecasting.core.config [PATH]``: load the deployment's config (PATH, else
    ``$FORECAST_CONFIG``, else the demo config) with Feast's check of ``feature_store``, as
    every task would; print OK, or the error and exit with 1."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m forecasting.core.config",
        description="Check a forecast config, including its feature_store section against Feast.",
    )
    parser.add_argument("path", nargs="?", help="the config file (default: $FORECAST_CONFIG, else the demo)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.path, check_feast=True)
    except ConfigError as err:
        print(f"Forecast config refused: {err}", file=sys.stderr)
        return 1
    print(f"Forecast config OK: {config.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
