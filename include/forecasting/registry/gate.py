"""The champion/challenger gate: never publish forecasts worse than what we already trust.

Every run's model is a *challenger*. After evaluate has scored it and the baselines on its
holdout rows, the *champion* as of month M (``models.champion_as_of``) scores the very same
rows (``holdout.parquet``: the challenger's feature rows) with its own saved *holdout* model
(forecasting.registry.champion). That model was fitted only on targets before the champion's own
holdout, which starts no later than the challenger's (the champion's month is ≤ M and both hold
out the last months up to their month; checked there): it has never seen the targets it is scored on here, just as the
challenger's holdout model has not. Its production model saw them, so it would win unfairly.

The rule (:func:`decide`) then picks the forecaster of month M: the challenger (promoted), the
champion, the mean of the challenger's and the best baseline's forecasts (a *blend*, when neither
model beats that baseline but the blend does; ``gate.blend``), or the best baseline; the decision
goes into the registry, into the challenger's evaluation.json and into the evaluate stage's
result, and predict forecasts with that forecaster. The rule reads the forecasters scored on every
row; its choice is then weighed on the rows the statistical forecasters were scored on (every
row, or a sample of entities: :func:`on_sample`, ``forecasting.registry.sample``) against AutoETS,
Theta and the combinations of the challenger with them: the candidate the rolling-origin backtest
scores best replaces it when lower there by the baseline margin and, on the holdout, by the
margin and beyond a paired bootstrap's noise. The overrides come after the rule: a person's
earlier decision about this very model is kept (``python -m forecasting.registry.models
promote|reject``), and a run may force a forecaster instead (the DAG param ``force_model_version``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, ConfigError, GateConfig
from forecasting.core.months import month_start
from forecasting.features import dataset
from forecasting.modeling import booster as model
from forecasting.modeling.forecaster import Baseline, Blend, Forecaster, Model, model_version
from forecasting.registry import models, sample
from forecasting.registry.champion import (
    ChampionUnavailable,
    predict_saved_model,
    score_saved_model,
    scores_of,
)

log = logging.getLogger(__name__)


# --- the rule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    outcome: str  # models.PROMOTED, KEPT_CHAMPION, BLENDED or BASELINE
    forecaster: Forecaster  # whose forecasts to publish
    reason: str


def beats(wape: float, other: float, margin: float) -> bool:
    """``wape`` is lower than ``other`` by at least the relative ``margin`` (NaN never beats)."""
    return bool(wape < other * (1 - margin))


def decide(
    challenger: str,
    challenger_wape: float,
    best_baseline: str,
    best_baseline_wape: float,
    gate: GateConfig,
    champion: str | None = None,
    champion_wape: float | None = None,
    blend_wape: float | None = None,
) -> Decision:
    """The gate: promote the challenger if it beats the champion (by ``gate.min_improvement``)
    and the best baseline (by ``gate.min_margin_over_baseline``); else keep the champion if it
    beats the best baseline by that margin; else publish the blend of the challenger and the best
    baseline (``blend_wape``: its WAPE; None: not scored) if it beats the best baseline by that
    margin; else publish the best baseline. All WAPEs are on the same holdout rows. No champion
    (or none that could score): the challenger only has to beat the baseline. ``challenger`` and
    ``champion`` are model versions, ``best_baseline`` a baseline's name."""
    base = f"{best_baseline} baseline (WAPE {best_baseline_wape:.4f})"
    margin_b, margin_c = gate.min_margin_over_baseline, gate.min_improvement
    vs_base = f" by {margin_b:.1%}" if margin_b else ""
    vs_champ = f" by {margin_c:.1%}" if margin_c else ""
    ch = f"challenger {challenger} (WAPE {challenger_wape:.4f})"
    challenger_beats_baseline = beats(challenger_wape, best_baseline_wape, margin_b)
    if champion is None or champion_wape is None:
        if challenger_beats_baseline:
            return Decision(
                models.PROMOTED, Model(challenger), f"no champion to beat; {ch} beats the {base}{vs_base}"
            )
        return _blend_or_baseline(
            f"no champion; {ch} does not beat the {base}{vs_base}",
            challenger,
            best_baseline,
            best_baseline_wape,
            blend_wape,
            margin_b,
        )
    cp = f"champion {champion} (WAPE {champion_wape:.4f} on the same rows)"
    challenger_beats_champion = beats(challenger_wape, champion_wape, margin_c)
    if challenger_beats_baseline and challenger_beats_champion:
        return Decision(
            models.PROMOTED, Model(challenger), f"{ch} beats the {cp}{vs_champ} and the {base}{vs_base}"
        )
    lost = [
        *([] if challenger_beats_champion else [f"the {cp}{vs_champ}"]),
        *([] if challenger_beats_baseline else [f"the {base}{vs_base}"]),
    ]
    why = f"{ch} does not beat {' nor '.join(lost)}"
    if beats(champion_wape, best_baseline_wape, margin_b):
        return Decision(
            models.KEPT_CHAMPION,
            Model(champion),
            f"{why}; the champion beats the {best_baseline} baseline{vs_base}",
        )
    return _blend_or_baseline(
        f"{why}; the champion does not beat the {base}{vs_base} either",
        challenger,
        best_baseline,
        best_baseline_wape,
        blend_wape,
        margin_b,
    )


def _blend_or_baseline(
    why: str,
    challenger: str,
    best_baseline: str,
    best_baseline_wape: float,
    blend_wape: float | None,
    margin: float,
) -> Decision:
    """Neither model beats the best baseline: their average may (the model and the baseline err
    differently), else the baseline itself is published."""
    vs_base = f" by {margin:.1%}" if margin else ""
    if blend_wape is not None and beats(blend_wape, best_baseline_wape, margin):
        return Decision(
            models.BLENDED,
            Blend(challenger, best_baseline),
            f"{why}; the mean of the challenger's and the baseline's forecasts (WAPE {blend_wape:.4f}) "
            f"beats the baseline{vs_base}",
        )
    blended = "" if blend_wape is None else f"; their blend (WAPE {blend_wape:.4f}) does not beat it{vs_base}"
    return Decision(models.BASELINE, Baseline(best_baseline), f"{why}{blended}")


# --- one run's gate --------------------------------------------------------------------------


@dataclass
class Candidates:
    """What this run could publish: each candidate's WAPE on the challenger's holdout rows and
    its p10/p90 bands (forecasting.modeling.intervals; None: not calibrated)."""

    wapes: dict[Forecaster, float]
    intervals: dict[Forecaster, dict | None]
    blend_wape: float | None  # the challenger blended with the best baseline (None: not a candidate)
    # The champion's version and its forecasts of every holdout row (None: none scored them).
    champion: tuple[str, np.ndarray] | None = None
    # The statistical baselines evaluate scored (on the sample, or on every row).
    statistical: list[str] = field(default_factory=list)
    realised: pd.DataFrame | None = None  # the realised errors evaluate pooled into the bands

    def add_scored(self, version: str, scored: dict[str, Any]) -> None:
        """A registered model scored on these rows (score_saved_model)."""
        self.wapes[Model(version)] = scored["metrics"]["wape"]
        self.intervals[Model(version)] = scored["intervals"]


def candidates(config: Config, evaluation: dict, challenger: str, realised: Path) -> Candidates:
    """The challenger, every baseline and, when neither model beats the best baseline, the
    challenger blended with it, as evaluate scored them (and the ``realised`` errors it pooled)."""
    best, baselines = evaluation["best_baseline"], evaluation["baselines"]
    bands = (evaluation.get("intervals") or {}).get("forecasters", {})
    wapes: dict[Forecaster, float] = {
        Model(challenger): evaluation["model"]["wape"],
        **{Baseline(n): m["wape"] for n, m in baselines.items()},
    }
    interval_specs: dict[Forecaster, dict | None] = {
        Model(challenger): bands.get("model"),
        **{Baseline(n): bands.get(n) for n in baselines},
    }
    blended = evaluation.get("blend") or {}
    blend_wape = None
    if config.gate.blend and blended.get("baseline") == best:
        blend_wape = blended["metrics"]["wape"]
        wapes[Blend(challenger, best)] = blend_wape
        interval_specs[Blend(challenger, best)] = bands.get("blend")
    statistical = (evaluation.get("statistical_baselines") or {}).get("forecasters") or []
    pooled = pd.read_parquet(realised) if realised.is_file() else None
    return Candidates(wapes, interval_specs, blend_wape, statistical=list(statistical), realised=pooled)


def score_champion(
    config: Config, version: str, holdout: pd.DataFrame, first_holdout: str, found: Candidates
) -> tuple[dict[str, Any], float | None]:
    """evaluation.json's ``champion`` (its scores, or why it could not score) and its WAPE (None:
    it could not score these rows); a champion that scored joins the candidates."""
    try:
        made = predict_saved_model(config, version, holdout, first_holdout)
    except ChampionUnavailable as err:
        log.warning("The champion %s cannot score this holdout: %s", version, err)
        return {"model_version": version, "available": False, "why": str(err)}, None
    scored = scores_of(made, holdout, found.realised)
    found.add_scored(version, scored)
    found.champion = (version, made[0])
    return {"model_version": version, "available": True, **scored}, scored["metrics"]["wape"]


def rule_decision(
    config: Config,
    evaluation: dict,
    challenger: str,
    champion: str | None,
    holdout: pd.DataFrame,
    first_holdout: str,
    found: Candidates,
    sample_rows: pd.DataFrame | None = None,
) -> tuple[Decision, dict[str, Any] | None, float | None, dict[str, Any] | None]:
    """The rule's decision, the champion (if any) scored first on the challenger's rows, then
    checked on ``sample_rows`` (the statistical forecasters', :func:`on_sample`): the decision,
    evaluation.json's ``champion`` (None: no champion), its WAPE (None: it could not score them,
    and the decision says why) and the sample's comparison (None: none was made)."""
    report: dict[str, Any] | None = None
    wape = None
    if champion is not None:
        report, wape = score_champion(config, champion, holdout, first_holdout, found)
    best = evaluation["best_baseline"]
    decision = decide(
        challenger,
        evaluation["model"]["wape"],
        best,
        evaluation["baselines"][best]["wape"],
        config.gate,
        champion=champion if wape is not None else None,
        champion_wape=wape,
        blend_wape=found.blend_wape,
    )
    if report is not None and not report["available"]:
        decision = replace(
            decision,
            reason=f"champion {champion} could not score this holdout ({report['why']}); {decision.reason}",
        )
    decision, compared = on_sample(config, evaluation, challenger, decision, sample_rows, found)
    return decision, report, wape, compared


def on_sample(
    config: Config,
    evaluation: dict,
    challenger: str,
    decision: Decision,
    rows: pd.DataFrame | None,
    found: Candidates,
) -> tuple[Decision, dict[str, Any] | None]:
    """The rule's decision checked on the rows the statistical forecasters were scored on
    (forecasting.registry.sample): replaced by AutoETS, Theta or the challenger's blend with one
    of them when that is lower there by the baseline margin and beyond the bootstrap's noise.
    Returns the decision and evaluation.json's ``decision.sample`` (None: nothing compared)."""
    statistical = (evaluation.get("statistical_baselines") or {}).get("forecasters") or []
    if rows is None or not config.gate.sample or not statistical:
        return decision, None
    board = sample.backtest_board(evaluation)
    chosen, gate, seed = decision.forecaster, config.gate, config.model.seed
    compared = sample.compare(rows, chosen, statistical, challenger, found.champion, gate, seed, board)
    if compared is None:
        return decision, None
    reason = f"{decision.reason}; {sample.describe(compared.report)}"
    if compared.winner is None:
        return replace(decision, reason=reason), compared.report
    winner = compared.winner
    # Its WAPE is the one on the rows it was scored on; its bands evaluate's (calibrated on its
    # errors as production makes them), else the ones compare calibrated on these rows.
    found.wapes[winner] = next(
        c["wape"] for c in compared.report["candidates"] if c["forecaster"] == str(winner)
    )
    spec, held = sample.evaluation_bands(evaluation, winner, challenger)
    if spec is not None:
        compared.report.update(intervals=spec, coverage=held)
    found.intervals[winner] = compared.report["intervals"]
    outcome = models.BLENDED if isinstance(winner, Blend) else models.BASELINE
    return Decision(outcome, winner, reason), compared.report


@dataclass
class Verdict:
    """What the registry records about the challenger, and what the run publishes."""

    forecaster: Forecaster
    outcome: str
    status: str
    reason: str  # into the registry
    said: str  # the decision's reason, as the run reports it
    decided_by: str
    decided_at: datetime
    promoted_at: datetime | None
    champion_since: date | None


def gate_verdict(decision: Decision, month: pd.Period, previous: dict | None, now: datetime) -> Verdict:
    """The rule's decision as the registry records it: a promoted challenger is champion from M."""
    promoted = decision.outcome == models.PROMOTED
    promoted_at = now if promoted else None
    if promoted and previous is not None and previous["decision"] == models.PROMOTED:
        promoted_at = previous["promoted_at"]  # the same decision again: the same row
    return Verdict(
        forecaster=decision.forecaster,
        outcome=decision.outcome,
        status=models.RETIRED if promoted else models.REJECTED,  # save() crowns the champion
        reason=decision.reason,
        said=decision.reason,
        decided_by=models.GATE,
        decided_at=now,
        promoted_at=promoted_at,
        champion_since=month_start(month).date() if promoted else None,
    )


def run_gate(
    config: Config,
    month: pd.Period,
    model_dir: Path,
    run_id: str | None = None,
    force: Forecaster | None = None,
    forced_by: str | None = None,
) -> dict[str, Any]:
    """Score the champion on the challenger's holdout, decide, record; returns the decision.

    The decision (also written into evaluation.json as ``champion`` and ``decision``):
    ``forecaster`` (model version, ``baseline:<name>`` or a blend's name), ``forecaster_dir``
    (the model's folder, None for a baseline), ``outcome``, ``reason``, ``wape`` (the
    forecaster's WAPE on this holdout; None for a forced model that could not score it),
    ``challenger``, ``champion`` (compared with, or None), ``challenger_status`` and ``sample``
    (the choice against the statistical forecasters on their rows; None: not compared).
    """
    evaluation_path = paths.evaluation(model_dir)
    evaluation = paths.read_json(evaluation_path)
    metadata = paths.read_json(paths.model_metadata(model_dir))
    challenger = metadata["model_version"]
    holdout = dataset.read_rows(paths.holdout_rows(model_dir))
    first_holdout = min(evaluation["holdout_target_months"])
    booster, _ = model.load(model_dir)
    row = models.model_row(metadata, evaluation, models.top_features(booster), run_id)
    best = evaluation["best_baseline"]
    best_wape = evaluation["baselines"][best]["wape"]
    now = datetime.now(UTC)
    found = candidates(config, evaluation, challenger, paths.realised_errors(model_dir))

    with models.registry(config) as (conn, table):
        previous = models.get(conn, table, challenger)
        champion = models.champion_as_of(conn, table, month_start(month).date(), exclude=challenger)
        champion_version = None if champion is None else champion["model_version"]
        decision, champion_report, champion_wape, compared = rule_decision(
            config,
            evaluation,
            challenger,
            champion_version,
            holdout,
            first_holdout,
            found,
            sample.read_rows(model_dir),
        )
        verdict = gate_verdict(decision, month, previous, now)
        if previous is not None and previous["decision"] in models.MANUAL:
            champion_keeps = champion_wape is not None and beats(
                champion_wape, best_wape, config.gate.min_margin_over_baseline
            )
            verdict = keep_manual_decision(
                verdict, previous, challenger, champion_version, champion_keeps, best
            )
        if force is not None:
            check_forced(conn, table, force, [*evaluation["baselines"], *found.statistical])
            verdict = force_forecaster(verdict, force, decision.reason, run_id, forced_by, now)
            score_forced(config, force, found, holdout, first_holdout)
        row.update(
            status=verdict.status,
            created_at=previous["created_at"] if previous is not None else now,
            champion_version=champion_version,
            champion_wape=champion_wape,
            champion_since=verdict.champion_since,
            promoted_at=verdict.promoted_at,
            published=str(verdict.forecaster),
            decision=verdict.outcome,
            reason=verdict.reason,
            decided_by=verdict.decided_by,
            decided_at=verdict.decided_at,
        )
        models.save(conn, table, row)
        saved = models.get(conn, table, challenger)
        assert saved is not None
    forecaster = verdict.forecaster
    version = model_version(forecaster)
    result = {
        "forecaster": str(forecaster),
        "forecaster_dir": None if version is None else str(paths.models(config) / version),
        "outcome": verdict.outcome,
        "reason": verdict.said,
        "wape": found.wapes.get(forecaster),
        "challenger": challenger,
        "challenger_wape": evaluation["model"]["wape"],
        "champion": champion_version,
        "champion_wape": champion_wape,
        "best_baseline": best,
        "best_baseline_wape": best_wape,
        "challenger_status": saved["status"],
        "decided_by": verdict.decided_by,
        # p10/p90 bands predict puts around the forecaster's forecasts (None: not calibrated).
        "intervals": found.intervals.get(forecaster),
        # How often such bands held on holdout months they were not calibrated on (None: not measured).
        "coverage": sample.published_coverage(evaluation, forecaster, challenger, compared),
        # The rule's choice against the statistical forecasters on their rows (None: not compared).
        "sample": compared,
    }
    paths.write_json_atomically(
        {**evaluation, "champion": champion_report, "decision": result}, evaluation_path
    )
    log.info("Gate for %s: %s -> publishing %s. %s", month, verdict.outcome, forecaster, verdict.said)
    return result


# --- the overrides ---------------------------------------------------------------------------


def score_forced(
    config: Config, force: Forecaster, found: Candidates, holdout: pd.DataFrame, first_holdout: str
) -> None:
    """A forced model not yet among the candidates is scored on the holdout, for its WAPE and
    bands (it is published all the same if it cannot score them)."""
    if isinstance(force, Model) and force not in found.wapes:
        try:
            found.add_scored(force.version, score_saved_model(config, force.version, holdout, first_holdout))
        except ChampionUnavailable as err:
            log.warning("The forced model %s cannot score this holdout: %s", force, err)


def keep_manual_decision(
    verdict: Verdict,
    previous: dict,
    challenger: str,
    champion: str | None,
    champion_keeps: bool,
    best_baseline: str,
) -> Verdict:
    """A person decided about this very model (``previous``: its row): running its month again
    keeps that decision. A rejected challenger is never published: the champion is instead
    (``champion_keeps``: it beats the best baseline), else the best baseline."""
    forecaster = verdict.forecaster
    if previous["decision"] == models.MANUAL_PROMOTE:
        status, forecaster = models.RETIRED, Model(challenger)
    else:
        status = models.REJECTED
        if model_version(forecaster) == challenger:  # not the model a person rejected
            forecaster = Model(champion) if champion_keeps and champion else Baseline(best_baseline)
    decided_by = previous["decided_by"]
    return Verdict(
        forecaster=forecaster,
        outcome=previous["decision"],
        status=status,
        reason=previous["reason"],  # the person's own words stay in the registry
        said=f"manual decision by {decided_by} kept: {previous['reason']}; the gate said: {verdict.said}",
        decided_by=decided_by,
        decided_at=previous["decided_at"],
        promoted_at=previous["promoted_at"],
        champion_since=previous["champion_since"],
    )


def force_forecaster(
    verdict: Verdict,
    force: Forecaster,
    gate_said: str,
    run_id: str | None,
    forced_by: str | None,
    now: datetime,
) -> Verdict:
    """The run forced ``force`` (checked by check_forced): it is published, and the challenger
    stays undecided unless a person decided about it (``gate_said``: the rule's reason)."""
    said = f"run {run_id} forced {force} (by {forced_by or 'unknown'}); the gate said: {gate_said}"
    if verdict.outcome in models.MANUAL:
        return replace(verdict, forecaster=force, said=said)
    return replace(
        verdict,
        forecaster=force,
        said=said,
        reason=said,
        status=models.CHALLENGER,
        outcome=models.FORCED,
        promoted_at=None,
        champion_since=None,
        decided_by=forced_by or "dag param force_model_version",
        decided_at=now,
    )


def check_forced(conn, table, force: Forecaster, baselines: list[str]) -> None:
    """Refuse a forced forecaster this run cannot publish: it must be a registered model, a
    baseline this run scored (on every row or on the sample), or a blend of them."""
    version: str | None
    named: tuple[str, ...]
    match force:
        case Model(version):
            named = ()
        case Baseline(name):
            version, named = None, (name,)
        case Blend() as blended:
            version, named = blended.model_version, blended.baselines
    unknown = [name for name in named if name not in baselines]
    if unknown:
        raise ConfigError(
            f"force_model_version {str(force)!r}: no such baseline {', '.join(unknown)} (have: {', '.join(baselines)})"
        )
    if version is not None and models.get(conn, table, version) is None:
        raise ConfigError(f"force_model_version {str(force)!r}: no such model in {table.name}")
