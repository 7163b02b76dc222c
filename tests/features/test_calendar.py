"""The calendar (``calendar:``): trading days and holidays of the target month, by hand; the
config section; the columns a row gets, as of its target month; and on synthetic data with a
known trading-day effect, the model that reads them beats the one that does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.core import paths
from forecasting.core.calendar import month_calendar
from forecasting.core.config import ConfigError, load_config
from forecasting.core.months import month_index
from forecasting.datasets.synthetic import generate_sales
from forecasting.features import dataset
from forecasting.features.calendar import CALENDAR_FEATURES, HOLIDAYS, TRADING_DAYS, calendar_columns
from forecasting.modeling import booster as model
from forecasting.modeling.scoring import metrics
from tests.helpers.config import demo_config_dict, write_config
from tests.helpers.features import without_feast

MONTH = pd.Period("2024-12", "M")


@pytest.mark.parametrize(
    ("year", "month", "country", "subdivision", "weekend", "expected"),
    [
        # July 1991 starts on a Monday: 23 weekdays; Independence Day is a Thursday.
        (1991, 7, "US", None, (5, 6), (22, 1)),
        # February 1992 (leap year) starts on a Saturday: 20 weekdays; Presidents' Day (17th) a Monday.
        (1992, 2, "US", None, (5, 6), (19, 1)),
        # April 2007 in New South Wales: 21 weekdays; Good Friday (6th), Easter Monday (9th) and
        # Anzac Day (Wednesday 25th) on weekdays, Easter Saturday (7th) on the weekend.
        (2007, 4, "AU", "NSW", (5, 6), (18, 4)),
        # The same month with a Friday-Saturday weekend: 30 days - 8 Fridays and Saturdays = 22,
        # less Easter Monday and Anzac Day (Good Friday and Easter Saturday fall on the weekend).
        (2007, 4, "AU", "NSW", (4, 5), (20, 4)),
        # September 2024: Labor Day (the 2nd), 21 weekdays.
        (2024, 9, "US", None, (5, 6), (20, 1)),
    ],
)
def test_trading_days_and_holidays_by_hand(year, month, country, subdivision, weekend, expected):
    assert month_calendar(year, month, country, subdivision, weekend) == expected


def calendar_config(folder, calendar=None, horizon=3, **evaluation):
    raw = demo_config_dict(folder)
    raw["source"].update(
        entity_columns=["store_id", "item_id"],
        time_column="month",
        target_column="units",
        covariates=[],
        attributes=[],
    )
    raw["model"].update(num_boost_round=300, early_stopping_rounds=20)
    raw["evaluation"] = {
        "holdout_months": 6,
        "statistical_baselines": [],
        "backtest_origins": 0,
        **evaluation,
    }
    raw["horizon"] = horizon
    if calendar is not None:
        raw["calendar"] = calendar
    return load_config(write_config(folder, raw))


def test_the_section_adds_both_columns_after_the_target_month_and_absent_adds_none(tmp_path):
    without = calendar_config(tmp_path / "none")
    assert without.calendar is None
    assert not set(CALENDAR_FEATURES) & set(dataset.model_features(without))
    with_it = calendar_config(tmp_path / "us", {"country": "US"})
    assert with_it.calendar is not None and with_it.calendar.weekend == [5, 6]
    features = dataset.model_features(with_it)
    at = features.index("target_month_of_year")
    assert features[at + 1 : at + 3] == [TRADING_DAYS, HOLIDAYS]
    # Nothing else moves: the model without the section reads exactly what it read before.
    assert [f for f in features if f not in CALENDAR_FEATURES] == dataset.model_features(without)
    au = calendar_config(tmp_path / "au", {"country": "AU", "subdivision": "VIC", "weekend": [6, 5]})
    assert au.calendar is not None and (au.calendar.subdivision, au.calendar.weekend) == ("VIC", [5, 6])


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"country": "XX"}, r"calendar\.country: is not a country the holidays package knows"),
        ({"country": "US", "subdivision": "NSW"}, r"calendar\.subdivision: is not a subdivision of US"),
        ({"country": "US", "weekend": [7]}, r"calendar\.weekend: must be distinct days 0 \(Monday\) to 6"),
        ({"country": "US", "holidays": True}, r"calendar\.holidays: unknown key"),
        ({}, r"calendar\.country"),
    ],
)
def test_a_bad_section_is_refused_naming_the_key(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        calendar_config(tmp_path, section)


def test_each_row_gets_its_target_months_calendar(tmp_path):
    config = calendar_config(tmp_path, {"country": "US"})
    origin = month_index(pd.Period("1991-06", "M"))
    horizon = np.array([1, 2, 3, 1])
    features = pd.DataFrame({"month_of_year": [6.0, 6.0, 6.0, 7.0]})
    target = np.array([origin + 1, origin + 2, origin + 3, origin + 2])  # July, August, September, August
    wanted = [dataset.HORIZON, "target_month_of_year", *CALENDAR_FEATURES]
    frame = dataset.with_model_columns(features, horizon, wanted, target, config)
    # July 1991: 22 trading days, 1 holiday; August: 22, 0; September: 20 (Labor Day), 1.
    assert frame[TRADING_DAYS].tolist() == [22.0, 22.0, 20.0, 22.0]
    assert frame[HOLIDAYS].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert frame[TRADING_DAYS].dtype == np.float32
    got = calendar_columns(target, config.calendar)
    np.testing.assert_array_equal(got[TRADING_DAYS], frame[TRADING_DAYS].to_numpy())
    with pytest.raises(ValueError, match="target months"):
        dataset.with_model_columns(features, horizon, wanted)


def holdout_wape(snapshot, config) -> float:
    from forecasting.modeling.train import train

    trained = train(snapshot, config, MONTH)
    booster, metadata = model.load(trained.directory, holdout=True)
    holdout = dataset.read_rows(paths.holdout_rows(trained.directory))
    predicted = model.predict(booster, dataset.design_matrix(holdout, config, metadata["categories"]))
    return metrics(holdout[dataset.LABEL].to_numpy(), predicted)["wape"]


def test_the_model_with_the_calendar_beats_it_without_on_a_known_trading_day_effect(tmp_path, monkeypatch):
    without_feast(monkeypatch)
    # Units proportional to the 5th power of the month's trading days (US holidays): a month's
    # weekdays change from year to year, which the month of year alone cannot tell. The holdout
    # is 6 months of 240 series, so one seed's gain is noisy (from 2% to 20% measured): each of
    # three seeds must gain, and their mean gain be clear of that noise.
    gains = []
    for seed in (3, 5, 6):
        snapshot = generate_sales(
            stores=8, items=30, months=60, end_month=MONTH, seed=seed, holiday_effect=5.0
        )
        snapshot["month"] = pd.to_datetime(snapshot["month"])
        plain = holdout_wape(snapshot, calendar_config(tmp_path / f"without{seed}"))
        informed = holdout_wape(snapshot, calendar_config(tmp_path / f"with{seed}", {"country": "US"}))
        gains.append(1 - informed / plain)
    assert min(gains) > 0 and np.mean(gains) > 0.03, gains


def test_a_model_trained_with_the_calendar_refuses_a_config_without_it(tmp_path):
    from forecasting.modeling.predict import check_planned_features

    with_it = calendar_config(tmp_path / "with", {"country": "US"})
    metadata = {"model_version": "2024-12-abc", "features": dataset.model_features(with_it)}
    check_planned_features(metadata, with_it)  # the config it was trained under: fine
    with pytest.raises(RuntimeError, match="target_trading_days, target_holidays"):
        check_planned_features(metadata, calendar_config(tmp_path / "without"))
