"""What a scenario may plan for a covariate, from its history (scenarios.read.allowed_values)."""

import pandas as pd

from forecasting.scenarios.read import HISTORY_MAX_FACTOR, allowed_values


def test_a_flag_takes_zero_or_one_even_when_its_history_holds_only_one_of_them():
    assert allowed_values(pd.Series([0, 1, 1, 0])) == [0, 1]
    assert allowed_values(pd.Series([0.0, 0.0, None])) == [0, 1]  # a promotion never run yet
    assert allowed_values(pd.Series([1, 1])) == [0, 1]


def test_other_covariates_reach_a_multiple_of_their_history():
    assert allowed_values(pd.Series([2.5, 3.0, 4.0])) == (0.0, HISTORY_MAX_FACTOR * 4.0)
    assert allowed_values(pd.Series([-1.0, 2.0])) == (-HISTORY_MAX_FACTOR, HISTORY_MAX_FACTOR * 2.0)
    assert allowed_values(pd.Series([None, "x"])) is None
