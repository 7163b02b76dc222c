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

from forecasting import paths
from forecasting.config import Config


def booster_params(config: Config) -> dict[str, Any]:
    return {**config.model.params, "seed": config.model.seed, "nthread": os.cpu_count() or 1}


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

    params = booster_params(config)
    rounds = (
        config.model.num_boost_round
        if validation is not None
        else num_boost_round or config.model.num_boost_round
    )
    early = {"early_stopping_rounds": config.model.early_stopping_rounds} if validation is not None else {}
    if validation is not None and len(validation[1]) == 0:
        validation, early = None, {}
        rounds = num_boost_round or config.model.num_boost_round
    if client is not None:
        return _fit_on_cluster(client, params, X, y, validation, rounds, early)
    dtrain = xgb.QuantileDMatrix(X, label=y, enable_categorical=True, nthread=params["nthread"])
    evals = []
    if validation is not None:
        dval = xgb.QuantileDMatrix(
            validation[0], label=validation[1], ref=dtrain, enable_categorical=True, nthread=params["nthread"]
        )
        evals = [(dval, "validation")]
    return xgb.train(params, dtrain, num_boost_round=rounds, evals=evals, verbose_eval=False, **early)


def _fit_on_cluster(
    client, params: dict, X: pd.DataFrame, y: np.ndarray, validation, rounds: int, early: dict
):
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    from forecasting.compute import workers

    parts = len(workers(client))
    params = {k: v for k, v in params.items() if k != "nthread"}  # each worker uses its own threads

    def matrix(frame: pd.DataFrame, label: np.ndarray, ref=None):
        data = dd.from_pandas(frame, npartitions=parts, sort=False)
        labels = dd.from_pandas(pd.Series(label, index=frame.index), npartitions=parts, sort=False)
        return dxgb.DaskQuantileDMatrix(client, data, labels, ref=ref, enable_categorical=True)

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
    if client is None:
        raw = booster.inplace_predict(X, iteration_range=rounds)
    else:
        import dask.dataframe as dd
        from xgboost import dask as dxgb

        from forecasting.compute import workers

        data = dd.from_pandas(X, npartitions=len(workers(client)), sort=False)
        raw = dxgb.inplace_predict(client, booster, data, iteration_range=rounds).compute()
    return np.clip(np.asarray(raw, dtype=float), 0, None)


def fingerprint(frame: pd.DataFrame, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def load(directory: Path, name: str = "model.ubj"):
    """A saved booster and its metadata.json."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(directory / name)
    return booster, paths.read_json(directory / "metadata.json")
