"""Gate a month's raw snapshot with Great Expectations before anything downstream reads it.

One call builds an ephemeral GX context, registers the snapshot as a pandas dataframe batch,
runs one Checkpoint over one suite, and renders the results as static Data Docs into a folder
of our choosing. A failed expectation raises ``DataValidationError`` with a message meant for
an Airflow log; the Data Docs hold the full detail.

Great Expectations is imported lazily: it takes seconds to import, and Airflow parses the DAG
files that import this module far more often than it runs the validation task.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, SourceConfig
from forecasting.core.errors import DataError
from forecasting.data.panel import key_text
from forecasting.data.extract import UNREADABLE_SUFFIX, unreadable_column
from forecasting.core.months import month_of, month_range

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core import ExpectationSuite, ExpectationValidationResult
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

# A "YYYY-MM" copy of the time column, added to the validated batch only. Month coverage and
# the month-M row count are checked on it because GX value sets and row conditions compare
# plain strings reliably, where datetime64 values against a set are fiddly. It is a categorical
# (one small code per row, the strings once per month): see _month_keys.
MONTH_KEY = "month__yyyy_mm"

# Numeric means a numeric dtype. A column the database handed over as text arrives as
# object dtype; GX then checks each value's type, so strings (even "12.5") fail.
NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "Float32Dtype",
    "Float64Dtype",
]
DATETIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]

DOCS_SITE = "forecast_validation"

# GX's default (SUMMARY: counts, and up to 20 example values and row indices per failed
# expectation), without the query that lists every unexpected row's index: GX leaves it out of
# SUMMARY results anyway, but on pandas still builds it, a string as long as the bad rows.
RESULT_FORMAT = {"result_format": "SUMMARY", "return_unexpected_index_query": False}

# The largest finite float: values must lie within [-FINITE, FINITE], which rules out +-inf.
FINITE = sys.float_info.max


@dataclass
class ValidationReport:
    success: bool
    month: str  # "YYYY-MM"
    rows: int
    rows_in_month: int
    expectations: int  # how many were evaluated
    failures: list[dict] = field(default_factory=list)
    data_docs: str | None = None  # path to the Data Docs index.html
    subject: str = ""  # what was validated, before the month: "" (the snapshot) or "the plans of "

    def summary(self) -> str:
        what = f"{self.subject}{self.month}"
        if self.success:
            return f"Validation of {what} passed ({self.expectations} expectations, {self.rows} rows)."
        failed = f"{len(self.failures)} of {self.expectations} expectations"
        lines = [f"Validation of {what} failed ({failed}):"]
        lines += [f" - {f['label']}: {f['details']}" for f in self.failures]
        lines.append(f"Data Docs: {self.data_docs}")
        return "\n".join(lines)


class DataValidationError(DataError):
    """Raised when the snapshot fails; str() names every failed expectation with its counts.
    Bad data fails the same way on every retry: a DataError."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.summary())
        self.report = report
        # One per failed expectation: {"expectation", "column", "details", "label"}.
        self.failures: list[dict] = report.failures


def validate_snapshot(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, docs_dir: Path
) -> ValidationReport:
    """Validate ``snapshot`` for logical month ``month``; build Data Docs into ``docs_dir``.

    Raises DataValidationError (after the docs are built) if any expectation fails.
    """
    month = month_of(month)
    docs_dir = Path(docs_dir).resolve()  # GX's filesystem store wants an absolute folder
    with _quiet_gx_logging(), _copy_on_write():
        keys = _month_keys(snapshot, config.source.time_column)
        batch = _batch(snapshot, keys)
        expectations = build_suite_expectations(config, month, snapshot, month_keys=keys)
        result = _run_checkpoint(batch, expectations, month, docs_dir)
        report = _report(result, batch, month, docs_dir)
    log.info("Data Docs for %s: %s", report.month, report.data_docs)
    if not report.success:
        raise DataValidationError(report)
    log.info(report.summary())
    return report


@contextmanager
def _copy_on_write() -> Iterator[None]:
    """Run GX with pandas' copy-on-write, the default from pandas 3.

    GX's pandas engine filters the whole batch for every metric of an expectation with a
    row_condition (and for ignore_row_if), and a filter that keeps every row (the usual case)
    copies every column unless copy-on-write makes that copy lazy: at 5M rows the copies took
    most of the checkpoint's time and doubled its memory. GX only reads its batch, so the
    results are the same.
    """
    with pd.option_context("mode.copy_on_write", True):
        yield


def _batch(snapshot: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
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


def _month_keys(snapshot: pd.DataFrame, time_column: str) -> pd.Series:
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
    config: Config, month: pd.Period, snapshot: pd.DataFrame, *, month_keys: pd.Series | None = None
) -> list[Expectation]:
    """The expectations for month ``month``; the history ones depend on what the snapshot holds
    (``month_keys``: ``_month_keys`` of the snapshot, if the caller has them already)."""
    src = config.source
    keys = _month_keys(snapshot, src.time_column) if month_keys is None else month_keys
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
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys, notes="One row per entity and month."),
    ]


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


def _run_checkpoint(
    batch: pd.DataFrame,
    expectations: list[Expectation],
    month: pd.Period,
    docs_dir: Path,
    what: str = "snapshot",
) -> CheckpointResult:
    """One checkpoint of one suite over ``batch`` (``what``: "snapshot" or "forecasts", which
    names the suite, its asset and its Data Docs pages)."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral", project_config=_context_config(docs_dir))
    batch_definition = (
        context.data_sources.add_pandas(what)
        .add_dataframe_asset(f"{what}_{month}")
        .add_batch_definition_whole_dataframe(f"whole_{what}")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{what}_{month}", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{what}_{month}", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"validate_{what}_{month}",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])],
            result_format=RESULT_FORMAT,
        )
    )
    return checkpoint.run(batch_parameters={"dataframe": batch})


def _context_config(docs_dir: Path) -> Any:
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # The default ephemeral context adds a docs site in a temp folder; ours replaces it so
    # the only thing written to disk is the Data Docs in docs_dir.
    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # tqdm bars garble task logs
    )


def _report(
    result: CheckpointResult, batch: pd.DataFrame, month: pd.Period, docs_dir: Path
) -> ValidationReport:
    (suite_result,) = result.run_results.values()
    (definition,) = result.checkpoint_config.validation_definitions
    results = _in_suite_order(suite_result.results, definition.suite)
    failures = [_failure(r, batch) for r in results if not r.success]
    index = paths.docs_index(docs_dir)
    return ValidationReport(
        success=bool(result.success),
        month=str(month),
        rows=len(batch),
        rows_in_month=int((batch[MONTH_KEY] == str(month)).sum()),
        expectations=int(suite_result.statistics["evaluated_expectations"]),
        failures=failures,
        data_docs=str(index) if index.is_file() else None,
    )


def _in_suite_order(results: list[ExpectationValidationResult], suite: ExpectationSuite) -> list:
    """GX returns results grouped by how it computed them; report them in the suite's order."""
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    return sorted(results, key=lambda r: order.get(r.expectation_config.id, len(order)))


def _failure(result: ExpectationValidationResult, batch: pd.DataFrame) -> dict:
    config = result.expectation_config
    assert config is not None  # a checkpoint's results always carry their expectation
    kwargs = config.kwargs
    columns = kwargs.get("column_list") or (
        [kwargs["column"]]
        if "column" in kwargs
        else [kwargs[k] for k in ("column_A", "column_B") if k in kwargs]
    )
    return {
        "expectation": config.type,
        "column": ", ".join(columns) or None,
        "details": _details(result, [c for c in columns if c not in batch.columns]),
        "label": _label(config.type, kwargs),
    }


def _label(expectation: str, kwargs: dict) -> str:
    """E.g. ``expect_column_values_to_be_between(units, min 0)``."""
    parts = list(kwargs.get("column_list") or [])
    if "column" in kwargs:
        parts.append(kwargs["column"])
    parts += [kwargs[key] for key in ("column_A", "column_B") if key in kwargs]  # a column pair
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict) and "parameter" in condition:
        parts.append(f"rows of {condition['parameter']}")
    for bound in ("min", "max"):
        if kwargs.get(f"{bound}_value") is not None:
            value = kwargs[f"{bound}_value"]
            if abs(value) == FINITE:  # the bound that rules out infinities
                if bound == "max":
                    parts.append("finite")
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # GX stores a bound of 0 as 0.0; print it as configured
            parts.append(f"{bound} {value}")
    return f"{expectation}({', '.join(map(str, parts))})"


def _details(result: ExpectationValidationResult, missing_columns: list[str]) -> str:
    if missing_columns:
        return f"column {', '.join(repr(c) for c in missing_columns)} is missing from the snapshot"
    errors = _exception_messages(result.exception_info or {})
    if errors:
        return f"could not be evaluated: {errors[0]}"
    res = result.result or {}
    if "partial_missing_list" in res:
        return f"missing {', '.join(map(str, res['partial_missing_list']))}"
    config = result.expectation_config
    meta = (config.meta if config is not None else None) or {}
    if "unexpected_count" in res:
        examples = _examples(res.get("partial_unexpected_list") or [])
        if meta.get("unplanned"):  # forecast months without a plan (validate_plans)
            text = f"{res['unexpected_count']} active entity-months have no plan"
        elif "wanted" in meta:  # a value extract could not read as a date or a number
            text = f"{res['unexpected_count']} of {res.get('element_count')} rows hold a {meta['column']} that is not {meta['wanted']}"
        else:
            text = f"{res['unexpected_count']} unexpected of {res.get('element_count')} rows"
        return f"{text} (e.g. {examples})" if examples else text
    if config is not None and config.type == "expect_table_row_count_to_be_between":
        return (
            f"observed {res.get('observed_value')} rows; "
            f"{meta.get('previous_month')} had {meta.get('previous_rows')}"
        )
    if "observed_value" in res:
        return f"observed {res['observed_value']}"
    return "failed"


def _examples(values: list, limit: int = 3) -> str:
    """A few distinct offending values; nulls say nothing the count does not."""
    shown: list[str] = []
    for value in values:
        text = _show(value)
        if not _is_null(value) and text not in shown:
            shown.append(text)
    return ", ".join(shown[:limit])


def _show(value: Any) -> str:
    if isinstance(value, dict):  # a row, from the compound-uniqueness check
        return "(" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + ")"
    if isinstance(value, tuple | list):  # a pair of values, from a column-pair check
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return repr(value) if isinstance(value, str) else str(value)


def _is_null(value: Any) -> bool:
    return not isinstance(value, dict | list) and bool(pd.isna(value))


def _exception_messages(info: dict) -> list[str]:
    """GX nests exception info per metric when a metric failed, flat when the expectation did."""
    if "exception_message" in info:
        return [info["exception_message"]] if info.get("raised_exception") else []
    nested = [v for v in info.values() if isinstance(v, dict)]
    return [v["exception_message"] for v in nested if v.get("raised_exception")]


@contextmanager
def _quiet_gx_logging() -> Iterator[None]:
    """GX logs chatter at INFO (a line per API it registers at import); keep task logs readable.

    Only touches the great_expectations logger, and only if nobody set its level on purpose.
    """
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level != logging.NOTSET:
        yield
        return
    gx_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        gx_logger.setLevel(logging.NOTSET)


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
    with _quiet_gx_logging(), _copy_on_write():
        unplanned = _unplanned(plans, snapshot, config, month)
        batch = pd.concat([plans, unplanned], ignore_index=True) if len(unplanned) else plans.copy()
        if UNPLANNED not in batch.columns:
            batch[UNPLANNED] = pd.Series(pd.NA, index=batch.index, dtype="string")
        batch = _batch(batch, _month_keys(batch, pl.month_column))
        expectations = plan_expectations(config, month, plans)
        result = _run_checkpoint(batch, expectations, month, docs_dir, what="plans")
        report = _report(result, batch, month, docs_dir)
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
