"""Tuning within a budget: an Optuna search over the XGBoost parameters before a training.

Off unless ``model.tuning.enabled``. Train calls :func:`tune` with the rows it fits and their
split by target month; nothing here reads the evaluation holdout.

* **The search.** Optuna's TPE sampler, seeded with ``model.seed``, proposes parameter sets
  (:func:`suggest`); each is fitted on the training months with early stopping on the
  validation months, and scored by its WAPE there (the trial's value). The first trial is the
  configured parameters themselves, so the search knows what it has to beat.
* **The check.** The best trial won a contest on the validation months, so its WAPE there flatters
  it. Before it replaces the configured parameters, both are fitted again one step back in time,
  each with the number of trees early stopping chose for it: on the months before the last
  ``model.validation_months`` training months, scored on those months (``check`` in the record),
  which no search score came from. Adopted only when the tuned
  WAPE there is lower than the configured parameters' by ``model.tuning.min_improvement``
  (relative); else the configured parameters stay and the record says why.
* **The budget.** ``model.tuning.budget_seconds`` bounds the search and the check together: a
  running fit stops at the deadline (the trial is recorded as cut), the search stops early enough
  to leave time for the check's two fits, and a check cut by the deadline adopts nothing.

The record (:attr:`Tuning.record`) goes into the model's ``metadata.json`` and the registry:
every trial's parameters, value, trees, seconds and state, the check, what was adopted and why.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.features.dataset import Rows, Split
from forecasting.modeling.booster import booster_params, recent_mean_margin

log = logging.getLogger(__name__)

# A trial reports its validation WAPE to the pruner every this many trees.
REPORT_EVERY = 10
# How many times the check's estimated seconds the search leaves for it.
CHECK_SAFETY = 2.0
COMPLETE, PRUNED, CUT = "complete", "pruned", "cut by the budget"


def suggest(trial, params: dict[str, Any]) -> dict[str, Any]:
    """The search space: ``params`` with the parameters that matter most for gradient-boosted
    demand models replaced by the trial's choices (ranges as in Optuna's XGBoost examples,
    narrowed where a value would not finish in a budget of minutes: a learning rate below 0.02
    needs thousands of trees)."""
    tuned = {
        **params,
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-3, 100.0, log=True),
        "alpha": trial.suggest_float("alpha", 1e-3, 10.0, log=True),
    }
    if params.get("objective") == "reg:tweedie":
        tuned["tweedie_variance_power"] = trial.suggest_float("tweedie_variance_power", 1.05, 1.9)
    return tuned


def searched_values(params: dict[str, Any]) -> dict[str, Any]:
    """The configured parameters as a trial of the search space (the first trial), with XGBoost's
    own defaults for the ones the config leaves unset (its reg_lambda 1, reg_alpha 0 clipped to the
    space's lower end)."""
    return {
        "learning_rate": float(params.get("learning_rate", params.get("eta", 0.3))),
        "max_depth": int(params.get("max_depth", 6)),
        "min_child_weight": float(params.get("min_child_weight", 1.0)),
        "subsample": float(params.get("subsample", 1.0)),
        "colsample_bytree": float(params.get("colsample_bytree", 1.0)),
        "lambda": float(params.get("lambda", params.get("reg_lambda", 1.0))),
        "alpha": max(1e-3, float(params.get("alpha", params.get("reg_alpha", 0.0)))),
        **(
            {"tweedie_variance_power": float(params.get("tweedie_variance_power", 1.5))}
            if params.get("objective") == "reg:tweedie"
            else {}
        ),
    }


@dataclass
class Tuning:
    """The outcome of a search: the parameters to train with and what to record."""

    params: dict[str, Any]
    adopted: bool
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Window:
    """A fit on some months with early stopping and WAPE on later ones."""

    dtrain: Any
    dvalid: Any
    actual: np.ndarray

    def wape_metric(self, predicted: np.ndarray, _matrix) -> tuple[str, float]:
        total = float(np.abs(self.actual).sum())
        return "wape", float(np.abs(self.actual - predicted).sum() / total) if total else math.nan


def _window(
    X: pd.DataFrame, label: np.ndarray, train: np.ndarray, valid: np.ndarray, config: Config
) -> _Window:
    import xgboost as xgb

    threads = booster_params(config.model)["nthread"]
    scaled = config.model.scale_by_recent_mean

    def margin(frame: pd.DataFrame) -> np.ndarray | None:
        return recent_mean_margin(frame) if scaled else None

    dtrain = xgb.QuantileDMatrix(
        X[train], label=label[train], base_margin=margin(X[train]), enable_categorical=True, nthread=threads
    )
    dvalid = xgb.QuantileDMatrix(
        X[valid],
        label=label[valid],
        base_margin=margin(X[valid]),
        ref=dtrain,
        enable_categorical=True,
        nthread=threads,
    )
    return _Window(dtrain, dvalid, np.asarray(label[valid], dtype=float))


class _Stop:
    """When a fit stops before early stopping would: at the deadline (``cut``), or when the
    Optuna trial it reports its validation WAPE to every REPORT_EVERY trees is pruned."""

    def __init__(self, deadline: float, trial=None):
        self.deadline, self.trial, self.cut, self.pruned = deadline, trial, False, False

    def after_iteration(self, epoch: int, evals_log) -> bool:
        if time.monotonic() >= self.deadline:
            self.cut = True
            return True
        if self.trial is not None and (epoch + 1) % REPORT_EVERY == 0:
            self.trial.report(min(evals_log["validation"]["wape"]), epoch)
            if self.trial.should_prune():
                self.pruned = True
                return True
        return False

    def callback(self):
        import xgboost as xgb

        stop = self

        class StopAt(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch: int, evals_log) -> bool:
                return stop.after_iteration(epoch, evals_log)

        return StopAt()


def _fit(
    window: _Window, params: dict[str, Any], config: Config, stop: _Stop, trees: int | None = None
) -> tuple[float, int]:
    """The WAPE on the window's later months and the number of trees: with ``trees``, of exactly
    that many; else of the best number early stopping found."""
    import xgboost as xgb

    log: dict[str, Any] = {}
    booster = xgb.train(
        {**booster_params(config.model), **params, "disable_default_eval_metric": 1},
        window.dtrain,
        num_boost_round=trees or config.model.num_boost_round,
        evals=[(window.dvalid, "validation")],
        early_stopping_rounds=None if trees else config.model.early_stopping_rounds,
        evals_result=log,
        custom_metric=window.wape_metric,
        callbacks=[stop.callback()],
        verbose_eval=False,
    )
    if trees:
        return float(log["validation"]["wape"][-1]), booster.num_boosted_rounds()
    return float(booster.best_score), int(booster.best_iteration) + 1


def tune(X: pd.DataFrame, rows: Rows, split: Split, config: Config) -> Tuning:
    """Search parameters for ``X`` (the design matrix of ``rows``) on ``split``'s training and
    validation months within the budget; the configured ``model.params`` unless the tuned ones
    pass the check (see the module's docstring)."""
    settings = config.model.tuning
    started = time.monotonic()
    deadline = started + settings.budget_seconds
    defaults = dict(config.model.params)

    def kept(reason: str, **record: Any) -> Tuning:
        log.info("Tuning: kept the configured parameters: %s", reason)
        return Tuning(defaults, False, _record(settings, started, adopted=False, reason=reason, **record))

    check_start = int(rows.target[split.validation].min()) - config.model.validation_months
    check_valid = split.train & (rows.target >= check_start)
    check_train = split.train & (rows.target < check_start)
    if not split.validation.any() or not check_valid.any() or not check_train.any():
        return kept(
            "not enough history: the search needs training months before twice model.validation_months "
            "ahead of the holdout"
        )
    search = _window(X, rows.label, split.train, split.validation, config)
    trials, reserve = _search(search, defaults, config, deadline)
    record: dict[str, Any] = {"trials": trials}
    if not trials or trials[0]["state"] != COMPLETE:
        return kept("the budget did not fit one fit of the configured parameters", **record)
    first = trials[0]
    best = min((t for t in trials if t["state"] == COMPLETE), key=lambda t: t["value"])
    record["best_trial"] = best["number"]
    if best["number"] == first["number"] or not best["value"] < first["value"]:
        return kept("no trial beat the configured parameters on the validation months", **record)
    tuned = {**defaults, **best["params"]}
    check = _window(X, rows.label, check_train, check_valid, config)
    scores = {}
    # Each with the trees early stopping chose for it on the validation months, as the backtest
    # refits with the holdout model's: the check scores the parameters and their number of trees.
    for name, params, trees in (("configured", defaults, first["trees"]), ("tuned", tuned, best["trees"])):
        stop = _Stop(deadline)
        scores[name], _ = _fit(check, params, config, stop, trees)
        if stop.cut:
            return kept(f"the budget ran out during the check ({reserve:.0f} s were kept for it)", **record)
    record["check"] = {
        "months": int(np.unique(rows.target[check_valid]).size),
        "rows": int(check_valid.sum()),
        "configured_wape": round(scores["configured"], 6),
        "tuned_wape": round(scores["tuned"], 6),
    }
    if not scores["tuned"] < scores["configured"] * (1 - settings.min_improvement):
        return kept(
            f"on the check months the tuned WAPE {scores['tuned']:.4f} is not {settings.min_improvement:.1%} "
            f"below the configured {scores['configured']:.4f}",
            **record,
        )
    reason = (
        f"on the check months the tuned WAPE {scores['tuned']:.4f} is {1 - scores['tuned'] / scores['configured']:.1%} "
        f"below the configured {scores['configured']:.4f}"
    )
    log.info("Tuning: adopted trial %d: %s", best["number"], reason)
    return Tuning(
        tuned, True, _record(settings, started, adopted=True, reason=reason, params=best["params"], **record)
    )


def _search(
    window: _Window, defaults: dict[str, Any], config: Config, deadline: float
) -> tuple[list[dict], float]:
    """Run the study until max_trials, or until what is left of the budget would not fit another
    trial (the median one) and the check (``_reserve``). Returns every trial's record and the
    reserve."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = config.model.tuning
    sampler = optuna.samplers.TPESampler(seed=config.model.seed)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=config.model.early_stopping_rounds)
        if settings.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    study.enqueue_trial(searched_values(defaults))
    trials: list[dict[str, Any]] = []

    def objective(trial) -> float:
        began = time.monotonic()
        params = suggest(trial, defaults)
        if trial.number == 0:  # the configured parameters exactly (searched_values clips alpha 0)
            params = defaults
        stop = _Stop(deadline, trial)
        value, trees = _fit(window, params, config, stop)
        state = CUT if stop.cut else PRUNED if stop.pruned else COMPLETE
        trials.append(
            {
                "number": trial.number,
                "params": dict(trial.params),
                "value": round(value, 6),
                "trees": trees,
                "seconds": round(time.monotonic() - began, 3),
                "state": state,
            }
        )
        if state != COMPLETE:
            raise optuna.TrialPruned()
        return value

    def enough(study, _trial) -> None:
        if deadline - time.monotonic() < _reserve(trials) + median(t["seconds"] for t in trials):
            study.stop()

    with warnings.catch_warnings():
        # A configured value outside the space is fitted as configured in the first trial.
        warnings.filterwarnings("ignore", message="Fixed parameter .* out of range")
        study.optimize(
            objective,
            n_trials=settings.max_trials,
            timeout=max(deadline - time.monotonic(), 0.0),
            callbacks=[enough],
        )
    return trials, _reserve(trials)


def _reserve(trials: list[dict[str, Any]]) -> float:
    """The seconds kept for the check: its fits of the configured parameters (the first trial) and of
    the best trial's, each on about as many rows as a trial's, twice over (a shared machine's load
    moves a fit's time by that much)."""
    complete = [t for t in trials if t["state"] == COMPLETE]
    if not complete:
        return 0.0
    best = min(complete, key=lambda t: t["value"])
    return CHECK_SAFETY * (trials[0]["seconds"] + best["seconds"])


def _record(settings, started: float, **outcome: Any) -> dict[str, Any]:
    trials = outcome.get("trials") or []
    return {
        "budget_seconds": settings.budget_seconds,
        "max_trials": settings.max_trials,
        "min_improvement": settings.min_improvement,
        "pruning": settings.pruning,
        "seconds": round(time.monotonic() - started, 3),
        "trials_run": len(trials),
        **outcome,
    }


def apply(X: pd.DataFrame, rows: Rows, split: Split, config: Config) -> tuple[dict[str, Any] | None, Config]:
    """Train's hook: without ``model.tuning.enabled``, no record and ``config`` as it is; with it,
    the search's record and ``config`` with ``model.params`` replaced by the tuned ones if they
    were adopted (every fit after it, and the params recorded, are then the tuned ones)."""
    if not config.model.tuning.enabled:
        return None, config
    tuned = tune(X, rows, split, config)
    if tuned.adopted:
        config = config.model_copy(update={"model": config.model.model_copy(update={"params": tuned.params})})
    return tuned.record, config
