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
            booster, dataset.design_matrix(frame, config, metadata["categories"], metadata["features"])
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


def baseline_forecast(snapshot: pd.DataFrame, config: Config, month: pd.Period, name: str) -> pd.DataFrame:
    """The rows of ``forecast``, made by the baseline ``name`` from each active entity's history
    up to M, as evaluation scores it (what the gate publishes when no model beats it)."""
    from forecasting.evaluate import baselines

    keys = config.source.entity_columns
    panel = build_panel(snapshot, config, sales_only=True)
    m = month_index(month)
    col = panel.column(m)
    active = (
        np.flatnonzero(panel.observed[:, col]) if 0 <= col < panel.months else np.zeros(0, dtype=np.int64)
    )
    horizons = np.arange(1, config.horizon + 1)
    entity, horizon = np.repeat(active, len(horizons)), np.tile(horizons, len(active))
    origin = np.full(len(entity), m)
    got = baselines(panel, entity, origin, horizon)
    if name in got:
        values = np.asarray(got[name], dtype=float)
    else:  # a statistical forecaster scored beside the naive ones (forecasting.statistical)
        try:
            from forecasting import statistical
        except ImportError:
            statistical = None  # type: ignore[assignment]
        if statistical is None or name not in getattr(statistical, "STATISTICAL_BASELINES", ()):
            raise ValueError(f"no baseline {name!r} (have: {', '.join(got)})")
        values = np.asarray(statistical.forecasts(panel, entity, origin, horizon, [name])[name], dtype=float)
    if np.isnan(values).any():  # an entity with a row in M always has a history: never publish NaN
        raise RuntimeError(f"the {name} baseline has no forecast for {int(np.isnan(values).sum())} rows")
    out = panel.keys.iloc[entity].reset_index(drop=True)
    for key in keys:  # back to the source's types, as forecast() does
        out[key] = out[key].astype(panel.key_dtypes[key])
    out["forecast_month"] = [month_from_index(m + int(h)).to_timestamp().date() for h in horizon]
    out["horizon"] = horizon
    out["prediction"] = np.clip(values, 0, None)
    out = out.sort_values(["horizon"], kind="stable").reset_index(drop=True)  # as forecast(): by horizon
    log.info(
        "Forecast %d entities x %d horizons for %s with the %s baseline",
        len(active),
        len(horizons),
        month,
        name,
    )
    return out
