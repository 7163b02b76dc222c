"""The booster: fit with early stopping, predict, save, load, and the fingerprint that names it.

XGBoost's ``hist`` trees on a ``QuantileDMatrix`` (the data quantised once, in place of a float
copy) on every core of the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.compute import workers
from forecasting.core.config import Config, ModelConfig
from forecasting.core.errors import DataError
from forecasting.features.dataset import recent_level

# A booster fitted on targets scaled per series carries this attribute (saved in its .ubj), so
# whoever loads it later predicts with the same scale, whatever the config says then.
SCALE_ATTRIBUTE = "scale"
RECENT_MEAN = "recent_mean"


def recent_mean_margin(X: pd.DataFrame) -> np.ndarray:
    """log(1 + the series' recent level) per row (``dataset.recent_level``: its mean over the
    widest rolling window the row has, else its last month, else 0). With a log-link objective
    (Tweedie, Poisson, gamma) as each row's base margin, the trees learn the target relative to
    its own series' level: one model for series of any size."""

    return np.log1p(np.clip(np.nan_to_num(recent_level(X), nan=0.0), 0, None))


def booster_params(model: ModelConfig) -> dict[str, Any]:
    return {**model.params, "seed": model.seed, "nthread": os.cpu_count() or 1}


def fit(
    X: pd.DataFrame,
    y: np.ndarray,
    config: Config,
    validation: tuple[pd.DataFrame, np.ndarray] | None = None,
    num_boost_round: int | None = None,
    client=None,
):
    """Train a booster; with a validation set, stop early on it. With a Dask ``client``, the
    training runs on the cluster's workers (``xgboost.dask``), the rows split among them."""
    import xgboost as xgb

    params = booster_params(config.model)
    rounds = (
        config.model.num_boost_round
        if validation is not None
        else num_boost_round or config.model.num_boost_round
    )
    early = {"early_stopping_rounds": config.model.early_stopping_rounds} if validation is not None else {}
    if validation is not None and len(validation[1]) == 0:
        validation, early = None, {}
        rounds = num_boost_round or config.model.num_boost_round
    scaled = config.model.scale_by_recent_mean
    if client is not None:
        booster = _fit_on_cluster(client, params, X, y, validation, rounds, early, scaled)
        if scaled:
            booster.set_attr(**{SCALE_ATTRIBUTE: RECENT_MEAN})
        return booster

    def margin(frame: pd.DataFrame) -> np.ndarray | None:
        return recent_mean_margin(frame) if scaled else None

    dtrain = xgb.QuantileDMatrix(
        X, label=y, base_margin=margin(X), enable_categorical=True, nthread=params["nthread"]
    )
    evals = []
    if validation is not None:
        dval = xgb.QuantileDMatrix(
            validation[0],
            label=validation[1],
            base_margin=margin(validation[0]),
            ref=dtrain,
            enable_categorical=True,
            nthread=params["nthread"],
        )
        evals = [(dval, "validation")]
    booster = xgb.train(params, dtrain, num_boost_round=rounds, evals=evals, verbose_eval=False, **early)
    if scaled:
        booster.set_attr(**{SCALE_ATTRIBUTE: RECENT_MEAN})
    return booster


# The label's and the base margin's columns in the frames sent to a Dask cluster: partitioned
# with the feature rows they belong to.
_LABEL = "__label"
_MARGIN = "__recent_mean_margin"


def _fit_on_cluster(
    client,
    params: dict,
    X: pd.DataFrame,
    y: np.ndarray,
    validation,
    rounds: int,
    early: dict,
    scaled: bool,
):
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    parts = len(workers(client))
    params = {k: v for k, v in params.items() if k != "nthread"}  # each worker uses its own threads

    def matrix(frame: pd.DataFrame, label: np.ndarray, ref=None):
        # Features, label and margin in one frame, so each partition holds a row's all three.
        whole = frame.assign(**{_LABEL: label})
        if scaled:
            whole[_MARGIN] = recent_mean_margin(frame)
        data = dd.from_pandas(whole, npartitions=parts, sort=False)
        return dxgb.DaskQuantileDMatrix(
            client,
            data[list(frame.columns)],
            data[_LABEL],
            base_margin=data[_MARGIN] if scaled else None,
            ref=ref,
            enable_categorical=True,
        )

    dtrain = matrix(X, y)
    evals = [] if validation is None else [(matrix(validation[0], validation[1], ref=dtrain), "validation")]
    output = dxgb.train(
        client, params, dtrain, num_boost_round=rounds, evals=evals, verbose_eval=False, **early
    )
    return output["booster"]


def predict(booster, X: pd.DataFrame, client=None) -> np.ndarray:
    """Forecasts for the rows of X, never below zero (demand cannot be negative)."""
    if len(X) == 0:
        return np.zeros(0)
    rounds = (0, booster.num_boosted_rounds())
    scaled = booster.attr(SCALE_ATTRIBUTE) == RECENT_MEAN
    if client is None:
        margin = recent_mean_margin(X) if scaled else None
        raw = booster.inplace_predict(X, iteration_range=rounds, base_margin=margin)
    else:
        import dask.dataframe as dd
        from xgboost import dask as dxgb

        whole = X.assign(**{_MARGIN: recent_mean_margin(X)}) if scaled else X
        data = dd.from_pandas(whole, npartitions=len(workers(client)), sort=False)
        raw = dxgb.inplace_predict(
            client,
            booster,
            data[list(X.columns)],
            iteration_range=rounds,
            base_margin=data[_MARGIN] if scaled else None,
        ).compute()
    return np.clip(np.asarray(raw, dtype=float), 0, None)


# Objectives whose margin is the log of the forecast, and those whose margin is the forecast.
LOG_LINK = ("reg:tweedie", "count:poisson", "reg:gamma")
IDENTITY_LINK = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror")


def link(booster) -> str | None:
    """``log``, ``identity`` or None (an objective whose margin is neither: not explained)."""
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    return "log" if objective in LOG_LINK else "identity" if objective in IDENTITY_LINK else None


def contributions(booster, X: pd.DataFrame, exact: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact TreeSHAP (XGBoost's ``pred_contribs``; ``exact=False``: its approximate
    contributions, each split's change of the expected value along the row's path) in the model's
    margin: one column per column of X, then the bias column (the trees' expected value plus each
    row's base margin, which a model scaled by the recent mean starts from); each row sums to its
    margin either way. Also returns the base margin (None for an unscaled model). Computed here,
    never on a Dask cluster."""
    import xgboost as xgb

    margin = recent_mean_margin(X) if booster.attr(SCALE_ATTRIBUTE) == RECENT_MEAN else None
    if len(X) == 0:
        return np.zeros((0, X.shape[1] + 1)), margin
    matrix = xgb.DMatrix(X, base_margin=margin, enable_categorical=True, nthread=os.cpu_count() or 1)
    contribs = booster.predict(
        matrix,
        pred_contribs=True,
        approx_contribs=not exact,
        iteration_range=(0, booster.num_boosted_rounds()),
    )
    return np.asarray(contribs, dtype=float), margin


def fingerprint(frame: pd.DataFrame, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class UnreadableModel(DataError):
    """A saved model file XGBoost cannot read (corrupt, truncated): every retry reads the same
    bytes, so the message says how to take the model out of the running instead."""


def load(directory: Path, holdout: bool = False):
    """A saved booster (the production model, or the holdout model) and its metadata.json.
    Raises UnreadableModel if XGBoost cannot read the file."""
    import xgboost as xgb

    booster = xgb.Booster()
    path = paths.booster(directory, holdout)
    try:
        booster.load_model(path)
    except xgb.core.XGBoostError as err:
        version = directory.name
        said = str(err).partition("Stack trace:")[0].strip()
        raise UnreadableModel(
            f"model {version}: XGBoost cannot read {path} ({said}); the file is corrupt or "
            "truncated and will be on every retry. Take the model out of the running with "
            f'`python -m forecasting.registry.models reject {version} --reason "corrupt model file"` '
            "(the previous champion then takes its place), then run the month again."
        ) from err
    return booster, paths.read_json(paths.model_metadata(directory))
