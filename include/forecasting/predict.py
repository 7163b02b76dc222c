"""Predict: forecasts for months M+1..M+horizon for every entity active in month M."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting import dataset, model
from forecasting.config import Config
from forecasting.months import month_from_index, month_index
from forecasting.panel import build_panel

log = logging.getLogger(__name__)


def forecast(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, model_dir: Path, client=None
) -> pd.DataFrame:
    """One row per active entity and horizon: keys (source types), forecast_month, horizon, prediction."""
    booster, metadata = model.load(model_dir)
    keys = config.source.entity_columns
    panel = build_panel(snapshot, config, sales_only=True)
    m = month_index(month)
    col = panel.column(m)
    active = (
        np.flatnonzero(panel.observed[:, col]) if 0 <= col < panel.months else np.zeros(0, dtype=np.int64)
    )
    # The same point-in-time retrieval as training, so a backfill of M forecasts as M's run did.
    features = dataset.retrieve(config, panel, active, np.full(len(active), m), client)
    missing = features["sales_lag_1"].isna()
    if missing.any():
        raise RuntimeError(f"{int(missing.sum())} forecast rows found no features for {month} in Feast")
    parts = []
    for h in range(1, config.horizon + 1):
        frame = dataset.with_model_columns(features, np.full(len(active), h))
        out = panel.keys.iloc[active].reset_index(drop=True)
        for key in keys:  # back to the source's types, so analysts join on them as they are
            out[key] = out[key].astype(panel.key_dtypes[key])
        out["forecast_month"] = month_from_index(m + h).to_timestamp().date()
        out["horizon"] = h
        out["prediction"] = model.predict(
            booster, dataset.design_matrix(frame, config, metadata["categories"])
        )
        parts.append(out)
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    log.info(
        "Forecast %d entities x %d horizons for %s with %s",
        len(active),
        config.horizon,
        month,
        metadata["model_version"],
    )
    return result
