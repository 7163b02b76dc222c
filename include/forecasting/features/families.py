"""The families of model columns a planner reads a forecast's drivers by (``<table>_drivers``).

One mapping, from a column's name to its family, for every column the model reads
(``dataset.model_features``): level, seasonality, trend, price, promotion, calendar,
attributes; ``bias`` is the model's starting point, not a column (forecasting.modeling.drivers).
"""

from __future__ import annotations

import re

from forecasting.core.config import Config
from forecasting.features.dataset import (
    HORIZON,
    RELATIVE_PREFIX,
    SEASONAL_INDEX,
    TWO_YEARS_BEFORE_TARGET,
    YEAR_BEFORE_TARGET,
)

LEVEL = "level"
SEASONALITY = "seasonality"
TREND = "trend"
PRICE = "price"
PROMOTION = "promotion"
CALENDAR = "calendar"
ATTRIBUTES = "attributes"
BIAS = "bias"
# In order of display; BIAS last (what no column explains).
FAMILIES = (LEVEL, SEASONALITY, TREND, PRICE, PROMOTION, CALENDAR, ATTRIBUTES, BIAS)

DESCRIPTIONS = {
    LEVEL: "recent sales: the last three months, the rolling means and spreads",
    SEASONALITY: "last year: the lags of a year and two before, the target month a year and two before, "
    "the seasonal index",
    TREND: "the path of the past year (lags 4 to 11) and the series' age (history_months)",
    PRICE: "the covariates named *price* and their plans",
    PROMOTION: "every other covariate (promotions...) and its plans",
    CALENDAR: "the month of year of the origin and the target, the horizon",
    ATTRIBUTES: "the entity's attributes (source.attributes)",
    BIAS: "the model's starting point: for a model scaled by the recent mean, the trees' average "
    "factor; else the trees' average forecast (and any clip at zero)",
}

# The latest months that say where the series is now; older lags within a year say where it went.
_LEVEL_LAGS = 3
_LAG = re.compile(r"^sales_lag_(\d+)$")
_SEASONAL = {YEAR_BEFORE_TARGET, TWO_YEARS_BEFORE_TARGET, SEASONAL_INDEX}


def covariate_family(covariate: str) -> str:
    """A covariate's family: price when its name says so, else promotion (the explorer's chart
    draws them by the same rule)."""
    return PRICE if "price" in covariate.lower() else PROMOTION


def family(column: str, config: Config) -> str:
    """The family of a model column. Raises KeyError for a column no family knows (a model
    reading a column this release does not map must not be explained silently wrong)."""
    name = column.removeprefix(RELATIVE_PREFIX)  # a sales feature over the level: its feature's family
    if name in _SEASONAL:
        return SEASONALITY
    if lag := _LAG.match(name):
        k = int(lag.group(1))
        return LEVEL if k <= _LEVEL_LAGS else TREND if k < 12 else SEASONALITY
    if name.startswith(("sales_mean_", "sales_std_")):
        return LEVEL
    if name == "history_months":
        return TREND
    if name in ("month_of_year", "target_month_of_year", HORIZON):
        return CALENDAR
    if name in config.source.attributes:
        return ATTRIBUTES
    for covariate in config.source.covariates:
        if name in (covariate, f"{covariate}_mean_3"):
            return covariate_family(covariate)
    if config.plans is not None:
        for covariate, planned in zip(config.plans.covariates, config.plans.feature_names, strict=True):
            if name in (planned, f"{planned}_change"):
                return covariate_family(covariate)
    raise KeyError(f"no driver family for the model column {column!r} (forecasting.features.families)")


def families_of(columns: list[str], config: Config) -> list[str]:
    """Each column's family, in the columns' order."""
    return [family(c, config) for c in columns]
