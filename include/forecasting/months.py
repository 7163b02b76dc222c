"""Months are the pipeline's unit of time: a run works on one logical month M."""

from __future__ import annotations

from datetime import datetime

import pandas as pd


def month_of(value: str | datetime | pd.Timestamp | pd.Period) -> pd.Period:
    """The calendar month holding ``value`` ("2024-03", a date, a timestamp or a Period)."""
    if isinstance(value, pd.Period):
        return value.asfreq("M")
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_period("M")


def month_start(month: pd.Period) -> pd.Timestamp:
    """First instant of the month (naive, UTC by convention)."""
    return month.to_timestamp(how="start")


def month_end(month: pd.Period) -> pd.Timestamp:
    """The instant a month is complete: the first instant of the next month (naive UTC).

    Feature rows about month t are stamped with this time, so a training row whose
    forecast origin is t may read them, and one whose origin is before t may not.
    """
    return (month + 1).to_timestamp(how="start")


def month_range(first: pd.Period, last: pd.Period) -> pd.PeriodIndex:
    return pd.period_range(first, last, freq="M")
