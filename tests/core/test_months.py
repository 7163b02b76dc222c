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


@pytest.mark.parametrize("asked", ["2999-01", "0000-01", "1677-12", "2262-01", "10000-01", "soon"])
def test_a_month_pandas_cannot_hold_is_refused_for_good(asked):
    """2999-01 and 0000-01 passed the param, then failed in extract as retryable (issue 23, fault 10)."""
    from forecasting.core.errors import is_permanent
    from forecasting.core.months import MonthOutOfRange

    with pytest.raises(MonthOutOfRange, match=r"1678-01\.\.2261-12") as refused:
        month_to_run(asked, None, pendulum.datetime(2025, 1, 3, tz="UTC"))
    assert is_permanent(refused.value) and asked in str(refused.value)
    with pytest.raises(MonthOutOfRange):
        month_of(asked)


def test_the_first_and_last_months_work_end_to_end_of_their_dates():
    from forecasting.core.months import FIRST_MONTH, LAST_MONTH

    assert month_to_run("1678-01", None, None) == str(FIRST_MONTH)
    assert month_to_run("2261-12", None, None) == str(LAST_MONTH)
    assert month_start(FIRST_MONTH) >= pd.Timestamp.min and month_end(LAST_MONTH) <= pd.Timestamp.max


def test_the_dags_month_param_takes_exactly_the_months_a_run_can_work_on():
    """The param's pattern and FIRST_MONTH..LAST_MONTH say the same, for every 4-digit year."""
    import re

    from forecasting.core.months import FIRST_MONTH, LAST_MONTH
    from forecasting.core.names import MONTH_PATTERN

    pattern = re.compile(MONTH_PATTERN)
    for year in range(10000):
        assert bool(pattern.match(f"{year:04d}-06")) == (FIRST_MONTH.year <= year <= LAST_MONTH.year), year
    assert not pattern.match("2024-13") and not pattern.match("2024-00") and not pattern.match("2024-1")


def test_airflow_refuses_an_out_of_range_month_param_when_the_run_is_triggered():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    from forecasting.orchestration.dag_defaults import month_param

    param = Param(None, **month_param("M"))
    assert param.resolve("2024-03") == "2024-03" and param.resolve(None) is None
    for asked in ("2999-01", "0000-01"):
        with pytest.raises(ParamValidationError):
            param.resolve(asked)
