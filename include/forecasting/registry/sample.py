"""The gate on the sample: the strong baselines the rule cannot see on every row.

The statistical forecasters (AutoETS, Theta) are scored on a seeded sample of entities when the
holdout holds more than ``evaluation.statistical_max_series`` of them (on every row when there
are few): evaluate writes those rows with every forecast of them (``sample_rows.parquet``).
After the rule (:func:`forecasting.registry.gate.decide`) has chosen a forecaster from the
forecasters scored on every row, :func:`compare` scores it on exactly those rows, paired, against
each statistical forecaster and (``gate.blend``) the challenger blended with each, and
:func:`decide_on_sample` publishes the best of them for every entity when its WAPE there is lower

* by at least ``gate.min_margin_over_baseline`` (relative, as against the best baseline), and
* beyond noise: a paired bootstrap over the sample's entities (``gate.bootstrap_resamples``,
  seeded with the model's seed) of WAPE(candidate) - WAPE(chosen) puts the one-sided upper bound
  at ``gate.bootstrap_confidence`` below zero.

With 100 entities the second condition is what stops a few lucky series from deciding; the
first is the price a deployment asks for a change of forecaster. The candidate's p10/p90 bands
are calibrated on the same rows (split conformal, ``forecasting.modeling.intervals``) and their
coverage measured there as evaluate measures it on the holdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import GateConfig
from forecasting.modeling import intervals
from forecasting.modeling.forecaster import Baseline, Blend, Forecaster, Model
from forecasting.modeling.scoring import blend, metrics, paired_bootstrap

# sample_rows.parquet's columns that are not forecasts.
IDENTITY = ("row", "entity", "horizon", "target", "actual")


@dataclass(frozen=True)
class Comparison:
    """evaluation.json's ``decision.sample`` (``report``) and the forecaster that displaces the
    rule's choice (None: none does)."""

    report: dict[str, Any]
    winner: Forecaster | None


def read_rows(model_dir: Path) -> pd.DataFrame | None:
    """The rows the statistical forecasters were scored on (None: none were, or an older run)."""
    path = paths.sample_rows(model_dir)
    return pd.read_parquet(path) if path.is_file() else None


def forecast_of(
    forecaster: Forecaster, rows: pd.DataFrame, challenger: str, champion: tuple[str, np.ndarray] | None
) -> np.ndarray | None:
    """``forecaster``'s forecasts of ``rows`` (None: not known there). ``champion``: a registered
    model's version and its forecasts of every holdout row (positions ``rows["row"]``)."""
    match forecaster:
        case Model(version) if version == challenger:
            return rows["model"].to_numpy(float)
        case Model(version) if champion is not None and version == champion[0]:
            return np.asarray(champion[1], float)[rows["row"].to_numpy()]
        case Model():
            return None
        case Baseline(name):
            return rows[name].to_numpy(float) if name in rows and name not in IDENTITY else None
        case Blend(version, baseline):
            model, base = (
                forecast_of(f, rows, challenger, champion) for f in (Model(version), Baseline(baseline))
            )
            return None if model is None or base is None else blend(model, base)


def candidates(
    rows: pd.DataFrame, statistical: list[str], challenger: str, gate: GateConfig
) -> list[Forecaster]:
    """Each statistical forecaster scored on the rows and, with ``gate.blend``, its blend with
    the challenger."""
    scored = [name for name in statistical if name in rows]
    blends: list[Forecaster] = [Blend(challenger, name) for name in scored] if gate.blend else []
    return [*(Baseline(name) for name in scored), *blends]


def compare(
    rows: pd.DataFrame,
    chosen: Forecaster,
    statistical: list[str],
    challenger: str,
    champion: tuple[str, np.ndarray] | None,
    gate: GateConfig,
    seed: int,
) -> Comparison | None:
    """The rule's choice against each candidate on the rows, paired (None: the choice has no
    forecasts there, or there is nothing to compare it with)."""
    reference = forecast_of(chosen, rows, challenger, champion)
    found = [c for c in candidates(rows, statistical, challenger, gate) if c != chosen]
    if reference is None or not found:
        return None
    actual, entity = rows["actual"].to_numpy(float), rows["entity"].to_numpy()
    chosen_wape = metrics(actual, reference)["wape"]
    margin = gate.min_margin_over_baseline
    compared: list[dict[str, Any]] = []
    for candidate in found:
        forecast = forecast_of(candidate, rows, challenger, champion)
        assert forecast is not None  # a statistical forecaster or its blend with the challenger
        known = np.isfinite(forecast) & np.isfinite(reference)
        noise = paired_bootstrap(
            actual[known],
            reference[known],
            forecast[known],
            entity[known],
            gate.bootstrap_resamples,
            gate.bootstrap_confidence,
            seed,
        )
        wape = metrics(actual[known], forecast[known])["wape"]
        lower = bool(wape < metrics(actual[known], reference[known])["wape"] * (1 - margin))
        beyond = bool(noise["upper"] < 0)
        compared.append(
            {
                "forecaster": str(candidate),
                "wape": wape,
                **noise,
                "lower_by_margin": lower,
                "beyond_noise": beyond,
            }
        )
    winners = [c for c in compared if c["lower_by_margin"] and c["beyond_noise"]]
    best = min(winners, key=lambda c: c["wape"]) if winners else None
    report: dict[str, Any] = {
        "rows": len(rows),
        "entities": int(len(np.unique(entity))),
        "chosen": str(chosen),
        "chosen_wape": chosen_wape,
        "margin": margin,
        "confidence": gate.bootstrap_confidence,
        "resamples": gate.bootstrap_resamples,
        "seed": seed,
        "candidates": compared,
        "published": None if best is None else best["forecaster"],
    }
    if best is None:
        return Comparison(report, None)
    winner = next(c for c in found if str(c) == best["forecaster"])
    forecast = forecast_of(winner, rows, challenger, champion)
    assert forecast is not None
    horizon, target = rows["horizon"].to_numpy(), rows["target"].to_numpy()
    # Its own p10/p90 bands from its errors on these rows, and how often they hold on months
    # they were not calibrated on (as evaluate measures every forecaster's on the holdout).
    report["intervals"] = intervals.calibrate(forecast, actual, horizon)
    report["coverage"] = intervals.coverage(forecast, actual, horizon, target)
    return Comparison(report, winner)


def describe(report: dict[str, Any]) -> str:
    """One sentence of what the sample comparison found, for the decision's reason."""
    where = f"on the {report['entities']:,} entities the statistical forecasters were scored on ({report['rows']:,} forecasts)"
    level = f"{report['confidence']:.0%}"
    margin = f" by {report['margin']:.1%}" if report["margin"] else ""
    parts = [
        f"{c['forecaster']} {c['wape']:.4f} (difference {c['difference']:+.4f}, "
        f"{level} upper bound {c['upper']:+.4f})"
        for c in report["candidates"]
    ]
    head = f"{where}, {report['chosen']} has WAPE {report['chosen_wape']:.4f}; " + ", ".join(parts)
    if report["published"] is None:
        return f"{head}: none is lower{margin} beyond noise (paired bootstrap over entities), so it stays"
    return (
        f"{head}: {report['published']} is lower{margin} beyond noise (paired bootstrap over entities) "
        "and forecasts every entity"
    )
