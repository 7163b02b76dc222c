"""Age: how many months of sales history an entity has as of a forecast origin, and its bucket.

An entity's history starts with its first row in the run's window (the panel's span): launched
in month L, it has ``o - L + 1`` months of history at origin o (1 in its first month). Entities
with fewer months than the feature lookback (``features.lookback_months``) are *new*: some of
their lags and rolling windows are not there yet. Predict publishes each forecast's
``history_months`` as of M, evaluate scores the holdout rows by the bucket of their age as of
their origin (``forecasting.modeling.age_scores``), and the realised accuracy by the bucket of
the forecast's run month.

Buckets (lookback 24): ``1-2`` and ``3-5`` months (launched lately: no yearly lag, a few months
of a ramp-up), ``6-23`` (some lags, no two-year one), ``established`` (the whole lookback). The
model's feature of the same name is this count capped at the lookback.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.data.panel import Panel, key_text

HISTORY_MONTHS = "history_months"  # the column of the published forecasts
ESTABLISHED = "established"
# Where the young buckets start (months of history); the last one ends below the lookback.
_BUCKET_STARTS = (1, 3, 6)


def buckets(lookback: int) -> list[tuple[str, int, int]]:
    """(name, first, last months of history) of each bucket, youngest first; the last,
    ``established``, runs from the lookback on (its last is the largest int64)."""
    out = []
    starts = [s for s in _BUCKET_STARTS if s < lookback]
    for first, after in zip(starts, [*starts[1:], lookback], strict=True):
        out.append((f"{first}-{after - 1}" if after - 1 > first else str(first), first, after - 1))
    return [*out, (ESTABLISHED, lookback, np.iinfo(np.int64).max)]


def bucket_names(lookback: int) -> list[str]:
    return [name for name, _, _ in buckets(lookback)]


def history_months(panel: Panel, entity: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Months of history of each (entity: panel row, origin: month index), counting the origin:
    from the entity's first row in the panel; 0 where that is after the origin."""
    first = panel.first_month + panel.span_first[np.asarray(entity, dtype=np.int64)]
    return np.maximum(np.asarray(origin, dtype=np.int64) - first + 1, 0)


def age_buckets(months: np.ndarray, lookback: int) -> np.ndarray:
    """The bucket of each count of months of history (``buckets``); None for 0 (no history)."""
    months = np.asarray(months, dtype=np.int64)
    out = np.full(len(months), None, dtype=object)
    for name, first, last in buckets(lookback):
        out[(months >= first) & (months <= last)] = name
    return out


def label_forecasts(frame: pd.DataFrame, panel: Panel, keys: list[str], month_idx: int) -> np.ndarray:
    """The months of history as of month ``month_idx`` of each forecast row's entity (``frame``'s
    ``keys``, in the source's types), as floats; NaN for an entity the panel does not hold."""
    index = panel.keys.reset_index().rename(columns={"index": "_entity"})
    asked = pd.DataFrame({k: key_text(frame[k]) for k in keys})
    entity = asked.merge(index, on=keys, how="left")["_entity"].to_numpy()
    out = np.full(len(frame), np.nan)
    known = ~pd.isna(entity)
    rows = entity[known].astype(np.int64)
    out[known] = history_months(panel, rows, np.full(len(rows), month_idx))
    return out


NEW = "new"  # the interval group of every young row


def interval_groups(demand_class: np.ndarray, months: np.ndarray, lookback: int) -> np.ndarray:
    """Each row's group for its p10/p90 bands (forecasting.modeling.intervals): ``new`` for an
    entity with 1 to lookback - 1 months of history (their errors are wider than an established
    series' of any class: docs/quality.md), else its demand class."""
    months = np.asarray(months, dtype=float)
    young = (months >= 1) & (months < lookback)
    return np.where(young, NEW, np.asarray(demand_class, dtype=object)).astype(object)
