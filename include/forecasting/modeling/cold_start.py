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

Where it is used: evaluate scores, per forecaster and age bucket, the forecaster alone and its
mean with the siblings' forecast on the holdout's young rows, and keeps the mean for a bucket
only where it is lower beyond noise (``choose``: the gate's paired bootstrap over entities).
From then on the forecaster's bands are calibrated on the forecasts with it, and predict
averages the published forecaster's young forecasts in those buckets (``apply_to_forecasts``).
Measured per data set in docs/quality.md (New items).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from forecasting.data.panel import Panel, key_text
from forecasting.features.age import age_buckets, history_months
from forecasting.modeling import drivers
from forecasting.modeling.scoring import paired_bootstrap

log = logging.getLogger(__name__)

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


# --- where it is used: evaluate chooses, predict applies -----------------------------------------


def with_siblings(
    forecast: np.ndarray, sibling: np.ndarray, bucket: np.ndarray, used: list[str]
) -> np.ndarray:
    """``forecast`` where the row's bucket is not in ``used`` or it has no siblings' forecast,
    else the mean of the two."""
    forecast = np.asarray(forecast, dtype=float)
    applied = np.isin(bucket.astype(str), used) & np.isfinite(sibling)
    return np.where(applied, (forecast + np.where(applied, sibling, 0.0)) / 2, forecast)


def choose(
    forecasts: dict[str, np.ndarray],
    actual: np.ndarray,
    entity: np.ndarray,
    bucket: np.ndarray,
    sibling: np.ndarray,
    young: list[str],
    bootstrap: tuple[int, float, int] = (1000, 0.9, 0),
) -> dict[str, Any]:
    """evaluation.json's ``cold_start``: per young bucket, the siblings' forecast's rows and WAPE
    there beside the model's; per forecaster, each young bucket's WAPE without and with the
    siblings (the mean of the two where the siblings have a forecast) and the buckets where the
    mean is used: lower beyond noise, the one-sided upper bound of the paired bootstrap over
    entities of the WAPE difference below 0 (``bootstrap``: resamples, confidence, seed; the
    gate's ``bootstrap_resamples`` and ``bootstrap_confidence``)."""

    def wape(rows: np.ndarray, f: np.ndarray) -> float:
        total = np.abs(actual[rows]).sum()
        return float(np.abs(f[rows] - actual[rows]).sum() / total) if total else float("nan")

    buckets = {}
    for name in young:
        rows = bucket == name
        has = rows & np.isfinite(sibling)
        if rows.any():
            model = forecasts.get("model", np.full(len(actual), np.nan))
            buckets[name] = {
                "rows": int(rows.sum()),
                "with_siblings": int(has.sum()),
                "siblings_wape": wape(has, sibling) if has.any() else None,
                "model_wape": wape(has, model) if has.any() else None,
            }
    resamples, confidence, seed = bootstrap
    forecasters: dict[str, Any] = {}
    for forecaster, f in forecasts.items():
        entry: dict[str, Any] = {}
        for name in buckets:
            rows = (bucket == name) & np.isfinite(f)
            mixed = with_siblings(f, sibling, bucket, [name])
            upper = float("nan")
            if rows.any() and (mixed[rows] != f[rows]).any():
                noise = paired_bootstrap(
                    actual[rows], f[rows], mixed[rows], entity[rows], resamples, confidence, seed
                )
                upper = noise["upper"]
            entry[name] = {
                "without": wape(rows, f) if rows.any() else float("nan"),
                "with": wape(rows, mixed) if rows.any() else float("nan"),
                "upper": upper,
                "used": bool(np.isfinite(upper) and upper < 0),
            }
        forecasters[forecaster] = entry
    return {
        "method": "mean with the siblings' forecast at the same age",
        "min_references": MIN_REFERENCES,
        "confidence": confidence,
        "buckets": buckets,
        "forecasters": forecasters,
        "used": {f: [name for name, e in entry.items() if e["used"]] for f, entry in forecasters.items()},
    }


def apply_to_forecasts(
    frame: pd.DataFrame, panel: Panel, keys: list[str], month_idx: int, lookback: int, used: list[str]
) -> pd.DataFrame:
    """Predict's forecasts of M (``frame``: keys in the source's types, horizon, prediction and
    maybe drivers), each young entity's in the ``used`` buckets averaged with its siblings'
    forecast as of M. The drivers keep summing to the prediction: the forecaster's are halved and
    the siblings' half counts in ``baselines`` (the part no driver explains), ``explained`` shrinks
    with the forecaster's share. Returned as a new frame; unchanged without ``used``."""
    if not used or frame.empty:
        return frame
    index = panel.keys.reset_index().rename(columns={"index": "_entity"})
    entity = pd.DataFrame({k: key_text(frame[k]) for k in keys}).merge(index, on=keys, how="left")["_entity"]
    known = entity.notna().to_numpy()
    rows = entity.fillna(0).to_numpy(dtype=np.int64)
    origin = np.full(len(frame), month_idx)
    horizon = frame["horizon"].to_numpy(dtype=np.int64)
    sibling = np.where(known, sibling_forecasts(panel, rows, origin, horizon, lookback), np.nan)
    bucket = age_buckets(history_months(panel, rows, origin), lookback)
    before = frame["prediction"].to_numpy(dtype=float)
    after = with_siblings(before, sibling, bucket, used)
    applied = after != before
    out = frame.copy()
    out["prediction"] = after
    parts = drivers.driver_columns(out)
    if parts:
        baselines = drivers.column(drivers.BASELINES)
        if baselines not in out:
            out[baselines] = 0.0
            parts.append(baselines)
        out.loc[applied, parts] = out.loc[applied, parts] / 2
        out.loc[applied, baselines] += after[applied] - before[applied] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(after > 0, before / 2 / after, 0.5)
        out.loc[applied, drivers.EXPLAINED] = out.loc[applied, drivers.EXPLAINED].to_numpy() * share[applied]
    log.info(
        "New items: %d of %d forecasts (%s months of history) averaged with their siblings' forecast",
        int(applied.sum()),
        len(frame),
        ", ".join(used),
    )
    return out
