"""How forecasts are scored and combined, shared by evaluate, the backtest and the gate."""

from __future__ import annotations

from collections.abc import Sequence

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
    """The blend of a model and a baseline: the plain mean of their forecasts (:func:`combine`)."""
    return combine([model_forecast, baseline_forecast])


def combine(forecasts: Sequence[np.ndarray]) -> np.ndarray:
    """A combination's forecast of each row: the plain mean of its members' forecasts (NaN where
    any is). Equal weights, as the M4 competition's winning combinations mostly used: weights
    fitted on the rows that then score them would flatter the combination, and weights estimated
    from a few months of backtest are noisier than the gain they promise (the "forecast
    combination puzzle")."""
    stacked = np.stack([np.asarray(f, float) for f in forecasts])
    return stacked.sum(axis=0) / len(stacked)


def lowest_wape(baselines: dict[str, dict[str, float]]) -> str:
    """The baseline with the lowest WAPE (one with no WAPE, all actuals zero, last)."""
    return min(baselines, key=lambda name: (np.isnan(baselines[name]["wape"]), baselines[name]["wape"]))


def paired_bootstrap(
    actual: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    entity: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, float]:
    """How far chance alone moves WAPE(candidate) - WAPE(reference) on these rows: a paired
    bootstrap over entities (each resample draws as many entities as there are, with
    replacement, and keeps all their rows for both forecasters), seeded. Returns the observed
    ``difference``, the one-sided ``upper`` bound at ``confidence`` (below 0: the candidate's lower
    WAPE is not noise at that level), the two-sided interval (``low``, ``high``) and the share of
    resamples where the candidate is better (``share_better``).

    Vectorised: each entity's sums of |actual| and of both absolute errors once, then a matrix of
    draw counts per chunk of resamples (bounded memory at any number of entities)."""
    actual, reference, candidate = (np.asarray(a, float) for a in (actual, reference, candidate))
    _, at = np.unique(np.asarray(entity), return_inverse=True)
    n = int(at.max(initial=-1)) + 1
    totals = np.bincount(at, np.abs(actual), minlength=n)
    ref_err = np.bincount(at, np.abs(reference - actual), minlength=n)
    cand_err = np.bincount(at, np.abs(candidate - actual), minlength=n)
    total = totals.sum()
    observed = float((cand_err.sum() - ref_err.sum()) / total) if total else float("nan")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(n, 1))
    differences = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)
        weight = counts @ totals
        with np.errstate(invalid="ignore", divide="ignore"):
            differences.append((counts @ cand_err - counts @ ref_err) / weight)
    d = np.concatenate(differences) if differences else np.zeros(0)
    d = d[np.isfinite(d)]
    if not len(d) or not np.isfinite(observed):
        nan = float("nan")
        return {"difference": observed, "upper": nan, "low": nan, "high": nan, "share_better": nan}
    tail = (1 - confidence) / 2
    return {
        "difference": observed,
        "upper": float(np.quantile(d, confidence)),
        "low": float(np.quantile(d, tail)),
        "high": float(np.quantile(d, 1 - tail)),
        "share_better": float((d < 0).mean()),
        "resamples": int(len(d)),
        "confidence": confidence,
        "entities": n,
    }
