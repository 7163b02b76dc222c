"""Evaluate: score the holdout model on the last K months against naive baselines.

Every forecaster is scored on exactly the same rows (entity, origin, horizon), and each
baseline uses only what was known at the origin, as the model does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting import paths, train
from forecasting.config import Config
from forecasting.features import monthly_grid
from forecasting.months import month_index

log = logging.getLogger(__name__)

BASELINES = ("seasonal_naive", "last_value", "mean_3")


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


def baseline_forecasts(rows: pd.DataFrame, snapshot: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Naive forecasts for each row, from the entity's history up to the row's origin.

    seasonal_naive: the target month a year earlier (the last value when that is not known yet),
    last_value: the origin month, mean_3: the mean of the three months ending at the origin.
    """
    keys = config.source.entity_columns
    grid = monthly_grid(snapshot, config)[[*keys, "_m", config.source.target_column]]
    sales = grid.set_index([*keys, "_m"])[config.source.target_column]
    origin_index = month_index(pd.PeriodIndex(rows[train.ORIGIN], freq="M"))
    target_index = origin_index + rows[train.HORIZON].to_numpy()

    def at(month_index) -> np.ndarray:
        index = pd.MultiIndex.from_arrays([*(rows[k] for k in keys), np.asarray(month_index)])
        return sales.reindex(index).to_numpy()

    last_value = at(origin_index)
    year_ago = np.where(target_index - 12 <= origin_index, at(target_index - 12), np.nan)
    recent = np.vstack([at(origin_index - lag) for lag in range(3)])
    return pd.DataFrame({
        "seasonal_naive": np.where(np.isnan(year_ago), last_value, year_ago),
        "last_value": last_value,
        "mean_3": np.nanmean(recent, axis=0),
    }, index=rows.index)


@dataclass
class EvaluationReport:
    path: Path
    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    by_horizon: dict[str, dict[str, dict[str, float]]]

    @property
    def best_baseline(self) -> str:
        return min(self.baselines, key=lambda name: self.baselines[name]["wape"])

    @property
    def beats_baselines(self) -> bool:
        return self.model["wape"] < self.baselines[self.best_baseline]["wape"]


def evaluate(snapshot: pd.DataFrame, config: Config, month: pd.Period, model_dir: Path) -> EvaluationReport:
    """Score the holdout model and the baselines; write evaluation.json beside the model."""
    booster, metadata = train.load_model(model_dir, "holdout_model.ubj")
    frame = pd.read_parquet(model_dir / "training_set.parquet")
    holdout = train.split_by_target_month(frame, config, month).holdout
    forecasts = baseline_forecasts(holdout, snapshot, config)
    forecasts["model"] = train.predict(booster, holdout, config, metadata["categories"])
    actual = holdout[train.LABEL].to_numpy()

    def score(rows: pd.Series) -> dict[str, dict[str, float]]:
        return {name: metrics(actual[rows], forecasts.loc[rows, name].to_numpy())
                for name in ("model", *BASELINES)}

    overall = score(np.ones(len(holdout), bool))
    by_horizon = {str(h): score((holdout[train.HORIZON] == h).to_numpy())
                  for h in sorted(holdout[train.HORIZON].unique())}
    path = model_dir / "evaluation.json"
    report = EvaluationReport(path=path, model=overall.pop("model"), baselines=overall,
                              by_horizon=by_horizon)
    paths.write_json_atomically({
        "model_version": metadata["model_version"],
        "run_month": str(month),
        "holdout_target_months": sorted(holdout[train.TARGET_MONTH].unique().tolist()),
        "model": report.model,
        "baselines": report.baselines,
        "best_baseline": report.best_baseline,
        "beats_best_baseline": report.beats_baselines,
        "by_horizon": by_horizon,
    }, path)
    log.info("Holdout evaluation of %s:\n%s", metadata["model_version"], format_table(report))
    return report


def format_table(report: EvaluationReport) -> str:
    lines = [f"{'forecaster':<16}{'WAPE':>8}{'MAE':>10}{'RMSE':>10}{'bias %':>9}"]
    for name, m in [("model", report.model), *report.baselines.items()]:
        lines.append(f"{name:<16}{m['wape']:>8.3f}{m['mae']:>10.2f}{m['rmse']:>10.2f}{100 * m['bias_pct']:>8.1f}%")
    return "\n".join(lines)
