"""Which month a DAG run works on, and the month helpers around it."""

from __future__ import annotations

import pandas as pd
import pendulum
import pytest

from forecasting.months import month_end, month_of, month_start, month_to_run


def test_month_helpers():
    m = month_of("2024-03-15")
    assert str(m) == "2024-03"
    assert month_start(m) == pd.Timestamp("2024-03-01") and month_end(m) == pd.Timestamp("2024-04-01")
    assert month_of(pendulum.datetime(2024, 12, 31, 23, tz="America/Chicago")) == pd.Period("2025-01", "M")


@pytest.mark.parametrize(
    ("requested", "interval_start", "run_after", "expected"),
    [
        (
            "2023-07",
            pendulum.datetime(2024, 12, 1, tz="UTC"),
            pendulum.datetime(2025, 1, 3, tz="UTC"),
            "2023-07",
        ),
        (None, pendulum.datetime(2024, 12, 1, tz="UTC"), pendulum.datetime(2025, 1, 1, tz="UTC"), "2024-12"),
        ("", pendulum.datetime(2024, 12, 1, tz="UTC"), pendulum.datetime(2026, 5, 9, tz="UTC"), "2024-12"),
        (None, None, pendulum.datetime(2026, 11, 22, 2, tz="UTC"), "2026-10"),
    ],
)
def test_month_to_run(requested, interval_start, run_after, expected):
    assert month_to_run(requested, interval_start, run_after) == expected


def test_month_index_round_trips():
    from forecasting.months import month_from_index, month_index

    assert month_index(pd.Period("2024-01", "M")) + 11 == month_index(pd.Period("2024-12", "M"))
    assert month_from_index(month_index(pd.Period("1992-09", "M"))) == pd.Period("1992-09", "M")
    months = pd.period_range("2023-11", "2024-02", freq="M")
    assert month_from_index(month_index(months)).equals(months)
