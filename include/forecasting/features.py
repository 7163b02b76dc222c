"""Features: one row per entity and month t that summarises the history known when t is complete.

Rows are stamped ``event_timestamp = month_end(t)`` (the first instant of t+1). A training
row for forecast origin o is stamped ``month_end(o)`` too, so Feast's point-in-time join
gives it the features of o and never those of a later month.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting import paths
from forecasting.config import Config, FeatureConfig
from forecasting.extract import window_start
from forecasting.months import month_from_index, month_index, month_start

log = logging.getLogger(__name__)

TIMESTAMP = "event_timestamp"
CREATED = "created"


def target_feature_names(features: FeatureConfig) -> list[str]:
    names = [f"sales_lag_{k}" for k in features.lags]
    for w in features.rolling_windows:
        names += [f"sales_mean_{w}", f"sales_std_{w}"]
    return names


def covariate_feature_names(config: Config) -> list[str]:
    return [n for c in config.source.covariates for n in (c, f"{c}_mean_3")]


def feature_names(config: Config) -> list[str]:
    """Every feature the offline table holds, in a stable order."""
    return [*target_feature_names(config.features), "month_of_year", "history_months",
            *covariate_feature_names(config), *config.source.attributes]


def monthly_grid(snapshot: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Every entity on every month from its first to its last row in the snapshot.

    A month with no row inside that span sold nothing: its target is 0 and its covariates
    carry forward. Entity keys become strings (Feast's join keys); ``_m`` is the month index.
    """
    src = config.source
    keys = src.entity_columns
    frame = snapshot[[*keys, src.time_column, src.target_column, *src.covariates, *src.attributes]].copy()
    frame[keys] = frame[keys].astype(str)
    frame["_m"] = month_index(frame[src.time_column].dt).to_numpy()
    frame = frame.drop(columns=src.time_column).assign(_observed=True)

    spans = frame.groupby(keys, sort=True)["_m"].agg(["min", "max"]).reset_index()
    lengths = (spans["max"] - spans["min"] + 1).to_numpy()
    grid = spans.loc[spans.index.repeat(lengths), keys].reset_index(drop=True)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid["_m"] = np.repeat(spans["min"].to_numpy(), lengths) + offsets

    grid = grid.merge(frame, on=[*keys, "_m"], how="left")
    grid["_observed"] = grid["_observed"].notna()
    grid[src.target_column] = grid[src.target_column].astype(float).fillna(0.0)
    carried = [*src.covariates, *src.attributes]
    if carried:
        grid[carried] = grid.groupby(keys, sort=False)[carried].ffill()
    return grid


def _rolling(values: pd.Series, position: np.ndarray, window: int, how: str) -> pd.Series:
    """Statistic over the ``window`` months ending at each row; NaN until the entity has them.

    Each window is computed on its own values (not as a running sum over the column), so a
    month's result is bit-for-bit the same whatever rows precede it in a run.
    """
    array = values.to_numpy(dtype=float)
    out = np.full(len(array), np.nan)
    if len(array) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(array, window)
        out[window - 1:] = windows.mean(axis=1) if how == "mean" else windows.std(axis=1, ddof=1)
    return pd.Series(out, index=values.index).where(position >= window - 1)


def _months_known(grid: pd.DataFrame, keys: list[str], lookback: int) -> np.ndarray:
    """For each row (entity, t): months since the entity's first real row within t's lookback.

    A month's features then depend only on rows in [t - lookback + 1, t], so every run whose
    window covers that range writes the same values (a backfill rewrites, never changes).
    Negative where the entity has no row at all in the lookback (dormant).
    """
    code = grid.groupby(keys, sort=False).ngroup().to_numpy().astype(np.int64)
    month = grid["_m"].to_numpy().astype(np.int64)
    stride = int(month.max()) + lookback + 1 if len(month) else 1
    key = code * stride + month
    observed = np.sort(key[grid["_observed"].to_numpy()])
    first = observed[np.searchsorted(observed, key - (lookback - 1))]
    return month - (first - code * stride)


def compute_features(grid: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Feature columns for every (entity, month) of the grid with a real row in its lookback."""
    src, feat = config.source, config.features
    keys = src.entity_columns
    grid = grid.sort_values([*keys, "_m"], kind="stable").reset_index(drop=True)
    position = _months_known(grid, keys, feat.lookback_months)
    sales = grid[src.target_column].astype(float)

    out = {k: grid[k] for k in keys}
    for k in feat.lags:
        # lag 1 is month t itself: the latest month known at the forecast origin.
        out[f"sales_lag_{k}"] = sales.shift(k - 1).where(position >= k - 1)
    for w in feat.rolling_windows:
        out[f"sales_mean_{w}"] = _rolling(sales, position, w, "mean")
        out[f"sales_std_{w}"] = _rolling(sales, position, w, "std")
    out["month_of_year"] = (grid["_m"] % 12 + 1).astype(float)
    out["history_months"] = (position + 1).astype(float)  # at most the lookback, by construction
    for c in src.covariates:
        values = pd.to_numeric(grid[c], errors="coerce").astype(float)
        out[c] = values
        out[f"{c}_mean_3"] = _rolling(values, position, 3, "mean")
    for a in src.attributes:
        col = grid[a]
        out[a] = col.astype(float) if pd.api.types.is_numeric_dtype(col) else col.astype("string")
    features = pd.DataFrame(out)
    features["_m"] = grid["_m"].to_numpy()
    stamps = month_from_index(features["_m"].to_numpy() + 1).to_timestamp()  # month_end(t) = start of t+1
    features[TIMESTAMP] = stamps.tz_localize("UTC")
    features[CREATED] = features[TIMESTAMP]
    return features[position >= 0].reset_index(drop=True)


@dataclass
class FeatureBuild:
    months_written: int
    rows_written: int
    entities: int
    first_month: str
    last_month: str


def build_features(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> FeatureBuild:
    """Compute features from the snapshot and write one parquet file per month to the offline table.

    Only months whose whole lookback lies inside the run's window are written, so a backfill of
    an earlier month rewrites files with the same values and never touches later months.
    """
    features = compute_features(monthly_grid(snapshot, config), config)
    start = window_start(config, month)
    last = month_index(month)
    first = features["_m"].min()
    if start is not None:
        first = month_index(start) + config.features.lookback_months - 1
    keep = features[(features["_m"] >= first) & (features["_m"] <= last)]
    folder = paths.feature_table(config)
    for m, rows in keep.groupby("_m", sort=True):
        paths.write_parquet_atomically(rows.drop(columns="_m"), folder / f"{month_from_index(m)}.parquet")
    months = keep["_m"].drop_duplicates()
    result = FeatureBuild(
        months_written=len(months),
        rows_written=len(keep),
        entities=keep[config.source.entity_columns].drop_duplicates().shape[0],
        first_month=str(month_from_index(months.min())) if len(months) else "",
        last_month=str(month_from_index(months.max())) if len(months) else "",
    )
    log.info("Wrote %d feature rows for %d months (%s..%s) to %s", result.rows_written,
             result.months_written, result.first_month, result.last_month, folder)
    return result


def active_entities(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """Entities with a row in month M: the ones we forecast. Keys as strings, like Feast's."""
    src = config.source
    rows = snapshot[snapshot[src.time_column] == month_start(month)]
    return rows[src.entity_columns].astype(str).drop_duplicates().reset_index(drop=True)
