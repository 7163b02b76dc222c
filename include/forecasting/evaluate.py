"""Evaluate: score the holdout model on the last K months against naive and statistical baselines.

Every forecaster is scored on exactly the same rows (entity, origin, horizon), and each
baseline uses only what was known at the origin, as the model does. The statistical baselines
(AutoETS and Theta, ``forecasting.statistical``) are scored on every holdout row too, unless the
holdout holds more than ``evaluation.statistical_max_series`` entities: then evaluation.json's
``model``/``baselines``/``by_horizon`` are the naive baselines on every row, and its ``sample``
section has the model and every baseline, statistical ones included, on the rows of a seeded
sample of that many entities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting import dataset, model, paths, statistical
from forecasting.config import Config
from forecasting.dataset import HORIZON, LABEL, ORIGIN, TARGET_MONTH
from forecasting.months import month_index
from forecasting.panel import Panel, build_panel

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


def baselines(
    panel: Panel, entity: np.ndarray, origin: np.ndarray, horizon: np.ndarray
) -> dict[str, np.ndarray]:
    """Naive forecasts for each row from the entity's history up to the row's origin.

    seasonal_naive: the target month a year earlier (the last value when that is not known yet),
    last_value: the origin month, mean_3: the mean of the three months ending at the origin
    (over the months of the entity's history among them).
    """

    def at(month_idx: np.ndarray) -> np.ndarray:
        col = np.asarray(month_idx) - panel.first_month
        inside = (col >= 0) & (col < panel.months)
        out = np.full(len(col), np.nan)
        out[inside] = panel.sales[entity[inside], col[inside]]
        return out

    target = origin + horizon
    last_value = at(origin)
    year_ago = np.where(target - 12 <= origin, at(target - 12), np.nan)
    recent = np.vstack([at(origin - lag) for lag in range(3)])
    count = np.isfinite(recent).sum(axis=0)
    mean_3 = np.where(count > 0, np.nansum(recent, axis=0) / np.maximum(count, 1), np.nan)
    return {
        "seasonal_naive": np.where(np.isnan(year_ago), last_value, year_ago),
        "last_value": last_value,
        "mean_3": mean_3,
    }


def baseline_forecasts(rows: pd.DataFrame, snapshot: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The baselines of evaluation rows given by entity keys (strings), origin ("YYYY-MM") and horizon."""
    panel = build_panel(snapshot, config, sales_only=True)
    keys = config.source.entity_columns
    index = panel.keys.reset_index().rename(columns={"index": "_entity"})
    entity = rows[keys].astype(str).merge(index, on=keys, how="left")["_entity"].to_numpy()
    known = ~pd.isna(entity)
    origin = month_index(pd.PeriodIndex(rows[ORIGIN], freq="M")).to_numpy()
    horizon = rows[HORIZON].to_numpy()
    values = {name: np.full(len(rows), np.nan) for name in BASELINES}
    got = baselines(panel, entity[known].astype(np.int64), origin[known], horizon[known])
    for name in BASELINES:
        values[name][known] = got[name]
    return pd.DataFrame(values, index=rows.index)


@dataclass
class EvaluationReport:
    path: Path
    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    by_horizon: dict[str, dict[str, dict[str, float]]]
    # The model and every baseline on a sample of entities (when the statistical ones were sampled).
    sample: dict | None = None

    @property
    def best_baseline(self) -> str:
        return min(self.baselines, key=lambda name: self.baselines[name]["wape"])

    @property
    def beats_baselines(self) -> bool:
        return self.model["wape"] < self.baselines[self.best_baseline]["wape"]


def evaluate(snapshot: pd.DataFrame, config: Config, month: pd.Period, model_dir: Path) -> EvaluationReport:
    """Score the holdout model and the baselines; write evaluation.json beside the model."""
    booster, metadata = model.load(model_dir, "holdout_model.ubj")
    holdout = pd.read_parquet(model_dir / "holdout.parquet")
    panel = build_panel(snapshot, config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    if len(panel.keys) <= entity.max(initial=-1) or not (
        panel.keys.iloc[entity].reset_index(drop=True) == holdout[config.source.entity_columns]
    ).all(axis=None):
        raise RuntimeError(f"{model_dir}/holdout.parquet was not made from this snapshot")
    origin = month_index(pd.PeriodIndex(holdout[ORIGIN], freq="M")).to_numpy()
    horizon = holdout[HORIZON].to_numpy()
    forecasts = baselines(panel, entity, origin, horizon)
    forecasts["model"] = model.predict(
        booster, dataset.design_matrix(holdout, config, metadata["categories"])
    )
    actual = holdout[LABEL].to_numpy()

    names = config.evaluation.statistical_baselines
    sampled = statistical.sample_entities(entity, config)
    scored = np.ones(len(holdout), bool) if sampled is None else sampled
    got = statistical.forecasts(panel, entity[scored], origin[scored], horizon[scored], names)
    for name in names:
        forecasts[name] = np.full(len(holdout), np.nan)
        forecasts[name][scored] = got[name]

    def score(rows: np.ndarray, which: tuple[str, ...]) -> dict[str, dict[str, float]]:
        return {name: metrics(actual[rows], forecasts[name][rows]) for name in ("model", *which)}

    def by_horizon_of(rows: np.ndarray, which: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
        return {str(h): score(rows & (horizon == h), which) for h in sorted(np.unique(horizon[rows]))}

    everyone = (*BASELINES, *names)
    on_all = everyone if sampled is None else BASELINES
    every_row = np.ones(len(holdout), bool)
    overall = score(every_row, on_all)
    by_horizon = by_horizon_of(every_row, on_all)
    sample: dict | None = None
    if sampled is not None:
        on_sample = score(sampled, everyone)
        model_on_sample = on_sample.pop("model")
        best = min(on_sample, key=lambda name: on_sample[name]["wape"])
        sample = {
            "entities": int(len(np.unique(entity[sampled]))),
            "of_entities": int(len(np.unique(entity))),
            "seed": config.model.seed,
            "model": model_on_sample,
            "baselines": on_sample,
            "best_baseline": best,
            "beats_best_baseline": model_on_sample["wape"] < on_sample[best]["wape"],
            "by_horizon": by_horizon_of(sampled, everyone),
        }
    path = model_dir / "evaluation.json"
    report = EvaluationReport(
        path=path, model=overall.pop("model"), baselines=overall, by_horizon=by_horizon, sample=sample
    )
    paths.write_json_atomically(
        {
            "model_version": metadata["model_version"],
            "run_month": str(month),
            "holdout_target_months": sorted(holdout[TARGET_MONTH].unique().tolist()),
            "model": report.model,
            "baselines": report.baselines,
            "best_baseline": report.best_baseline,
            "beats_best_baseline": report.beats_baselines,
            "by_horizon": by_horizon,
            "statistical_baselines": {
                "forecasters": names,
                "scored_on": "holdout" if sample is None else "sample",
            },
            "sample": sample,
        },
        path,
    )
    log.info("Holdout evaluation of %s:\n%s", metadata["model_version"], format_table(report))
    return report


def format_table(report: EvaluationReport) -> str:
    def table(model_metrics: dict[str, float], others: dict[str, dict[str, float]]) -> list[str]:
        lines = [f"{'forecaster':<16}{'WAPE':>8}{'MAE':>10}{'RMSE':>10}{'bias %':>9}"]
        for name, m in [("model", model_metrics), *others.items()]:
            lines.append(
                f"{name:<16}{m['wape']:>8.3f}{m['mae']:>10.2f}{m['rmse']:>10.2f}{100 * m['bias_pct']:>8.1f}%"
            )
        return lines

    lines = table(report.model, report.baselines)
    if report.sample is not None:
        s = report.sample
        lines += [f"On a sample of {s['entities']} of {s['of_entities']} entities:"]
        lines += table(s["model"], s["baselines"])
    return "\n".join(lines)
