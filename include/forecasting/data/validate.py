"""Gate a month's raw snapshot, and its plans, with Great Expectations before anything
downstream reads them: the suites of expectations, run through ``forecasting.data.checkpoint``
(one ephemeral GX context, one Checkpoint, static Data Docs in a folder of ours). A failed
expectation raises ``DataValidationError`` with a message meant for an Airflow log.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecasting.core.config import Config, SourceConfig
from forecasting.core.months import month_of, month_range
from forecasting.data.checkpoint import (
    DATETIME_TYPES,
    FINITE,
    MAX_MAGNITUDE,
    MONTH_KEY,
    NUMERIC_TYPES,
    DataValidationError,
    ValidationReport,
    checkpoint_report,
    copy_on_write,
    quiet_gx_logging,
    run_checkpoint,
)
from forecasting.data.extract import UNREADABLE_SUFFIX, unreadable_column
from forecasting.data.panel import key_text

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)


def validate_snapshot(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, docs_dir: Path
) -> ValidationReport:
    """Validate ``snapshot`` for logical month ``month``; build Data Docs into ``docs_dir``.

    Raises DataValidationError (after the docs are built) if any expectation fails.
    """
    month = month_of(month)
    docs_dir = Path(docs_dir).resolve()  # GX's filesystem store wants an absolute folder
    with quiet_gx_logging(), copy_on_write():
        keys = month_keys(snapshot, config.source.time_column)
        batch = snapshot_batch(snapshot, keys)
        expectations = build_suite_expectations(config, month, snapshot, keys=keys)
        result = run_checkpoint(batch, expectations, month, docs_dir)
        report = checkpoint_report(result, batch, month, docs_dir)
    report.notes = attribute_notes(snapshot, config.source, keys)
    for note in report.notes:
        log.warning(note)
    log.info("Data Docs for %s: %s", report.month, report.data_docs)
    if not report.success:
        report.reason = months_missing_reason(keys, month)
        raise DataValidationError(report)
    log.info(report.summary())
    return report


def months_missing_reason(keys: pd.Series, month: pd.Period) -> str:
    """What the months in the snapshot say, in plain words, when some month up to M has no rows:
    M is after the data ends, before it starts, or the data has a gap. "" when none is missing."""
    present = [pd.Period(m, "M") for m in keys.cat.categories[keys.value_counts(sort=False) > 0]]
    present = [m for m in present if m <= month]
    if not present:
        return f"the source has no sales in or before {month}; the data starts after {month}"
    first, last = min(present), max(present)  # first: of the extract's window, maybe not of the data
    if last < month:
        after = f"{month} has" if last + 1 == month else f"{last + 1} to {month} have"
        return f"the data ends in {last}; {after} no sales yet"
    gaps = [str(m) for m in month_range(first, month) if m not in set(present)]
    if not gaps:
        return ""
    shown = ", ".join(gaps[:5]) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
    return f"the data has no sales in {shown} (a gap before {month})"


def attribute_notes(snapshot: pd.DataFrame, src: SourceConfig, keys: pd.Series) -> list[str]:
    """What the features make of attributes that are not one value per entity, said once per
    attribute with an example: a value that changes is used as of each month (the one in M for
    M's forecasts); a null carries the entity's last value forward (nothing before its first).
    Neither fails the run: stores do move region and grow."""
    entity = [c for c in src.entity_columns if c in snapshot.columns]
    notes = []
    for a in src.attributes:
        if a not in snapshot.columns or not entity or snapshot.empty:
            continue
        frame = snapshot[[*entity, a]].assign(_month=keys.astype(object).to_numpy())
        frame = frame.sort_values("_month", kind="stable", na_position="first")
        changing = frame.groupby(entity, sort=True, dropna=False)[a].transform("nunique") > 1
        if changing.any():
            rows = frame[changing.to_numpy()]
            _, own = next(iter(rows.groupby(entity, sort=False, dropna=False)))  # the example
            own = own[own[a].notna()]
            moved = own[own[a] != own[a].iloc[0]].iloc[0]
            count = len(rows[entity].drop_duplicates())
            notes.append(
                f"{a} changes within {count} {'entity' if count == 1 else 'entities'} "
                f"(e.g. {_entity_text(moved, entity)}: {own[a].iloc[0]}, then {moved[a]} from "
                f"{moved['_month']}): each month's features use that month's value"
            )
        nulls = frame[a].isna().to_numpy()
        if nulls.any():
            first = frame[nulls].iloc[0]
            count = len(frame.loc[nulls, entity].drop_duplicates())
            notes.append(
                f"{a} is null in {int(nulls.sum())} rows of {count} {'entity' if count == 1 else 'entities'} "
                f"(e.g. {_entity_text(first, entity)} in {first['_month']}): the entity's last value "
                "before carries forward, and before its first value it has none"
            )
    return notes


def _entity_text(row: pd.Series, entity: list[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in entity)


def snapshot_batch(snapshot: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """What GX validates: the snapshot's columns (not copied) and the month key.

    The ``__unreadable`` columns, null but for the rare bad value, become categoricals: GX
    then finds their nulls (and hashes the batch for its fingerprint) without going through
    one Python string object per row.
    """
    batch = snapshot.copy(deep=False)  # the caller's frame is never modified
    for column in batch.columns:
        if isinstance(column, str) and column.endswith(UNREADABLE_SUFFIX):
            batch[column] = _categorical(batch[column])
    batch[MONTH_KEY] = keys
    return batch


def _categorical(values: pd.Series) -> pd.Series:
    present = values.notna().to_numpy()
    if present.any():
        data = pd.Categorical(values.to_numpy(dtype=object, na_value=None))
    else:
        codes = np.full(len(values), -1, dtype=np.int8)
        data = pd.Categorical.from_codes(codes, categories=pd.Index([], dtype=object))
    return pd.Series(data, index=values.index, name=values.name)


def month_keys(snapshot: pd.DataFrame, time_column: str) -> pd.Series:
    """The "YYYY-MM" of each row (null where the time is missing or unparseable), as a
    categorical whose categories are the months present, in order.

    Built from month numbers, so only the distinct months are formatted as text.
    """
    if time_column not in snapshot.columns:
        codes = np.full(len(snapshot), -1, dtype=np.int8)
        data = pd.Categorical.from_codes(codes, categories=pd.Index([], dtype=object))
        return pd.Series(data, index=snapshot.index, name=MONTH_KEY)
    times = snapshot[time_column]
    if not pd.api.types.is_datetime64_any_dtype(times):
        times = pd.to_datetime(times, errors="coerce")
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_localize(None)  # the month of the wall time, as strftime would print it
    codes, months = pd.factorize(times.dt.to_period("M"), sort=True)  # NaT: code -1
    categories = pd.Index([f"{m.year:04d}-{m.month:02d}" for m in months], dtype=object)
    data = pd.Categorical.from_codes(codes, categories=categories)
    return pd.Series(data, index=snapshot.index, name=MONTH_KEY)


def build_suite_expectations(
    config: Config, month: pd.Period, snapshot: pd.DataFrame, *, keys: pd.Series | None = None
) -> list[Expectation]:
    """The expectations for month ``month``; the history ones depend on what the snapshot holds
    (``keys``: ``month_keys`` of the snapshot, if the caller has them already)."""
    src = config.source
    keys = month_keys(snapshot, src.time_column) if keys is None else keys
    return [
        *_schema_expectations(src),
        *_readable_expectations(src, snapshot),
        *_completeness_expectations(src, snapshot),
        *_history_expectations(keys, month_of(month), config.validation.row_count_tolerance),
    ]


def _configured_columns(src: SourceConfig) -> list[str]:
    return [*src.entity_columns, src.time_column, src.target_column, *src.covariates, *src.attributes]


def _schema_expectations(src: SourceConfig) -> list[Expectation]:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnToExist(column=c) for c in _configured_columns(src)),
        gxe.ExpectColumnValuesToBeInTypeList(column=src.time_column, type_list=DATETIME_TYPES),
        *(
            gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES)
            for c in [src.target_column, *src.covariates]
        ),
    ]


def _readable_expectations(src: SourceConfig, snapshot: pd.DataFrame) -> list[Expectation]:
    """Extract keeps the raw text of every time that is not a date in range and every target or
    covariate value that is not a number (see extract.typed_snapshot): there must be none."""
    import great_expectations.expectations as gxe

    wanted = {src.time_column: "a date", **{c: "a number" for c in [src.target_column, *src.covariates]}}
    return [
        gxe.ExpectColumnValuesToBeNull(
            column=unreadable_column(column),
            notes=f"Every {column} value is {kind}.",
            meta={"column": column, "wanted": kind},
        )
        for column, kind in wanted.items()
        if unreadable_column(column) in snapshot.columns
    ]


def _completeness_expectations(src: SourceConfig, snapshot: pd.DataFrame) -> list[Expectation]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def not_null(column: str) -> Expectation:
        if unreadable_column(column) not in snapshot.columns:
            return gxe.ExpectColumnValuesToNotBeNull(column=column)
        # A value extract could not read is reported as unreadable, not a second time as null.
        return gxe.ExpectColumnValuesToNotBeNull(
            column=column, row_condition=Column(unreadable_column(column)).is_null()
        )

    keys = [*src.entity_columns, src.time_column]
    return [
        *(not_null(c) for c in [*keys, src.target_column]),
        # A largest finite bound: +inf (or -inf) fails it, nulls are left to the not-null checks.
        gxe.ExpectColumnValuesToBeBetween(column=src.target_column, min_value=0, max_value=FINITE),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-FINITE, max_value=FINITE)
            for c in src.covariates
        ),
        *(plausible(c, src.entity_columns) for c in [src.target_column, *src.covariates]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys, notes="One row per entity and month."),
    ]


def plausible(column: str, entity_columns: list[str], own_rows: Any = None) -> Expectation:
    """|value| <= MAX_MAGNITUDE (see ``within``)."""
    return within(
        column,
        (-MAX_MAGNITUDE, MAX_MAGNITUDE),
        entity_columns,
        own_rows,
        notes=f"No {column} is this large: a unit or a sentinel value gone wrong.",
    )


def within(
    column: str,
    allowed: tuple[float, float] | list[float],
    entity_columns: list[str],
    own_rows: Any = None,
    notes: str | None = None,
) -> Expectation:
    """Every finite value of ``column`` within ``allowed`` (bounds, or a list of the values
    allowed); infinities are the finite check's. The failure names the first rows outside by
    ``entity_columns`` and month, with their values."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    finite = (Column(column) >= -FINITE) & (Column(column) <= FINITE)
    rows = finite if own_rows is None else own_rows & finite
    meta = {"entity_columns": entity_columns}
    if isinstance(allowed, list):
        return gxe.ExpectColumnValuesToBeInSet(
            column=column, value_set=allowed, row_condition=rows, notes=notes, meta=meta
        )
    low, high = allowed
    return gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, row_condition=rows, notes=notes, meta=meta
    )


def _history_expectations(keys: pd.Series, month: pd.Period, tolerance: float) -> list[Expectation]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    rows_per_month = keys.value_counts(sort=False)
    present = rows_per_month[rows_per_month > 0]
    first = min(pd.Period(min(present.index), "M"), month) if len(present) else month
    expected_months = [str(m) for m in month_range(first, month)]
    expectations: list[Expectation] = [
        gxe.ExpectColumnDistinctValuesToContainSet(
            column=MONTH_KEY,
            value_set=expected_months,
            notes=f"Every month from the first in the snapshot ({first}) through {month} is present.",
        )
    ]
    previous_rows = int(present.get(str(month - 1), 0))
    if previous_rows:  # the first month of data has nothing to compare with
        # GX casts the bounds to int (truncating), so round them inward ourselves.
        low = max(0, math.ceil((1 - tolerance) * previous_rows))
        high = math.floor((1 + tolerance) * previous_rows)
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=low,
                max_value=high,
                row_condition=Column(MONTH_KEY) == str(month),
                notes=(
                    f"{month} may have {tolerance:.0%} fewer or more rows than "
                    f"{month - 1} ({previous_rows} rows)."
                ),
                meta={"previous_month": str(month - 1), "previous_rows": previous_rows},
            )
        )
    return expectations


# --- the plans (config ``plans:``, forecasting.features.plans) -----------------------------------------

# Beside the plans' rows, the batch gets one row per (active entity, forecast month) that has
# no plan, holding "<keys> in <month>" here (null in the plans' own rows): an expectation that
# this column is null names every one. The checks of the plans' own rows skip those rows.
UNPLANNED = "unplanned__entity_month"


def validate_plans(
    plans: pd.DataFrame, snapshot: pd.DataFrame, config: Config, month: pd.Period, docs_dir: Path
) -> ValidationReport:
    """Validate the plans extracted for M (every revision known at the end of M) against M's
    snapshot; build Data Docs into ``docs_dir``. Raises DataValidationError, naming each failed
    expectation, if any fails: keys, month and planned_at present and readable, covariates
    numbers (null only where ``plans.fill`` says what a missing plan means), one row per entity,
    month and revision, and every entity active in M planned for M+1..M+horizon unless every
    covariate has a fill rule.
    """
    month = month_of(month)
    pl = config.plans
    assert pl is not None
    docs_dir = Path(docs_dir).resolve()
    with quiet_gx_logging(), copy_on_write():
        unplanned = _unplanned(plans, snapshot, config, month)
        batch = pd.concat([plans, unplanned], ignore_index=True) if len(unplanned) else plans.copy()
        if UNPLANNED not in batch.columns:
            batch[UNPLANNED] = pd.Series(pd.NA, index=batch.index, dtype="string")
        batch = snapshot_batch(batch, month_keys(batch, pl.month_column))
        expectations = plan_expectations(config, month, plans)
        result = run_checkpoint(batch, expectations, month, docs_dir, what="plans")
        report = checkpoint_report(result, batch, month, docs_dir)
    report.subject = "the plans of "
    for failure in report.failures:
        failure["details"] = failure["details"].replace("missing from the snapshot", "missing from the plans")
    report.rows = len(plans)
    report.rows_in_month = int((batch[MONTH_KEY] == str(month + 1)).sum()) - len(unplanned)
    log.info("Data Docs for the plans of %s: %s", report.month, report.data_docs)
    if not report.success:
        raise DataValidationError(report)
    log.info(report.summary())
    return report


def _unplanned(plans: pd.DataFrame, snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """A row per entity active in M and month M+1..M+horizon without a plan row, when some
    covariate has no fill rule (else a missing plan is allowed: the fill says what it means)."""
    pl, src = config.plans, config.source
    assert pl is not None
    if all(c in pl.fill for c in pl.covariates):
        return pd.DataFrame(columns=[UNPLANNED])
    needed = [*pl.entity_columns, pl.month_column]
    if any(c not in plans.columns for c in needed) or any(
        c not in snapshot.columns for c in [*src.entity_columns, src.time_column]
    ):
        return pd.DataFrame(columns=[UNPLANNED])  # the schema checks name what is missing
    in_month = snapshot[src.time_column].dt.to_period("M") == month
    active = snapshot.loc[in_month, src.entity_columns].astype(str).drop_duplicates()
    forecast_months = [month + h for h in range(1, config.horizon + 1)]
    wanted = active.merge(pd.DataFrame({"_month": [str(m) for m in forecast_months]}), how="cross")
    planned = plans[needed].dropna()
    planned = pd.DataFrame(
        {
            **{k: key_text(planned[k]) for k in pl.entity_columns},
            "_month": planned[pl.month_column].dt.strftime("%Y-%m").to_numpy(),
        }
    ).drop_duplicates()
    missing = wanted.merge(planned, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"]
    label = missing[pl.entity_columns[0]].radd(f"{pl.entity_columns[0]}=")
    for k in pl.entity_columns[1:]:
        label = label + f", {k}=" + missing[k]
    return pd.DataFrame({UNPLANNED: (label + " in " + missing["_month"]).astype("string").to_numpy()})


def plan_expectations(config: Config, month: pd.Period, plans: pd.DataFrame) -> list[Expectation]:
    """The plans' suite (see ``validate_plans``)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    pl = config.plans
    assert pl is not None
    keys = [*pl.entity_columns, pl.month_column, pl.planned_at]
    own_rows = Column(UNPLANNED).is_null()  # the plans' rows, not the unplanned ones

    def not_null(column: str) -> Expectation:
        condition: Any = own_rows
        if unreadable_column(column) in plans.columns:  # reported as unreadable, not as null
            condition = own_rows & Column(unreadable_column(column)).is_null()
        return gxe.ExpectColumnValuesToNotBeNull(column=column, row_condition=condition)

    wanted = {
        pl.month_column: "a date",
        pl.planned_at: "a date and time",
        **dict.fromkeys(pl.covariates, "a number"),
    }
    forecast_months = f"{month + 1}" + (f"..{month + config.horizon}" if config.horizon > 1 else "")
    return [
        *(gxe.ExpectColumnToExist(column=c) for c in [*keys, *pl.covariates]),
        gxe.ExpectColumnValuesToBeInTypeList(column=pl.month_column, type_list=DATETIME_TYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column=pl.planned_at, type_list=DATETIME_TYPES),
        *(gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES) for c in pl.covariates),
        *(
            gxe.ExpectColumnValuesToBeNull(
                column=unreadable_column(column),
                notes=f"Every {column} value is {kind}.",
                meta={"column": column, "wanted": kind},
            )
            for column, kind in wanted.items()
            if unreadable_column(column) in plans.columns
        ),
        *(not_null(c) for c in keys),
        *(not_null(c) for c in pl.covariates if c not in pl.fill),
        *(
            gxe.ExpectColumnValuesToBeBetween(
                column=c, min_value=-FINITE, max_value=FINITE, row_condition=own_rows
            )
            for c in pl.covariates
        ),
        *(plausible(c, pl.entity_columns, own_rows) for c in pl.covariates),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=keys, row_condition=own_rows, notes="One row per entity, month and revision."
        ),
        gxe.ExpectColumnValuesToBeNull(
            column=UNPLANNED,
            notes=(
                f"Every entity with sales in {month} is planned for {forecast_months} "
                "(or plans.fill says what a missing plan means)."
            ),
            meta={"unplanned": True},
        ),
    ]
