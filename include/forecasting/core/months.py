"""Months are the pipeline's unit of time: a run works on one logical month M."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from forecasting.core.errors import DataError
from forecasting.core.names import FIRST_YEAR, LAST_YEAR

# The months a run may work on (core.names: the years pandas' timestamps hold whole).
FIRST_MONTH = pd.Period(year=FIRST_YEAR, month=1, freq="M")
LAST_MONTH = pd.Period(year=LAST_YEAR, month=12, freq="M")


class MonthOutOfRange(DataError):
    """A month no run can work on (its dates do not fit in pandas' timestamps): every retry
    asks for the same month."""


def month_of(value: str | datetime | pd.Timestamp | pd.Period) -> pd.Period:
    """The calendar month holding ``value`` ("2024-03", a date, a timestamp or a Period).
    Raises MonthOutOfRange for a month outside FIRST_MONTH..LAST_MONTH."""
    if isinstance(value, pd.Period):
        return in_range(value.asfreq("M"), value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, OverflowError) as err:  # OutOfBoundsDatetime (2999-01) is a ValueError
        raise MonthOutOfRange(
            f"{value!r} is not a month a run can work on (YYYY-MM, {FIRST_MONTH}..{LAST_MONTH}): {err}"
        ) from err
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return in_range(ts.to_period("M"), value)


def in_range(month: pd.Period, asked: object) -> pd.Period:
    """``month`` if a run can work on it, else MonthOutOfRange naming ``asked``."""
    if not FIRST_MONTH <= month <= LAST_MONTH:
        raise MonthOutOfRange(
            f"month {asked} is outside {FIRST_MONTH}..{LAST_MONTH}, the years pandas' timestamps "
            "can hold: give a month in that range"
        )
    return month


def month_start(month: pd.Period) -> pd.Timestamp:
    """First instant of the month (naive, UTC by convention)."""
    return month.to_timestamp(how="start")


def month_end(month: pd.Period) -> pd.Timestamp:
    """The instant a month is complete: the first instant of the next month (naive UTC).

    Feature rows about month t are stamped with this time, so a training row whose
    forecast origin is t may read them, and one whose origin is before t may not.
    """
    return (month + 1).to_timestamp(how="start")


def month_index(month):
    """Months as consecutive integers (year * 12 + month - 1): cheap to add, subtract and compare.

    Takes anything with ``.year`` and ``.month``: a Period, a PeriodIndex, a Series' ``.dt``.
    """
    return month.year * 12 + month.month - 1


def month_indices(times: pd.Series) -> np.ndarray:
    """``month_index`` of each time, as int64. Plain datetime64 (what extract writes) is looked
    up among the month starts it spans, cheaper than ``.dt``'s year and month."""
    values = times.to_numpy()
    if values.dtype.kind != "M" or len(values) == 0 or np.isnat(values).any():
        return month_index(times.dt).to_numpy().astype(np.int64)
    first = values.min().astype("datetime64[M]")
    starts = np.arange(first, values.max().astype("datetime64[M]") + 1).astype(values.dtype)
    return np.searchsorted(starts, values, side="right") - 1 + first.astype(np.int64) + 1970 * 12


def month_from_index(index) -> pd.Period | pd.PeriodIndex:
    """The inverse of ``month_index``: a Period for one integer, a PeriodIndex for many."""
    if np.ndim(index) == 0:
        return pd.Period(year=int(index) // 12, month=int(index) % 12 + 1, freq="M")
    # Millions of rows hold a few dozen distinct months: build each once, then take.
    distinct, at = np.unique(np.asarray(index, dtype=np.int64), return_inverse=True)
    months = pd.PeriodIndex.from_fields(year=distinct // 12, month=distinct % 12 + 1, freq="M")
    return months[at.ravel()]


def month_labels(index) -> np.ndarray:
    """ "YYYY-MM" of each month index, as an object array (each distinct month formatted once)."""
    distinct, at = np.unique(np.asarray(index, dtype=np.int64), return_inverse=True)
    return month_from_index(distinct).astype(str).to_numpy(dtype=object)[at.ravel()]


def label_index(labels) -> np.ndarray:
    """month_index of "YYYY-MM" labels (each distinct label parsed once)."""
    codes, distinct = pd.factorize(np.asarray(labels, dtype=object))
    return np.asarray(month_index(pd.PeriodIndex(distinct, freq="M")), dtype=np.int64)[codes]


def month_range(first: pd.Period, last: pd.Period) -> pd.PeriodIndex:
    return pd.period_range(first, last, freq="M")


def month_to_run(requested: str | None, data_interval_start, run_after) -> str:
    """The month M a DAG run works on, as "YYYY-MM".

    The month asked for when the run was triggered if any; else the month the run's data
    interval starts in (a scheduled run on 2026-11-01 covers October 2026); else, for a manual
    run without a data interval, the month before the run was triggered. All three are recorded
    on the run itself, so re-running it works on the same month.
    """
    if requested:
        return str(month_of(requested))
    if data_interval_start is not None:
        return str(month_of(data_interval_start))
    return str(month_of(run_after) - 1)
