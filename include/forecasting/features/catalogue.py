"""Features: one row per entity and month t that summarises the history known when t is complete.

Rows are stamped ``event_timestamp = month_end(t)`` (the first instant of t+1). A training
row for forecast origin o is stamped ``month_end(o)`` too, so Feast's point-in-time join
gives it the features of o and never those of a later month.

Computed on the snapshot's panel (``forecasting.data.panel``): each feature is an entities × months
array, and the offline table gets one parquet file per month, its values stored as float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.compute import map_in_order
from forecasting.core.config import Config
from forecasting.core.months import month_from_index, month_index
from forecasting.data.extract import window_start
from forecasting.data.panel import Panel, build_panel, lagged, months_known, rolling

log = logging.getLogger(__name__)

TIMESTAMP = "event_timestamp"
CREATED = "created"


@dataclass(frozen=True)
class Feature:
    """One column of the offline feature table, as of the end of its month t (the origin)."""

    name: str
    description: str  # also the Feast field's description
    lookback: int  # months of history it reads, counting t itself
    attribute: bool = False  # an entity attribute: its type is the source's (text or number)
    derived: bool = False  # computed when a row is assembled (dataset.with_model_columns), not stored


def catalogue(config: Config) -> list[Feature]:
    """Every feature the offline table holds, in a stable order: the one list that the feature
    columns, the Feast schema and the lookback come from (``feature_arrays`` computes them)."""
    target, feat = config.source.target_column, config.features
    out = [
        Feature(f"sales_lag_{k}", f"{target} in month t-{k - 1}" if k > 1 else f"{target} in month t", k)
        for k in feat.lags
    ]
    for w in feat.rolling_windows:
        out += [
            Feature(f"sales_mean_{w}", f"mean {target} over the {w} months ending at t", w),
            Feature(f"sales_std_{w}", f"standard deviation of {target} over the {w} months ending at t", w),
        ]
    out += [
        Feature("month_of_year", "calendar month of t, 1-12", 1),
        Feature("history_months", f"months of history up to t, at most {feat.lookback_months}", 1),
    ]
    for c in config.source.covariates:
        out += [
            Feature(c, f"{c} in month t", 1),
            Feature(f"{c}_mean_3", f"mean {c} over the 3 months ending at t", 3),
        ]
    out += [Feature(a, f"entity attribute {a}, as of t", 1, attribute=True) for a in config.source.attributes]
    return out


def feature_names(config: Config) -> list[str]:
    """Every feature the offline table holds, in a stable order."""
    return [feature.name for feature in catalogue(config)]


def plan_catalogue(config: Config) -> list[Feature]:
    """The planned covariates (``plans:``), one feature each, in the config's order: the value
    planned for the *target* month as the plan stood at the origin (forecasting.features.plans). They
    live in a Feast view of their own, keyed by entity and target month."""
    if config.plans is None:
        return []
    out = []
    for c, name in zip(config.plans.covariates, config.plans.feature_names, strict=True):
        out.append(
            Feature(
                name,
                f"{c} planned for the target month, as the plan stood at the end of t (latest "
                "planned_at at or before it)",
                0,  # no history: the plan of the month forecast
            )
        )
        if c in config.source.covariates:
            # What the plan changes: a price cut or a promotion is a change from the month known.
            out.append(Feature(f"{name}_change", f"{name} minus {c} in month t", 1, derived=True))
    return out


def plan_feature_names(config: Config) -> list[str]:
    return [feature.name for feature in plan_catalogue(config)]


@dataclass
class FeatureArrays:
    """Every numeric feature as an entities × months array; ``valid`` marks the cells that get a
    feature row: inside the entity's span, with a real row within the lookback."""

    panel: Panel
    values: dict[str, np.ndarray]
    valid: np.ndarray


def feature_arrays(panel: Panel, config: Config) -> FeatureArrays:
    src, feat = config.source, config.features
    position = months_known(panel.observed, feat.lookback_months)
    sales = panel.sales
    values: dict[str, np.ndarray] = {}
    for k in feat.lags:
        # lag 1 is month t itself: the latest month known at the forecast origin.
        values[f"sales_lag_{k}"] = np.where(position >= k - 1, lagged(sales, k - 1), np.nan)
    for w in feat.rolling_windows:
        enough = position >= w - 1
        values[f"sales_mean_{w}"] = np.where(enough, rolling(sales, w, "mean"), np.nan)
        values[f"sales_std_{w}"] = np.where(enough, rolling(sales, w, "std"), np.nan)
    month_idx = panel.first_month + np.arange(panel.months)
    values["month_of_year"] = np.broadcast_to((month_idx % 12 + 1).astype(float), sales.shape)
    values["history_months"] = (position + 1).astype(float)  # at most the lookback, by construction
    for c in src.covariates:
        values[c] = panel.covariates[c]
        values[f"{c}_mean_3"] = np.where(position >= 2, rolling(panel.covariates[c], 3, "mean"), np.nan)
    return FeatureArrays(panel=panel, values=values, valid=(position >= 0) & panel.in_span())


def feature_frame(arrays: FeatureArrays, config: Config, columns: np.ndarray | None = None) -> pd.DataFrame:
    """The feature rows of the given panel columns (default: all), entity by entity, month by
    month: the entity columns (strings), every feature, ``_m`` and the two timestamps."""
    panel = arrays.panel
    valid = arrays.valid if columns is None else arrays.valid[:, columns]
    rows, cols = np.nonzero(valid)
    if columns is not None:
        cols = np.asarray(columns)[cols]
    out = {k: panel.keys[k].to_numpy()[rows] for k in config.source.entity_columns}
    for name, values in arrays.values.items():
        out[name] = values[rows, cols]
    for a in config.source.attributes:
        out[a] = panel.attribute(a, rows, cols)
    frame = pd.DataFrame(out)[[*config.source.entity_columns, *feature_names(config)]]
    frame["_m"] = panel.first_month + cols
    stamps = month_from_index(frame["_m"].to_numpy() + 1).to_timestamp()  # month_end(t) = start of t+1
    frame[TIMESTAMP] = stamps.tz_localize("UTC")
    frame[CREATED] = frame[TIMESTAMP]
    return frame


def compute_features(panel: Panel, config: Config) -> pd.DataFrame:
    """Every feature row of the panel (for tests and small data; build_features goes by month)."""
    return feature_frame(feature_arrays(panel, config), config)


@dataclass
class FeatureBuild:
    months_written: int
    rows_written: int
    entities: int
    first_month: str
    last_month: str


def feature_months(config: Config, month: pd.Period, first_in_snapshot: int | None) -> tuple[int, int]:
    """The months (as month indexes) whose features a run of M writes, and reads back.

    From the first month whose whole lookback lies inside M's window (without a window: the
    snapshot's first month) through M. Training and prediction read only these, so a run of M
    depends on M's window alone, never on feature files other runs left in the offline table.
    """
    start = window_start(config.source, month)
    last = month_index(month)
    if start is not None:
        return month_index(start) + config.features.lookback_months - 1, last
    return (last if first_in_snapshot is None else first_in_snapshot), last


def stored(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    """A month's rows as the offline table keeps them: numeric features as float32, timestamps
    in microseconds (DuckDB reads nanosecond UTC timestamps as a type it cannot compare)."""
    numeric = [c for c in feature_names(config) if pd.api.types.is_float_dtype(frame[c])]
    types: dict[str, object] = {c: np.float32 for c in numeric}
    types.update({TIMESTAMP: "datetime64[us, UTC]", CREATED: "datetime64[us, UTC]"})
    return frame.drop(columns="_m").astype(types)


# Entities per chunk of feature work: bounds the memory of the feature arrays (about 0.2 GB per
# chunk over 60 months), and on a Dask cluster each chunk is a task.
CHUNK_ENTITIES = 20_000


def chunk_features(panel: Panel, config: Config, first: int, last: int) -> dict[int, pd.DataFrame]:
    """The stored feature rows of one chunk of entities, by month index, for months first..last."""
    arrays = feature_arrays(panel, config)
    cols = [c for c in np.flatnonzero(arrays.valid.any(axis=0)) if first <= panel.first_month + c <= last]
    return {
        panel.first_month + int(c): stored(feature_frame(arrays, config, np.array([c])), config) for c in cols
    }


def build_features(snapshot: pd.DataFrame, config: Config, month: pd.Period, client=None) -> FeatureBuild:
    """Compute features from the snapshot and write one parquet file per month to the offline table.

    Only months whose whole lookback lies inside the run's window are written, so a backfill of
    an earlier month rewrites files with the same values and never touches later months. The work
    goes chunk by chunk of entities (on the Dask cluster's workers if ``client`` is one); the
    chunks' rows are put back in entity order, so the files are the same either way.
    """

    panel = build_panel(snapshot, config)
    first, last = feature_months(config, month, panel.first_month if panel.entities else None)
    chunks = [panel.subset(rows) for rows in panel.chunks(CHUNK_ENTITIES)]
    del panel
    parts = map_in_order(client, chunk_features, chunks, config, first, last)
    months_written = sorted({m for part in parts for m in part})
    rows_written, entities = 0, 0
    for m in months_written:
        frame = pd.concat([part[m] for part in parts if m in part], ignore_index=True)
        paths.write_parquet_atomically(frame, paths.feature_file(config, month_from_index(m)))
        rows_written += len(frame)
    for part in parts:  # entities with a feature row in some month written
        keys = [frame[config.source.entity_columns] for frame in part.values()]
        entities += len(pd.concat(keys).drop_duplicates()) if keys else 0
    result = FeatureBuild(
        months_written=len(months_written),
        rows_written=rows_written,
        entities=entities,
        first_month=str(month_from_index(months_written[0])) if months_written else "",
        last_month=str(month_from_index(months_written[-1])) if months_written else "",
    )
    log.info(
        "Wrote %d feature rows for %d months (%s..%s) to %s",
        result.rows_written,
        result.months_written,
        result.first_month,
        result.last_month,
        paths.feature_table(config),
    )
    return result


def active_entities(panel: Panel, month: pd.Period) -> pd.DataFrame:
    """Entities with a row in month M: the ones we forecast. Keys as strings, like Feast's."""
    col = panel.column(month_index(month))
    if not 0 <= col < panel.months:
        return panel.keys.iloc[:0]
    return panel.keys[panel.observed[:, col]].reset_index(drop=True)
