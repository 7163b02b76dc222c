"""The champion/challenger gate: never publish forecasts worse than what we already trust.

Every run's model is a *challenger*. After evaluate has scored it and the baselines on its
holdout rows, the *champion* as of month M (``models.champion_as_of``) scores the very same
rows (``holdout.parquet``: the challenger's feature rows) with its own saved *holdout* model.
That model was fitted only on targets before the champion's own holdout, which starts no later
than the challenger's (the champion's month is ≤ M and both hold out the last months up to
their month; checked below): it has never seen the targets it is scored on here, just as the
challenger's holdout model has not. Its production model saw them, so it would win unfairly.

``models.decide`` then picks the forecaster of month M: the challenger (promoted), the champion,
the mean of the challenger's and the best baseline's forecasts (a *blend*, when neither model beats
that baseline but the blend does; ``gate.blend``), or the best baseline; the decision goes into the registry, into the challenger's
evaluation.json and into the evaluate stage's result, and predict forecasts with that
forecaster. A run may force a forecaster instead (the DAG param ``force_model_version``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, ConfigError
from forecasting.core.months import month_start
from forecasting.features import dataset
from forecasting.features.dataset import HORIZON, LABEL
from forecasting.modeling import booster as model
from forecasting.modeling import intervals
from forecasting.modeling.evaluate import metrics
from forecasting.registry import models

log = logging.getLogger(__name__)


class ChampionUnavailable(Exception):
    """The champion cannot score the challenger's holdout rows; the message says why."""


def score_saved_model(
    config: Config, version: str, holdout: pd.DataFrame, first_holdout_month: str
) -> dict[str, Any]:
    """A registered model's holdout model scored on ``holdout`` (the challenger's rows): its
    metrics overall and per horizon. Raises ChampionUnavailable when it cannot score them."""
    directory = paths.model_dir(config, version)
    for needed in (
        paths.booster(directory, holdout=True),
        paths.booster(directory),
        paths.model_metadata(directory),
    ):
        if not needed.is_file():
            raise ChampionUnavailable(f"{needed} is missing")
    booster, metadata = model.load(directory, holdout=True)
    # Its holdout model was fitted on targets before its own first holdout month: that must not
    # be later than the challenger's, or it has seen some of the targets it would be scored on.
    own_first = pd.Period(metadata["run_month"], "M") - (int(metadata["holdout_months"]) - 1)
    if own_first > pd.Period(first_holdout_month, "M"):
        raise ChampionUnavailable(
            f"its holdout model was fitted on targets up to {own_first - 1}, inside this holdout "
            f"(from {first_holdout_month})"
        )
    features = metadata["features"]
    missing = [f for f in features if f not in holdout.columns]
    if missing:
        raise ChampionUnavailable(f"it reads features this run does not have: {', '.join(missing)}")
    categories = metadata["categories"]
    unseen = {
        c: sorted(set(holdout[c].dropna().astype(str)) - set(values))
        for c, values in categories.items()
        if c in holdout.columns
    }
    try:
        X = dataset.design_matrix(holdout, config, categories, features=features)
        predicted = model.predict(booster, X)
    except (ValueError, TypeError, KeyError) as err:
        raise ChampionUnavailable(f"it cannot read this run's feature rows: {err}") from err
    except Exception as err:  # xgboost.core.XGBoostError: a feature type or count it refuses
        if type(err).__name__ != "XGBoostError":
            raise
        raise ChampionUnavailable(f"XGBoost refused this run's feature rows: {err}") from err
    actual = holdout[LABEL].to_numpy()
    by_horizon = {
        str(h): metrics(actual[rows], predicted[rows])
        for h in sorted(holdout[HORIZON].unique())
        for rows in [(holdout[HORIZON] == h).to_numpy()]
    }
    result: dict[str, Any] = {
        "metrics": metrics(actual, predicted),
        "by_horizon": by_horizon,
        # Its own p10/p90 bands from its errors on these rows, should it be published.
        "intervals": intervals.calibrate(predicted, actual, holdout[HORIZON].to_numpy()),
    }
    unseen = {c: v for c, v in unseen.items() if v}
    if unseen:  # scored as missing values, as the model would in production
        result["unseen_categories"] = unseen
    return result


def run_gate(
    config: Config,
    month: pd.Period,
    model_dir: Path,
    run_id: str | None = None,
    force: str | None = None,
    forced_by: str | None = None,
) -> dict[str, Any]:
    """Score the champion on the challenger's holdout, decide, record; returns the decision.

    The decision (also written into evaluation.json as ``champion`` and ``decision``):
    ``forecaster`` (model version or ``baseline:<name>``), ``forecaster_dir`` (the model's
    folder, None for a baseline), ``outcome``, ``reason``, ``wape`` (the forecaster's WAPE on
    this holdout; None for a forced model that could not score it), ``challenger``,
    ``champion`` (compared with, or None) and ``challenger_status``.
    """
    evaluation_path = paths.evaluation(model_dir)
    evaluation = paths.read_json(evaluation_path)
    metadata = paths.read_json(paths.model_metadata(model_dir))
    challenger = metadata["model_version"]
    holdout = dataset.read_rows(paths.holdout_rows(model_dir))
    first_holdout = min(evaluation["holdout_target_months"])
    booster, _ = model.load(model_dir)
    row = models.model_row(metadata, evaluation, models.top_features(booster), run_id)
    challenger_wape = evaluation["model"]["wape"]
    best, baselines = evaluation["best_baseline"], evaluation["baselines"]
    best_wape = baselines[best]["wape"]
    now = datetime.now(UTC)
    wapes = {
        challenger: challenger_wape,
        **{f"{models.BASELINE_PREFIX}{n}": m["wape"] for n, m in baselines.items()},
    }
    # Each candidate's p10/p90 bands (forecasting.modeling.intervals), for whichever is published.
    bands = (evaluation.get("intervals") or {}).get("forecasters", {})
    interval_specs = {
        challenger: bands.get("model"),
        **{f"{models.BASELINE_PREFIX}{n}": bands.get(n) for n in baselines},
    }
    # The challenger blended with the best baseline, a candidate when neither model beats it.
    blended = evaluation.get("blend") or {}
    blend_wape = None
    if config.gate.blend and blended.get("baseline") == best:
        blend_wape = blended["metrics"]["wape"]
        wapes[models.blend_name(challenger, best)] = blend_wape
        interval_specs[models.blend_name(challenger, best)] = bands.get("blend")

    with models.registry(config) as (conn, table):
        previous = models.get(conn, table, challenger)
        champion = models.champion_as_of(conn, table, month_start(month).date(), exclude=challenger)
        champion_report: dict[str, Any] | None = None
        champion_wape = None
        if champion is not None:
            version = champion["model_version"]
            try:
                scored = score_saved_model(config, version, holdout, first_holdout)
            except ChampionUnavailable as err:
                log.warning("The champion %s cannot score this holdout: %s", version, err)
                champion_report = {"model_version": version, "available": False, "why": str(err)}
            else:
                champion_wape = scored["metrics"]["wape"]
                wapes[version] = champion_wape
                interval_specs[version] = scored["intervals"]
                champion_report = {"model_version": version, "available": True, **scored}
        decision = models.decide(
            challenger,
            challenger_wape,
            best,
            best_wape,
            config.gate,
            champion=champion["model_version"]
            if champion is not None and champion_wape is not None
            else None,
            champion_wape=champion_wape,
            blend_wape=blend_wape,
        )
        if champion_report is not None and not champion_report["available"]:
            decision = models.Decision(
                decision.outcome,
                decision.forecaster,
                f"champion {champion_report['model_version']} could not score this holdout "
                f"({champion_report['why']}); {decision.reason}",
            )
        outcome, reason, forecaster = decision.outcome, decision.reason, decision.forecaster
        said = reason  # the decision's reason, as the run reports it
        decided_by, decided_at = models.GATE, now
        promoted = outcome == models.PROMOTED
        status = models.RETIRED if promoted else models.REJECTED  # save() crowns the champion
        promoted_at = now if promoted else None
        champion_since = month_start(month).date() if promoted else None
        if promoted and previous is not None and previous["decision"] == models.PROMOTED:
            promoted_at = previous["promoted_at"]  # the same decision again: the same row
        if previous is not None and previous["decision"] in models.MANUAL:
            # A person decided about this very model: running its month again keeps that.
            outcome, decided_by, decided_at = (
                previous["decision"],
                previous["decided_by"],
                previous["decided_at"],
            )
            promoted_at, champion_since = previous["promoted_at"], previous["champion_since"]
            if outcome == models.MANUAL_PROMOTE:
                status, forecaster = models.RETIRED, challenger
            else:
                status = models.REJECTED
                if models.model_version_of(forecaster) == challenger:  # not the model a person rejected
                    keep = champion_wape is not None and models.beats(
                        champion_wape, best_wape, config.gate.min_margin_over_baseline
                    )
                    forecaster = (
                        champion["model_version"] if keep and champion else f"{models.BASELINE_PREFIX}{best}"
                    )
            reason = previous["reason"]  # the person's own words stay in the registry
            said = f"manual decision by {decided_by} kept: {reason}; the gate said: {decision.reason}"
        if force:
            forecaster = _check_forced(conn, table, force, baselines)
            said = f"run {run_id} forced {forecaster} (by {forced_by or 'unknown'}); the gate said: {decision.reason}"
            reason = said if outcome not in models.MANUAL else reason
            if outcome not in models.MANUAL:  # the challenger stays undecided
                status, outcome, promoted_at, champion_since = models.CHALLENGER, models.FORCED, None, None
                decided_by, decided_at = forced_by or "dag param force_model_version", now
            if forecaster not in wapes and models.model_version_of(forecaster) == forecaster:
                try:
                    scored = score_saved_model(config, forecaster, holdout, first_holdout)
                    wapes[forecaster] = scored["metrics"]["wape"]
                    interval_specs[forecaster] = scored["intervals"]
                except ChampionUnavailable as err:
                    log.warning("The forced model %s cannot score this holdout: %s", forecaster, err)
        row.update(
            status=status,
            created_at=previous["created_at"] if previous is not None else now,
            champion_version=champion["model_version"] if champion is not None else None,
            champion_wape=champion_wape,
            champion_since=champion_since,
            promoted_at=promoted_at,
            published=forecaster,
            decision=outcome,
            reason=reason,
            decided_by=decided_by,
            decided_at=decided_at,
        )
        models.save(conn, table, row)
        saved = models.get(conn, table, challenger)
        assert saved is not None
    result = {
        "forecaster": forecaster,
        "forecaster_dir": None
        if (version := models.model_version_of(forecaster)) is None
        else str(paths.models(config) / version),
        "outcome": outcome,
        "reason": said,
        "wape": wapes.get(forecaster),
        "challenger": challenger,
        "challenger_wape": challenger_wape,
        "champion": champion["model_version"] if champion is not None else None,
        "champion_wape": champion_wape,
        "best_baseline": best,
        "best_baseline_wape": best_wape,
        "challenger_status": saved["status"],
        "decided_by": decided_by,
        # p10/p90 bands predict puts around the forecaster's forecasts (None: not calibrated).
        "intervals": interval_specs.get(forecaster),
    }
    paths.write_json_atomically(
        {**evaluation, "champion": champion_report, "decision": result}, evaluation_path
    )
    log.info("Gate for %s: %s -> publishing %s. %s", month, outcome, forecaster, said)
    return result


def _check_forced(conn, table, force: str, baselines: dict) -> str:
    """The forced forecaster, if this run can publish it: a registered model, a baseline this run
    scored, or a blend of the two."""
    version: str | None
    baseline: str | None
    version, baseline = models.parse_blend(force) or (force, None)
    if force.startswith(models.BASELINE_PREFIX):
        version, baseline = None, force.removeprefix(models.BASELINE_PREFIX)
    if baseline is not None and baseline not in baselines:
        raise ConfigError(f"force_model_version {force!r}: no such baseline (have: {', '.join(baselines)})")
    if version is not None and models.get(conn, table, version) is None:
        raise ConfigError(f"force_model_version {force!r}: no such model in {table.name}")
    return force
