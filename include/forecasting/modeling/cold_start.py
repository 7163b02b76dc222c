"""New items: a forecast from siblings at the same age, for entities younger than the lookback.

A young entity (``forecasting.features.age``: fewer months of history than the feature lookback)
has few lags and no year-ago month: the model reads a handful of features and the naive
baselines its first months, which are often a ramp-up. Its *siblings* say how such a start goes
on: entities that launched inside the run's window too and are older by now.

For a young row (entity e at origin o with a months of history, horizon h), the siblings'
forecast is

    f = mean(e's a months) x sum_r sales_r(age a + h) / sum_r mean(r's first a months)

over the references r: entities whose first row is after the window's first month (a launch,
not the start of the data) and whose month of age a + h is known at o. The ratio is how much a
start of a months grew (or fell) h months later among the siblings at the same age; it is taken
over the siblings that share e's value of an entity column (for store x item, the same item in
other stores, then the same store), the first with at least :data:`MIN_REFERENCES` references,
else over every launched entity. Nothing later than o is read. Rows of established entities,
or without references, get NaN (the forecaster's own forecast stands).
"""

from __future__ import annotations

import numpy as np

from forecasting.data.panel import Panel
from forecasting.features.age import history_months

# References a group needs for its ratio (fewer: the next, wider group).
MIN_REFERENCES = 5


def _age_aligned(panel: Panel, width: int) -> np.ndarray:
    """sales by months of age: [entities, width], column j = the entity's (j + 1)-th month (NaN
    past the panel)."""
    cols = panel.span_first[:, None] + np.arange(width)[None, :]
    inside = cols < panel.months
    out = np.full((panel.entities, width), np.nan)
    rows = np.broadcast_to(np.arange(panel.entities)[:, None], cols.shape)
    out[inside] = panel.sales[rows[inside], cols[inside]]
    return out


def groupings(panel: Panel) -> list[np.ndarray]:
    """Each entity's group code per sibling grouping, most specific first: one per entity column
    (from the last: for store x item, the item's other stores), then every entity (all 0)."""
    out = []
    if panel.keys.shape[1] > 1:
        for column in reversed(panel.keys.columns):
            out.append(np.unique(panel.keys[column].to_numpy(), return_inverse=True)[1].ravel())
    return [*out, np.zeros(panel.entities, dtype=np.int64)]


def sibling_forecasts(
    panel: Panel, entity: np.ndarray, origin: np.ndarray, horizon: np.ndarray, lookback: int
) -> np.ndarray:
    """The siblings' forecast of each row (the module's docstring); NaN where there is none."""
    entity, origin, horizon = (np.asarray(a, dtype=np.int64) for a in (entity, origin, horizon))
    out = np.full(len(entity), np.nan)
    age = history_months(panel, entity, origin)
    young = (age >= 1) & (age < lookback)
    if not young.any():
        return out
    width = int(lookback + horizon.max())
    by_age = _age_aligned(panel, width)
    # mean of the first a months, a = 1..width (NaN where they are not all in the panel)
    start_mean = np.cumsum(by_age, axis=1) / np.arange(1, width + 1)[None, :]
    launched = panel.span_first > 0
    first = panel.first_month + panel.span_first  # month index of each entity's first row
    groups = groupings(panel)
    rows = np.flatnonzero(young)
    combos = np.stack([age[rows], horizon[rows], origin[rows]], axis=1)
    for a, h, o in np.unique(combos, axis=0):
        at = rows[(combos == (a, h, o)).all(axis=1)]
        k = a + h  # the age forecast
        # references: launched, their month of age k known at o
        ref = launched & (first + k - 1 <= o)
        if not ref.any():
            continue
        numerator, denominator = by_age[:, k - 1], start_mean[:, a - 1]
        ref &= np.isfinite(numerator) & np.isfinite(denominator)
        ratio = np.full(len(at), np.nan)
        for codes in groups:
            todo = np.isnan(ratio)
            if not todo.any():
                break
            size = int(codes.max()) + 1
            count = np.bincount(codes[ref], minlength=size)
            num = np.bincount(codes[ref], weights=numerator[ref], minlength=size)
            den = np.bincount(codes[ref], weights=denominator[ref], minlength=size)
            mine = codes[entity[at]]
            ok = todo & (count[mine] >= MIN_REFERENCES) & (den[mine] > 0)
            ratio[ok] = num[mine[ok]] / den[mine[ok]]
        own = start_mean[entity[at], a - 1]
        out[at] = own * ratio
    return out
