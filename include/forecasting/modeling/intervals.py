"""Prediction intervals: a p10 and a p90 around every published forecast.

Split conformal, per horizon and per band of forecast size: on the holdout rows, which the
models that forecast them never saw, the forecaster's relative errors
``(actual - forecast) / max(forecast, 1)`` are grouped by horizon and by quintile of the
forecast, and each group's percentiles become its band. A new forecast ``f`` of horizon h in
band b gets

    p10 = f + lower[h, b] * max(f, 1),    p90 = f + upper[h, b] * max(f, 1)

clipped at 0 and never on the wrong side of ``f``. Relative errors make one band serve series of
any size (a 10% miss on 1,000 units and on 10); the bands by forecast size let small, noisy
series have wider relative intervals than large ones, as demand has; the floor of 1 unit keeps
near-zero forecasts from getting zero-width intervals.

Two refinements, both because the plain recipe covered less than 80% on the real data sets:

* **Per demand class** (Mondrian conformal): with ``groups`` (each row's demand class: smooth,
  erratic, intermittent, lumpy), a class with enough rows at a horizon gets bands of its own
  there, so erratic series get the wider intervals their errors need and smooth ones narrower
  ones; at a horizon where it has too few rows, one band of all its rows; with too few rows in
  all, the bands of every row.
* **Across months**: demand shifts from month to month, so percentiles taken on some months
  cover less than 80% of another month's actuals. With ``target`` (each row's target month), the
  levels are widened from 10%/90% by the least step (:data:`WIDENINGS`) under which bands
  calibrated on every target month but one held 80% of the left-out month's actuals, each month
  left out in turn. One target month: no widening can be measured, none is applied.

* **From production**: demand can change faster than a holdout shows, so given ``realised`` (the
  published forecasts' errors of the last ``monitoring.intervals.realised_months`` months before
  M, forecasting.monitoring.coverage), each horizon's rows are the holdout's pooled with the
  realised ones of that horizon, one row each, before the bands are cut: forecasts that missed
  more in production widen the next run's bands (in proportion to their share of the pooled
  rows), ones that missed less narrow them. They have no demand class: they join every row's
  bands, not a class's.

Whether the intervals hold is measured, not assumed: :func:`coverage` calibrates on half the
holdout's target months and counts how often the actuals of the other half fall inside, both
ways round (evaluation.json's ``intervals.coverage``; 80% is the goal of a p10-p90 interval).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOWER, UPPER = 0.1, 0.9
# How far the levels may move outwards for the shift between months (0.1 - w, 0.9 + w).
WIDENINGS = np.round(np.arange(0.0, 0.0801, 0.005), 3)
BANDS = 5
# A band needs this many holdout rows, or its percentiles are noise: fewer rows, fewer bands.
MIN_ROWS_PER_BAND = 40
# A demand class gets bands of its own at a horizon from this many rows there, and one band for
# all its horizons from this many rows in all (its errors are further from every row's than a
# rough percentile is from the truth).
MIN_GROUP_ROWS = 30
ALL_HORIZONS = "all"
# Percentiles of more rows than this a horizon (or a class's horizon) are no better: a sample
# of them keeps calibrating a million-row holdout quick.
MAX_ROWS = 100_000
# Forecasts below this many units are scaled as if they were this many (absolute errors).
FLOOR = 1.0


def _scale(forecast: np.ndarray) -> np.ndarray:
    return np.maximum(forecast, FLOOR)


def _group_codes(groups: np.ndarray | None, n: int) -> tuple[np.ndarray, list[str]]:
    """Each row's group as a code into the groups' names (-1: none, as for an entity without a
    demand class); integer codes, as comparing millions of strings per group is slow."""
    if groups is None:
        return np.full(n, -1), []
    codes, names = pd.factorize(np.asarray(groups, dtype=object))
    return codes, [str(name) for name in names]


def _sorted_quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """np.quantile's (linear) of an array already sorted, without sorting it again."""
    position = (len(ordered) - 1) * levels
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _widening(error: np.ndarray, band: np.ndarray, bands: int, month: np.ndarray | None) -> float:
    """The least widening of the levels under which bands calibrated on every target month but
    one held 80% of the left-out month's errors (each month in turn); 0 with fewer than two."""
    if month is None or len(np.unique(month)) < 2:
        return 0.0
    lows, highs = LOWER - WIDENINGS, UPPER + WIDENINGS
    inside = np.zeros(len(WIDENINGS))
    for b in range(bands):
        in_band = band == b
        # Sorted once: any month's rows, and all the others', are sorted subsequences of it.
        order = np.argsort(error[in_band], kind="stable")
        ordered, months = error[in_band][order], month[in_band][order]
        for left_out in np.unique(months):
            fitted = ordered[months != left_out]
            if not len(fitted):
                continue
            checked = ordered[months == left_out]
            # As apply() clips: p10 never above the forecast, p90 never below it.
            low = np.minimum(_sorted_quantiles(fitted, lows), 0.0)
            high = np.maximum(_sorted_quantiles(fitted, highs), 0.0)
            inside += np.searchsorted(checked, high, side="right") - np.searchsorted(
                checked, low, side="left"
            )
    held = inside / len(error)
    enough = np.flatnonzero(held >= UPPER - LOWER)
    return float(WIDENINGS[enough[0]] if len(enough) else WIDENINGS[-1])


def _horizon_bands(f: np.ndarray, error: np.ndarray, month: np.ndarray | None) -> dict[str, Any]:
    bands = int(np.clip(len(f) // MIN_ROWS_PER_BAND, 1, BANDS))
    edges = np.quantile(f, np.linspace(0, 1, bands + 1)[1:-1])
    band = np.searchsorted(edges, f, side="right")
    widening = _widening(error, band, bands, month)
    lower, upper = [], []
    for b in range(bands):
        # Ties among forecasts can leave a band empty: it borrows all of the horizon's rows.
        group = error[band == b] if (band == b).any() else error
        lower.append(float(np.quantile(group, LOWER - widening)))
        upper.append(float(np.quantile(group, UPPER + widening)))
    return {
        "edges": [float(e) for e in edges],
        "lower": lower,
        "upper": upper,
        "rows": len(f),
        "widening": widening,
    }


def _at_most(rows: np.ndarray) -> np.ndarray:
    """``rows``, or a seeded sample of MAX_ROWS of them (the same rows give the same bands)."""
    if len(rows) <= MAX_ROWS:
        return rows
    return np.sort(np.random.default_rng(len(rows)).choice(rows, MAX_ROWS, replace=False))


def _by_horizon(
    forecast: np.ndarray, error: np.ndarray, horizon: np.ndarray, month: np.ndarray | None, min_rows: int = 1
) -> dict[str, dict[str, Any]]:
    out = {}
    for h in np.unique(horizon).astype(int):
        rows = _at_most(np.flatnonzero(horizon == h))
        if len(rows) >= min_rows:
            out[str(h)] = _horizon_bands(forecast[rows], error[rows], None if month is None else month[rows])
    return out


def calibrate(
    forecast: np.ndarray,
    actual: np.ndarray,
    horizon: np.ndarray,
    target: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    realised: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Bands of relative errors per horizon, from rows scored out of sample, widened for the
    shift between ``target`` months, with ``groups`` per group with enough rows, and pooled with
    the ``realised`` rows (columns forecast_month, horizon, forecast, actual; None: none) (the
    module's docstring). Rows without a finite forecast and actual are left out; a horizon
    without rows gets no band."""
    forecast, actual, horizon = (np.asarray(a, dtype=float) for a in (forecast, actual, horizon))
    pooled = np.zeros(len(forecast), dtype=bool)
    if realised is not None and len(realised):
        forecast, actual, horizon = (
            np.concatenate([mine, realised[column].to_numpy(dtype=float)])
            for mine, column in ((forecast, "forecast"), (actual, "actual"), (horizon, "horizon"))
        )
        pooled = np.concatenate([pooled, np.ones(len(realised), dtype=bool)])
        if target is not None:  # labels apart from the holdout's: each realised month its own
            months = realised["forecast_month"].astype(str) if "forecast_month" in realised else "any"
            realised_months = np.broadcast_to(np.asarray("realised " + months, dtype=object), len(realised))
            target = np.concatenate([np.asarray(target).astype(str), realised_months])
        if groups is not None:
            groups = np.concatenate([np.asarray(groups, dtype=object), np.full(len(realised), None)])
    known = np.isfinite(forecast) & np.isfinite(actual)
    f, h = forecast[known], horizon[known]
    error = (actual[known] - f) / _scale(f)
    month = None if target is None else np.asarray(target)[known]
    spec: dict[str, Any] = {
        "levels": [LOWER, UPPER],
        "method": "split conformal, relative errors"
        + (", pooled with realised errors" if pooled.any() else ""),
        "by_horizon": _by_horizon(f, error, h, month),
    }
    for key, bands in spec["by_horizon"].items():
        bands["realised_rows"] = int((pooled[known] & (h == int(key))).sum())
    if groups is not None:
        codes, names = _group_codes(groups, len(forecast))
        codes = codes[known]
        spec["by_group"] = {}
        for code, key in sorted(enumerate(names), key=lambda pair: pair[1]):
            rows = np.flatnonzero(codes == code)
            if len(rows) < MIN_GROUP_ROWS:
                continue
            own = _by_horizon(
                f[rows], error[rows], h[rows], None if month is None else month[rows], MIN_GROUP_ROWS
            )
            rows = _at_most(rows)  # for its horizons with too few rows: one band of all its rows
            own[ALL_HORIZONS] = _horizon_bands(f[rows], error[rows], None if month is None else month[rows])
            spec["by_group"][key] = own
    return spec


def _horizon_spec(by_horizon: dict[str, Any], h: int) -> dict[str, Any]:
    """The bands of horizon h, or of the longest calibrated horizon below it (errors grow with
    the horizon), else of the shortest above it."""
    calibrated = sorted(int(c) for c in by_horizon)
    below = [c for c in calibrated if c <= h]
    return by_horizon[str(below[-1] if below else calibrated[0])]


def apply(
    spec: dict[str, Any] | None,
    forecast: np.ndarray,
    horizon: np.ndarray,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(p10, p90) of each forecast: its group's bands where the calibration has them for its
    horizon (``groups``: each row's label, as calibrated), else every row's. A horizon the
    calibration has no rows for takes the longest calibrated horizon below it, else the shortest
    above it; no calibration at all gives NaN (published as NULL: no interval rather than a
    made-up one)."""
    forecast = np.asarray(forecast, dtype=float)
    horizon = np.asarray(horizon).astype(int)
    lower, upper = np.full(len(forecast), np.nan), np.full(len(forecast), np.nan)
    pooled = (spec or {}).get("by_horizon") or {}
    if not pooled:
        return lower, upper
    own = (spec or {}).get("by_group") or {}
    codes, names = _group_codes(groups, len(forecast))
    for h in np.unique(horizon):
        at_h = horizon == h
        for code in np.unique(codes[at_h]):
            rows = at_h & (codes == code)
            group_spec = own.get(names[code], {}) if code >= 0 else {}
            band_spec = (
                group_spec.get(str(h)) or group_spec.get(ALL_HORIZONS) or _horizon_spec(pooled, int(h))
            )
            f = forecast[rows]
            band = np.searchsorted(np.asarray(band_spec["edges"], dtype=float), f, side="right")
            scale = _scale(f)
            lower[rows] = np.minimum(np.maximum(f + np.asarray(band_spec["lower"])[band] * scale, 0.0), f)
            upper[rows] = np.maximum(f + np.asarray(band_spec["upper"])[band] * scale, f)
    return lower, upper


def _rows_of(keys: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if keys is None else keys[rows]


def coverage(
    forecast: np.ndarray,
    actual: np.ndarray,
    horizon: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray | None = None,
    summarise_by: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """How often the actual falls inside [p10, p90] on rows the bands were not calibrated on:
    calibrated on the earlier half of the target months and checked on the later half, and the
    other way round. Also the mean width relative to the actual total. None with fewer than two
    target months. With ``groups`` (a label per row: the demand class), the bands are per group
    as published, and ``by_group`` says how each group's held; with ``summarise_by`` (another
    label per row, not calibrated on: the age bucket), ``by_label`` says how each label's held."""
    forecast, actual, horizon = (np.asarray(a, dtype=float) for a in (forecast, actual, horizon))
    target = np.asarray(target)
    known = np.isfinite(forecast) & np.isfinite(actual)
    months = np.unique(target[known])
    if len(months) < 2:
        return None
    first_half = np.isin(target, months[: len(months) // 2])
    codes, names = _group_codes(groups, len(forecast))
    # Each row's group again, as calibrate and apply take them (None: no group).
    keys = None if groups is None else np.array([*names, None], dtype=object)[codes]
    inside = np.zeros(len(forecast), dtype=bool)
    width = np.zeros(len(forecast))
    for fit, check in ((first_half, ~first_half), (~first_half, first_half)):
        fitted = known & fit
        spec = calibrate(
            forecast[fitted], actual[fitted], horizon[fitted], target[fitted], _rows_of(keys, fitted)
        )
        rows = known & check
        lower, upper = apply(spec, forecast[rows], horizon[rows], _rows_of(keys, rows))
        inside[rows] = (actual[rows] >= lower) & (actual[rows] <= upper)
        width[rows] = upper - lower

    def summary(rows: np.ndarray) -> dict[str, float]:
        total = np.abs(actual[rows]).sum()
        return {
            "coverage": float(inside[rows].mean()) if rows.any() else float("nan"),
            "relative_width": float(width[rows].sum() / total) if total else float("nan"),
            "rows": int(rows.sum()),
        }

    out = {
        **summary(known),
        "by_horizon": {str(int(h)): summary(known & (horizon == h)) for h in np.unique(horizon[known])},
        "target": UPPER - LOWER,
    }
    if groups is not None:
        out["by_group"] = {
            names[code]: summary(known & (codes == code))
            for code in sorted(set(np.unique(codes[known]).tolist()) - {-1}, key=lambda c: names[c])
        }
    if summarise_by is not None:
        label_codes, labels = _group_codes(summarise_by, len(forecast))
        out["by_label"] = {
            labels[code]: summary(known & (label_codes == code))
            for code in sorted(set(np.unique(label_codes[known]).tolist()) - {-1}, key=lambda c: labels[c])
        }
    return out
