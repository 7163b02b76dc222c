"""Evaluation by age: evaluation.json's ``ages``, how new entities' forecasts fare.

Each holdout row gets the bucket of its entity's months of history as of the row's origin
(``forecasting.features.age``: 1-2, 3-5, 6 to the lookback, established). Per bucket: the rows,
the entities, their share of the actuals, the model's and every baseline's metrics on the
bucket's rows (the statistical ones where they were scored on every row), and how often each
forecaster's p10/p90 bands, calibrated as predict publishes them (per demand class, on every
row; a young entity's bands its own, ``new``), held on the bucket's rows of months they were not
calibrated on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forecasting.core.config import Config
from forecasting.core.months import label_index
from forecasting.features.age import age_buckets, bucket_names, history_months
from forecasting.features.dataset import TARGET_MONTH
from forecasting.modeling import intervals
from forecasting.modeling.demand_scores import Scored  # evaluate's HoldoutForecasts, as both read it


def holdout_buckets(scored: Scored, config: Config) -> np.ndarray:
    """Each holdout row's age bucket as of its origin."""
    assert scored.panel is not None
    months = history_months(scored.panel, scored.entity, scored.origin)
    return age_buckets(months, config.features.lookback_months)


def score_ages(scored: Scored, on_all: tuple[str, ...], config: Config) -> dict[str, Any]:
    """evaluation.json's ``ages`` (see the module's docstring)."""
    lookback = config.features.lookback_months
    bucket = holdout_buckets(scored, config)
    forecasts, _ = scored.production_forms()
    target = label_index(scored.holdout[TARGET_MONTH])
    groups = scored.interval_group if scored.interval_group is not None else scored.demand_class
    coverage = {
        name: (
            intervals.coverage(forecasts[name], scored.actual, scored.horizon, target, groups, bucket) or {}
        ).get("by_label", {})
        for name in ("model", *on_all, *(["blend"] if "blend" in forecasts else []))
    }
    out: dict[str, Any] = {}
    for name in bucket_names(lookback):
        rows = bucket == name
        if not rows.any():
            continue
        out[name] = {
            "rows": int(rows.sum()),
            "entities": int(len(np.unique(scored.entity[rows]))),
            "share_of_actual": float(scored.actual[rows].sum() / max(scored.actual.sum(), 1e-12)),
            **scored.score(rows, on_all),
            "interval_coverage": {f: c[name] for f, c in coverage.items() if name in c},
        }
    return {"lookback": lookback, "buckets": out}


def format_ages(
    section: dict[str, Any], cold_start: dict[str, Any] | None = None, forecaster: str = "model"
) -> str:
    """The per-bucket WAPE table for the log and the run summary; with evaluation.json's
    ``cold_start``, ``forecaster``'s WAPE (evaluation.json's name; default the model's) as
    production makes its forecasts, without > with the siblings' forecast averaged in (``*``:
    predict does so)."""
    cold = ((cold_start or {}).get("forecasters") or {}).get(forecaster, {})
    lines = [
        f"{'months of history':<19}{'rows':>8}{'entities':>10}{'model':>8}{'with siblings':>17}"
        f"{'best baseline':>23}{'p10-p90':>9}"
    ]
    for name, b in section["buckets"].items():
        baselines = {k: v for k, v in b.items() if isinstance(v, dict) and "wape" in v and k != "model"}
        finite = {k: v for k, v in baselines.items() if np.isfinite(v["wape"])}
        best = min(finite, key=lambda k: finite[k]["wape"]) if finite else ""
        base = f"{best} {finite[best]['wape']:.3f}" if best else "-"
        held = b["interval_coverage"].get("model", {}).get("coverage")
        cover = f"{100 * held:.0f}%" if held is not None and np.isfinite(held) else "-"
        mixed = cold.get(name)
        siblings = (
            f"{mixed['without']:.3f}>{mixed['with']:.3f}{'*' if mixed['used'] else ' '}" if mixed else "-"
        )
        lines.append(
            f"{name:<19}{b['rows']:>8}{b['entities']:>10}{b['model']['wape']:>8.3f}{siblings:>17}{base:>23}{cover:>9}"
        )
    return "\n".join(lines)
