"""Evaluation by demand class: evaluation.json's ``demand_classes``.

Each holdout row gets its entity's demand class as of the row's origin
(``forecasting.features.demand``). Per class: the model's and every baseline's metrics on the
class's rows (the statistical ones where they were scored on every row), the intermittent-demand
forecasters (``evaluation.intermittent_baselines``: Croston SBA, TSB, IMAPA) on the rows of the
intermittent and lumpy classes (of the statistical forecasters' sample, if there is one), and how
often each forecaster's p10/p90 bands, calibrated on every row as predict publishes them, held
on the class's rows of months they were not calibrated on.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.core.months import label_index
from forecasting.data.panel import Panel
from forecasting.features.dataset import TARGET_MONTH
from forecasting.features.demand import ADI_CUTOFF, CLASSES, CV2_CUTOFF, SPARSE_CLASSES
from forecasting.modeling import intervals
from forecasting.modeling.baselines import intermittent_forecasts
from forecasting.modeling.scoring import metrics

log = logging.getLogger(__name__)


class Scored(Protocol):
    """What is read of evaluate's ``HoldoutForecasts`` (evaluate imports this module)."""

    holdout: pd.DataFrame
    entity: np.ndarray
    origin: np.ndarray
    horizon: np.ndarray
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]
    sampled: np.ndarray | None
    panel: Panel | None
    demand_class: np.ndarray | None
    interval_group: np.ndarray | None

    def production_forms(self) -> tuple[dict[str, np.ndarray], str]: ...

    def score(self, rows: np.ndarray, which: tuple[str, ...]) -> dict[str, dict[str, float]]: ...


def score_demand_classes(scored: Scored, on_all: tuple[str, ...], config: Config) -> dict[str, Any]:
    """evaluation.json's ``demand_classes`` (see the module's docstring)."""
    classes = scored.demand_class
    assert classes is not None and scored.panel is not None
    sparse = np.isin(classes, SPARSE_CLASSES)
    if scored.sampled is not None:
        sparse &= scored.sampled
    names = config.evaluation.intermittent_baselines
    got: dict[str, np.ndarray] = {}
    if names and sparse.any():
        got = intermittent_forecasts(
            scored.panel,
            scored.entity[sparse],
            scored.origin[sparse],
            scored.horizon[sparse],
            names,
            config.evaluation.statistical_jobs,
        )
    forecasts, _ = scored.production_forms()
    target = label_index(scored.holdout[TARGET_MONTH])
    # The bands as published (per interval group: a young entity's are its own), held per class.
    groups = scored.interval_group if scored.interval_group is not None else classes
    coverage = {
        name: (
            intervals.coverage(forecasts[name], scored.actual, scored.horizon, target, groups, classes) or {}
        ).get("by_label", {})
        for name in ("model", *on_all, *(["blend"] if "blend" in forecasts else []))
    }
    out: dict[str, Any] = {}
    for name in CLASSES:
        rows = classes == name
        if not rows.any():
            continue
        entry: dict[str, Any] = {
            "rows": int(rows.sum()),
            "entities": int(len(np.unique(scored.entity[rows]))),
            "share_of_actual": float(scored.actual[rows].sum() / max(scored.actual.sum(), 1e-12)),
            **scored.score(rows, on_all),
            "interval_coverage": {f: c[name] for f, c in coverage.items() if name in c},
        }
        on = sparse & rows
        if got and on.any():
            within = on[sparse]
            entry["intermittent"] = {
                "rows": int(on.sum()),
                "model": metrics(scored.actual[on], scored.forecasts["model"][on]),
                "forecasters": {n: metrics(scored.actual[on], got[n][within]) for n in names},
            }
        out[name] = entry
    return {"adi_cutoff": ADI_CUTOFF, "cv2_cutoff": CV2_CUTOFF, "classes": out}


def format_classes(section: dict[str, Any]) -> str:
    """The per-class WAPE table for the log and the run summary."""
    lines = [
        f"{'demand class':<14}{'rows':>8}{'model':>8}{'best baseline':>23}{'best intermittent (model there)':>33}{'p10-p90':>9}"
    ]
    for name, c in section["classes"].items():
        baselines = {k: v for k, v in c.items() if isinstance(v, dict) and "wape" in v and k != "model"}
        best = min(baselines, key=lambda k: baselines[k]["wape"]) if baselines else ""
        base = f"{best} {baselines[best]['wape']:.3f}" if best else "-"
        scored = c.get("intermittent", {})
        sparse = scored.get("forecasters", {})
        top = min(sparse, key=lambda k: sparse[k]["wape"]) if sparse else ""
        # Beside the model's WAPE on the same rows (the statistical sample's, if there is one).
        inter = f"{top} {sparse[top]['wape']:.3f} (model {scored['model']['wape']:.3f})" if top else "-"
        held = c["interval_coverage"].get("model", {}).get("coverage")
        cover = f"{100 * held:.0f}%" if held is not None and np.isfinite(held) else "-"
        lines.append(f"{name:<14}{c['rows']:>8}{c['model']['wape']:>8.3f}{base:>23}{inter:>33}{cover:>9}")
    return "\n".join(lines)
