"""Train: XGBoost on a point-in-time-correct training set retrieved from Feast.

A training row is (entity, forecast origin o, horizon h): the features Feast holds as of the end
of o, and the label is the target in month o + h. One model serves every horizon (h is a feature).

Two models come out of a run: the *holdout model*, trained without the last K target months
(evaluate scores it on them), and the *production model*, the same recipe refit on every
labelled month with the number of trees early stopping chose. Forecasts come from the latter.

The holdout model is months stale for the holdout's later origins, so a *rolling-origin
backtest* refits the recipe once per origin o of the last ``evaluation.backtest_origins``: on the
fitted rows whose target month is at most o (the rows already in memory: no other retrieval),
with the holdout model's number of trees, forecasting the holdout rows of origin o.

Saved under ``data_dir/models/<M>-<fingerprint>/``: both boosters, ``metadata.json`` and the
holdout rows with their features and backtest forecasts (``holdout.parquet``, what evaluate
scores).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, EvaluationConfig
from forecasting.core.errors import DataError
from forecasting.core.months import month_from_index, month_index
from forecasting.data.panel import Panel, build_panel
from forecasting.features import dataset
from forecasting.features.dataset import HORIZON, LABEL, ORIGIN, TARGET_MONTH, Rows, training_frame
from forecasting.modeling import booster as model
from forecasting.modeling import tuning
from forecasting.modeling.backtest import BACKTEST

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    version: str
    directory: Path
    metadata: dict[str, Any]


def check_trainable(rows: Rows, split: dataset.Split, config: Config, month: pd.Period) -> None:
    if not split.train.any() or not split.holdout.any():
        raise DataError(
            f"not enough history to train for {month}: {int(split.train.sum())} training rows and "
            f"{int(split.holdout.sum())} holdout rows (need more months than holdout + validation)"
        )
    trained = set(np.unique(rows.horizon[split.train]).tolist())
    untrained = [h for h in range(1, config.horizon + 1) if h not in trained]
    if untrained:
        # A model asked for a horizon it never saw extrapolates without a word: refuse instead.
        raise DataError(
            f"the history of {month} labels no training row for horizon {untrained[0]}"
            f"{f'..{untrained[-1]}' if len(untrained) > 1 else ''} (config horizon {config.horizon}): "
            f"the longest horizon it can train is {max(trained)}. Lower horizon, or read more "
            "history (source.history_months) if the source has it."
        )


def train(snapshot: pd.DataFrame, config: Config, month: pd.Period, client=None) -> TrainedModel:
    """Build the training set, fit the holdout and production models, save them with metadata
    (retrieval and fits on the Dask cluster's workers if ``client`` is one)."""
    panel = build_panel(snapshot, config, sales_only=True)
    rows = dataset.labelled(panel, config, month)
    split = dataset.split(rows, config, month)
    check_trainable(rows, split, config, month)

    # Fitted on (a sample of) the labelled rows; scored on every entity.
    fit_rows = rows.take(dataset.sample(rows, config))  # every labelled month: the production fit
    holdout_rows = rows.take(split.holdout)
    entity, origin, (fit_at, holdout_at) = dataset.pairs(fit_rows, holdout_rows)
    features, position = dataset.retrieve_unordered(config, panel, entity, origin, client)
    features = dataset.text_as_categories(features)
    if features["sales_lag_1"].isna().any():
        raise RuntimeError(
            f"{int(features['sales_lag_1'].isna().sum())} training rows found no features in Feast"
        )
    wanted = dataset.model_features(config)
    fit_frame = dataset.with_model_columns(
        features.take(position[fit_at]), fit_rows.horizon, wanted, fit_rows.target, config
    )
    holdout_frame = dataset.with_model_columns(
        features.take(position[holdout_at]), holdout_rows.horizon, wanted, holdout_rows.target, config
    )
    del features

    categories = dataset.categories_of(fit_frame, config)
    X = dataset.design_matrix(fit_frame, config, categories)
    fit_split = dataset.split(fit_rows, config, month)
    tuned, config = tuning.apply(X, fit_rows, fit_split, config)  # the tuned params if adopted
    holdout_model = model.fit(
        X[fit_split.train],
        fit_rows.label[fit_split.train],
        config,
        validation=(X[fit_split.validation], fit_rows.label[fit_split.validation]),
        client=client,
    )
    stopped_early = fit_split.validation.any()
    best_rounds = holdout_model.best_iteration + 1 if stopped_early else holdout_model.num_boosted_rounds()
    validation_score = float(holdout_model.best_score) if stopped_early else None
    holdout_model = holdout_model[:best_rounds]
    production_model = model.fit(X, fit_rows.label, config, num_boost_round=best_rounds, client=client)
    holdout_X = dataset.design_matrix(holdout_frame, config, categories)
    backtest_forecasts, backtest_fits = backtest(
        X, fit_rows, holdout_X, holdout_rows, config, month, best_rounds, client
    )

    params = {**config.model.params, "seed": config.model.seed, "num_boost_round": best_rounds}
    identity = fit_rows.frame(panel, timestamps=False)
    digest = model.fingerprint(pd.concat([identity, fit_frame.drop(columns=HORIZON)], axis=1), params)
    version = f"{month}-{digest[:10]}"
    directory = paths.model_dir(config, version)
    directory.mkdir(parents=True, exist_ok=True)
    # mkstemp's temp files (0600), as for every other file in data_dir: XGBoost alone made 0644.
    paths.write_file_atomically(paths.booster(directory), production_model.save_model)
    paths.write_file_atomically(paths.booster(directory, holdout=True), holdout_model.save_model)
    holdout_frame[dataset.ENTITY] = holdout_rows.entity
    holdout_frame[BACKTEST] = backtest_forecasts
    dataset.write_rows(holdout_rows, panel, holdout_frame, paths.holdout_rows(directory))
    metadata = _metadata(
        version, month, params, wanted, categories, rows, fit_rows, fit_split, holdout_rows, panel, config
    )
    metadata.update(
        data_fingerprint=digest,
        # Early stopping's metric on the validation months (the objective's default metric).
        validation_score=validation_score,
        backtest={
            "trees": best_rounds,
            "seconds": round(sum(f["seconds"] for f in backtest_fits), 3),
            "fits": backtest_fits,
        },
        tuning=tuned,
    )
    paths.write_json_atomically(metadata, paths.model_metadata(directory))
    log.info(
        "Trained %s on %d rows of %d entities (%d trees); saved to %s",
        version,
        len(fit_rows),
        metadata["entities"]["fitted"],
        best_rounds,
        directory,
    )
    return TrainedModel(version=version, directory=directory, metadata=metadata)


def _metadata(
    version: str,
    month: pd.Period,
    params: dict[str, Any],
    features: list[str],
    categories: dict[str, list[str]],
    rows: Rows,
    fit_rows: Rows,
    fit_split: dataset.Split,
    holdout_rows: Rows,
    panel: Panel,
    config: Config,
) -> dict[str, Any]:
    """model.json's description of what a model was fitted on: its features, categories, window and rows."""
    return {
        "model_version": version,
        "run_month": str(month),
        "params": params,
        "features": features,
        "categories": categories,
        "training_window": {
            "first_target_month": str(month_from_index(int(fit_rows.target.min()))),
            "last_target_month": str(month_from_index(int(fit_rows.target.max()))),
            "first_origin": str(month_from_index(int(fit_rows.origin.min()))),
        },
        "rows": {
            "all": len(rows),
            "fitted": len(fit_rows),
            "train": int(fit_split.train.sum()),
            "validation": int(fit_split.validation.sum()),
            "holdout": len(holdout_rows),
        },
        "entities": {"all": panel.entities, "fitted": int(np.unique(fit_rows.entity).size)},
        "max_training_rows": config.model.max_training_rows,
        "holdout_months": config.evaluation.holdout_months,
        "horizon": config.horizon,
    }


def backtest_origins(holdout_rows: Rows, evaluation: EvaluationConfig, month: pd.Period) -> list[int]:
    """The origins (month indices) the backtest refits for: the last ``evaluation.backtest_origins``
    months before M that have holdout rows. The config keeps them within the holdout's last
    ``holdout_months`` origins, so every target they forecast is a holdout month."""
    last = month_index(month) - 1
    wanted = range(last - evaluation.backtest_origins + 1, last + 1)
    return [o for o in wanted if (holdout_rows.origin == o).any()]


def backtest(
    X: pd.DataFrame,
    fit_rows: Rows,
    holdout_X: pd.DataFrame,
    holdout_rows: Rows,
    config: Config,
    month: pd.Period,
    rounds: int,
    client=None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The rolling-origin backtest: for each backtest origin o, the recipe fitted with ``rounds``
    trees on the rows of ``X``/``fit_rows`` whose target month is at most o forecasts the
    holdout rows of origin o. Returns the forecasts per holdout row (NaN outside the backtest's
    origins) and one description per fit.

    Point in time: a fitted row with target month ≤ o has its features from an origin < o; the
    forecast rows' features are as of o; ``rounds`` comes from validation months before the
    holdout, so at most o (see ``backtest_origins``)."""
    forecasts = np.full(len(holdout_rows), np.nan)
    fits: list[dict[str, Any]] = []
    for o in backtest_origins(holdout_rows, config.evaluation, month):
        started = time.perf_counter()
        seen = fit_rows.target <= o
        at = holdout_rows.origin == o
        booster = model.fit(X[seen], fit_rows.label[seen], config, num_boost_round=rounds, client=client)
        forecasts[at] = model.predict(booster, holdout_X[at], client)
        fits.append(
            {
                "origin": str(month_from_index(o)),
                "train_rows": int(seen.sum()),
                "last_target_month": str(month_from_index(int(fit_rows.target[seen].max()))),
                "forecast_rows": int(at.sum()),
                "horizons": sorted(np.unique(holdout_rows.horizon[at]).tolist()),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
    if fits:
        log.info(
            "Backtest: %d origins (%s..%s), %d trees each, in %.1f s",
            len(fits),
            fits[0]["origin"],
            fits[-1]["origin"],
            rounds,
            sum(f["seconds"] for f in fits),
        )
    return forecasts, fits


# The dataset's names, where callers of the training set look for them.
training_set = training_frame
__all__ = ["HORIZON", "LABEL", "ORIGIN", "TARGET_MONTH", "TrainedModel", "train", "training_set"]
