"""The rolling-origin backtest's scores: the refit models against every baseline, per origin.

The holdout model was fitted before the holdout, so for the holdout's later origins it is
months stale; a model in production is refit every month. The backtest measures that: train
refits the recipe once per origin o of the holdout's last ``evaluation.backtest_origins``, on
the targets up to o (``forecasting.modeling.train.backtest``), and stores each one's forecasts of the
holdout rows of origin o in ``holdout.parquet``'s :data:`BACKTEST` column (NaN for the other
rows). Here those forecasts are scored per origin, per horizon and overall, against every
baseline on exactly the same rows, as evaluate scores the holdout model: the naive baselines on
every row, the statistical ones on every row too unless evaluate scored them on a sample of
entities, then on the sample's rows (with the model and the naive ones, in ``sample``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forecasting.core.months import month_from_index
from forecasting.modeling.forecaster import MODEL
from forecasting.modeling.scoring import blend, combine, lowest_wape, metrics

# holdout.parquet's column of the backtest's forecasts.
BACKTEST = "backtest_prediction"
# The same rows scored with the holdout model (fitted before the holdout): what refitting gains.
HOLDOUT_MODEL = "holdout_model"


def score(
    actual: np.ndarray,
    backtest_forecasts: np.ndarray,
    forecasts: dict[str, np.ndarray],
    origin: np.ndarray,
    horizon: np.ndarray,
    on_every_row: tuple[str, ...],
    on_sample: tuple[str, ...],
    sampled: np.ndarray | None,
    fits: list[dict[str, Any]],
    blend_baseline: str | None = None,
    combinations: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any] | None:
    """evaluation.json's ``backtest`` (None when no row has a backtest forecast).

    ``forecasts``: evaluate's per-row forecasts of the holdout (``model``: the holdout model, and
    every baseline, NaN where not computed); ``on_every_row``: the baselines scored on every row;
    ``sampled``: None, or the rows of the entities the statistical ones were scored on
    (``on_sample``: every baseline); ``fits``: metadata.json's ``backtest.fits``;
    ``blend_baseline``: the baseline evaluate blends the model with (the refit models are
    blended with it too, as ``blend``); ``combinations``: each combination's members (evaluation's
    names, ``model`` for the model), scored with the refit models as the model member wherever
    all their baselines were scored (``combinations``): what the gate chooses among."""
    backtested = ~np.isnan(backtest_forecasts)
    if not backtested.any():
        return None

    def board(rows: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
        model = metrics(actual[rows], backtest_forecasts[rows])
        baselines = {name: metrics(actual[rows], forecasts[name][rows]) for name in names}
        best = lowest_wape(baselines)
        out = {
            "rows": int(rows.sum()),
            "model": model,
            HOLDOUT_MODEL: metrics(actual[rows], forecasts["model"][rows]),
            "baselines": baselines,
            "best_baseline": best,
            "beats_best_baseline": bool(model["wape"] < baselines[best]["wape"]),
        }
        if blend_baseline in names:
            blended = blend(backtest_forecasts[rows], forecasts[blend_baseline][rows])
            out["blend"] = {"baseline": blend_baseline, **metrics(actual[rows], blended)}
        combined = combination_scores(rows, names)
        if combined:
            out["combinations"] = combined
        return out

    def combination_scores(rows: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """Each combination whose baselines are among ``names``, the refit models as its model."""
        refit = {**forecasts, MODEL: backtest_forecasts}  # the refit models, not the holdout model
        return {
            name: metrics(actual[rows], combine([refit[m][rows] for m in members]))
            for name, members in (combinations or {}).items()
            if all(m == MODEL or m in names for m in members)
        }

    def by_horizon(rows: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
        out = {}
        for h in sorted(np.unique(horizon[rows]).tolist()):
            at = rows & (horizon == h)
            out[str(h)] = {
                "model": metrics(actual[at], backtest_forecasts[at]),
                HOLDOUT_MODEL: metrics(actual[at], forecasts["model"][at]),
                **{name: metrics(actual[at], forecasts[name][at]) for name in names},
                **combination_scores(at, names),
            }
        return out

    def scored(rows: np.ndarray) -> dict[str, Any]:
        out = board(rows, on_every_row)
        if sampled is not None:
            out["sample"] = board(rows & sampled, on_sample) if (rows & sampled).any() else None
        return out

    fit_of = {f["origin"]: f for f in fits}
    origins = []
    for o in sorted(np.unique(origin[backtested]).tolist()):
        label = str(month_from_index(o))
        fit = fit_of.get(label, {})
        origins.append(
            {
                "origin": label,
                "train_rows": fit.get("train_rows"),
                "last_target_month": fit.get("last_target_month"),
                **scored(backtested & (origin == o)),
            }
        )
    overall = scored(backtested)
    if sampled is not None and overall["sample"] is not None:
        overall["sample"]["by_horizon"] = by_horizon(backtested & sampled, on_sample)
    return {
        "origins": origins,
        "overall": overall,
        "by_horizon": by_horizon(backtested, on_every_row),
        "statistical_baselines_scored_on": "every row" if sampled is None else "sample",
    }


def registry_values(section: dict[str, Any] | None) -> dict[str, Any]:
    """The registry's backtest columns from evaluation.json's ``backtest`` (all None without one)."""
    if not section:
        return {
            "backtest_rows": None,
            "backtest_wape": None,
            "backtest_best_baseline": None,
            "backtest_best_baseline_wape": None,
            "backtest_origins": None,
        }
    overall = section["overall"]

    def short(scores: dict[str, Any]) -> dict[str, Any]:
        return {
            "rows": scores["rows"],
            "wape": scores["model"]["wape"],
            "baseline_wapes": {name: m["wape"] for name, m in scores["baselines"].items()},
            "best_baseline": scores["best_baseline"],
            "best_baseline_wape": scores["baselines"][scores["best_baseline"]]["wape"],
        }

    per_origin = []
    for entry in section["origins"]:
        item = {"origin": entry["origin"], **short(entry)}
        if entry.get("sample"):
            item["sample"] = short(entry["sample"])
        per_origin.append(item)
    return {
        "backtest_rows": overall["rows"],
        "backtest_wape": overall["model"]["wape"],
        "backtest_best_baseline": overall["best_baseline"],
        "backtest_best_baseline_wape": overall["baselines"][overall["best_baseline"]]["wape"],
        "backtest_origins": per_origin,
    }


def format_table(section: dict[str, Any]) -> str:
    """The backtest per origin and overall, as evaluate logs it: the refit model's WAPE, the
    holdout model's on the same rows, and the best baseline's (with the statistical ones on the
    sample, when they were sampled)."""
    sampled = section["overall"].get("sample") is not None
    blended = section["overall"].get("blend") is not None
    head = f"{'origin':<9}{'rows':>9}{'model':>8}{'holdout':>9}  {'best baseline':<22}"
    if blended:
        head += f"{'blend':>7}"
    if sampled:
        head += f"{'sample':>8}  {'best on sample':<22}"
    lines = [head]
    for name, entry in [*((e["origin"], e) for e in section["origins"]), ("overall", section["overall"])]:
        best = entry["best_baseline"]
        best_text = f"{best} {entry['baselines'][best]['wape']:.3f}"
        line = (
            f"{name:<9}{entry['rows']:>9,}{entry['model']['wape']:>8.3f}{entry[HOLDOUT_MODEL]['wape']:>9.3f}  "
            f"{best_text:<22}"
        )
        if blended:
            line += f"{(entry.get('blend') or {}).get('wape', float('nan')):>7.3f}"
        sample = entry.get("sample")
        if sample:
            s_best = sample["best_baseline"]
            line += f"{sample['model']['wape']:>8.3f}  {s_best} {sample['baselines'][s_best]['wape']:.3f}"
        lines.append(line)
    return "\n".join(lines)
