"""Evaluate: score the holdout model on the last K months against naive and statistical baselines.

Every forecaster is scored on exactly the same rows (entity, origin, horizon), and each
baseline uses only what was known at the origin, as the model does. The statistical baselines
(AutoETS and Theta, ``forecasting.modeling.statistical``) are scored on every holdout row too, unless the
holdout holds more than ``evaluation.statistical_max_series`` entities: then evaluation.json's
``model``/``baselines``/``by_horizon`` are the naive baselines on every row, and its ``sample``
section has the model and every baseline, statistical ones included, on the rows of a seeded
sample of that many entities. Its ``blend`` is the mean of the model's and the best baseline's
forecasts (of those scored on every row), a forecaster the gate may publish.

The rolling-origin backtest (``forecasting.modeling.backtest``: a model refit per origin of the
holdout's last ``evaluation.backtest_origins``, forecasting that origin's rows) is scored on its
rows the same way, per origin, per horizon and overall, into evaluation.json's ``backtest``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import label_index
from forecasting.data.panel import Panel, build_panel
from forecasting.features import dataset
from forecasting.features.dataset import HORIZON, LABEL, ORIGIN, TARGET_MONTH
from forecasting.modeling import backtest, intervals, statistical
from forecasting.modeling import booster as model

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


def blend(model_forecast: np.ndarray, baseline_forecast: np.ndarray) -> np.ndarray:
    """The blend of a model and a baseline: the plain mean of their forecasts. Equal weights, not
    weights fitted on the holdout that then scores them (that would flatter the blend)."""
    return (np.asarray(model_forecast, float) + np.asarray(baseline_forecast, float)) / 2


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
    origin = label_index(rows[ORIGIN])
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
    # The rolling-origin backtest (evaluation.json's ``backtest``; None: none was run).
    backtest: dict | None = None
    # The model blended with the best baseline (evaluation.json's ``blend``: that baseline's name,
    # its metrics overall and per horizon).
    blend: dict | None = None

    @property
    def best_baseline(self) -> str:
        return min(self.baselines, key=lambda name: self.baselines[name]["wape"])

    @property
    def beats_baselines(self) -> bool:
        return self.model["wape"] < self.baselines[self.best_baseline]["wape"]


def evaluate(snapshot: pd.DataFrame, config: Config, month: pd.Period, model_dir: Path) -> EvaluationReport:
    """Score the holdout model and the baselines; write evaluation.json beside the model."""
    booster, metadata = model.load(model_dir, holdout=True)
    holdout = dataset.read_rows(paths.holdout_rows(model_dir))
    panel = build_panel(snapshot, config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    if len(panel.keys) <= entity.max(initial=-1) or not (
        panel.keys.iloc[entity].reset_index(drop=True) == holdout[config.source.entity_columns]
    ).all(axis=None):
        raise RuntimeError(f"{model_dir}/holdout.parquet was not made from this snapshot")
    origin = label_index(holdout[ORIGIN])
    horizon = holdout[HORIZON].to_numpy()
    forecasts = baselines(panel, entity, origin, horizon)
    forecasts["model"] = model.predict(
        booster, dataset.design_matrix(holdout, config, metadata["categories"])
    )
    actual = holdout[LABEL].to_numpy()

    names = config.evaluation.statistical_baselines
    sampled = statistical.sample_entities(entity, config)
    scored = np.ones(len(holdout), bool) if sampled is None else sampled
    jobs = config.evaluation.statistical_jobs
    got = statistical.forecasts(panel, entity[scored], origin[scored], horizon[scored], names, jobs)
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
    # The model blended with the best baseline scored on every row: what the gate publishes when
    # neither model beats that baseline but their mean does.
    partner = backtest.lowest_wape({name: overall[name] for name in on_all})
    forecasts["blend"] = blend(forecasts["model"], forecasts[partner])
    blend_scores = {
        "baseline": partner,
        "metrics": score(every_row, ("blend",))["blend"],
        "by_horizon": {h: s["blend"] for h, s in by_horizon_of(every_row, ("blend",)).items()},
    }
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
    # p10/p90 bands of every forecaster from its holdout errors (what predict publishes with
    # the gate's choice), and how often they held on months they were not calibrated on.
    target = label_index(holdout[TARGET_MONTH])
    interval_specs = {name: intervals.calibrate(f, actual, horizon) for name, f in forecasts.items()}
    interval_coverage = {
        name: intervals.coverage(f, actual, horizon, target) for name, f in forecasts.items()
    }
    # The backtest's refit models against the same forecasts of the same rows (a model trained by
    # an older release has no backtest column).
    refit = holdout[backtest.BACKTEST].to_numpy(dtype=float) if backtest.BACKTEST in holdout else None
    backtest_scores = (
        None
        if refit is None
        else backtest.score(
            actual,
            refit,
            forecasts,
            origin,
            horizon,
            on_all,
            everyone,
            sampled,
            (metadata.get("backtest") or {}).get("fits", []),
            blend_baseline=partner,
        )
    )
    path = paths.evaluation(model_dir)
    report = EvaluationReport(
        path=path,
        model=overall.pop("model"),
        baselines=overall,
        by_horizon=by_horizon,
        sample=sample,
        backtest=backtest_scores,
        blend=blend_scores,
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
            "blend": blend_scores,
            "intervals": {
                "levels": [intervals.LOWER, intervals.UPPER],
                "forecasters": interval_specs,
                "coverage": interval_coverage,
            },
            "backtest": backtest_scores,
        },
        path,
    )
    log.info("Holdout evaluation of %s:\n%s", metadata["model_version"], format_table(report))
    if backtest_scores is not None:
        log.info(
            "Rolling-origin backtest of %s (WAPE of a model refit at each origin, of the holdout model "
            "and of the best baseline, on the origin's rows):\n%s",
            metadata["model_version"],
            backtest.format_table(backtest_scores),
        )
    held = interval_coverage["model"]
    if held is not None:
        log.info(
            "The model's p10-p90 intervals held %.0f%% of the actuals of holdout months they were not "
            "calibrated on (goal %.0f%%)",
            100 * held["coverage"],
            100 * held["target"],
        )
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
    if report.blend is not None:
        b = report.blend
        lines += table(report.model, {f"blend {b['baseline']}": b["metrics"]})[2:]
    if report.sample is not None:
        s = report.sample
        lines += [f"On a sample of {s['entities']} of {s['of_entities']} entities:"]
        lines += table(s["model"], s["baselines"])
    return "\n".join(lines)
