"""The point-in-time-correct dataset: labelled (entity, origin, horizon) rows and Feast's features.

A row says: for this entity, standing at the end of origin month o, forecast month o + h. Its
label is the target in o + h; its features are what Feast's offline store holds as of the end
of o (``store.historical_features`` joins them point in time, so nothing later can leak in).

Rows are arrays over the snapshot's panel, so a 100,000-entity month makes millions of rows
without a merge. Training may use fewer: ``model.training_origins`` bounds how far back origins
go, and ``model.max_training_rows`` caps the rows the model is fitted on with a deterministic
uniform sample. Holdout rows are never sampled: the model and the baselines are scored on every
entity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.compute import map_in_order
from forecasting.core.config import Config
from forecasting.core.months import month_from_index, month_index, month_labels
from forecasting.data.panel import Panel, build_panel, months_known
from forecasting.features import store
from forecasting.features.calendar import CALENDAR_FEATURES, calendar_columns, calendar_feature_names
from forecasting.features.catalogue import TIMESTAMP, feature_months, feature_names, plan_feature_names

log = logging.getLogger(__name__)

LABEL = "label"
HORIZON = "horizon"
TARGET_MONTH = "target_month"
ORIGIN = "origin_month"
ROW = "_row"  # carried through Feast to put its answer back in our order
ENTITY = "_entity"  # a row's entity as its row in the panel (holdout.parquet keeps it for evaluate)
# Entity rows per point-in-time retrieval: bounds the memory of one join.
RETRIEVAL_CHUNK_ROWS = 1_000_000
# An (entity, origin) pair's plan for horizon h comes back from ``retrieve`` as the column
# ``plan_<covariate>__h<h>``; ``with_model_columns`` keeps the one of each row's horizon.
PLAN_HORIZON_SEP = "__h"
_ORIGIN_INDEX = "_origin"  # carried through Feast: each pair's origin, to name its target months


@dataclass
class Rows:
    """(entity, origin, horizon) rows as arrays: the panel row of the entity, the origin's month
    index, the horizon and the label (NaN for rows whose target is not known yet)."""

    entity: np.ndarray
    origin: np.ndarray
    horizon: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.entity)

    @property
    def target(self) -> np.ndarray:
        return self.origin + self.horizon

    def take(self, which: np.ndarray) -> Rows:
        return Rows(self.entity[which], self.origin[which], self.horizon[which], self.label[which])

    def frame(self, panel: Panel, timestamps: bool = True) -> pd.DataFrame:
        """As a DataFrame: the entity keys (strings), origin and target month ("YYYY-MM"), horizon,
        the origin's timestamp for Feast (unless ``timestamps`` is false) and the label."""
        frame = panel.keys.iloc[self.entity].reset_index(drop=True)
        frame[ORIGIN] = month_labels(self.origin)
        frame[HORIZON] = self.horizon.astype(int)
        frame[TARGET_MONTH] = month_labels(self.target)
        if timestamps:
            frame[TIMESTAMP] = month_stamps(self.origin)
        frame[LABEL] = self.label
        return frame


def write_rows(rows: Rows, panel: Panel, frame: pd.DataFrame, path) -> None:
    """``rows.frame(panel, timestamps=False)`` beside ``frame``'s other columns (one per row), as a
    parquet file, written from Arrow: the keys and months dictionary-encoded from the panel's
    keys and the distinct months (no text column built row by row, no joined copy).
    ``read_rows`` reads it back as plain text."""
    import pyarrow as pa

    columns: dict[str, pa.Array] = {}
    for key in panel.keys.columns:
        codes, distinct = pd.factorize(panel.keys[key])
        text = pa.array(np.asarray(distinct, dtype=object), type=pa.string())
        columns[key] = pa.DictionaryArray.from_arrays(pa.array(codes[rows.entity], type=pa.int32()), text)
    for name, months in ((ORIGIN, rows.origin), (TARGET_MONTH, rows.target)):
        months = np.asarray(months, dtype=np.int64)
        first = int(months.min(initial=0))
        # Every month from the first to the last in the dictionary: no sort of the rows' months.
        text = pa.array(
            month_labels(np.arange(first, int(months.max(initial=first - 1)) + 1)), type=pa.string()
        )
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(months - first, type=pa.int32()), text)
    columns[HORIZON] = pa.array(rows.horizon.astype(np.int64))
    columns[LABEL] = pa.array(np.asarray(rows.label, dtype=float))
    identity = [*panel.keys.columns, ORIGIN, HORIZON, TARGET_MONTH, LABEL]
    rest = pa.Table.from_pandas(
        frame, preserve_index=False, columns=[c for c in frame.columns if c not in identity]
    )
    table = pa.Table.from_arrays(
        [*(columns[name] for name in identity), *rest.columns], names=[*identity, *rest.column_names]
    )
    paths.write_parquet_atomically(table, path)


def read_rows(path) -> pd.DataFrame:
    """A file of ``write_rows`` (or an older one, plain text throughout), text as plain str."""
    frame = pd.read_parquet(path)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
    return frame


def month_stamps(month_idx: np.ndarray) -> pd.DatetimeIndex:
    """month_end of each month (the first instant of the next), UTC: when the month is complete."""
    if len(month_idx) == 0:
        return pd.DatetimeIndex([], tz="UTC")
    distinct, at = np.unique(np.asarray(month_idx, dtype=np.int64) + 1, return_inverse=True)
    return month_from_index(distinct).to_timestamp().tz_localize("UTC")[at.ravel()]


def labelled(panel: Panel, config: Config, month: pd.Period) -> Rows:
    """Every row whose origin has a feature row this run wrote and whose target month (≤ M) lies
    in the entity's span, sorted by target month, horizon and entity."""
    first, last = feature_months(config, month, panel.first_month if panel.entities else None)
    if config.model.training_origins is not None:
        first = max(first, last - config.model.training_origins)
    in_span = panel.in_span()
    cols = panel.first_month + np.arange(panel.months)
    # Origins are months whose features this run wrote (never an older file another run left),
    # inside the entity's span, with a real row in the lookback (so a feature row exists).
    origin_ok = (
        (months_known(panel.observed, config.features.lookback_months) >= 0)
        & in_span
        & ((cols >= first) & (cols < last))[None, :]
    )
    # Column by column of target month, then horizon: each part's entities come out of
    # flatnonzero in order, so the rows are born sorted (no lexsort of all of them). The
    # month-major copies make each column a contiguous read.
    origin_ok, in_span, sales = (np.ascontiguousarray(a.T) for a in (origin_ok, in_span, panel.sales))
    entity_parts, label_parts, origin_cols, horizons = [], [], [], []
    for target_col in np.flatnonzero(cols <= last).tolist():
        for h in range(1, min(config.horizon, target_col) + 1):
            # origin column target - h, both in the span, the target no later than M.
            entity = np.flatnonzero(origin_ok[target_col - h] & in_span[target_col])
            entity_parts.append(entity)
            label_parts.append(sales[target_col][entity])
            origin_cols.append(target_col - h)
            horizons.append(h)
    if not entity_parts:
        empty = np.zeros(0, dtype=np.int64)
        return Rows(empty, empty, empty, np.zeros(0))
    counts = [len(part) for part in entity_parts]
    return Rows(
        np.concatenate(entity_parts).astype(np.int64, copy=False),
        np.repeat(np.asarray(origin_cols, dtype=np.int64) + panel.first_month, counts),
        np.repeat(np.asarray(horizons, dtype=np.int64), counts),
        np.concatenate(label_parts),
    )


@dataclass
class Split:
    """Masks over labelled rows by target month: holdout = the last K months up to M, validation
    = the V months before them, train = the rest."""

    train: np.ndarray
    validation: np.ndarray
    holdout: np.ndarray


def split(rows: Rows, config: Config, month: pd.Period) -> Split:
    holdout_start = month_index(month) - (config.evaluation.holdout_months - 1)
    validation_start = holdout_start - config.model.validation_months
    target = rows.target
    return Split(
        train=target < validation_start,
        validation=(target >= validation_start) & (target < holdout_start),
        holdout=target >= holdout_start,
    )


def sample(rows: Rows, config: Config) -> np.ndarray:
    """Which rows the model is fitted on (a mask): all of them, unless they exceed
    ``model.max_training_rows``; then a uniform sample of about that many, drawn with the model's
    seed over the rows in their fixed order, so the same data always gives the same sample.
    Every entity and month keeps its share: the model sees all series, each less often."""
    budget = config.model.max_training_rows
    if budget is None or len(rows) <= budget:
        return np.ones(len(rows), dtype=bool)
    keep = np.random.default_rng(config.model.seed).random(len(rows)) < budget / len(rows)
    log.info("Fitting on %d of %d labelled rows (model.max_training_rows %d)", keep.sum(), len(rows), budget)
    return keep


def plan_columns(config: Config) -> list[str]:
    """The columns ``retrieve`` adds for the plans: each plan feature once per horizon."""
    names = config.plans.feature_names if config.plans is not None else []
    return [f"{name}{PLAN_HORIZON_SEP}{h}" for name in names for h in range(1, config.horizon + 1)]


def retrieve(
    config: Config, panel: Panel, entity: np.ndarray, origin: np.ndarray, client=None
) -> pd.DataFrame:
    """Feast's point-in-time features for each (entity, origin) pair, in the order given.

    One retrieval per chunk of pairs (memory stays bounded; on a Dask cluster, each chunk is a
    task on a worker); the entity rows carry a row number that puts Feast's answer back in order.
    With ``plans:``, each pair also gets the plans for its target months o + 1..o + horizon as
    they stood at the end of o (``plan_columns``; ``plans.fill`` applied).
    """
    features, position = retrieve_unordered(config, panel, entity, origin, client)
    ordered = features.take(position)
    ordered.index = pd.RangeIndex(len(ordered))
    return ordered


def retrieve_unordered(
    config: Config, panel: Panel, entity: np.ndarray, origin: np.ndarray, client=None
) -> tuple[pd.DataFrame, np.ndarray]:
    """``retrieve``'s rows in the order Feast answered, and the position of each pair's row
    among them: ``features.take(position[at])`` are the rows of pairs ``at`` in one reordering
    instead of two."""
    columns = [*feature_names(config), *plan_columns(config)]
    chunks = []
    for start in range(0, len(entity), RETRIEVAL_CHUNK_ROWS):
        chunk = slice(start, start + RETRIEVAL_CHUNK_ROWS)
        rows = panel.keys.iloc[entity[chunk]].reset_index(drop=True)
        rows[TIMESTAMP] = month_stamps(origin[chunk])
        rows[ROW] = np.arange(start, start + len(rows))
        if config.plans is not None:
            rows[_ORIGIN_INDEX] = np.asarray(origin[chunk], dtype=np.int64)
        chunks.append(rows)
    if not chunks:
        return pd.DataFrame(columns=columns), np.zeros(0, dtype=np.int64)
    registry = store.registry_snapshot(config) if client is not None else None
    parts = map_in_order(client, _retrieve_chunk, chunks, config, feast_registry=registry)
    features = pd.concat(parts, ignore_index=True)
    row = features[ROW].to_numpy()
    n = len(entity)
    # Every pair's row exactly once: a permutation of 0..n-1.
    if (
        len(features) != n
        or row.min(initial=0) < 0
        or row.max(initial=-1) >= n
        or (np.bincount(row, minlength=n) != 1).any()
    ):
        raise RuntimeError(f"Feast returned {len(features)} rows for {n} entity rows")
    position = np.empty(n, dtype=np.int64)
    position[row] = np.arange(n)
    return features[columns], position


def _retrieve_chunk(rows: pd.DataFrame, config: Config) -> pd.DataFrame:
    features = store.historical_features(config, rows)
    if config.plans is None:
        return features
    # The plans' columns are made in row order: the features are put in it too.
    features = features.sort_values(ROW, kind="stable")
    planned = _plans_by_horizon(config, rows.sort_values(ROW, kind="stable").reset_index(drop=True))
    return pd.concat([features.reset_index(drop=True), planned], axis=1)


def _plans_by_horizon(config: Config, rows: pd.DataFrame) -> pd.DataFrame:
    """For each row (an entity and origin o, in order), the plan of each horizon h's target
    month o + h as it stood at the end of o: Feast's point-in-time join of the plans' view,
    asked with the origin's timestamp. Columns ``plan_columns(config)``."""
    from forecasting.features import plans

    assert config.plans is not None
    keys, horizon, n = config.source.entity_columns, config.horizon, len(rows)
    origin = rows[_ORIGIN_INDEX].to_numpy()
    slot = "_slot"  # position in the result: row i, horizon h -> i * horizon + h - 1
    asked = pd.concat(
        [
            rows[[*keys, TIMESTAMP]].assign(
                **{plans.PLAN_MONTH: month_labels(origin + h), slot: np.arange(n) * horizon + h - 1}
            )
            for h in range(1, horizon + 1)
        ],
        ignore_index=True,
    )
    got = store.plan_features(config, asked).sort_values(slot, kind="stable")
    names = config.plans.feature_names
    out = pd.DataFrame(index=range(n))
    for name in names:
        values = got[name].to_numpy(dtype=np.float32).reshape(n, horizon)
        for h in range(1, horizon + 1):
            out[f"{name}{PLAN_HORIZON_SEP}{h}"] = values[:, h - 1]
    by_covariate = {
        c: [f"{name}{PLAN_HORIZON_SEP}{h}" for h in range(1, horizon + 1)]
        for c, name in zip(config.plans.covariates, names, strict=True)
    }
    return plans.fill(out, config, by_covariate)


def pairs(*row_sets: Rows) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The distinct (entity, origin) pairs of several row sets (several horizons share one), and
    for each set, the position of each of its rows in that list."""
    entity = np.concatenate([r.entity for r in row_sets])
    origin = np.concatenate([r.origin for r in row_sets])
    key = entity.astype(np.int64) * 100_000 + (origin - origin.min() if len(origin) else origin)
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    bounds = np.cumsum([0, *(len(r) for r in row_sets)])
    return entity[first], origin[first], [inverse[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def model_features(config: Config) -> list[str]:
    """Columns the model reads: Feast's features, the plans for the target month (``plans:``),
    the horizon, the target's month of year, its calendar (``calendar:``) and the
    ``features.derived`` groups."""
    return [
        *feature_names(config),
        *plan_feature_names(config),
        HORIZON,
        "target_month_of_year",
        *calendar_feature_names(config),
        *derived_feature_names(config),
    ]


# features.derived: seasonal. The target month one and two years before, from the lag that is
# that month at the row's horizon (lag 13 - h and 25 - h; NaN where the config has no such lag).
YEAR_BEFORE_TARGET = "sales_year_before_target"
TWO_YEARS_BEFORE_TARGET = "sales_two_years_before_target"
_YEARS_BEFORE_TARGET = {YEAR_BEFORE_TARGET: 1, TWO_YEARS_BEFORE_TARGET: 2}
# features.relative: each sales feature over the series' recent level (``recent_level``), so
# trees split on shapes that hold for series of any size; and with both seasonal features, the
# seasonal index: the mean of the two target months' ratios to the level.
RELATIVE_PREFIX = "rel_"
SEASONAL_INDEX = "seasonal_index"


def derived_feature_names(config: Config) -> list[str]:
    """The model columns of the config's ``features.derived`` groups, in a stable order."""
    groups, lags = config.features.derived, set(config.features.lags)
    seasonal = [
        name
        for name, years in _YEARS_BEFORE_TARGET.items()
        if "seasonal" in groups and any(12 * years + 1 - h in lags for h in range(1, config.horizon + 1))
    ]
    if "relative" not in groups:
        return seasonal
    sales = [name for name in feature_names(config) if name.startswith("sales_")]
    index = [SEASONAL_INDEX] if len(seasonal) == 2 else []
    return [*seasonal, *(RELATIVE_PREFIX + name for name in [*sales, *seasonal]), *index]


def recent_level(frame: pd.DataFrame) -> np.ndarray:
    """The series' recent level per row: its mean over the widest rolling window the row has
    (``sales_mean_<w>``), else its last month (``sales_lag_1``); NaN where it has neither."""
    means = sorted(
        (c for c in frame.columns if str(c).startswith("sales_mean_")),
        key=lambda c: -int(str(c).rsplit("_", 1)[1]),
    )
    level = np.full(len(frame), np.nan)
    for column in [*means, "sales_lag_1"]:
        if column in frame.columns:
            level = np.where(np.isnan(level), frame[column].to_numpy(dtype=float), level)
    return level


def _with_derived(frame: pd.DataFrame, horizon: np.ndarray, wanted: list[str]) -> None:
    """Add the derived columns named in ``wanted`` (``derived_feature_names``) to ``frame``."""
    relative = [name for name in wanted if name.startswith(RELATIVE_PREFIX)]
    if SEASONAL_INDEX in wanted:
        relative += [
            RELATIVE_PREFIX + name for name in _YEARS_BEFORE_TARGET if RELATIVE_PREFIX + name not in relative
        ]
    needed = set(wanted) | {name.removeprefix(RELATIVE_PREFIX) for name in relative}
    for name, years in _YEARS_BEFORE_TARGET.items():
        if name not in needed:
            continue
        values = np.full(len(frame), np.nan, dtype=np.float32)
        for h in np.unique(horizon):
            lag = f"sales_lag_{12 * years + 1 - int(h)}"
            if lag in frame.columns:
                at = horizon == h
                values[at] = frame[lag].to_numpy(dtype=np.float32)[at]
        frame[name] = values
    if not relative:
        return
    level = recent_level(frame)
    level = np.where(level > 0, level, np.nan)  # a series with no sales yet has no shape to scale
    for name in relative:
        frame[name] = (frame[name.removeprefix(RELATIVE_PREFIX)].to_numpy(dtype=float) / level).astype(
            np.float32
        )
    if SEASONAL_INDEX in wanted:
        ratios = np.vstack([frame[RELATIVE_PREFIX + name].to_numpy() for name in _YEARS_BEFORE_TARGET])
        known = np.isfinite(ratios)
        count = known.sum(axis=0)
        total = np.where(known, ratios, 0).sum(axis=0)
        frame[SEASONAL_INDEX] = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def with_model_columns(
    features: pd.DataFrame,
    horizon: np.ndarray,
    wanted: list[str],
    target: np.ndarray | None = None,
    config: Config | None = None,
) -> pd.DataFrame:
    """Feature rows (one per labelled row) plus the horizon and the target's month of year; of
    the plans ``retrieve`` found for every horizon, each row keeps its own horizon's as
    ``plan_<covariate>``, and where the covariate is a source covariate too, what the plan
    changes from its value at the origin as ``plan_<covariate>_change``. ``wanted``: the
    columns the model reads (``model_features``, or a saved model's): the derived ones among
    them are computed (``derived_feature_names``), and the calendar's of the rows' ``target``
    months (month indexes) with ``config``'s ``calendar:`` section if ``wanted`` names them.
    ``features`` is not modified: the result shares its columns (no copy of them; only new
    columns are added here)."""
    frame = features.set_axis(pd.RangeIndex(len(features)), axis=0, copy=False)
    horizon = np.asarray(horizon)
    by_plan: dict[str, dict[int, str]] = {}
    for column in frame.columns:
        name, sep, suffix = str(column).rpartition(PLAN_HORIZON_SEP)
        if sep and name.startswith("plan_") and suffix.isdigit():
            by_plan.setdefault(name, {})[int(suffix)] = column
    for name, columns in by_plan.items():
        values = np.full(len(frame), np.nan, dtype=np.float32)
        for h, column in columns.items():
            at = horizon == h
            values[at] = frame[column].to_numpy(dtype=np.float32)[at]
        frame[name] = values
        covariate = name.removeprefix("plan_")
        if covariate in frame.columns and pd.api.types.is_numeric_dtype(frame[covariate]):
            frame[f"{name}_change"] = values - frame[covariate].to_numpy(dtype=np.float32)
    if by_plan:  # (a drop of nothing would still copy every column)
        frame = frame.drop(columns=[c for columns in by_plan.values() for c in columns.values()])
    frame[HORIZON] = horizon
    frame["target_month_of_year"] = ((frame["month_of_year"] - 1 + frame[HORIZON]) % 12 + 1).astype(float)
    if any(name in wanted for name in CALENDAR_FEATURES):
        if target is None or config is None or config.calendar is None:
            raise ValueError("the calendar features need the rows' target months and a config with calendar:")
        for name, values in calendar_columns(target, config.calendar).items():
            frame[name] = values
    _with_derived(frame, horizon, wanted)
    return frame


def design_matrix(
    frame: pd.DataFrame,
    config: Config,
    categories: dict[str, list[str]],
    features: list[str] | None = None,
) -> pd.DataFrame:
    """Feature matrix (float32, XGBoost's own precision) with string attributes as categoricals
    of a fixed category list, so a code means the same category in every run. ``features``: the
    columns a saved model reads (its metadata's), if not those the config makes now."""
    columns = features if features is not None else model_features(config)
    # Column by column: float32 columns as they are, others converted once.
    data = {
        column: as_category(frame[column], categories[column])
        if column in categories
        else frame[column].to_numpy(dtype=np.float32)
        for column in columns
    }
    # Not consolidated into one block: XGBoost reads column by column, so that copy is wasted.
    return pd.DataFrame(data, index=frame.index, columns=columns, copy=False)


def as_category(values: pd.Series, categories: list[str]) -> pd.Categorical:
    """``values`` as a categorical of exactly ``categories`` (any other value: missing). Values
    that are categorical already (``text_as_categories``) are recoded, not re-read as text."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.set_categories(categories).array
    return pd.Categorical(values.astype("object"), categories=categories)


def text_as_categories(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with its text columns as categoricals (the columns are replaced, the frame is
    not copied): each distinct pair's text is encoded once, and the labelled rows that take it
    (1.4M holdout rows at 100,000 series) then copy codes, not strings. Same values, same
    fingerprint (pandas hashes a categorical as its values)."""
    for column in features.columns:
        if features[column].dtype == object or isinstance(features[column].dtype, pd.StringDtype):
            features[column] = features[column].astype("category")
    return features


def categories_of(frame: pd.DataFrame, config: Config) -> dict[str, list[str]]:
    names = [c for c in model_features(config) if not pd.api.types.is_numeric_dtype(frame[c])]
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in names}


def training_frame(snapshot: pd.DataFrame, config: Config, month: pd.Period) -> pd.DataFrame:
    """Every labelled row of M with its point-in-time features, as one DataFrame (unsampled: for
    tests and inspection on small data; train works on the arrays)."""
    panel = build_panel(snapshot, config, sales_only=True)
    rows = labelled(panel, config, month)
    entity, origin, (at,) = pairs(rows)
    features = retrieve(config, panel, entity, origin)
    return pd.concat(
        [
            rows.frame(panel),
            with_model_columns(
                features.take(at), rows.horizon, model_features(config), rows.target, config
            ).drop(columns=HORIZON),
        ],
        axis=1,
    )
