"""Naive baselines: each row's forecast read off the entity's history up to the row's origin.

A row is (entity: a panel row, origin: a month index, horizon: months ahead); a month outside
the panel, or not yet known at the origin, is NaN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from forecasting.data.panel import Panel


def sales_at(panel: Panel, entity: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Each row's sales in month index ``month`` (NaN outside the panel)."""
    col = np.asarray(month) - panel.first_month
    inside = (col >= 0) & (col < panel.months)
    out = np.full(len(col), np.nan)
    out[inside] = panel.sales[entity[inside], col[inside]]
    return out


class NaiveBaseline(ABC):
    """A baseline computed directly from the panel, cheap enough for every row (``jobs`` unused)."""

    name: str

    @abstractmethod
    def forecast(
        self,
        panel: Panel,
        entity: np.ndarray,
        origin: np.ndarray,
        horizon: np.ndarray,
        jobs: int | None = None,
    ) -> np.ndarray: ...


class SeasonalNaive(NaiveBaseline):
    """The target month a year earlier (the origin month's value when that is not known yet)."""

    name = "seasonal_naive"

    def forecast(self, panel, entity, origin, horizon, jobs=None):
        target = origin + horizon
        year_ago = np.where(target - 12 <= origin, sales_at(panel, entity, target - 12), np.nan)
        return np.where(np.isnan(year_ago), sales_at(panel, entity, origin), year_ago)


class LastValue(NaiveBaseline):
    """The origin month's value."""

    name = "last_value"

    def forecast(self, panel, entity, origin, horizon, jobs=None):
        return sales_at(panel, entity, origin)


class Mean3(NaiveBaseline):
    """The mean of the three months ending at the origin (over those in the entity's history)."""

    name = "mean_3"

    def forecast(self, panel, entity, origin, horizon, jobs=None):
        recent = np.vstack([sales_at(panel, entity, origin - lag) for lag in range(3)])
        count = np.isfinite(recent).sum(axis=0)
        return np.where(count > 0, np.nansum(recent, axis=0) / np.maximum(count, 1), np.nan)
