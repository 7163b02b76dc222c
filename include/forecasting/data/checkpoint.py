"""Great Expectations as the pipeline's checkpoints use it: run one suite over a frame, render
static Data Docs into a folder of ours, and report each failed expectation in words.

The input checkpoint (``forecasting.data.validate``: the snapshot and the plans), the output
checks (``forecasting.publishing.checks``) and the scenarios' checks all run through here.
A failure raises ``DataValidationError`` (a DataError: retrying cannot help) with a message
meant for an Airflow log; the Data Docs hold the full detail.

Great Expectations is imported lazily: it takes seconds to import, and Airflow parses the DAG
files that import these modules far more often than it runs a validation task.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.errors import DataError

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core import ExpectationSuite, ExpectationValidationResult
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

# A "YYYY-MM" copy of the time column, added to the validated batch only. Month coverage and
# the month-M row count are checked on it because GX value sets and row conditions compare
# plain strings reliably, where datetime64 values against a set are fiddly. It is a categorical
# (one small code per row, the strings once per month): see month_keys.
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

# No sales or covariate value is ever this large: a value beyond it is a unit or sentinel gone
# wrong (1e300), which XGBoost would fail on (its float32 holds at most 3.4e38) with no row
# named. Far inside float32, so sums and squares of a year of such values stay finite.
MAX_MAGNITUDE = 1e15


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
    # Why, in plain words, when the data says so ("the data ends in 2026-11; 2026-12 has no
    # sales yet"): the first line leads with it, before the expectations that failed.
    reason: str = ""
    notes: list[str] = field(default_factory=list)  # what passed but is worth knowing

    def summary(self) -> str:
        what = f"{self.subject}{self.month}"
        notes = [f"Note: {note}" for note in self.notes]
        if self.success:
            passed = f"Validation of {what} passed ({self.expectations} expectations, {self.rows} rows)."
            return "\n".join([passed, *notes])
        failed = f"{len(self.failures)} of {self.expectations} expectations"
        if self.reason:
            lines = [f"Validation of {what} failed: {self.reason}.", f"{failed} failed:"]
        else:
            lines = [f"Validation of {what} failed ({failed}):"]
        lines += [f" - {f['label']}: {f['details']}" for f in self.failures]
        lines += notes
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


@contextmanager
def copy_on_write() -> Iterator[None]:
    """Run GX with pandas' copy-on-write, the default from pandas 3.

    GX's pandas engine filters the whole batch for every metric of an expectation with a
    row_condition (and for ignore_row_if), and a filter that keeps every row (the usual case)
    copies every column unless copy-on-write makes that copy lazy: at 5M rows the copies took
    most of the checkpoint's time and doubled its memory. GX only reads its batch, so the
    results are the same.
    """
    with pd.option_context("mode.copy_on_write", True):
        yield


def run_checkpoint(
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
    try:
        return checkpoint.run(batch_parameters={"dataframe": batch})
    finally:
        paths.make_private(docs_dir)  # GX writes its pages 0644


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


def checkpoint_report(
    result: CheckpointResult, batch: pd.DataFrame, month: pd.Period, docs_dir: Path
) -> ValidationReport:
    (suite_result,) = result.run_results.values()
    (definition,) = result.checkpoint_config.validation_definitions
    results = in_suite_order(suite_result.results, definition.suite)
    failures = [failure_of(r, batch) for r in results if not r.success]
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


def in_suite_order(results: list[ExpectationValidationResult], suite: ExpectationSuite) -> list:
    """GX returns results grouped by how it computed them; report them in the suite's order."""
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    return sorted(results, key=lambda r: order.get(r.expectation_config.id, len(order)))


def failure_of(result: ExpectationValidationResult, batch: pd.DataFrame) -> dict:
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
        "details": _details(result, batch, [c for c in columns if c not in batch.columns]),
        "label": _label(config.type, kwargs),
    }


def _label(expectation: str, kwargs: dict) -> str:
    """E.g. ``expect_column_values_to_be_between(units, min 0)``."""
    parts = list(kwargs.get("column_list") or [])
    if "column" in kwargs:
        parts.append(kwargs["column"])
    parts += [kwargs[key] for key in ("column_A", "column_B") if key in kwargs]  # a column pair
    if expectation == "expect_column_values_to_be_in_set":  # the values allowed, e.g. {0, 1}
        parts.append("{" + ", ".join(_show(v) for v in kwargs["value_set"]) + "}")
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
            if isinstance(value, float) and abs(value) >= 1e6:
                value = f"{value:g}"  # MAX_MAGNITUDE as 1e+15, not 16 digits
            elif isinstance(value, float) and value.is_integer():
                value = int(value)  # GX stores a bound of 0 as 0.0; print it as configured
            parts.append(f"{bound} {value}")
    return f"{expectation}({', '.join(map(str, parts))})"


def _rows_out_of_range(batch: pd.DataFrame, kwargs: dict, entity_columns: list[str], limit: int = 3) -> str:
    """The first few rows whose finite value lies outside the expectation's bounds, as
    ``store_id=3, item_id=7 in 2026-03: 1e+300`` (infinities are the finite check's to name)."""
    column = kwargs["column"]
    values = pd.to_numeric(batch[column], errors="coerce").to_numpy(dtype=float)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    with np.errstate(invalid="ignore"):
        if kwargs.get("value_set") is not None:  # a set of allowed values
            outside = ~np.isin(values, np.asarray(kwargs["value_set"], dtype=float))
        else:
            outside = (values < (-np.inf if low is None else low)) | (values > (np.inf if high is None else high))
        bad = np.isfinite(values) & outside
    shown = []
    for i in np.flatnonzero(bad)[:limit]:
        row = batch.iloc[i]
        entity = ", ".join(f"{k}={_show(row[k])}" for k in entity_columns if k in batch.columns)
        month = row[MONTH_KEY] if MONTH_KEY in batch.columns else None
        shown.append(f"{entity}{f' in {month}' if isinstance(month, str) else ''}: {column} {values[i]:g}")
    return "; ".join(shown)


def _details(result: ExpectationValidationResult, batch: pd.DataFrame, missing_columns: list[str]) -> str:
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
        elif "entity_columns" in meta and config is not None:  # out of range: named by entity, month
            text = f"{res['unexpected_count']} unexpected of {res.get('element_count')} rows"
            named = _rows_out_of_range(batch, config.kwargs, meta["entity_columns"])
            return f"{text}: {named}" if named else text
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
def quiet_gx_logging() -> Iterator[None]:
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
