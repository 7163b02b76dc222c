"""Prediction intervals: a p10 and a p90 around every published forecast.

Split conformal, per horizon and per band of forecast size: on the holdout rows, which the
holdout model never saw (and which every baseline forecasts from its origin only), the
forecaster's relative errors ``(actual - forecast) / max(forecast, 1)`` are grouped by horizon
and by quintile of the forecast, and each group's 10th and 90th percentiles become its band. A
new forecast ``f`` of horizon h in band b gets

    p10 = f + q10[h, b] * max(f, 1),    p90 = f + q90[h, b] * max(f, 1)

clipped at 0 and never on the wrong side of ``f``. Relative errors make one band serve series of
any size (a 10% miss on 1,000 units and on 10); the bands by forecast size let small, noisy
series have wider relative intervals than large ones, as demand has; the floor of 1 unit keeps
near-zero forecasts from getting zero-width intervals.

The production model is the holdout model's recipe refit on more months, so its errors are taken
to be like the holdout model's. Demand can change faster than a holdout shows, so the bands also
learn from production: given ``realised`` (the published forecasts' errors of the last
``monitoring.intervals.realised_months`` months before M, forecasting.monitoring.coverage), each
horizon's rows are the holdout's pooled with the realised ones of that horizon, one row each,
before the bands are cut: forecasts that missed more in production widen the next run's bands
(in proportion to their share of the pooled rows), ones that missed less narrow them. Whether
the intervals hold is measured, not assumed:
:func:`coverage` calibrates on half the holdout's target months and counts how often the actuals
of the other half fall inside, both ways round (evaluation.json's ``intervals.coverage``; 80%
is the goal of a p10-p90 interval).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOWER, UPPER = 0.1, 0.9
BANDS = 5
# A band needs this many holdout rows, or its percentiles are noise: fewer rows, fewer bands.
MIN_ROWS_PER_BAND = 40
# Forecasts below this many units are scaled as if they were this many (absolute errors).
FLOOR = 1.0


def _scale(forecast: np.ndarray) -> np.ndarray:
    return np.maximum(forecast, FLOOR)


def calibrate(
    forecast: np.ndarray, actual: np.ndarray, horizon: np.ndarray, realised: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Bands of relative errors per horizon, from rows scored out of sample, pooled with the
    ``realised`` rows (columns forecast, actual, horizon; None: none). Rows without a finite
    forecast and actual are left out; a horizon without rows gets no band."""
    forecast, actual, horizon = (np.asarray(a, dtype=float) for a in (forecast, actual, horizon))
    pooled = np.zeros(len(forecast), dtype=bool)
    if realised is not None and len(realised):
        forecast, actual, horizon = (
            np.concatenate([mine, realised[column].to_numpy(dtype=float)])
            for mine, column in ((forecast, "forecast"), (actual, "actual"), (horizon, "horizon"))
        )
        pooled = np.concatenate([pooled, np.ones(len(realised), dtype=bool)])
    known = np.isfinite(forecast) & np.isfinite(actual)
    by_horizon: dict[str, dict[str, Any]] = {}
    for h in np.unique(horizon[known]).astype(int):
        rows = known & (horizon == h)
        f, error = forecast[rows], (actual[rows] - forecast[rows]) / _scale(forecast[rows])
        bands = int(np.clip(rows.sum() // MIN_ROWS_PER_BAND, 1, BANDS))
        edges = np.quantile(f, np.linspace(0, 1, bands + 1)[1:-1])
        band = np.searchsorted(edges, f, side="right")
        lower, upper = [], []
        for b in range(bands):
            # Ties among forecasts can leave a band empty: it borrows all of the horizon's rows.
            group = error[band == b] if (band == b).any() else error
            lower.append(float(np.quantile(group, LOWER)))
            upper.append(float(np.quantile(group, UPPER)))
        by_horizon[str(h)] = {
            "edges": [float(e) for e in edges],
            "lower": lower,
            "upper": upper,
            "rows": int(rows.sum()),
            "realised_rows": int((rows & pooled).sum()),
        }
    method = "split conformal, relative errors" + (", pooled with realised errors" if pooled.any() else "")
    return {"levels": [LOWER, UPPER], "method": method, "by_horizon": by_horizon}


def apply(
    spec: dict[str, Any] | None, forecast: np.ndarray, horizon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(p10, p90) of each forecast. A horizon the calibration has no rows for takes the longest
    calibrated horizon below it (errors grow with the horizon), else the shortest above it; no
    calibration at all gives NaN (published as NULL: no interval rather than a made-up one)."""
    forecast = np.asarray(forecast, dtype=float)
    horizon = np.asarray(horizon).astype(int)
    lower, upper = np.full(len(forecast), np.nan), np.full(len(forecast), np.nan)
    calibrated = sorted(int(h) for h in (spec or {}).get("by_horizon", {}))
    if not calibrated:
        return lower, upper
    for h in np.unique(horizon):
        below = [c for c in calibrated if c <= h]
        band_spec = spec["by_horizon"][str(below[-1] if below else calibrated[0])]  # type: ignore[index]
        rows = horizon == h
        f = forecast[rows]
        band = np.searchsorted(np.asarray(band_spec["edges"], dtype=float), f, side="right")
        scale = _scale(f)
        lower[rows] = np.minimum(np.maximum(f + np.asarray(band_spec["lower"])[band] * scale, 0.0), f)
        upper[rows] = np.maximum(f + np.asarray(band_spec["upper"])[band] * scale, f)
    return lower, upper


def coverage(
    forecast: np.ndarray,
    actual: np.ndarray,
    horizon: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """How often the actual falls inside [p10, p90] on rows the bands were not calibrated on:
    calibrated on the earlier half of the target months and checked on the later half, and the
    other way round. Also the mean width relative to the actual total. None with fewer than two
    target months. With ``groups`` (a label per row), also ``by_group``: the same bands (every
    row's, as published) checked on each group's rows."""
    forecast, actual, horizon = (np.asarray(a, dtype=float) for a in (forecast, actual, horizon))
    target = np.asarray(target)
    known = np.isfinite(forecast) & np.isfinite(actual)
    months = np.unique(target[known])
    if len(months) < 2:
        return None
    first_half = np.isin(target, months[: len(months) // 2])
    inside = np.zeros(len(forecast), dtype=bool)
    width = np.zeros(len(forecast))
    for fit, check in ((first_half, ~first_half), (~first_half, first_half)):
        spec = calibrate(forecast[known & fit], actual[known & fit], horizon[known & fit])
        rows = known & check
        lower, upper = apply(spec, forecast[rows], horizon[rows])
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
        labels = np.asarray(groups, dtype=object)
        out["by_group"] = {
            str(g): summary(known & (labels == g)) for g in sorted(set(labels[known].tolist()))
        }
    return out
