"""What-if scenarios: alternative plans, forecast by the model M's run published.

A scenario is an alternative plan (config ``plans.scenarios``): a table or query with one row per
scenario, entity and month, holding the values it plans for some or all of the planned covariates
(``promo = 1`` for store 3's items in March). A scenario's rows override the base plan, the plans
as they stood at the end of M (what M's published forecasts read), for the entity, month and
covariate they give; everything else keeps the base plan, and a null keeps it too.

``forecast_scenarios`` forecasts M+1..M+horizon under each scenario, and under the base plan as
the scenario ``plans.scenarios.base`` (default ``base``), with the forecaster M's run published:
the same model, the same point-in-time features, the same p10/p90 bands (``forecasting.modeling.intervals``).
Only the plan columns differ, so ``scenario - base`` is the model's answer to "what if", and an
entity or month a scenario leaves alone gets the base forecast exactly. A baseline forecaster
reads no plans, and a blend is half a baseline's: a month whose published forecaster is either
has no scenarios (refused, saying so), and the scenario rows an earlier publish of that month
left are withdrawn.

``publish_scenarios`` replaces M's rows of ``<table>_scenarios`` in one transaction: re-running
M replaces them, never duplicates them.

The scenarios are read as they are when the stage runs (they have no revisions): a scenario
is a question asked now about M's forecasts, not a record of what was known at the end of M.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import SCENARIO_NAME_LENGTH, Config, PlansConfig, ScenariosConfig, hide_password
from forecasting.core.db import make_engine
from forecasting.core.errors import DataError
from forecasting.core.months import month_end, month_index, month_of, month_start
from forecasting.features.dataset import PLAN_HORIZON_SEP
from forecasting.modeling.forecaster import Baseline, Blend, parse
from forecasting.publishing import tables

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

    from forecasting.modeling.predict import ForecastInputs

log = logging.getLogger(__name__)

# Beside the scenarios' rows, GX checks two columns computed here: the entity of a row M's
# forecasts do not cover ("store_id=1, item_id=2", null for a known one), and how many planned
# covariates a row sets (a row that sets none overrides nothing: a mistake, not a scenario).
UNKNOWN_ENTITY = "unknown__entity"
COVARIATES_SET = "covariates__set"
# The entities named in full, at most, where an unknown one is reported.
NAMED_ENTITIES = 20


def scenarios_configured(config: Config) -> bool:
    return config.plans is not None and config.plans.scenarios is not None


def _settings(config: Config) -> tuple[PlansConfig, ScenariosConfig]:
    if config.plans is None or config.plans.scenarios is None:
        raise DataError(f"{config.path}: no plans.scenarios section: there are no scenarios to forecast")
    return config.plans, config.plans.scenarios


# --- files of the stage, in M's published attempt -----------------------------------------------


def forecasts_path(config: Config, month: pd.Period, attempt: str) -> Path:
    """The scenarios' forecasts, beside the attempt's own forecasts (what publish_scenarios writes)."""
    return paths.scenario_forecasts(config, month, attempt)


def docs_path(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the scenarios' checks."""
    return paths.scenario_docs(config, month, attempt)


# --- read ---------------------------------------------------------------------------------------


def scenarios_query(config: Config, dialect: sa.Dialect) -> sa.TextClause:
    """SELECT * of the scenarios' rows for M+1..M+horizon, plus the rows validation must reject
    (no month, or one that is not a date)."""
    from forecasting.data.extract import _relation, _unplaceable

    pl, sc = _settings(config)
    relation = _relation(sc.table, sc.query, sc.database.schema, dialect, "scenarios_query")
    month = dialect.identifier_preparer.quote(pl.month_column)
    wanted = f"{month} >= :months_start AND {month} < :months_end"
    bad = f"{month} IS NULL OR {_unplaceable(month, dialect)}"
    params = [sa.bindparam(n, type_=sa.Date) for n in ("months_start", "months_end", "earliest", "latest")]
    return sa.text(f"SELECT * FROM {relation} WHERE ({wanted}) OR {bad}").bindparams(*params)


def read_scenarios(config: Config, month: pd.Period) -> pd.DataFrame:
    """The scenarios' rows for the months M forecasts (M+1..M+horizon), typed: the month as
    month starts, the planned covariates the table has as numbers (a value that is not one:
    null, its text in ``<column>__unreadable``), the scenario as text; plus the rows validation
    must reject."""
    from forecasting.data.extract import EARLIEST_TIME, LATEST_TIME, _read_rows

    pl, sc = _settings(config)
    first, last = month + 1, month + config.horizon
    params = {
        "months_start": month_start(first).date(),
        "months_end": month_end(last).date(),
        "earliest": EARLIEST_TIME.date(),
        "latest": LATEST_TIME.date(),
    }
    engine = make_engine(sc.database)
    try:
        with engine.connect() as conn:
            frame = _read_rows(conn, scenarios_query(config, engine.dialect), params)
    finally:
        engine.dispose()
    frame = typed_scenarios(frame, config)
    if pl.month_column in frame.columns:  # the exact cut (SQLite compares text times as text)
        target = frame[pl.month_column]
        keep = target.isna() | ((target >= month_start(first)) & (target < month_end(last)))
        frame = frame[keep.to_numpy()].reset_index(drop=True)
    return frame


def typed_scenarios(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    from forecasting.data.extract import as_numbers, mixed_as_text, month_starts, parse_into

    pl, sc = _settings(config)
    frame = frame.copy(deep=False)
    if pl.month_column in frame.columns:
        parse_into(frame, pl.month_column, month_starts)
    for column in planned_columns(frame, config):
        parse_into(frame, column, as_numbers)
    if sc.scenario_column in frame.columns:
        names = frame[sc.scenario_column]
        frame[sc.scenario_column] = names.where(names.isna(), names.astype(str)).astype(object)
    mixed_as_text(frame, pl.entity_columns)
    return frame


def planned_columns(frame: pd.DataFrame, config: Config) -> list[str]:
    """The planned covariates the scenarios' table has (in the config's order): what it may set."""
    assert config.plans is not None
    return [c for c in config.plans.covariates if c in frame.columns]


# --- validate -----------------------------------------------------------------------------------


def _entity_labels(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    from forecasting.data.panel import key_text

    label = pd.Series(key_text(frame[keys[0]]), index=frame.index).radd(f"{keys[0]}=")
    for k in keys[1:]:
        label = label + f", {k}=" + pd.Series(key_text(frame[k]), index=frame.index)
    return label


def validate_scenarios(
    scenarios: pd.DataFrame, forecast_keys: pd.DataFrame, config: Config, month: pd.Period, docs_dir: Path
):
    """Great Expectations over the scenarios' rows for M; Data Docs into ``docs_dir``. Raises
    DataValidationError naming each failed expectation (fails closed): the scenario,
    entity and month columns and at least one planned covariate exist; the scenario, entity and
    month are not null; the month is a date and the covariates numbers (their unreadable text
    named), finite; one row per scenario, entity and month; no scenario takes the base's name or
    a name longer than 64 characters; every row sets at least one covariate; and every entity is
    one M's forecasts cover (``forecast_keys``: their entity columns as text), each unknown one
    named."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    from forecasting.data.checkpoint import (
        DATETIME_TYPES,
        FINITE,
        MONTH_KEY,
        NUMERIC_TYPES,
        DataValidationError,
        checkpoint_report,
        copy_on_write,
        quiet_gx_logging,
        run_checkpoint,
    )
    from forecasting.data.extract import unreadable_column
    from forecasting.data.panel import key_text
    from forecasting.data.validate import month_keys, snapshot_batch

    pl, sc = _settings(config)
    keys = pl.entity_columns
    covariates = planned_columns(scenarios, config)
    docs_dir = Path(docs_dir).resolve()
    batch = scenarios.copy(deep=False)
    if all(k in batch.columns for k in keys):
        known = pd.MultiIndex.from_frame(forecast_keys[keys].astype(str))
        rows = pd.MultiIndex.from_arrays([key_text(batch[k]) for k in keys])
        unknown = ~rows.isin(known) & batch[keys].notna().all(axis=1).to_numpy()
        batch[UNKNOWN_ENTITY] = _entity_labels(batch, keys).where(unknown).astype("string")
    else:
        batch[UNKNOWN_ENTITY] = pd.Series(pd.NA, index=batch.index, dtype="string")
    batch[COVARIATES_SET] = batch[covariates].notna().sum(axis=1) if covariates else 0
    own = [sc.scenario_column, *keys, pl.month_column]
    some_covariate = ", ".join(pl.covariates)
    expectations: list[Expectation] = [
        *(gxe.ExpectColumnToExist(column=c) for c in own),
        gxe.ExpectColumnValuesToBeInTypeList(column=pl.month_column, type_list=DATETIME_TYPES),
        *(gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES) for c in covariates),
        *(
            gxe.ExpectColumnValuesToBeNull(
                column=unreadable_column(c),
                notes=f"Every {c} value is {kind}.",
                meta={"column": c, "wanted": kind},
            )
            for c, kind in [(pl.month_column, "a date"), *((c, "a number") for c in covariates)]
            if unreadable_column(c) in batch.columns
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(
                column=c,
                row_condition=Column(unreadable_column(c)).is_null()
                if unreadable_column(c) in batch.columns
                else None,
            )
            for c in own
        ),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-FINITE, max_value=FINITE)
            for c in covariates
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=own, notes="One row per scenario, entity and month."),
        gxe.ExpectColumnValuesToNotBeInSet(
            column=sc.scenario_column,
            value_set=[sc.base],
            notes=f"{sc.base!r} is the base plan's scenario (plans.scenarios.base).",
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=sc.scenario_column, min_value=1, max_value=SCENARIO_NAME_LENGTH
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=COVARIATES_SET,
            min_value=1,
            notes=f"Every row plans at least one of the planned covariates ({some_covariate}).",
        ),
        gxe.ExpectColumnValuesToBeNull(
            column=UNKNOWN_ENTITY,
            notes=f"Every entity of a scenario is one that M's forecasts cover (active in {month}).",
            meta={"unknown_entities": True},
        ),
    ]
    with quiet_gx_logging(), copy_on_write():
        batch = snapshot_batch(batch, month_keys(batch, pl.month_column))
        result = run_checkpoint(batch, expectations, month, docs_dir, what="scenarios")
        report = checkpoint_report(result, batch, month, docs_dir)
    report.subject = "the scenarios of "
    report.rows = len(scenarios)
    report.rows_in_month = int((batch[MONTH_KEY] == str(month + 1)).sum())
    for failure in report.failures:
        failure["details"] = failure["details"].replace(
            "missing from the snapshot", "missing from the scenarios"
        )
        if failure["column"] == UNKNOWN_ENTITY:  # name them all (up to NAMED_ENTITIES), not 3 examples
            names = sorted(batch[UNKNOWN_ENTITY].dropna().astype(str).unique())
            shown = ", ".join(names[:NAMED_ENTITIES]) + (
                f" and {len(names) - NAMED_ENTITIES} more" if len(names) > NAMED_ENTITIES else ""
            )
            failure["details"] = f"{len(names)} entities that {month}'s forecasts do not cover: {shown}"
        if failure["column"] == COVARIATES_SET:
            failure["details"] = failure["details"].replace(
                "unexpected of", "rows set no planned covariate, of"
            )
    if not covariates:  # nothing the scenarios could change: name what they may set
        report.success = False
        report.failures.append(
            {
                "expectation": "expect_column_to_exist",
                "column": some_covariate,
                "details": f"the scenarios have none of the planned covariates ({some_covariate})",
                "label": f"expect_column_to_exist(one of {some_covariate})",
            }
        )
    log.info("Data Docs for the scenarios of %s: %s", month, report.data_docs)
    if not report.success:
        raise DataValidationError(report)
    log.info(report.summary())
    return report


# --- forecast -----------------------------------------------------------------------------------


@dataclass
class Forecaster:
    """The forecaster M's run published, as scenarios need it."""

    version: str
    model_dir: Path
    bands: dict | None  # its p10/p90 bands (None: not calibrated, p10 and p90 stay empty)


class NoScenariosForecaster(DataError):
    """M's published forecaster cannot forecast scenarios (a baseline or a blend)."""


def published_forecaster(config: Config, month: pd.Period, attempt: str) -> Forecaster:
    """The model whose forecasts M's published attempt published (the gate's choice for M, or a
    forced one), with the p10/p90 bands evaluate calibrated for it. A baseline reads no plans:
    refused, saying so."""
    published = paths.read_json(paths.stage_result(config, month, attempt, "publish"))
    version = published["model_version"]
    forecaster = parse(version)
    if isinstance(forecaster, Blend):
        raise NoScenariosForecaster(
            f"{month}'s published forecasts were made by {version}, half of each from a baseline that reads "
            "no plans: a scenario would move them only half as far as the model says. What-if scenarios "
            f"need a model's own forecasts (re-run {month} with force_model_version=<a model version>)"
        )
    if isinstance(forecaster, Baseline):
        raise NoScenariosForecaster(
            f"{month}'s published forecasts were made by {version}, which reads no plans: every scenario "
            "would forecast what the base plan does. What-if scenarios need a model that reads the plans "
            f"(re-run {month} with force_model_version=<a model version>, or wait for a month whose model "
            "beats the baselines)"
        )
    evaluated = paths.read_json(paths.stage_result(config, month, attempt, "evaluate"))
    decision = paths.read_json(paths.evaluation(Path(evaluated["model_dir"]))).get("decision") or {}
    # The bands predict put around the published forecasts: the decided forecaster's own.
    bands = decision.get("intervals") if decision.get("forecaster") == version else None
    return Forecaster(version=version, model_dir=paths.models(config) / version, bands=bands)


@dataclass
class ScenarioForecasts:
    frame: pd.DataFrame  # the rows of <table>_scenarios but run_month, model_version, run_id, created_at
    model_version: str
    scenarios: list[str]  # the base first, then the scenarios in name order
    covariates: list[str]  # the planned covariates the scenarios set
    overridden: dict[str, int] = field(default_factory=dict)  # per scenario, forecast rows it plans
    changed: dict[str, int] = field(default_factory=dict)  # per scenario, forecasts unlike the base's
    base_differs: int = 0  # base forecasts unlike the published ones (feature files rewritten since)
    intervals: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.frame),
            "model_version": self.model_version,
            "scenarios": self.scenarios,
            "covariates": self.covariates,
            "overridden": self.overridden,
            "changed": self.changed,
            "base_differs_from_published": self.base_differs,
            "intervals": self.intervals,
        }


def forecast_scenarios(config: Config, month: pd.Period, attempt: str, client=None) -> ScenarioForecasts:
    """Forecast M+1..M+horizon under the base plan and each scenario of M's months with the
    forecaster M's published attempt published, from that attempt's snapshot (see the module)."""
    from forecasting.data.panel import build_panel
    from forecasting.modeling import booster as model
    from forecasting.modeling import intervals
    from forecasting.modeling.predict import (
        active_entities,
        check_planned_features,
        forecast_inputs,
        predict_inputs,
    )

    pl, sc = _settings(config)
    month = month_of(month)
    forecaster = published_forecaster(config, month, attempt)
    booster, metadata = model.load(forecaster.model_dir)
    check_planned_features(metadata, config)
    if not any(f.startswith("plan_") for f in metadata["features"]):
        raise DataError(
            f"{forecaster.version}, which made {month}'s published forecasts, was fitted without plans: it "
            "cannot react to a scenario. What-if scenarios need a model trained with the plans section"
        )
    snapshot_path = paths.snapshot(config, month, attempt)
    if not snapshot_path.is_file():
        raise DataError(
            f"the snapshot of {month}'s published attempt is gone ({snapshot_path}): re-run {month}"
        )
    snapshot = pd.read_parquet(snapshot_path)
    panel = build_panel(snapshot, config, sales_only=True)
    # Bad scenarios fail before Feast is asked for anything.
    scenarios = read_scenarios(config, month)
    forecast_keys = panel.keys.iloc[active_entities(panel, month_index(month))].reset_index(drop=True)
    validate_scenarios(scenarios, forecast_keys, config, month, docs_path(config, month, attempt))
    inputs = forecast_inputs(snapshot, config, month, client, panel)
    covariates = [c for c in planned_columns(scenarios, config) if scenarios[c].notna().any()]
    unread = [c for c in covariates if f"plan_{c}" not in metadata["features"]]
    if unread:
        raise DataError(
            f"the scenarios plan {', '.join(unread)}, which {forecaster.version} does not read "
            f"(it reads {', '.join(f for f in metadata['features'] if f.startswith('plan_'))})"
        )

    def rows_of(name: str, features: pd.DataFrame, overridden: np.ndarray) -> pd.DataFrame:
        frame = predict_inputs(replace_features(inputs, features), config, booster, metadata)
        frame["p10"], frame["p90"] = intervals.apply(forecaster.bands, frame["prediction"], frame["horizon"])
        frame["overridden"] = overridden.T.ravel()  # predict_inputs' order: by horizon, then entity
        for c in pl.covariates:  # what the model read as the plan of each row's month
            planned = np.concatenate(
                [
                    features[f"plan_{c}{PLAN_HORIZON_SEP}{h}"].to_numpy(dtype=np.float32)
                    for h in range(1, config.horizon + 1)
                ]
            )
            # Feast keeps plans as float32: 2.11, not 2.1099998950958 (its float64 value).
            frame[f"plan_{c}"] = planned.astype(str).astype(float)
        frame.insert(0, "scenario", name)
        return frame

    nothing = np.zeros((len(inputs.active), config.horizon), dtype=bool)
    base = rows_of(sc.base, inputs.features, nothing)
    parts, overridden_rows, changed_rows = [base], {}, {}
    names = sorted(scenarios[sc.scenario_column].unique()) if len(scenarios) else []
    for name in names:
        rows = scenarios[scenarios[sc.scenario_column] == name]
        features, overridden = override(inputs, rows, config, month, covariates)
        made = rows_of(name, features, overridden)
        parts.append(made)
        overridden_rows[name] = int(overridden.sum())
        changed_rows[name] = int((made["prediction"].to_numpy() != base["prediction"].to_numpy()).sum())
    if not names:
        log.warning(
            "No scenario plans any of %s..%s: publishing the base plan's forecasts only",
            month + 1,
            month + config.horizon,
        )
    result = ScenarioForecasts(
        frame=pd.concat(parts, ignore_index=True),
        model_version=forecaster.version,
        scenarios=[sc.base, *names],
        covariates=covariates,
        overridden=overridden_rows,
        changed=changed_rows,
        base_differs=base_against_published(base, config, month, attempt),
        intervals=forecaster.bands is not None,
    )
    log.info(
        "Forecast %d scenarios of %s with %s: %s",
        len(names),
        month,
        forecaster.version,
        "; ".join(
            f"{n}: {overridden_rows[n]} rows planned, {changed_rows[n]} forecasts changed" for n in names
        )
        or "none",
    )
    return result


def replace_features(inputs: ForecastInputs, features: pd.DataFrame) -> ForecastInputs:
    return replace(inputs, features=features)


def override(
    inputs: ForecastInputs, rows: pd.DataFrame, config: Config, month: pd.Period, covariates: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The features of ``inputs`` with one scenario's ``rows`` in place of the base plan, and
    which (entity, horizon) cells they plan (entities x horizons, in ``inputs.active``'s order).
    A covariate a row leaves null keeps the base plan's value."""
    from forecasting.data.panel import key_text

    assert config.plans is not None
    keys = config.plans.entity_columns
    index = pd.MultiIndex.from_frame(inputs.panel.keys.iloc[inputs.active][keys].astype(str))
    at = index.get_indexer(pd.MultiIndex.from_arrays([key_text(rows[k]) for k in keys]))
    if (at < 0).any():  # validate_scenarios refuses these first
        raise DataError(f"{int((at < 0).sum())} scenario rows name entities {month}'s forecasts do not cover")
    horizon = month_index(rows[config.plans.month_column].dt) - month_index(month)
    horizon = np.asarray(horizon, dtype=np.int64)
    features = inputs.features.copy()
    overridden = np.zeros((len(inputs.active), config.horizon), dtype=bool)
    for covariate in covariates:
        values = rows[covariate].to_numpy(dtype=float)
        given = ~np.isnan(values)
        for h in range(1, config.horizon + 1):
            cells = given & (horizon == h)
            column = f"plan_{covariate}{PLAN_HORIZON_SEP}{h}"
            planned = features[column].to_numpy(dtype=np.float32, copy=True)
            planned[at[cells]] = values[cells].astype(np.float32)
            features[column] = planned
        overridden[at[given], horizon[given] - 1] = True
    return features, overridden


def base_against_published(base: pd.DataFrame, config: Config, month: pd.Period, attempt: str) -> int:
    """How many base forecasts differ from the forecasts M's attempt published (0 unless the
    features or plans Feast holds for M were rewritten since); a warning names the gap."""
    path = paths.forecasts(config, month, attempt)
    if not path.is_file():
        log.warning("%s is gone: the base scenario cannot be compared with the published forecasts", path)
        return 0
    on = [*config.source.entity_columns, "horizon"]
    published = pd.read_parquet(path)[[*on, "prediction"]]
    both = base[[*on, "prediction"]].merge(published, on=on, how="outer", suffixes=("", "_published"))
    differs = ~np.isclose(both["prediction"], both["prediction_published"], rtol=0, atol=0, equal_nan=False)
    count = int(differs.sum())
    if count:
        log.warning(
            "The base scenario differs from %s's published forecasts in %d of %d rows (largest gap %.4g): "
            "Feast's features or plans of %s were rewritten after they were published",
            month,
            count,
            len(both),
            float(np.nanmax(np.abs(both["prediction"] - both["prediction_published"]))) if len(both) else 0.0,
            month,
        )
    return count


# --- publish ------------------------------------------------------------------------------------


def table_name(config: Config) -> str:
    return tables.relation_name(config.predictions.table, tables.SCENARIOS)


def scenarios_table(config: Config, key_dtypes: dict[str, object], plans: list[str]) -> sa.Table:
    """``<table>_scenarios``, typed after the source's entity columns, with the ``plans``
    columns (``plan_<covariate>``) of the config that publishes (forecasting.publishing.tables)."""
    return tables.for_config(config, key_dtypes, plans).scenarios


@dataclass
class ScenariosPublished:
    table: str
    url: str
    rows: int
    replaced: int
    scenarios: list[str]


def publish_scenarios(
    frame: pd.DataFrame,
    config: Config,
    month: pd.Period,
    *,
    model_version: str,
    run_id: str,
    created_at: datetime | None = None,
) -> ScenariosPublished:
    """Replace M's rows of ``<table>_scenarios`` with ``frame`` (``forecast_scenarios``' rows)
    in one transaction; the table is created, or given the plan columns it lacks, first."""
    from forecasting.monitoring.accuracy import create_missing, plain, write_transaction
    from forecasting.publishing.publish import insert_rows

    keys = config.source.entity_columns
    run_month = month_start(month_of(month)).date()
    planned = [c for c in frame.columns if str(c).startswith("plan_")]
    table = scenarios_table(config, {k: frame[k].dtype for k in keys}, planned)
    out = frame.assign(
        run_month=run_month,
        model_version=model_version,
        run_id=run_id,
        created_at=created_at or datetime.now(UTC),
    )
    columns = [c.name for c in table.columns]
    records = [
        {c: plain(record.get(c)) for c in columns}
        for record in out.reindex(columns=columns).to_dict(orient="records")
    ]
    for record in records:
        record["overridden"] = bool(record["overridden"])
    engine = make_engine(config.predictions.database)
    try:

        def create(conn: sa.Connection) -> None:
            tables.create(conn, table)
            # a config that plans more covariates
            tables.add_missing_columns(conn, table, [table.c[name] for name in planned])

        create_missing(engine, create)
        with write_transaction(engine, table) as conn:
            replaced = conn.execute(sa.delete(table).where(table.c.run_month == run_month)).rowcount
            insert_rows(conn, table, records)
        url = hide_password(engine.url.render_as_string(hide_password=True))
    finally:
        engine.dispose()
    names = list(dict.fromkeys(frame["scenario"])) if len(frame) else []
    log.info(
        "Published %d scenario forecasts (%s) for %s to %s (replaced %d)",
        len(records),
        ", ".join(names),
        month,
        table.name,
        replaced,
    )
    return ScenariosPublished(
        table=table.name, url=url, rows=len(records), replaced=replaced, scenarios=names
    )


def withdraw_scenarios(config: Config, month: pd.Period) -> dict[str, int]:
    """Delete M's rows of ``<table>_scenarios`` (one transaction), when M's published forecasts
    are no longer the model's whose scenarios they are: rows per model_version deleted."""
    from forecasting.monitoring.accuracy import write_transaction

    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table_name(config)):
                return {}
        table = sa.Table(table_name(config), sa.MetaData(), autoload_with=engine)
        run_month = month_start(month_of(month)).date()
        with write_transaction(engine, table) as conn:
            by_version = conn.execute(
                sa.select(table.c.model_version, sa.func.count())
                .where(table.c.run_month == run_month)
                .group_by(table.c.model_version)
            ).all()
            conn.execute(sa.delete(table).where(table.c.run_month == run_month))
    finally:
        engine.dispose()
    return {str(version): int(count) for version, count in by_version}


# --- which months -------------------------------------------------------------------------------


def months_to_forecast(config: Config, requested: str | None, event_extras: list[dict]) -> list[dict]:
    """What a forecast_scenarios run forecasts: [{"month": "YYYY-MM", "attempt": ...}, ...]: the
    month asked for, else the months the triggering Asset events published (each with its
    attempt), else the newest month published (``monitoring.months_to_score``, without the later
    months a backfill re-scores: a scenario is about the month's own forecasts)."""
    from forecasting.monitoring.accuracy import months_to_score, published_months

    return months_to_score(requested, event_extras, published_months(config), horizon=0)
