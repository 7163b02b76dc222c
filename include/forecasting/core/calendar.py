"""Trading days and public holidays of a month: pure calendar math (the PyPI ``holidays``
package's holidays), shared by the calendar features (``forecasting.features.calendar``) and the
synthetic generator's holiday effect (``forecasting.datasets.synthetic``)."""

from __future__ import annotations

import calendar
from datetime import date
from functools import cache


@cache
def holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """The public holidays of a year (with the observed days the package adds when a holiday falls
    on a weekend)."""
    import holidays

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def month_calendar(
    year: int, month: int, country: str, subdivision: str | None = None, weekend: tuple[int, ...] = (5, 6)
) -> tuple[int, int]:
    """(trading days, holidays) of one month: the days that are neither a ``weekend`` day
    (Monday 0 .. Sunday 6) nor a public holiday, and the public holidays (distinct dates) on any
    day of the week."""
    days = calendar.monthrange(year, month)[1]
    holidays = {d for d in holiday_dates(country, subdivision, year) if d.month == month}
    trading = sum(
        1
        for day in range(1, days + 1)
        if date(year, month, day).weekday() not in weekend and date(year, month, day) not in holidays
    )
    return trading, len(holidays)
