"""The gate on the statistical forecasters' rows: the strong baselines and the combinations.

The statistical forecasters (AutoETS, Theta) are scored on a seeded sample of entities when the
holdout holds more than ``evaluation.statistical_max_series`` of them (on every row when there
are few): evaluate writes those rows with every forecast of them (``sample_rows.parquet``).
After the rule (:func:`forecasting.registry.gate.decide`) has chosen a forecaster from the
forecasters scored on every row, :func:`compare` weighs it there against the *candidates*: each
statistical forecaster and (``gate.blend``) every combination
(``forecasting.modeling.forecaster.combinations``: the equal-weight means of the challenger,
AutoETS and Theta, two or three at a time).

1. **Ranked on the backtest.** Where evaluate ran the rolling-origin backtest (models refit at
   each origin, as production refits every month) and scored the candidates on its rows, the
   candidates whose backtest WAPE is lower than the rule's choice's by
   ``gate.min_margin_over_baseline`` are considered, best first. No backtest: every candidate is
   considered, the lowest on the holdout rows winning among those confirmed.
2. **Confirmed on the holdout.** The first of them (on the backtest's order) that is confirmed
   replaces the rule's choice, for every entity; confirmed means that on the holdout's rows (the
   holdout model as the model member) its WAPE is lower

   * by at least ``gate.min_margin_over_baseline`` (relative, as against the best baseline), and
   * beyond noise: a paired bootstrap over the entities (``gate.bootstrap_resamples``, seeded
     with the model's seed) of WAPE(candidate) - WAPE(chosen) puts the one-sided upper bound at
     ``gate.bootstrap_confidence`` below zero.

With 100 entities the bootstrap is what stops a few lucky series from deciding; the margin is
the price a deployment asks for a change of forecaster. The combinations have fixed, equal
weights: nothing about them is fitted on the rows that score them, and ranking them on the
backtest before the holdout confirms one keeps the holdout from choosing among them. Only the
backtest's best was once checked: on M1 (docs/quality.md) AutoETS was best there and 13% lower
on the holdout, yet its bootstrap bound missed zero by 0.0005 while every combination's held,
and the model (25% worse) stayed; the next on the backtest is now checked in turn.
The winner's p10/p90 bands are evaluate's (calibrated on its errors as production makes them);
without them, calibrated on these rows (split conformal, ``forecasting.modeling.intervals``).
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
from forecasting.modeling.forecaster import (
    MODEL,
    Baseline,
    Blend,
    Forecaster,
    Model,
    as_blend,
    combination_name,
    combinations,
)
from forecasting.modeling.scoring import combine, metrics, paired_bootstrap

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
        case Blend() as blended:
            parts = [
                forecast_of(Baseline(m) if m != MODEL else Model(version), rows, challenger, champion)
                for m in blended.members
                for version in [blended.model_version or ""]
            ]
            return None if any(p is None for p in parts) else combine(parts)  # type: ignore[arg-type]


def candidates(
    rows: pd.DataFrame, statistical: list[str], challenger: str, gate: GateConfig
) -> list[Forecaster]:
    """Each statistical forecaster scored on the rows and, with ``gate.blend``, every combination
    of them and the challenger."""
    scored = [name for name in statistical if name in rows]
    blends: list[Forecaster] = [as_blend(c, challenger) for c in combinations(scored)] if gate.blend else []
    return [*(Baseline(name) for name in scored), *blends]


def backtest_wape(forecaster: Forecaster, board: dict[str, Any] | None, challenger: str) -> float | None:
    """``forecaster``'s WAPE on the backtest's rows of the statistical forecasters (``board``:
    evaluation.json's ``backtest.overall``, or its ``sample``; the refit models as the
    challenger); None: the backtest did not score it."""
    if not board:
        return None
    match forecaster:
        case Model(version):
            return board["model"]["wape"] if version == challenger else None
        case Baseline(name):
            return (board["baselines"].get(name) or {}).get("wape")
        case Blend() as blended if blended.model_version in (None, challenger):
            scored = (board.get("combinations") or {}).get(combination_name(blended.members))
            if (
                scored is None
                and (board.get("blend") or {}).get("baseline") == blended.baseline
                and not blended.more
            ):
                scored = board["blend"]  # the challenger with the best naive baseline
            return None if scored is None else scored.get("wape")
    return None


def backtest_board(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """The backtest's scores on the rows the statistical forecasters were scored on (None: no
    backtest, or none that scored them)."""
    overall = (evaluation.get("backtest") or {}).get("overall")
    if not overall:
        return None
    return overall.get("sample") if "sample" in overall else overall


def compare(
    rows: pd.DataFrame,
    chosen: Forecaster,
    statistical: list[str],
    challenger: str,
    champion: tuple[str, np.ndarray] | None,
    gate: GateConfig,
    seed: int,
    backtest: dict[str, Any] | None = None,
) -> Comparison | None:
    """The rule's choice against the candidates on the rows, paired (None: the choice has no
    forecasts there, or there is nothing to compare it with). ``backtest``: the backtest's scores
    on these rows (:func:`backtest_board`; None: no backtest, every candidate is considered)."""
    reference = forecast_of(chosen, rows, challenger, champion)
    found = [c for c in candidates(rows, statistical, challenger, gate) if c != chosen]
    if reference is None or not found:
        return None
    on_backtest = {str(c): backtest_wape(c, backtest, challenger) for c in [chosen, *found]}
    selected_on = "holdout"
    if all(on_backtest[str(c)] is not None for c in found):
        selected_on = "backtest"
        chosen_on_backtest = on_backtest[str(chosen)]
        considered = [
            c
            for c in found
            if chosen_on_backtest is None
            or on_backtest[str(c)] < chosen_on_backtest * (1 - gate.min_margin_over_baseline)  # type: ignore[operator]
        ]
    else:
        considered = found
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
                "backtest_wape": on_backtest[str(candidate)],
                "considered": candidate in considered,
                **noise,
                "lower_by_margin": lower,
                "beyond_noise": beyond,
            }
        )
    winners = [c for c in compared if c["considered"] and c["lower_by_margin"] and c["beyond_noise"]]
    # On the backtest's order: the holdout confirms, it does not choose among the confirmed.
    ranked_on = "backtest_wape" if selected_on == "backtest" else "wape"
    best = min(winners, key=lambda c: c[ranked_on]) if winners else None
    report: dict[str, Any] = {
        "rows": len(rows),
        "entities": int(len(np.unique(entity))),
        "chosen": str(chosen),
        "chosen_wape": chosen_wape,
        "chosen_backtest_wape": on_backtest[str(chosen)],
        # "backtest": the candidate with the lowest backtest WAPE was the only one confirmed on
        # the holdout; "holdout": no backtest scored the candidates, every one was.
        "selected_on": selected_on,
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
    report["intervals"] = intervals.calibrate(forecast, actual, horizon, target)
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
    if report["selected_on"] == "backtest":
        picked = sorted(
            (c for c in report["candidates"] if c["considered"]), key=lambda c: c["backtest_wape"]
        )
        chosen_bt = report["chosen_backtest_wape"]
        against = "" if chosen_bt is None else f" against {chosen_bt:.4f}"
        if not picked:
            best = min(report["candidates"], key=lambda c: c["backtest_wape"])
            return (
                f"{head}; on the backtest the best of them, {best['forecaster']} (WAPE "
                f"{best['backtest_wape']:.4f}{against}), is not lower{margin}, so it stays"
            )
        order = ", ".join(f"{c['forecaster']} ({c['backtest_wape']:.4f})" for c in picked)
        head += f"; lower on the backtest{against}, best first: {order}; checked on the holdout in that order"
    if report["published"] is None:
        return f"{head}: none is lower{margin} beyond noise (paired bootstrap over entities), so it stays"
    return (
        f"{head}: {report['published']} is lower{margin} beyond noise (paired bootstrap over entities) "
        "and forecasts every entity"
    )


def evaluation_name(evaluation: dict, forecaster: Forecaster, challenger: str) -> str | None:
    """What evaluation.json calls ``forecaster``'s forecasts (None: evaluate did not make them)."""
    match forecaster:
        case Model(version):
            return "model" if version == challenger else None
        case Baseline(name):
            return name
        case Blend() as blended if blended.model_version in (None, challenger):
            if (evaluation.get("blend") or {}).get("baseline") == blended.baseline and not blended.more:
                if blended.model_version is not None:
                    return "blend"  # the challenger with the best baseline scored on every row
            return combination_name(blended.members)
    return None


def cold_start_buckets(evaluation: dict, forecaster: Forecaster) -> list[str]:
    """The age buckets whose forecasts by ``forecaster`` evaluate found better averaged with the
    siblings' (evaluation.json's ``cold_start``; none for a forecaster evaluate did not make)."""
    name = evaluation_name(evaluation, forecaster, evaluation.get("model_version", ""))
    return ((evaluation.get("cold_start") or {}).get("used") or {}).get(name, []) if name else []


def evaluation_bands(
    evaluation: dict, forecaster: Forecaster, challenger: str
) -> tuple[dict | None, dict | None]:
    """``forecaster``'s p10/p90 bands as evaluate calibrated them and their coverage on months
    they were not calibrated on (None, None: evaluate has none)."""
    name = evaluation_name(evaluation, forecaster, challenger)
    bands = evaluation.get("intervals") or {}
    if name is None:
        return None, None
    return (bands.get("forecasters") or {}).get(name), (bands.get("coverage") or {}).get(name)


def published_coverage(
    evaluation: dict, forecaster: Forecaster, challenger: str, compared: dict[str, Any] | None
) -> dict | None:
    """The published forecaster's p10-p90 coverage on months its bands were not calibrated on
    (the sample comparison's when it chose the forecaster; None: not measured, e.g. the champion)."""
    if compared is not None and compared.get("published") == str(forecaster) and compared.get("coverage"):
        return compared["coverage"]
    return evaluation_bands(evaluation, forecaster, challenger)[1]
