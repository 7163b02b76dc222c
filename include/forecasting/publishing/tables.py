"""Every table and view of the predictions database, declared once (SQLAlchemy Core).

All are named after the predictions table (config ``predictions.table``, ``forecasts`` by
default): ``<table>`` itself, ``<table>_runs``, ``<table>_models`` ... Those keyed by entity
have the source's entity columns (config ``source.entity_columns``), typed after the source's
dtypes. Creation, upgrades of tables made by older releases, the analyst role's grants and
docs/tables.md all read the declarations below.

Regenerate docs/tables.md after changing them (a test fails while it is out of date)::

    python -m forecasting.publishing.tables_doc > docs/tables.md
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import SCENARIO_NAME_LENGTH, Config
from forecasting.core.names import (
    ACCURACY,
    ALERTS,
    CHURN,
    DRIFT,
    DRIVERS,
    ERRORS,
    LATEST,
    LEVELS_LATEST,
    MODELS,
    PUBLISH_LOCK,
    REVISIONS,
    RUNS,
    SCENARIOS,
    TRACKING_SIGNAL,
    relation_name,
)
from forecasting.modeling.baselines import NAIVE_BASELINES
from forecasting.publishing.fva_table import declare_fva, step_forecast_columns
from forecasting.publishing.levels_table import declare_level_errors, declare_levels
from forecasting.publishing.overrides_table import declare_outcomes, declare_overrides, final_columns
from forecasting.publishing.scenario_totals_table import declare_scenario_totals

log = logging.getLogger(__name__)

VIEWS = (LATEST, TRACKING_SIGNAL, REVISIONS, CHURN, LEVELS_LATEST)
# The months of errors each entity's tracking signal sums (the view <table>_tracking_signal).
TRACKING_MONTHS = 12


def analyst_relations(table: str) -> list[str]:
    """The tables and views the analyst role may read: every one but the publish locks."""
    declared = declare(table, {})
    readable = [t.name for t in declared.metadata.tables.values() if t is not declared.publish_lock]
    return [*readable, *(relation_name(table, view) for view in VIEWS)]


def entity_type(dtype: object) -> sa.types.TypeEngine:
    """An entity column's SQL type after its dtype in the source."""
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float()
    return sa.String(255)


def interval_columns() -> list[sa.Column]:
    return [
        sa.Column("p10", sa.Float, comment="10th percentile: 1 month in 10 sells less (NULL: no interval)"),
        sa.Column("p90", sa.Float, comment="90th percentile: 1 month in 10 sells more (NULL: no interval)"),
    ]


def coverage_columns() -> list[sa.Column]:
    """``<table>_accuracy``'s realised p10-p90 coverage (forecasting.monitoring.coverage)."""
    return [
        sa.Column("interval_forecasts", sa.Integer, comment="forecasts published with a p10 and a p90"),
        sa.Column("coverage", sa.Float, comment="share of those whose actual is in [p10, p90] (goal 0.8)"),
        sa.Column("below_p10", sa.Float, comment="share of those whose actual is below p10"),
        sa.Column("above_p90", sa.Float, comment="share of those whose actual is above p90"),
    ]


def demand_class_column() -> sa.Column:
    return sa.Column(
        "demand_class",
        sa.String(16),
        comment="the entity's demand pattern as of run_month: smooth, erratic, intermittent, lumpy or "
        "no_demand (ADI 1.32 and CV² 0.49 cut-offs; NULL: published before it was recorded)",
    )


def history_months_column() -> sa.Column:
    return sa.Column(
        "history_months",
        sa.Integer,
        comment="the entity's months of sales history as of run_month, from its first row in the run's window "
        "(1: it first sold in run_month; fewer than the feature lookback: a new item; NULL: published "
        "before it was recorded)",
    )


def plan_columns(names: Iterable[str]) -> list[sa.Column]:
    """``<table>_scenarios``' ``plan_<covariate>`` columns: what the model read as each row's plan."""
    return [
        sa.Column(
            name,
            sa.Float,
            comment=f"{name.removeprefix('plan_')} planned for forecast_month: the scenario's where it "
            "plans it, else the base plan's",
        )
        for name in names
    ]


@dataclass(frozen=True)
class Tables:
    """The predictions database's tables, all in one MetaData: create those wanted with
    ``create`` (``metadata.create_all`` would create every one)."""

    metadata: sa.MetaData
    forecasts: sa.Table
    runs: sa.Table
    models: sa.Table
    accuracy: sa.Table
    errors: sa.Table
    drift: sa.Table
    alerts: sa.Table
    scenarios: sa.Table
    scenario_totals: sa.Table
    levels: sa.Table
    level_errors: sa.Table
    publish_lock: sa.Table
    drivers: sa.Table
    fva: sa.Table
    overrides: sa.Table
    override_outcomes: sa.Table


def declare(
    table: str,
    entity_types: Mapping[str, sa.types.TypeEngine],
    schema: str | None = None,
    plans: Sequence[str] = (),
    level_columns: Sequence[str] = (),
) -> Tables:
    """Every table of the predictions table ``table``, its entity columns (in order) typed by
    ``entity_types``, in ``schema``; ``<table>_scenarios`` has the ``plans`` columns,
    ``<table>_levels`` the ``level_columns`` (those the hierarchy's levels group by)."""
    metadata = sa.MetaData(schema=schema)
    keys = list(entity_types)

    def entities() -> list[sa.Column]:
        return [sa.Column(k, entity_types[k], nullable=False) for k in keys]

    return Tables(
        metadata=metadata,
        forecasts=_forecasts(metadata, table, keys, entities()),
        runs=_runs(metadata, table),
        models=_models(metadata, table),
        accuracy=_accuracy(metadata, table),
        errors=_errors(metadata, table, keys, entities()),
        drift=_drift(metadata, table),
        alerts=_alerts(metadata, table),
        scenarios=_scenarios(metadata, table, keys, entities(), plans),
        scenario_totals=declare_scenario_totals(metadata, table, dict(entity_types)),
        levels=declare_levels(metadata, table, level_columns),
        level_errors=declare_level_errors(metadata, table),
        publish_lock=_publish_lock(metadata, table),
        drivers=_drivers(metadata, table, keys, entities()),
        fva=declare_fva(metadata, table),
        overrides=declare_overrides(metadata, table, keys, dict(entity_types)),
        override_outcomes=declare_outcomes(metadata, table),
    )


def build_metadata(
    table: str,
    entity_types: Mapping[str, sa.types.TypeEngine],
    schema: str | None = None,
    plans: Sequence[str] = (),
) -> sa.MetaData:
    """The MetaData of every table of the predictions table ``table`` (see ``declare``)."""
    return declare(table, entity_types, schema, plans).metadata


def for_config(
    config: Config, key_dtypes: Mapping[str, object] | None = None, plans: Sequence[str] = ()
) -> Tables:
    """The tables of the config's predictions table, the entity columns typed after the source's
    ``key_dtypes`` (text where not given: for the tables without entity columns)."""
    dtypes = key_dtypes or {}
    types = {k: entity_type(dtypes.get(k, object)) for k in config.source.entity_columns}
    levels = config.hierarchy.levels if config.hierarchy is not None else []
    columns = list(dict.fromkeys(c for level in levels for c in level))
    return declare(config.predictions.table, types, config.predictions.database.schema, plans, columns)


def create(conn: sa.Connection, *tables: sa.Table) -> None:
    """Create ``tables`` (with their indexes) where missing; the others in their MetaData are left alone."""
    if tables:
        tables[0].metadata.create_all(conn, tables=list(tables), checkfirst=True)


def add_missing_columns(
    conn: sa.Connection, table: sa.Table, columns: Iterable[sa.Column] | None = None
) -> list[str]:
    """Add the ``columns`` (default: all of ``table``'s) that the table in the database (made by
    an older release) lacks, as nullable columns; returns their names. Earlier rows keep NULL in
    them."""
    wanted = list(table.columns if columns is None else columns)
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name, schema=table.schema)}
    quote = conn.dialect.identifier_preparer.quote
    relation = conn.dialect.identifier_preparer.format_table(table)
    added = []
    for column in wanted:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {relation} ADD COLUMN {quote(column.name)} {kind}"))
            added.append(column.name)
    if added:
        log.info("Added columns %s to %s (made by an earlier release)", ", ".join(added), table.name)
    return added


# --- views ----------------------------------------------------------------------------------


def _view_ref(dialect: sa.Dialect, table: sa.Table, view: str) -> str:
    quote = dialect.identifier_preparer.quote
    return quote(view) if table.schema is None else f"{quote(table.schema)}.{quote(view)}"


def latest_view_sql(forecasts: sa.Table, keys: Sequence[str], dialect: sa.Dialect) -> tuple[str, str]:
    """(view name, SELECT) of ``<table>_latest``: per entity and forecast month, the row with
    the newest run_month."""
    quote = dialect.identifier_preparer.quote
    entity = ", ".join(quote(k) for k in keys)
    columns = ", ".join(quote(c.name) for c in forecasts.columns)
    name, schema = forecasts.name, forecasts.schema
    relation = quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"
    select = (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER ("
        f"PARTITION BY {entity}, {quote('forecast_month')} ORDER BY {quote('run_month')} DESC) AS row_rank "
        f"FROM {relation}) ranked WHERE row_rank = 1"
    )
    return _view_ref(dialect, forecasts, relation_name(forecasts.name, LATEST)), select


def tracking_signal_sql(
    errors: sa.Table, table: str, keys: Sequence[str], dialect: sa.Dialect
) -> tuple[str, str]:
    """(view name, SELECT) of ``<table>_tracking_signal``: per entity and horizon, over its last
    TRACKING_MONTHS scored months, the cumulative error over the mean absolute error."""
    quote = dialect.identifier_preparer.quote
    entity = ", ".join(quote(k) for k in keys)
    relation = dialect.identifier_preparer.format_table(errors)
    select = (
        f"SELECT {entity}, horizon, COUNT(*) AS months, MIN(forecast_month) AS first_month, "
        "MAX(forecast_month) AS last_month, SUM(error) AS cumulative_error, "
        "AVG(ABS(error)) AS mean_absolute_error, "
        "CASE WHEN AVG(ABS(error)) > 0 THEN SUM(error) / AVG(ABS(error)) END AS tracking_signal "
        f"FROM (SELECT {entity}, horizon, forecast_month, error, ROW_NUMBER() OVER ("
        f"PARTITION BY {entity}, horizon ORDER BY forecast_month DESC) AS recency FROM {relation}) recent "
        f"WHERE recency <= {TRACKING_MONTHS} GROUP BY {entity}, horizon"
    )
    return _view_ref(dialect, errors, relation_name(table, TRACKING_SIGNAL)), select


# --- the tables -----------------------------------------------------------------------------


def _forecasts(metadata: sa.MetaData, name: str, keys: list[str], entities: list[sa.Column]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "run_month", sa.Date, nullable=False, comment="logical month M whose data made the forecast"
        ),
        *entities,
        sa.Column("forecast_month", sa.Date, nullable=False, comment="first day of the month forecast"),
        sa.Column("horizon", sa.Integer, nullable=False, comment="months ahead of run_month"),
        sa.Column("prediction", sa.Float, nullable=False, comment="the forecaster's (before overrides)"),
        *interval_columns(),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        demand_class_column(),
        history_months_column(),
        *step_forecast_columns(),
        *final_columns(),
        sa.PrimaryKeyConstraint("run_month", *keys, "horizon", name=f"{name}_pkey"),
        sa.Index(f"{name}_entity_month_idx", *keys, "forecast_month"),
        sa.Index(f"{name}_forecast_month_idx", "forecast_month"),
        info={"doc": "The forecasts: one row per run month, entity and horizon (the product's interface)."},
    )


def _runs(metadata: sa.MetaData, table: str) -> sa.Table:
    return sa.Table(
        relation_name(table, RUNS),
        metadata,
        sa.Column("run_month", sa.Date, primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forecasts", sa.Integer, nullable=False),
        sa.Column("holdout_wape", sa.Float),
        sa.Column("best_baseline", sa.String(64)),
        sa.Column("best_baseline_wape", sa.Float),
        sa.Column(
            "overrides_applied", sa.Integer, comment="overrides applied by its publish (NULL: before them)"
        ),
        sa.Column(
            "overrides_refused", sa.Integer, comment="overrides refused: <table>_override_outcomes says why"
        ),
        info={
            "doc": "Which forecaster made each published month's forecasts, its holdout WAPE, the overrides."
        },
    )


def _models(metadata: sa.MetaData, table: str) -> sa.Table:
    name = relation_name(table, MODELS)
    utc = sa.DateTime(timezone=True)
    return sa.Table(
        name,
        metadata,
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("run_month", sa.Date, nullable=False, comment="logical month M whose run trained it"),
        sa.Column("run_id", sa.String(250)),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("params", sa.Text, comment="JSON: booster parameters and number of trees"),
        sa.Column("features", sa.Text, comment="JSON: the columns the model reads"),
        sa.Column("train_first_month", sa.Date, comment="first target month it was fitted on"),
        sa.Column("train_last_month", sa.Date, comment="last target month it was fitted on"),
        sa.Column("holdout_first_month", sa.Date, comment="first target month of its holdout"),
        sa.Column("holdout_last_month", sa.Date, comment="last target month of its holdout"),
        sa.Column("data_fingerprint", sa.String(64)),
        sa.Column("holdout_rows", sa.Integer),
        sa.Column("holdout_wape", sa.Float),
        sa.Column("holdout_mae", sa.Float),
        sa.Column("holdout_rmse", sa.Float),
        sa.Column("holdout_bias", sa.Float, comment="mean of prediction - actual"),
        sa.Column("holdout_bias_pct", sa.Float, comment="sum of prediction - actual over sum of actual"),
        sa.Column("baseline_wapes", sa.Text, comment="JSON: each baseline's WAPE on the same rows"),
        sa.Column("best_baseline", sa.String(64)),
        sa.Column("best_baseline_wape", sa.Float),
        sa.Column("blend_baseline", sa.String(64), comment="the baseline it was blended with"),
        sa.Column("blend_wape", sa.Float, comment="WAPE of the mean of its and that baseline's forecasts"),
        sa.Column("champion_version", sa.String(64), comment="the champion it was compared with"),
        sa.Column("champion_wape", sa.Float, comment="that champion's WAPE on the same rows"),
        sa.Column("backtest_rows", sa.Integer, comment="rows its rolling-origin backtest forecast"),
        sa.Column("backtest_wape", sa.Float, comment="WAPE of the backtest's models, refit at each origin"),
        sa.Column("backtest_best_baseline", sa.String(64)),
        sa.Column(
            "backtest_best_baseline_wape", sa.Float, comment="the best baseline's WAPE on the same rows"
        ),
        sa.Column(
            "backtest_origins", sa.Text, comment="JSON: per origin, its rows and every forecaster's WAPE"
        ),
        sa.Column(
            "interval_coverage",
            sa.Float,
            comment="share of holdout actuals inside its p10-p90, on months the bands were not calibrated on",
        ),
        sa.Column("feature_importance", sa.Text, comment="JSON: top features by share of total gain"),
        sa.Column(
            "tuning",
            sa.Text,
            comment="JSON: its parameter search (model.tuning): every trial, the check, adopted or not and why",
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("champion_since", sa.Date, comment="first month it is champion for (if promoted)"),
        sa.Column("promoted_at", utc),
        sa.Column("published", sa.String(80), comment="forecaster whose forecasts its run published"),
        sa.Column("decision", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("decided_by", sa.String(250)),
        sa.Column("decided_at", utc),
        sa.Index(f"{name}_status_idx", "status"),
        sa.Index(f"{name}_run_month_idx", "run_month"),
        info={"doc": "The model registry: every trained model, its scores and the gate's decision."},
    )


def _accuracy(metadata: sa.MetaData, table: str) -> sa.Table:
    name = relation_name(table, ACCURACY)
    naive = [
        sa.Column(f"{baseline}_{metric}", sa.Float, comment=f"the {baseline} baseline's {metric}")
        for baseline in NAIVE_BASELINES
        for metric in ("wape", "mae", "bias")
    ]
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "forecast_month", sa.Date, nullable=False, comment="the month forecast, whose actuals are in"
        ),
        sa.Column("run_month", sa.Date, nullable=False, comment="the month whose run made the forecasts"),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column(
            "segment_column",
            sa.String(64),
            nullable=False,
            comment="'(all)': every entity; monitoring.segment, history_months (age buckets), or level "
            "(a hierarchy level's groups)",
        ),
        sa.Column(
            "segment",
            sa.String(255),
            nullable=False,
            comment="the segment's value or level's name, or '(all)'",
        ),
        sa.Column(
            "forecasts", sa.Integer, nullable=False, comment="forecasts scored (a level's: its groups)"
        ),
        sa.Column("actual_sum", sa.Float, nullable=False),
        sa.Column("prediction_sum", sa.Float, nullable=False),
        sa.Column("wape", sa.Float, comment="sum |prediction - actual| / sum actual (null: nothing sold)"),
        sa.Column("mae", sa.Float),
        sa.Column("bias", sa.Float, comment="mean of prediction - actual"),
        sa.Column("bias_pct", sa.Float, comment="sum of prediction - actual over sum of actual"),
        *naive,
        sa.Column("best_naive", sa.String(64), comment="the naive baseline with the lowest WAPE here"),
        sa.Column("best_naive_wape", sa.Float),
        sa.Column("fva", sa.Float, comment="forecast value added: best_naive_wape - wape"),
        *coverage_columns(),
        sa.Column("run_id", sa.String(250), comment="the run that scored them"),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "forecast_month",
            "run_month",
            "horizon",
            "model_version",
            "segment_column",
            "segment",
            name=f"{name}_pkey",
        ),
        info={"doc": "Realised accuracy of the published forecasts, beside the naive baselines'."},
    )


def _errors(metadata: sa.MetaData, table: str, keys: list[str], entities: list[sa.Column]) -> sa.Table:
    name = relation_name(table, ERRORS)
    return sa.Table(
        name,
        metadata,
        *entities,
        sa.Column("forecast_month", sa.Date, nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("run_month", sa.Date, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("actual", sa.Float, nullable=False, comment="0 when the month has no row for the entity"),
        sa.Column("prediction", sa.Float, nullable=False),
        sa.Column("error", sa.Float, nullable=False, comment="prediction - actual"),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(*keys, "forecast_month", "horizon", name=f"{name}_pkey"),
        sa.Index(f"{name}_forecast_month_idx", "forecast_month"),
        info={"doc": "Actual, prediction and error per entity, forecast month and horizon."},
    )


def _drift(metadata: sa.MetaData, table: str) -> sa.Table:
    name = relation_name(table, DRIFT)
    return sa.Table(
        name,
        metadata,
        sa.Column("run_month", sa.Date, nullable=False, comment="month M whose scoring rows were compared"),
        sa.Column("kind", sa.String(16), nullable=False, comment="feature, target or entities"),
        sa.Column(
            "feature", sa.String(255), nullable=False, comment="a feature, the target, or an entity share"
        ),
        sa.Column("psi", sa.Float, comment="population stability index against the training window"),
        sa.Column("ks_statistic", sa.Float, comment="two-sample Kolmogorov-Smirnov statistic"),
        sa.Column("ks_pvalue", sa.Float),
        sa.Column("share", sa.Float, comment="entities rows: the share of new or vanished entities"),
        sa.Column("entities", sa.Integer, comment="entities rows: how many"),
        sa.Column("reference_rows", sa.Integer, comment="training-window rows compared (entities: of M-1)"),
        sa.Column("scoring_rows", sa.Integer, comment="rows of M compared (entities: active in M)"),
        sa.Column("reference_first_month", sa.Date),
        sa.Column("reference_last_month", sa.Date),
        sa.Column("threshold", sa.Float, comment="psi_threshold, or entity_share_threshold"),
        sa.Column("drifted", sa.Boolean, nullable=False),
        sa.Column("model_version", sa.String(64), comment="whose training window is the reference"),
        sa.Column("run_id", sa.String(250), comment="the run that computed them"),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_month", "kind", "feature", name=f"{name}_pkey"),
        info={"doc": "Drift of month M's features, target and entities against the training window."},
    )


def _alerts(metadata: sa.MetaData, table: str) -> sa.Table:
    name = relation_name(table, ALERTS)
    return sa.Table(
        name,
        metadata,
        sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250)),
        sa.Column("task_id", sa.String(250), comment="task_failure: the task that failed"),
        sa.Column("month", sa.Date, comment="the month M of the run"),
        sa.Column(
            "kind",
            sa.String(32),
            nullable=False,
            comment="task_failure, accuracy, drift, revision, coverage or override",
        ),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False, comment="a task, a horizon or a feature"),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("notified", sa.Text, nullable=False, comment="whom it was sent to, or 'log only'"),
        sa.Index(f"{name}_month_idx", "month"),
        info={"doc": "Every alert raised, and whom it was sent to."},
    )


def _scenarios(
    metadata: sa.MetaData, table: str, keys: list[str], entities: list[sa.Column], plans: Sequence[str]
) -> sa.Table:
    name = relation_name(table, SCENARIOS)
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "run_month", sa.Date, nullable=False, comment="month M whose published model made the rows"
        ),
        sa.Column(
            "scenario",
            sa.String(SCENARIO_NAME_LENGTH),
            nullable=False,
            comment="the scenario (plans.scenarios), or the base plan's (default 'base')",
        ),
        *entities,
        sa.Column("forecast_month", sa.Date, nullable=False, comment="first day of the month forecast"),
        sa.Column("horizon", sa.Integer, nullable=False, comment="months ahead of run_month"),
        sa.Column("prediction", sa.Float, nullable=False),
        *interval_columns(),
        sa.Column(
            "overridden",
            sa.Boolean,
            nullable=False,
            comment="the scenario plans this entity and month (else it keeps the base plan)",
        ),
        *plan_columns(plans),
        sa.Column("model_version", sa.String(64), nullable=False, comment="the model M's run published"),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_month", "scenario", *keys, "horizon", name=f"{name}_pkey"),
        sa.Index(f"{name}_entity_month_idx", *keys, "forecast_month"),
        sa.Index(f"{name}_scenario_month_idx", "scenario", "forecast_month"),
        info={"doc": "What-if forecasts: per scenario of plans.scenarios, entity, month and horizon."},
    )


def _drivers(metadata: sa.MetaData, table: str, keys: list[str], entities: list[sa.Column]) -> sa.Table:
    name, families = relation_name(table, DRIVERS), "level, seasonality, trend, price, promotion, calendar"
    return sa.Table(
        name,
        metadata,
        sa.Column("run_month", sa.Date, nullable=False, comment="logical month M whose run published it"),
        *entities,
        sa.Column("forecast_month", sa.Date, nullable=False, comment="first day of the month forecast"),
        sa.Column("horizon", sa.Integer, nullable=False, comment="months ahead of run_month"),
        sa.Column(
            "family", sa.String(32), nullable=False, comment=f"{families}, attributes, bias, baselines"
        ),
        sa.Column(
            "contribution", sa.Float, nullable=False, comment="in units: a row's sum is its prediction"
        ),
        sa.Column("share", sa.Float, comment="contribution / prediction (NULL: a forecast of zero)"),
        sa.Column("explained", sa.Float, nullable=False, comment="the model's share of the prediction"),
        sa.Column("model_version", sa.String(80), nullable=False, comment="the forecaster published"),
        sa.PrimaryKeyConstraint("run_month", *keys, "horizon", "family", name=f"{name}_pkey"),
        sa.Index(f"{name}_entity_month_idx", *keys, "forecast_month"),
        info={"doc": "Each published forecast's drivers (docs/drivers.md): one row per family, in units."},
    )


def _publish_lock(metadata: sa.MetaData, table: str) -> sa.Table:
    return sa.Table(
        relation_name(table, PUBLISH_LOCK),
        metadata,
        sa.Column("run_month", sa.Date, primary_key=True),
        comment="forecasting.publishing.publish: one row per month, locked by its publish",
        info={"doc": "PostgreSQL only: one row per month, locked by its publish (not readable by analysts)."},
    )


# --- docs/tables.md -------------------------------------------------------------------------
