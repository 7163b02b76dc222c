"""Which month a DAG run works on, and the month helpers around it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pendulum
import pytest

from forecasting.core.months import month_end, month_index, month_indices, month_of, month_start, month_to_run


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
    from forecasting.core.months import month_from_index, month_index

    assert month_index(pd.Period("2024-01", "M")) + 11 == month_index(pd.Period("2024-12", "M"))
    assert month_from_index(month_index(pd.Period("1992-09", "M"))) == pd.Period("1992-09", "M")
    months = pd.period_range("2023-11", "2024-02", freq="M")
    assert month_from_index(month_index(months)).equals(months)


def test_month_indices_match_month_index_for_any_time_in_the_month():
    times = pd.Series(
        pd.to_datetime(
            ["1999-12-31 23:59:59.999", "2000-01-01", "2024-02-29 12:00", "2024-03-01", "2031-07-15"],
            format="ISO8601",
        )
    )
    expected = month_index(times.dt).to_numpy()
    np.testing.assert_array_equal(month_indices(times), expected)
    # Times with a time zone take the general path, to the same answer.
    np.testing.assert_array_equal(month_indices(times.dt.tz_localize("UTC")), expected)
    assert month_indices(times.iloc[:0]).tolist() == []
