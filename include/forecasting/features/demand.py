"""Demand classes: each series' pattern of demand, as of a forecast origin (Syntetos, Boylan and
Croston 2005).

From the entity's history up to and including the origin (the months of its span in the run's
window, a month without a row counting as 0, as for the features and the baselines):

* ADI, the average demand interval: months of history over months with demand (sales > 0);
* CV², the squared coefficient of variation of the demand sizes: the variance (population) of
  the months with demand over their mean, squared.

Cut at ADI 1.32 and CV² 0.49:

| | CV² < 0.49 | CV² ≥ 0.49 |
|---|---|---|
| **ADI < 1.32** | smooth | erratic |
| **ADI ≥ 1.32** | intermittent | lumpy |

A series without a month of demand up to the origin is ``no_demand``. Every class is computed
from the same history as the forecast's, so it is known at the origin: predict labels each
published forecast with its entity's class as of M (``demand_class``), evaluate scores each
class of the holdout rows as of their origins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.data.panel import Panel, key_text

ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49
SMOOTH, ERRATIC, INTERMITTENT, LUMPY, NO_DEMAND = "smooth", "erratic", "intermittent", "lumpy", "no_demand"
CLASSES = (SMOOTH, ERRATIC, INTERMITTENT, LUMPY, NO_DEMAND)
# The classes the intermittent-demand forecasters (Croston SBA, TSB, IMAPA) are meant for.
SPARSE_CLASSES = (INTERMITTENT, LUMPY)
DEMAND_CLASS = "demand_class"  # the column of the published forecasts


def classify(adi: np.ndarray, cv2: np.ndarray) -> np.ndarray:
    """The class of each (ADI, CV²); NaN ADI (no month with demand): ``no_demand``."""
    adi, cv2 = np.asarray(adi, dtype=float), np.asarray(cv2, dtype=float)
    sparse, variable = adi >= ADI_CUTOFF, cv2 >= CV2_CUTOFF
    out = np.where(sparse, np.where(variable, LUMPY, INTERMITTENT), np.where(variable, ERRATIC, SMOOTH))
    return np.where(np.isnan(adi), NO_DEMAND, out).astype(object)


def adi_cv2(history: np.ndarray) -> tuple[float, float]:
    """ADI and CV² of one series (its months in order, NaN: not in the series); NaN, NaN without
    demand. The definition ``measures`` computes for many series at once."""
    months = np.asarray(history, dtype=float)
    months = months[~np.isnan(months)]
    sizes = months[months > 0]
    if not len(sizes):
        return float("nan"), float("nan")
    return len(months) / len(sizes), float(sizes.var() / sizes.mean() ** 2)


def measures(panel: Panel, entity: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ADI and CV² of each (entity: panel row, origin: month index) from the entity's history up
    to the origin, from cumulative sums over the panel (no loop over series)."""
    in_span = panel.in_span()
    sales = np.where(in_span, np.nan_to_num(panel.sales), 0.0)
    demand = in_span & (sales > 0)
    positive = np.where(demand, sales, 0.0)
    entity = np.asarray(entity, dtype=np.int64)
    col = np.clip(np.asarray(origin, dtype=np.int64) - panel.first_month, -1, panel.months - 1)
    ok = col >= 0

    def upto(values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(entity))
        out[ok] = np.cumsum(values, axis=1)[entity[ok], col[ok]]
        return out

    months, count = upto(in_span.astype(float)), upto(demand.astype(float))
    total, squares = upto(positive), upto(positive**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.maximum(squares / count - mean**2, 0.0)
        adi = np.where(count > 0, months / count, np.nan)
        cv2 = np.where(count > 0, variance / mean**2, np.nan)
    return adi, cv2


def demand_classes(panel: Panel, entity: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The class of each (entity, origin) row (see the module's docstring)."""
    return classify(*measures(panel, entity, origin))


def label_forecasts(frame: pd.DataFrame, panel: Panel, keys: list[str], month_idx: int) -> np.ndarray:
    """The class as of month ``month_idx`` of each forecast row's entity (``frame``'s ``keys``, in
    the source's types); None for an entity the panel does not hold."""
    index = panel.keys.reset_index().rename(columns={"index": "_entity"})
    asked = pd.DataFrame({k: key_text(frame[k]) for k in keys})
    entity = asked.merge(index, on=keys, how="left")["_entity"].to_numpy()
    out = np.full(len(frame), None, dtype=object)
    known = ~pd.isna(entity)
    rows = entity[known].astype(np.int64)
    out[known] = demand_classes(panel, rows, np.full(len(rows), month_idx))
    return out
