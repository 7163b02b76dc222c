"""The config's sections, each a pydantic model whose fields carry their defaults and what
they mean (the ``plans`` section is in ``plans.py``, the whole config in ``deployment.py``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from forecasting.core.config.base import (
    DATABASE_KEYS,
    IDENTIFIER,
    Database,
    Section,
    choices,
    exactly_one,
    fail,
    identifier,
    identifiers,
    positive_ints,
    with_database,
)

ColumnName = Annotated[str, BeforeValidator(identifier)]
ColumnNames = Annotated[list[str], BeforeValidator(identifiers)]
PositiveInts = Annotated[list[int], BeforeValidator(positive_ints)]

DEFAULT_HISTORY_MONTHS = 120


class WithDatabase(Section):
    """A section that names a database: in the file, by url or conn_id (and schema)."""

    database: Database = Field(
        default_factory=Database, description="Where the table is (url or conn_id, and schema)."
    )

    @classmethod
    def file_keys(cls) -> list[str]:
        return sorted({*cls.model_fields, *DATABASE_KEYS} - {"database"})

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return with_database(data, context["base"])


class ReadsTable(WithDatabase):
    """A section that reads a table or a query (exactly one of them)."""

    table: str | None = Field(default=None, description="The table to read (or query).")
    query: str | None = Field(default=None, description="A SELECT to read instead of a table.")

    @model_validator(mode="after")
    def _table_or_query(self) -> ReadsTable:
        exactly_one("table", "query", (self.table, self.query))
        return self


class SourceConfig(ReadsTable):
    """Where the sales live and which columns play which role."""

    entity_columns: ColumnNames = Field(
        description="The columns that together name a series (store, item...)."
    )
    time_column: ColumnName = Field(description="A date/timestamp in the month of the row.")
    target_column: ColumnName = Field(description="The number forecast (units sold...).")
    covariates: ColumnNames = Field(
        default_factory=list, description="Numeric columns known up to each month."
    )
    attributes: ColumnNames = Field(
        default_factory=list, description="Per-entity columns (store size, region...)."
    )
    # Ten years: AutoETS and Theta gain from long histories (docs/quality.md, M3: 0.0765 with 60
    # months, 0.0719 with 120), and the model's training rows are capped by model.max_training_rows.
    history_months: int | None = Field(
        default=DEFAULT_HISTORY_MONTHS, ge=13, description="Months of history extracted (null: all of it)."
    )
    postgres_adbc: bool = Field(
        default=True,
        description="Read a PostgreSQL source through ADBC into Arrow (false: row by row through SQLAlchemy).",
    )

    @model_validator(mode="after")
    def _roles(self) -> SourceConfig:
        if not self.entity_columns:
            raise fail("must name at least one column", "entity_columns")
        roles = [
            *self.entity_columns,
            self.time_column,
            self.target_column,
            *self.covariates,
            *self.attributes,
        ]
        duplicated = sorted({c for c in roles if roles.count(c) > 1})
        if duplicated:
            raise fail(f"columns given more than one role: {', '.join(duplicated)}")
        return self


class ValidationConfig(Section):
    """How far a month's data may move before validation stops the run."""

    row_count_tolerance: float = Field(
        default=0.5,
        ge=0.0,
        description="Month M may hold this fraction fewer or more rows than M-1 (and its forecasts).",
    )
    forecast_max_to_history_max: float = Field(
        default=10.0, ge=1.0, description="No forecast may exceed this many times its entity's largest month."
    )


# Groups of features the model derives from Feast's when it assembles a row
# (``dataset.with_model_columns``); ``features.derived`` names the ones a config turns on.
DERIVED_FEATURE_GROUPS = ("seasonal", "relative")


# The modelling defaults below (lags, derived groups, scaling) are the ones that did best across
# every real data set (Dominick's, tourism, M3), chosen by benchmarks/choose_defaults.py on
# rolling origins before each set's final holdout (docs/quality.md: One set of defaults).
# Every lag to 13 puts the target's month a year before at each horizon 1..3 (lag 12, 11, 10),
# and 24 the month two years before.
DEFAULT_LAGS = (*range(1, 14), 24)
DEFAULT_ROLLING_WINDOWS = (3, 6, 12)
DEFAULT_DERIVED = DERIVED_FEATURE_GROUPS


class FeatureConfig(Section):
    """The features computed from each series' history."""

    lags: PositiveInts = Field(
        default_factory=lambda: list(DEFAULT_LAGS), description="Months back of each lag feature."
    )
    rolling_windows: PositiveInts = Field(
        default_factory=lambda: list(DEFAULT_ROLLING_WINDOWS),
        description="Widths (months) of the rolling mean/std features.",
    )
    derived: Annotated[list[str], BeforeValidator(lambda v: choices(v, DERIVED_FEATURE_GROUPS))] = Field(
        default_factory=lambda: list(DEFAULT_DERIVED),
        description="Groups of derived features turned on: seasonal, relative ([]: none).",
    )

    @property
    def lookback_months(self) -> int:
        """How many months of history the widest feature reads."""
        return max([*self.lags, *self.rolling_windows])


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
LOG_LINK_OBJECTIVES = ("reg:tweedie", "count:poisson", "reg:gamma")


class TuningConfig(Section):
    """The optional hyperparameter search (forecasting.modeling.tuning): Optuna's seeded TPE
    sampler over the XGBoost parameters, scored by WAPE on the validation months; its best
    parameters replace ``model.params`` only when they beat them on earlier months it never
    searched on. Off by default: on Dominick's and tourism it did not pay (docs/modeling.md)."""

    enabled: bool = Field(default=False, description="Search the XGBoost parameters before each training.")
    budget_seconds: float = Field(
        default=120.0, gt=0.0, description="Wall-clock seconds for the search and its check, at most."
    )
    max_trials: int = Field(
        default=50, ge=1, description="Parameter sets tried at most (the defaults first)."
    )
    min_improvement: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        description="Adopted only with a WAPE this much lower (relative) than the defaults' on the check months.",
    )
    pruning: bool = Field(
        default=False,
        description="Stop a trial early when its validation WAPE is worse than the median trial's at the same tree.",
    )


class ModelConfig(Section):
    """The XGBoost model and how it is fitted."""

    params: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_PARAMS),
        description="XGBoost parameters, over DEFAULT_MODEL_PARAMS (a key given replaces its default).",
    )
    num_boost_round: int = Field(
        default=2000, ge=1, description="Trees at most; early stopping usually stops sooner."
    )
    early_stopping_rounds: int = Field(
        default=50, ge=1, description="Stop after this many trees without a better validation score."
    )
    validation_months: int = Field(
        default=3, ge=1, description="The last months before the holdout, for early stopping."
    )
    seed: int = Field(default=42, description="The seed of every random choice (sampling, subsampling).")
    training_origins: int | None = Field(
        default=None,
        ge=1,
        description="Origins at most this many months before M (null: every month of the window).",
    )
    max_training_rows: int | None = Field(
        default=200_000,
        ge=1000,
        description="Fit on a uniform sample of about this many labelled rows (null: all).",
    )
    # Exact TreeSHAP costs about a hundred predictions a row (docs/benchmarks.md): above this many
    # entities it would take most of the month's time budget.
    exact_drivers_max_series: int | None = Field(
        default=2_000,
        ge=1,
        description="More entities: drivers from XGBoost's approximate contributions (per path, linear in depth) instead of exact TreeSHAP (null: always exact).",
    )
    scale_by_recent_mean: bool = Field(
        default=True,
        description="Fit each row relative to its series' recent mean (a log-link objective's base margin).",
    )

    tuning: TuningConfig = Field(
        default_factory=TuningConfig, description="The optional hyperparameter search within a budget."
    )

    @field_validator("params", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        return {**DEFAULT_MODEL_PARAMS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _log_link(self) -> ModelConfig:
        objective = self.params.get("objective")
        if self.scale_by_recent_mean and not str(objective or "").startswith(LOG_LINK_OBJECTIVES):
            raise fail(
                f"needs a log-link objective ({', '.join(LOG_LINK_OBJECTIVES)}), not {objective!r} "
                "(it is on by default: set model.scale_by_recent_mean: false to fit absolute units)",
                "scale_by_recent_mean",
            )
        return self


# The statistical forecasters evaluation can score as baselines (forecasting.modeling.baselines;
# tests/modeling check the two lists agree: core cannot import the registry).
STATISTICAL_BASELINES = ("auto_ets", "theta")
# The intermittent-demand forecasters (forecasting.modeling.baselines.statistical), scored on the
# holdout rows of the intermittent and lumpy demand classes (forecasting.features.demand).
INTERMITTENT_BASELINES = ("croston_sba", "tsb", "imapa")
DEFAULT_STATISTICAL_MAX_SERIES = 100
DEFAULT_BACKTEST_ORIGINS = 6
DEFAULT_AUTO_ETS_SEARCH_MAX_SERIES = 10_000


class EvaluationConfig(Section):
    """How the model is scored against the baselines before it may publish."""

    holdout_months: int = Field(
        default=6, ge=1, description="The last months of the window, scored and never trained on."
    )
    statistical_baselines: Annotated[
        list[str], BeforeValidator(lambda v: choices(v, STATISTICAL_BASELINES))
    ] = Field(
        default_factory=lambda: list(STATISTICAL_BASELINES),
        description="Statistical baselines scored beside the naive ones, on the same rows ([]: none).",
    )
    intermittent_baselines: Annotated[
        list[str], BeforeValidator(lambda v: choices(v, INTERMITTENT_BASELINES))
    ] = Field(
        default_factory=lambda: list(INTERMITTENT_BASELINES),
        description="Intermittent-demand forecasters scored on the intermittent and lumpy classes' rows ([]: none).",
    )
    # An AutoETS and a Theta fit per entity and holdout origin are costly: a sample keeps the
    # baselines' time bounded at any scale.
    statistical_max_series: int | None = Field(
        default=DEFAULT_STATISTICAL_MAX_SERIES,
        ge=1,
        description="More entities in the holdout: every forecaster is scored on a seeded sample of this many (null: all).",
    )
    # Each process is a fresh interpreter importing statsforecast: it pays from a few hundred series on.
    statistical_jobs: int | None = Field(
        default=None, ge=1, description="Processes the statistical fits run in (null: one per core)."
    )
    # AutoETS's search over forms costs about eight fixed fits a series (docs/modeling.md): above
    # this many entities predict could not fit it for every one within a month's time budget.
    auto_ets_search_max_series: int | None = Field(
        default=DEFAULT_AUTO_ETS_SEARCH_MAX_SERIES,
        ge=1,
        description="More entities in the panel: AutoETS fits one fixed form (damped additive, AAdA) instead of choosing it by AICc (null: always choose).",
    )
    # At most holdout_months: an earlier origin's fit would reuse a number of trees early
    # stopping chose on targets after it. Unset in the file: the default, capped at holdout_months.
    backtest_origins: int = Field(
        default=DEFAULT_BACKTEST_ORIGINS,
        ge=0,
        description="The last this many holdout origins each get a model fitted up to them (0: no backtest).",
    )

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        if "backtest_origins" not in data:
            holdout = data.get("holdout_months", cls.model_fields["holdout_months"].default)
            if isinstance(holdout, int) and not isinstance(holdout, bool):
                data["backtest_origins"] = min(DEFAULT_BACKTEST_ORIGINS, holdout)
        elif data["backtest_origins"] is None:
            raise fail("must be int (0 for no backtest), got None", "backtest_origins")
        return data

    @model_validator(mode="after")
    def _origins_in_holdout(self) -> EvaluationConfig:
        if self.backtest_origins > self.holdout_months:
            raise fail(
                f"{self.backtest_origins} is more than evaluation.holdout_months {self.holdout_months}: the fit of "
                "an origin before the holdout would reuse a number of trees early stopping chose on later targets",
                "backtest_origins",
            )
        return self


class GateConfig(Section):
    """When a newly trained model (the challenger) replaces the champion (see forecasting.registry.gate).

    Both margins are relative: the challenger's holdout WAPE must be below the champion's times
    (1 - min_improvement) and below the best baseline's times (1 - min_margin_over_baseline).
    """

    min_improvement: float = Field(
        default=0.0,
        ge=0.0,
        description="How much lower (relative) the challenger's WAPE must be than the champion's.",
    )
    min_margin_over_baseline: float = Field(
        default=0.0,
        ge=0.0,
        description="How much lower (relative) the published WAPE must be than the best baseline's.",
    )
    blend: bool = Field(
        default=True,
        description="When no model beats the best baseline, publish the mean of the challenger's and its forecasts if that does.",
    )
    sample: bool = Field(
        default=True,
        description="Also compare the forecaster the rule chose with the statistical forecasters and their blends on the rows they were scored on (the sample).",
    )
    bootstrap_resamples: int = Field(
        default=1000,
        ge=100,
        description="Resamples of the paired bootstrap over entities of the WAPE difference on the sample.",
    )
    bootstrap_confidence: float = Field(
        default=0.9,
        gt=0.5,
        lt=1.0,
        description="A statistical forecaster displaces the rule's choice only if the one-sided upper bound at this level of its WAPE difference is below 0.",
    )

    @field_validator("min_improvement", "min_margin_over_baseline")
    @classmethod
    def _below_one(cls, value: float) -> float:
        if value >= 1:
            raise fail(f"is a relative margin below 1 (0.02 = 2% lower WAPE), got {value!r}")
        return value


# How the forecasts of a hierarchy's levels are made to add up (forecasting.modeling.hierarchy):
# hierarchicalforecast's BottomUp, or its MinTrace with one of these estimators of W.
RECONCILIATIONS = ("mint_shrink", "bottom_up", "ols", "wls_struct", "wls_var")
# The baselines that may forecast the aggregates before reconciliation (forecasting.modeling.baselines).
AGGREGATE_FORECASTERS = (*STATISTICAL_BASELINES, "seasonal_naive")


def _one_of(allowed: tuple[str, ...]) -> Any:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise fail(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return BeforeValidator(check)


def _levels(value: Any) -> Any:
    if not isinstance(value, list) or not value or not all(isinstance(level, list) for level in value):
        raise fail(f"must be a non-empty list of lists of column names ([] for the total), got {value!r}")
    return [identifiers(level) for level in value]


class HierarchyConfig(Section):
    """The aggregation levels forecast beside the entities, reconciled so that they add up
    (forecasting.modeling.hierarchy) and published into <table>_levels."""

    levels: Annotated[list[list[str]], BeforeValidator(_levels)] = Field(
        description="Each level: the entity columns and attributes it groups by ([]: the total)."
    )
    reconciliation: Annotated[str, _one_of(RECONCILIATIONS)] = Field(
        default="mint_shrink",
        description="How the levels are made to add up: mint_shrink, bottom_up, ols, wls_struct or wls_var.",
    )
    aggregate_forecaster: Annotated[str, _one_of(AGGREGATE_FORECASTERS)] = Field(
        default="auto_ets",
        description="The baseline that forecasts each aggregate before reconciliation: auto_ets, theta or seasonal_naive.",
    )
    # mint_shrink's covariance is dense (series x series): above this many series MinTrace's
    # sparse form with wls_var (a diagonal W) reconciles instead.
    sparse_above: int = Field(
        default=2000,
        ge=1,
        description="More series in the hierarchy: hierarchicalforecast's sparse MinTrace (wls_var, or the method if ols/wls_struct).",
    )

    max_bottom_loss: float = Field(
        default=0.01,
        ge=0.0,
        description="Reconcile bottom-up instead when the method makes the entities' holdout WAPE this much worse (relative) than unreconciled.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> HierarchyConfig:
        seen = [tuple(sorted(level)) for level in self.levels]
        repeated = sorted({",".join(level) or "total" for level in seen if seen.count(level) > 1})
        if repeated:
            raise fail(f"names a level more than once: {'; '.join(repeated)}", "levels")
        for level in self.levels:
            if len(set(level)) < len(level):
                raise fail(f"a level names a column twice: {level!r}", "levels")
        return self


class PredictionsConfig(WithDatabase):
    """Where the forecasts are published."""

    table: str = Field(
        default="forecasts", description="The forecasts table; its siblings are named <table>_*."
    )

    @model_validator(mode="after")
    def _plain_table(self) -> PredictionsConfig:
        if not IDENTIFIER.match(self.table):
            raise fail("must be a plain table name", "table")
        return self


# Notifier types an alerts.notifiers entry may name (forecasting.monitoring.alerts builds them).
NOTIFIER_TYPES = ("smtp",)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _notifier_type(value: Any) -> Any:
    if value not in NOTIFIER_TYPES:
        raise fail(f"must be one of {', '.join(NOTIFIER_TYPES)}, got {value!r}")
    return value


def _addresses(value: Any) -> Any:
    to = [value] if isinstance(value, str) else value
    if not to or not isinstance(to, list) or not all(isinstance(a, str) and _EMAIL.match(a) for a in to):
        raise fail(f"must be an email address or a list of them, got {value!r}")
    return list(to)


class NotifierConfig(Section):
    """One Airflow notifier alerts go through: ``smtp`` is the SMTP provider's SmtpNotifier."""

    type: Annotated[str, BeforeValidator(_notifier_type)] = Field(description="The notifier: smtp.")
    to: Annotated[list[str], BeforeValidator(_addresses)] = Field(
        description="An email address or a list of them."
    )
    conn_id: str = Field(default="smtp_default", description="The Airflow connection of the SMTP server.")
    from_email: str | None = Field(
        default=None, description="The sender (null: the connection's from_email)."
    )

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        # Left out, type and to are refused like a bad value: the message shows what they take.
        return {"type": None, "to": None, **data}

    @field_validator("conn_id")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise fail("must name an Airflow connection")
        return value

    @field_validator("from_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise fail(f"must be an email address, got {value!r}")
        return value


def _notifiers(value: Any) -> Any:
    value = value or []
    if not isinstance(value, list):
        raise fail(f"must be a list of notifiers (type: smtp, to: [...]), got {value!r}")
    return value


class AlertsConfig(Section):
    """When to alert (beside task failures and drift) and through which notifiers; without
    notifiers, alerts are logged and written to <table>_alerts only."""

    notifiers: Annotated[list[NotifierConfig], BeforeValidator(_notifiers)] = Field(
        default_factory=list, description="The notifiers alerts go through (none: logged and recorded only)."
    )
    max_wape: float | None = Field(
        default=None, ge=0.0, description="Alert when a horizon's realised WAPE is above this (null: never)."
    )
    worse_than_naive_months: int = Field(
        default=3,
        ge=0,
        description="Alert when realised WAPE is worse than the best naive's this many months in a row (0: never).",
    )


def _scheduler(value: Any) -> Any:
    # An empty address (an empty ${DASK_SCHEDULER}) means in-process, as no address does.
    if value == "":
        return None
    if isinstance(value, str) and "://" not in value:
        raise fail(f"must be a scheduler address like tcp://host:8786, got {value!r}")
    return value


class ComputeConfig(Section):
    """Where the heavy work runs."""

    dask_scheduler: Annotated[str | None, BeforeValidator(_scheduler)] = Field(
        default=None,
        description='A Dask scheduler ("tcp://host:8786") runs the heavy work on its cluster; null: in-process.',
    )
