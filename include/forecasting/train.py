"""Train: XGBoost on a point-in-time-correct training set retrieved from Feast.

A training row is (entity, forecast origin o, horizon h): the features Feast holds as of the end
of o, and the label is the target in month o + h. One model serves every horizon (h is a feature).

Two models come out of a run: the *holdout model*, trained without the last K target months
(evaluate scores it on them), and the *production model*, the same recipe refit on every
labelled month with the number of trees early stopping chose. Forecasts come from the latter.
Saved under ``data_dir/models/<M>-<fingerprint>/``: both boosters, ``metadata.json`` and the
holdout rows with their features (``holdout.parquet``, what evaluate scores).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting import dataset, model, paths
from forecasting.config import Config
from forecasting.dataset import HORIZON, LABEL, ORIGIN, TARGET_MONTH, Rows, training_frame
from forecasting.errors import DataError
from forecasting.months import month_from_index
from forecasting.panel import build_panel

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
    features = dataset.retrieve(config, panel, entity, origin, client)
    if features["sales_lag_1"].isna().any():
        raise RuntimeError(
            f"{int(features['sales_lag_1'].isna().sum())} training rows found no features in Feast"
        )
    fit_frame = dataset.with_model_columns(features.take(fit_at), fit_rows.horizon)
    holdout_frame = dataset.with_model_columns(features.take(holdout_at), holdout_rows.horizon)
    del features

    categories = dataset.categories_of(fit_frame, config)
    X = dataset.design_matrix(fit_frame, config, categories)
    fit_split = dataset.split(fit_rows, config, month)
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

    params = {**config.model.params, "seed": config.model.seed, "num_boost_round": best_rounds}
    identity = fit_rows.frame(panel).drop(columns=dataset.TIMESTAMP)
    digest = model.fingerprint(pd.concat([identity, fit_frame.drop(columns=HORIZON)], axis=1), params)
    version = f"{month}-{digest[:10]}"
    directory = paths.models(config) / version
    directory.mkdir(parents=True, exist_ok=True)
    production_model.save_model(directory / "model.ubj")
    holdout_model.save_model(directory / "holdout_model.ubj")
    holdout = holdout_rows.frame(panel).drop(columns=dataset.TIMESTAMP)
    holdout = pd.concat([holdout, holdout_frame.drop(columns=HORIZON)], axis=1)
    holdout[dataset.ENTITY] = holdout_rows.entity
    paths.write_parquet_atomically(holdout, directory / "holdout.parquet")
    metadata: dict[str, Any] = {
        "model_version": version,
        "run_month": str(month),
        "params": params,
        "features": dataset.model_features(config),
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
        "data_fingerprint": digest,
        # Early stopping's metric on the validation months (the objective's default metric).
        "validation_score": validation_score,
    }
    paths.write_json_atomically(metadata, directory / "metadata.json")
    log.info(
        "Trained %s on %d rows of %d entities (%d trees); saved to %s",
        version,
        len(fit_rows),
        metadata["entities"]["fitted"],
        best_rounds,
        directory,
    )
    return TrainedModel(version=version, directory=directory, metadata=metadata)


# The dataset's names, where callers of the training set look for them.
training_set = training_frame
__all__ = ["HORIZON", "LABEL", "ORIGIN", "TARGET_MONTH", "TrainedModel", "train", "training_set"]
