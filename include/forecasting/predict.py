"""Predict: forecasts for months M+1..M+horizon for every entity active in month M."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting import paths, train
from forecasting.config import Config
from forecasting.features import active_entities
from forecasting.months import month_index, month_start

log = logging.getLogger(__name__)


def forecast(snapshot: pd.DataFrame, config: Config, month: pd.Period, model_dir: Path) -> pd.DataFrame:
    """One row per active entity and horizon: keys (source types), forecast_month, horizon, prediction."""
    booster, metadata = train.load_model(model_dir)
    keys = config.source.entity_columns
    entities = active_entities(snapshot, config, month)
    n, horizons = len(entities), np.arange(1, config.horizon + 1)
    rows = train.entity_frame(
        entities.loc[entities.index.repeat(len(horizons))],
        origin_index=np.full(n * len(horizons), month_index(month)),
        horizon=np.tile(horizons, n),
    )
    # The same point-in-time retrieval as training, so a backfill of M forecasts as M did.
    features = train.with_features(rows, config)
    missing = features["sales_lag_1"].isna()
    if missing.any():
        raise RuntimeError(f"{int(missing.sum())} forecast rows found no features for {month} in Feast")
    features = features.sort_values([train.HORIZON, *keys], kind="stable").reset_index(drop=True)
    out = features[keys].copy()
    for key in keys:  # back to the source's types, so analysts join on them as they are
        out[key] = out[key].astype(snapshot[key].dtype)
    out["forecast_month"] = [month_start(month + int(h)).date() for h in features[train.HORIZON]]
    out["horizon"] = features[train.HORIZON].astype(int).to_numpy()
    out["prediction"] = train.predict(booster, features, config, metadata["categories"])
    log.info("Forecast %d entities x %d horizons for %s with %s", n, len(horizons), month,
             metadata["model_version"])
    return out


def save_forecasts(frame: pd.DataFrame, config: Config, month: pd.Period) -> Path:
    path = paths.run_dir(config, month) / "forecasts.parquet"
    paths.write_parquet_atomically(frame, path)
    return path
