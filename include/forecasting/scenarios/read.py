"""What-if scenarios, read and checked: the scenarios' rows for the months M forecasts, typed as
the sales are, and Great Expectations over them (fails closed, each failure named).

A scenario is an alternative plan (config ``plans.scenarios``): a table or query with one row per
scenario, entity and month, holding the values it plans for some or all of the planned covariates
(``promo = 1`` for store 3's items in March). The scenarios are read as they are when the stage
runs (they have no revisions): a scenario is a question asked now about M's forecasts, not a
record of what was known at the end of M.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import SCENARIO_NAME_LENGTH, Config, PlansConfig, ScenariosConfig
from forecasting.core.db import make_engine
from forecasting.core.errors import DataError
from forecasting.core.months import month_end, month_start
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
from forecasting.data.extract import (
    EARLIEST_TIME,
    LATEST_TIME,
    as_numbers,
    mixed_as_text,
    month_starts,
    parse_into,
    read_source_rows,
    source_relation,
    unplaceable_time,
    unreadable_column,
)
from forecasting.data.panel import key_text
from forecasting.data.validate import month_keys, snapshot_batch, within

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)


# Beside the scenarios' rows, GX checks two columns computed here: the entity of a row M's
# forecasts do not cover ("store_id=1, item_id=2", null for a known one), and how many planned
# covariates a row sets (a row that sets none overrides nothing: a mistake, not a scenario).
UNKNOWN_ENTITY = "unknown__entity"


COVARIATES_SET = "covariates__set"


# The entities named in full, at most, where an unknown one is reported.
NAMED_ENTITIES = 20


# A scenario's covariate may reach this many times the largest value its history holds (and as
# far below zero as that, if the history goes below zero): room for any promotion or price
# plan, none for a unit slip (price 1e300, price -100 where prices were never negative).
HISTORY_MAX_FACTOR = 10.0


def allowed_values(history: pd.Series) -> tuple[float, float] | list[float] | None:
    """What a scenario may plan for a covariate whose history (sales and plans) is ``history``:
    a flag whose history holds only 0 and 1 takes 0 or 1 (also when its history holds only one
    of them: a promotion never run yet is what a what-if plans); any other covariate
    [HISTORY_MAX_FACTOR × its smallest value if below zero else 0, HISTORY_MAX_FACTOR × its
    largest]. None: no history to go by."""
    values = pd.to_numeric(history, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    seen = np.unique(values)
    if set(seen.tolist()) <= {0.0, 1.0}:
        return [0, 1]
    low, high = float(seen[0]), float(seen[-1])
    return (HISTORY_MAX_FACTOR * low if low < 0 else 0.0, HISTORY_MAX_FACTOR * max(high, 0.0))


def covariate_ranges(history: Sequence[pd.DataFrame], covariates: list[str]) -> dict[str, tuple | list]:
    """``allowed_values`` of each covariate, from every frame of ``history`` that has it."""
    ranges = {}
    for c in covariates:
        seen = [frame[c] for frame in history if c in frame.columns]
        allowed = allowed_values(pd.concat(seen, ignore_index=True)) if seen else None
        if allowed is not None:
            ranges[c] = allowed
    return ranges


def scenarios_configured(config: Config) -> bool:
    return config.plans is not None and config.plans.scenarios is not None


def scenario_settings(config: Config) -> tuple[PlansConfig, ScenariosConfig]:
    if config.plans is None or config.plans.scenarios is None:
        raise DataError(f"{config.path}: no plans.scenarios section: there are no scenarios to forecast")
    return config.plans, config.plans.scenarios


def forecasts_path(config: Config, month: pd.Period, attempt: str) -> Path:
    """The scenarios' forecasts, beside the attempt's own forecasts (what publish_scenarios writes)."""
    return paths.scenario_forecasts(config, month, attempt)


def docs_path(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the scenarios' checks."""
    return paths.scenario_docs(config, month, attempt)


def scenarios_query(config: Config, dialect: sa.Dialect) -> sa.TextClause:
    """SELECT * of the scenarios' rows for M+1..M+horizon, plus the rows validation must reject
    (no month, or one that is not a date)."""
    pl, sc = scenario_settings(config)
    relation = source_relation(sc.table, sc.query, sc.database.schema, dialect, "scenarios_query")
    month = dialect.identifier_preparer.quote(pl.month_column)
    wanted = f"{month} >= :months_start AND {month} < :months_end"
    bad = f"{month} IS NULL OR {unplaceable_time(month, dialect)}"
    params = [sa.bindparam(n, type_=sa.Date) for n in ("months_start", "months_end", "earliest", "latest")]
    return sa.text(f"SELECT * FROM {relation} WHERE ({wanted}) OR {bad}").bindparams(*params)


def read_scenarios(config: Config, month: pd.Period) -> pd.DataFrame:
    """The scenarios' rows for the months M forecasts (M+1..M+horizon), typed: the month as
    month starts, the planned covariates the table has as numbers (a value that is not one:
    null, its text in ``<column>__unreadable``), the scenario as text; plus the rows validation
    must reject."""
    pl, sc = scenario_settings(config)
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
            frame = read_source_rows(conn, scenarios_query(config, engine.dialect), params)
    finally:
        engine.dispose()
    frame = typed_scenarios(frame, config)
    if pl.month_column in frame.columns:  # the exact cut (SQLite compares text times as text)
        target = frame[pl.month_column]
        keep = target.isna() | ((target >= month_start(first)) & (target < month_end(last)))
        frame = frame[keep.to_numpy()].reset_index(drop=True)
    return frame


def typed_scenarios(frame: pd.DataFrame, config: Config) -> pd.DataFrame:

    pl, sc = scenario_settings(config)
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


def _entity_labels(frame: pd.DataFrame, keys: list[str]) -> pd.Series:

    label = pd.Series(key_text(frame[keys[0]]), index=frame.index).radd(f"{keys[0]}=")
    for k in keys[1:]:
        label = label + f", {k}=" + pd.Series(key_text(frame[k]), index=frame.index)
    return label


def validate_scenarios(
    scenarios: pd.DataFrame,
    forecast_keys: pd.DataFrame,
    config: Config,
    month: pd.Period,
    docs_dir: Path,
    history: Sequence[pd.DataFrame] = (),
):
    """Great Expectations over the scenarios' rows for M; Data Docs into ``docs_dir``. Raises
    DataValidationError naming each failed expectation (fails closed): the scenario,
    entity and month columns and at least one planned covariate exist; the scenario, entity and
    month are not null; the month is a date and the covariates numbers (their unreadable text
    named), finite; one row per scenario, entity and month; no scenario takes the base's name or
    a name longer than 64 characters; every row sets at least one covariate; every entity is
    one M's forecasts cover (``forecast_keys``: their entity columns as text), each unknown one
    named; and every covariate within what its ``history`` allows (``allowed_values``), each row
    outside named by scenario, entity and month."""
    pl, _ = scenario_settings(config)
    covariates = planned_columns(scenarios, config)
    docs_dir = Path(docs_dir).resolve()
    batch = _checked_batch(scenarios, forecast_keys, config, covariates)
    expectations = scenario_expectations(batch, covariates, config, month)
    expectations += range_expectations(covariate_ranges(history, covariates), config)
    with quiet_gx_logging(), copy_on_write():
        batch = snapshot_batch(batch, month_keys(batch, pl.month_column))
        result = run_checkpoint(batch, expectations, month, docs_dir, what="scenarios")
        report = checkpoint_report(result, batch, month, docs_dir)
    report.subject = "the scenarios of "
    report.rows = len(scenarios)
    report.rows_in_month = int((batch[MONTH_KEY] == str(month + 1)).sum())
    _explain_failures(report.failures, batch, month)
    if not covariates:  # nothing the scenarios could change: name what they may set
        some_covariate = ", ".join(pl.covariates)
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


def _checked_batch(
    scenarios: pd.DataFrame, forecast_keys: pd.DataFrame, config: Config, covariates: list[str]
) -> pd.DataFrame:
    """The scenarios' rows (not copied) with the two columns GX checks beside them: the entity
    of a row M's forecasts do not cover, and how many planned covariates a row sets."""
    pl, _ = scenario_settings(config)
    keys = pl.entity_columns
    batch = scenarios.copy(deep=False)
    if all(k in batch.columns for k in keys):
        known = pd.MultiIndex.from_frame(forecast_keys[keys].astype(str))
        rows = pd.MultiIndex.from_arrays([key_text(batch[k]) for k in keys])
        unknown = ~rows.isin(known) & batch[keys].notna().all(axis=1).to_numpy()
        batch[UNKNOWN_ENTITY] = _entity_labels(batch, keys).where(unknown).astype("string")
    else:
        batch[UNKNOWN_ENTITY] = pd.Series(pd.NA, index=batch.index, dtype="string")
    batch[COVARIATES_SET] = batch[covariates].notna().sum(axis=1) if covariates else 0
    return batch


def scenario_expectations(
    batch: pd.DataFrame, covariates: list[str], config: Config, month: pd.Period
) -> list[Expectation]:
    """The suite over the scenarios' rows (see validate_scenarios)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    pl, sc = scenario_settings(config)
    own = [sc.scenario_column, *pl.entity_columns, pl.month_column]
    some_covariate = ", ".join(pl.covariates)
    return [
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


def range_expectations(ranges: dict[str, tuple | list], config: Config) -> list[Expectation]:
    """Each covariate within the values its history allows (``covariate_ranges``)."""
    pl, sc = scenario_settings(config)
    named_by = [sc.scenario_column, *pl.entity_columns]
    return [
        within(c, allowed, named_by, notes=f"Within what {c}'s history allows (sales and plans).")
        for c, allowed in ranges.items()
    ]


def _explain_failures(failures: list[dict], batch: pd.DataFrame, month: pd.Period) -> None:
    """Words for the scenarios' failures where GX's would mislead: the unknown entities named
    in full (up to NAMED_ENTITIES, not 3 examples), rows that set no covariate said so."""
    for failure in failures:
        failure["details"] = failure["details"].replace(
            "missing from the snapshot", "missing from the scenarios"
        )
        if failure["column"] == UNKNOWN_ENTITY:
            names = sorted(batch[UNKNOWN_ENTITY].dropna().astype(str).unique())
            shown = ", ".join(names[:NAMED_ENTITIES]) + (
                f" and {len(names) - NAMED_ENTITIES} more" if len(names) > NAMED_ENTITIES else ""
            )
            failure["details"] = f"{len(names)} entities that {month}'s forecasts do not cover: {shown}"
        if failure["column"] == COVARIATES_SET:
            failure["details"] = failure["details"].replace(
                "unexpected of", "rows set no planned covariate, of"
            )
