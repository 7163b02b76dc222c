"""A snapshot as a panel: every entity × every month of the window, as NumPy arrays.

Features, training labels, baselines and the entities to forecast are all read off the same
arrays, so a 100,000-entity month costs vectorised array work instead of merges and group-bys
over millions of rows. Rows of the panel are entities (in the order of their keys), columns are
months (column 0 is ``first_month``).

An entity's *span* runs from its first to its last row in the snapshot. Inside it, a month with
no row sold nothing (its target is 0) and its covariates and attributes carry forward; outside
it there is nothing (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.core.months import month_indices


@dataclass
class Attribute:
    """A text or numeric attribute per (entity, month), as category codes (-1: none)."""

    codes: np.ndarray  # int32 [entities * months], entity-fastest
    categories: pd.Index
    numeric: bool

    def values(self, flat_index: np.ndarray) -> pd.Series:
        codes = self.codes[flat_index]
        if self.numeric:
            lookup = np.append(np.asarray(self.categories, dtype=float), np.nan)
            return pd.Series(lookup[codes])  # code -1 picks the NaN appended last
        categorical = pd.Categorical.from_codes(codes, self.categories.astype(str))
        return pd.Series(categorical).astype("string")


def is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column)  # booleans too: 0.0 and 1.0


@dataclass
class Panel:
    keys: pd.DataFrame  # one row per entity: the entity columns as strings (Feast's join keys)
    key_dtypes: dict[str, object]  # the source's dtypes of the entity columns
    first_month: int  # month index of column 0
    sales: np.ndarray  # float64 [entities, months]: the target, 0 for gaps, NaN outside the span
    observed: np.ndarray  # bool [entities, months]: the snapshot has a row there
    covariates: dict[str, np.ndarray]  # float64 [entities, months], carried forward in the span
    attributes: dict[str, Attribute]  # carried forward in the span
    span_first: np.ndarray  # int [entities]: column of the entity's first row
    span_last: np.ndarray  # int [entities]: column of its last row

    @property
    def entities(self) -> int:
        return self.sales.shape[0]

    @property
    def months(self) -> int:
        return self.sales.shape[1]

    def column(self, month_idx: int) -> int:
        return month_idx - self.first_month

    def in_span(self) -> np.ndarray:
        cols = np.arange(self.months)
        return (cols >= self.span_first[:, None]) & (cols <= self.span_last[:, None])

    def subset(self, rows: slice) -> Panel:
        """The panel of a contiguous range of its entities (for work done chunk by chunk)."""
        flat = np.arange(self.entities * self.months).reshape(self.months, self.entities)[:, rows].ravel()
        return Panel(
            keys=self.keys.iloc[rows].reset_index(drop=True),
            key_dtypes=self.key_dtypes,
            first_month=self.first_month,
            sales=self.sales[rows],
            observed=self.observed[rows],
            covariates={c: v[rows] for c, v in self.covariates.items()},
            attributes={
                a: Attribute(v.codes[flat], v.categories, v.numeric) for a, v in self.attributes.items()
            },
            span_first=self.span_first[rows],
            span_last=self.span_last[rows],
        )

    def chunks(self, size: int) -> list[slice]:
        return [slice(start, min(start + size, self.entities)) for start in range(0, self.entities, size)]

    def attribute(self, name: str, rows: np.ndarray, cols: np.ndarray) -> pd.Series:
        """The attribute's values at (rows[i], cols[i]): floats, or strings for text attributes."""
        return self.attributes[name].values(np.asarray(cols) * self.entities + np.asarray(rows))


def build_panel(snapshot: pd.DataFrame, config: Config, sales_only: bool = False) -> Panel:
    """The panel of a validated snapshot (one row per entity and month, times at month starts);
    ``sales_only`` leaves out the covariates and attributes (for labels and baselines)."""
    src = config.source
    keys = src.entity_columns
    covariates, attributes = ([], []) if sales_only else (src.covariates, src.attributes)
    months = month_indices(snapshot[src.time_column])
    if len(snapshot):
        codes = snapshot.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
        first_month, last_month = int(months.min()), int(months.max())
    else:
        codes, first_month, last_month = np.zeros(0, dtype=np.int64), 0, -1
    n_entities = int(codes.max()) + 1 if len(codes) else 0
    n_months = last_month - first_month + 1
    col = months - first_month

    unique = np.unique(codes, return_index=True)[1]
    key_frame = pd.DataFrame({k: snapshot[k].iloc[unique].astype(str).to_numpy() for k in keys}, columns=keys)
    # Entities in the order of their keys as strings (Feast's join keys), whatever the source's
    # types: the same order, and so the same training rows in the same order, on any database.
    order = np.lexsort([key_frame[k].to_numpy() for k in reversed(keys)]) if len(key_frame) else unique
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[codes]
    key_frame = key_frame.iloc[order].reset_index(drop=True)

    observed = np.zeros((n_entities, n_months), dtype=bool)
    observed[codes, col] = True
    span_first = np.full(n_entities, n_months, dtype=np.int64)
    np.minimum.at(span_first, codes, col)
    span_last = np.full(n_entities, -1, dtype=np.int64)
    np.maximum.at(span_last, codes, col)
    cols = np.arange(n_months)
    in_span = (cols >= span_first[:, None]) & (cols <= span_last[:, None])

    sales = np.where(in_span, 0.0, np.nan)
    sales[codes, col] = pd.to_numeric(snapshot[src.target_column]).to_numpy(dtype=float)
    covariate_arrays = {}
    for c in covariates:
        values = np.full((n_entities, n_months), np.nan)
        values[codes, col] = pd.to_numeric(snapshot[c], errors="coerce").to_numpy(dtype=float)
        covariate_arrays[c] = np.where(in_span, forward_fill(values), np.nan)
    attribute_columns = {}
    for a in attributes:
        category_codes, categories = pd.factorize(snapshot[a], use_na_sentinel=True)
        grid = np.full((n_entities, n_months), np.nan)
        grid[codes, col] = np.where(category_codes >= 0, category_codes, np.nan)
        filled = np.where(in_span, forward_fill(grid), np.nan)
        # Entity-fastest (column-major), as ``Panel.attribute`` reads them; -1 for nothing.
        flat = np.where(np.isnan(filled), -1, filled).astype(np.int32).ravel(order="F")
        attribute_columns[a] = Attribute(flat, categories, numeric=is_number(snapshot[a]))
    return Panel(
        keys=key_frame,
        key_dtypes={k: snapshot[k].dtype for k in keys},
        first_month=first_month,
        sales=sales,
        observed=observed,
        covariates=covariate_arrays,
        attributes=attribute_columns,
        span_first=span_first,
        span_last=span_last,
    )


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value of each row forward along the months (axis 1)."""
    if values.size == 0:
        return values.copy()
    index = np.where(np.isnan(values), 0, np.arange(values.shape[1]))
    np.maximum.accumulate(index, axis=1, out=index)
    filled = values[np.arange(values.shape[0])[:, None], index]
    # Before the first value of a row, index 0 points at a NaN or at that first value itself.
    return filled


def months_known(observed: np.ndarray, lookback: int) -> np.ndarray:
    """For each (entity, month t): t minus the month of the entity's first row within
    [t - lookback + 1, t], i.e. how many months of history it has there (0 = only t itself).

    -1 where it has no row in that window (dormant). A month's features depend only on the rows
    in its lookback, so every run whose window covers that range computes the same values.
    """
    n_entities, n_months = observed.shape
    padded = np.concatenate([np.zeros((n_entities, lookback - 1), dtype=bool), observed], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, lookback, axis=1)  # [E, T, lookback]
    has_row = windows.any(axis=2)
    first_in_window = windows.argmax(axis=2)  # offset of the first row in [t - lookback + 1, t]
    known = (lookback - 1) - first_in_window
    return np.where(has_row, known, -1)


def rolling(values: np.ndarray, window: int, how: str) -> np.ndarray:
    """Mean or standard deviation (ddof 1) over the ``window`` months ending at each month.

    Each window is reduced on its own values (no running sums), so a month's result is
    bit-for-bit the same whatever months precede it in a run. NaN for the first window - 1 months.
    """
    out = np.full(values.shape, np.nan)
    if values.shape[1] >= window:
        windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=1)
        out[:, window - 1 :] = windows.mean(axis=2) if how == "mean" else windows.std(axis=2, ddof=1)
    return out


def lagged(values: np.ndarray, by: int) -> np.ndarray:
    """values[:, t - by] at each month t (NaN for the first ``by`` months)."""
    out = np.full(values.shape, np.nan)
    if by < values.shape[1]:
        out[:, by:] = values[:, : values.shape[1] - by]
    return out

def key_text(values: pd.Series) -> np.ndarray:
    """Entity keys as text, as the panel and Feast have them ("7", never "7.0": a key column
    read with a null in it arrives as floats)."""
    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if (present == np.floor(present)).all():
            return values.astype("Int64").astype(str).to_numpy(dtype=object)
    return values.astype(str).to_numpy(dtype=object)
