"""Train: XGBoost on a point-in-time-correct training set retrieved from Feast.

A training row is (entity, forecast origin o, horizon h): the features Feast holds as of the end
of o, and the label is the target in month o + h. One model serves every horizon (h is a feature).

Two models come out of a run: the *holdout model*, trained without the last K target months
(evaluate scores it on them), and the *production model*, the same recipe refit on every
labelled month with the number of trees early stopping chose. Forecasts come from the latter.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting import paths, store
from forecasting.config import Config
from forecasting.features import TIMESTAMP, feature_names, monthly_grid
from forecasting.months import month_end, month_from_index, month_index

log = logging.getLogger(__name__)

LABEL = "label"
HORIZON = "horizon"
TARGET_MONTH = "target_month"
ORIGIN = "origin_month"


def labelled_rows(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """Entity rows for Feast: one per entity, origin and horizon whose target month is known (<= M)."""
    keys = config.source.entity_columns
    grid = monthly_grid(snapshot, config)[[*keys, "_m", config.source.target_column]]
    last = month_index(month)
    parts = []
    for h in range(1, config.horizon + 1):
        target = grid.rename(columns={config.source.target_column: LABEL})
        target = target.assign(_origin=target["_m"] - h)
        # The origin must itself be a month of the entity's history.
        target = target.merge(grid[[*keys, "_m"]].rename(columns={"_m": "_origin"}), on=[*keys, "_origin"])
        parts.append(target.assign(**{HORIZON: h})[target["_m"] <= last])
    rows = pd.concat(parts, ignore_index=True)
    return entity_frame(rows[keys], rows["_origin"], rows[HORIZON]).assign(**{LABEL: rows[LABEL].to_numpy()})


def entity_frame(keys: pd.DataFrame, origin_index, horizon) -> pd.DataFrame:
    """The entity dataframe Feast joins against: keys, origin timestamp, horizon, target month."""
    origins = month_from_index(np.asarray(origin_index))
    frame = keys.reset_index(drop=True).copy()
    frame[ORIGIN] = origins.astype(str)
    frame[HORIZON] = np.asarray(horizon, dtype=int)
    frame[TARGET_MONTH] = (origins + frame[HORIZON].to_numpy()).astype(str)
    # Stamped when the origin month is complete: Feast may only use features stamped no later.
    frame[TIMESTAMP] = pd.DatetimeIndex([month_end(o) for o in origins]).tz_localize("UTC") \
        if len(origins) else pd.DatetimeIndex([], tz="UTC")
    return frame


def model_features(config: Config) -> list[str]:
    """Columns the model reads: Feast's features plus the horizon and the target's month of year."""
    return [*feature_names(config), HORIZON, "target_month_of_year"]


def add_model_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["target_month_of_year"] = ((frame["month_of_year"] - 1 + frame[HORIZON]) % 12 + 1).astype(float)
    return frame


def with_features(rows: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Attach Feast's point-in-time features to entity rows (several horizons share an origin)."""
    keys = config.source.entity_columns
    # Feast keeps one row per entity and timestamp, so ask once per origin and join back.
    origins = rows[[*keys, ORIGIN, TIMESTAMP]].drop_duplicates()
    features = store.historical_features(config, origins).drop(columns=TIMESTAMP)
    return add_model_columns(rows.merge(features, on=[*keys, ORIGIN], how="left"))


def training_set(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """Labelled rows joined point-in-time to Feast's features, sorted deterministically."""
    joined = with_features(labelled_rows(snapshot, config, month), config)
    # Rows whose origin has no feature row (before the offline table starts) carry no signal.
    joined = joined.dropna(subset=["sales_lag_1"])
    order = [TARGET_MONTH, HORIZON, *config.source.entity_columns]
    return joined.sort_values(order, kind="stable").reset_index(drop=True)


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame


def split_by_target_month(frame: pd.DataFrame, config: Config, month: pd.Period) -> Split:
    """Holdout = last K target months up to M; validation = the months before it; train = the rest."""
    k, v = config.evaluation.holdout_months, config.model.validation_months
    target = pd.PeriodIndex(frame[TARGET_MONTH], freq="M")
    holdout_start = month - (k - 1)
    validation_start = holdout_start - v
    return Split(
        train=frame[target < validation_start],
        validation=frame[(target >= validation_start) & (target < holdout_start)],
        holdout=frame[target >= holdout_start],
    )


def design_matrix(frame: pd.DataFrame, config: Config, categories: dict[str, list[str]]):
    """Feature matrix with string attributes as categoricals of a fixed category list."""
    X = frame[model_features(config)].copy()
    for column, values in categories.items():
        X[column] = pd.Categorical(X[column].astype("object"), categories=values)
    for column in X.columns.difference(list(categories)):
        X[column] = X[column].astype(float)
    return X


def categories_of(frame: pd.DataFrame, config: Config) -> dict[str, list[str]]:
    names = [c for c in model_features(config) if not pd.api.types.is_numeric_dtype(frame[c])]
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in names}


def _dmatrix(frame: pd.DataFrame, config: Config, categories):
    import xgboost as xgb

    return xgb.DMatrix(design_matrix(frame, config, categories), label=frame[LABEL].to_numpy(),
                       enable_categorical=True, nthread=1)


def fit(train: pd.DataFrame, validation: pd.DataFrame | None, config: Config, categories,
        num_boost_round: int | None = None):
    """Train a booster; with a validation frame, stop early on it."""
    import xgboost as xgb

    params = {**config.model.params, "seed": config.model.seed, "nthread": 2}
    dtrain = _dmatrix(train, config, categories)
    if validation is None or validation.empty:
        return xgb.train(params, dtrain, num_boost_round=num_boost_round or config.model.num_boost_round)
    dval = _dmatrix(validation, config, categories)
    return xgb.train(params, dtrain, num_boost_round=config.model.num_boost_round,
                     evals=[(dval, "validation")],
                     early_stopping_rounds=config.model.early_stopping_rounds, verbose_eval=False)


def predict(booster, frame: pd.DataFrame, config: Config, categories) -> np.ndarray:
    import xgboost as xgb

    X = design_matrix(frame, config, categories)
    dmatrix = xgb.DMatrix(X, enable_categorical=True, nthread=1)
    # Negative demand is impossible; the squared-error model can dip below zero on slow items.
    return np.clip(booster.predict(dmatrix, iteration_range=(0, booster.num_boosted_rounds())), 0, None)


def fingerprint(frame: pd.DataFrame, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass
class TrainedModel:
    version: str
    directory: Path
    metadata: dict[str, Any]


def train(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> TrainedModel:
    """Build the training set, fit the holdout and production models, save them with metadata."""
    frame = training_set(snapshot, config, month)
    split = split_by_target_month(frame, config, month)
    if split.train.empty or split.holdout.empty:
        raise ValueError(
            f"not enough history to train for {month}: {len(split.train)} training rows and "
            f"{len(split.holdout)} holdout rows (need more months than holdout + validation)")
    categories = categories_of(frame, config)
    holdout_model = fit(split.train, split.validation, config, categories)
    stopped_early = not split.validation.empty
    best_rounds = holdout_model.best_iteration + 1 if stopped_early else holdout_model.num_boosted_rounds()
    validation_score = float(holdout_model.best_score) if stopped_early else None
    holdout_model = holdout_model[:best_rounds]
    production_model = fit(frame, None, config, categories, num_boost_round=best_rounds)

    params = {**config.model.params, "seed": config.model.seed, "num_boost_round": best_rounds}
    digest = fingerprint(frame, params)
    version = f"{month}-{digest[:10]}"
    directory = paths.models(config) / version
    directory.mkdir(parents=True, exist_ok=True)
    production_model.save_model(directory / "model.ubj")
    holdout_model.save_model(directory / "holdout_model.ubj")
    paths.write_parquet_atomically(frame, directory / "training_set.parquet")
    metadata = {
        "model_version": version,
        "run_month": str(month),
        "params": params,
        "features": model_features(config),
        "categories": categories,
        "training_window": {"first_target_month": frame[TARGET_MONTH].min(),
                            "last_target_month": frame[TARGET_MONTH].max()},
        "rows": {"all": len(frame), "train": len(split.train), "validation": len(split.validation),
                 "holdout": len(split.holdout)},
        "holdout_months": config.evaluation.holdout_months,
        "horizon": config.horizon,
        "data_fingerprint": digest,
        # Early stopping's metric on the validation months (the objective's default metric).
        "validation_score": validation_score,
    }
    paths.write_json_atomically(metadata, directory / "metadata.json")
    log.info("Trained %s on %d rows (%d trees); saved to %s", version, len(frame), best_rounds, directory)
    return TrainedModel(version=version, directory=directory, metadata=metadata)


def load_model(directory: Path, name: str = "model.ubj"):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(directory / name)
    return booster, paths.read_json(directory / "metadata.json")
