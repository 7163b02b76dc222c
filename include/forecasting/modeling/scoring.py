"""How forecasts are scored and combined, shared by evaluate, the backtest and the gate."""

from __future__ import annotations

import numpy as np


def metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """WAPE (sum|e| / sum|y|), MAE, RMSE and bias (mean of prediction - actual, and as % of actual)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    error = predicted - actual
    total = np.abs(actual).sum()
    return {
        "wape": float(np.abs(error).sum() / total) if total else float("nan"),
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "bias": float(error.mean()),
        "bias_pct": float(error.sum() / total) if total else float("nan"),
        "rows": len(actual),
    }


def blend(model_forecast: np.ndarray, baseline_forecast: np.ndarray) -> np.ndarray:
    """The blend of a model and a baseline: the plain mean of their forecasts. Equal weights, not
    weights fitted on the holdout that then scores them (that would flatter the blend)."""
    return (np.asarray(model_forecast, float) + np.asarray(baseline_forecast, float)) / 2


def lowest_wape(baselines: dict[str, dict[str, float]]) -> str:
    """The baseline with the lowest WAPE (one with no WAPE, all actuals zero, last)."""
    return min(baselines, key=lambda name: (np.isnan(baselines[name]["wape"]), baselines[name]["wape"]))
