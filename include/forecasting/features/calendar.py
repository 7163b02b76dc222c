"""The calendar: trading days and public holidays of a month, known-future features.

A month's calendar is known years ahead, so unlike the sales features it may describe the
*target* month of a forecast at every horizon (as a plan does, ``forecasting.features.plans``)
without leaking anything: a pure function of the month and the ``calendar:`` section, computed
when a row is assembled (``dataset.with_model_columns``), never stored in Feast.

* ``target_trading_days``: days of the target month that are neither a weekend day
  (``calendar.weekend``) nor a public holiday.
* ``target_holidays``: public holidays (distinct dates, including the observed days the
  ``holidays`` package adds when a holiday falls on a weekend) in the target month, on any day
  of the week.
"""

from __future__ import annotations

import numpy as np

from forecasting.core.calendar import month_calendar
from forecasting.core.config import CalendarConfig, Config

TRADING_DAYS = "target_trading_days"
HOLIDAYS = "target_holidays"
CALENDAR_FEATURES = (TRADING_DAYS, HOLIDAYS)


def calendar_feature_names(config: Config) -> list[str]:
    """The calendar's model columns: both, with a ``calendar:`` section; none without."""
    return list(CALENDAR_FEATURES) if config.calendar is not None else []


def calendar_columns(months: np.ndarray, calendar: CalendarConfig) -> dict[str, np.ndarray]:
    """Each calendar feature of each month in ``months`` (month indexes, as
    ``forecasting.core.months.month_index``), float32: computed once per distinct month."""
    distinct, at = np.unique(np.asarray(months, dtype=np.int64), return_inverse=True)
    weekend = tuple(calendar.weekend)
    per_month = np.array(
        [
            month_calendar(int(m) // 12, int(m) % 12 + 1, calendar.country, calendar.subdivision, weekend)
            for m in distinct
        ],
        dtype=np.float32,
    ).reshape(len(distinct), 2)
    return {TRADING_DAYS: per_month[at.ravel(), 0], HOLIDAYS: per_month[at.ravel(), 1]}
