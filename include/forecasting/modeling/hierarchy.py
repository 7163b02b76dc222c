"""Hierarchy: forecasts of every aggregation level that add up, never negative, with intervals.

The config's ``hierarchy.levels`` name groupings of the entities (the total, a region, a store,
a category, a region × category...). For month M, over the entities forecast for M (the
*bottom* series):

1. **Structure.** Each level's groups become aggregate series; the summing matrix ``S``
   (aggregates then bottom, sparse) adds the bottom series up into each of them.
2. **Base forecasts.** The bottom series have the gate's forecaster's forecasts; each aggregate
   gets its own from ``hierarchy.aggregate_forecaster`` (AutoETS by default) fitted on the
   aggregate's history (the sum of its members' sales), at M and at every holdout origin.
3. **Reconciliation.** hierarchicalforecast's MinTrace (``mint_shrink`` by default: the
   Schäfer-Strimmer shrunk covariance of the base forecasts' errors) or BottomUp; above
   ``hierarchy.sparse_above`` series, its sparse MinTrace (a diagonal W), whose cost grows with
   the non-zeros of ``S`` rather than with the square of the series. W is estimated from the
   base forecasts' errors on the holdout (every origin and horizon: evaluate's rows).
4. **Non-negative, coherent.** The reconciled bottom forecasts are clipped at 0 and every
   aggregate is then their sum: coherent by construction (to float precision), never negative.
5. **Intervals.** Each level's p10/p90 are split-conformal bands (``forecasting.modeling.
   intervals``) from that level's own errors of the *reconciled* forecasts on the holdout:
   not summed bounds, which would be far too wide for a total. Their coverage is measured as
   the bottom level's is (calibrated on half the target months, checked on the other half).

The holdout's reconciliation is scored per level against the unreconciled forecasts (the
aggregate forecaster's, and the sum of the bottom forecasts) into the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from forecasting.core.config import Config, HierarchyConfig
from forecasting.core.months import month_from_index
from forecasting.data.panel import Panel, key_text
from forecasting.modeling import baselines, intervals
from forecasting.modeling.scoring import metrics

log = logging.getLogger(__name__)

TOTAL = "total"
# A level with fewer holdout rows a horizon gets one band for every horizon.
MIN_ROWS_PER_HORIZON = 40
# Between the columns of a level's name and between the values of a group's key.
SEPARATOR = ","


def level_name(columns: Sequence[str]) -> str:
    """``total`` for the empty level, else its columns: ``region,category``."""
    return SEPARATOR.join(columns) or TOTAL


def level_columns(config: Config) -> list[str]:
    """The columns the hierarchy's levels group by, in the order first named."""
    assert config.hierarchy is not None
    return list(dict.fromkeys(c for level in config.hierarchy.levels for c in level))


def level_members(snapshot: pd.DataFrame, config: Config, keys: pd.DataFrame) -> pd.DataFrame:
    """Each entity's level columns as text (its latest row's attributes), in the order of ``keys``."""
    assert config.hierarchy is not None
    src = config.source
    columns = level_columns(config)
    latest = snapshot.sort_values(src.time_column).drop_duplicates(src.entity_columns, keep="last")
    text = pd.DataFrame({k: key_text(latest[k]) for k in src.entity_columns})
    for c in columns:
        if c not in src.entity_columns:
            text[c] = latest[c].astype("string").fillna("").to_numpy()
    found = keys.merge(text, on=src.entity_columns, how="left")
    return found[columns].astype(str)


@dataclass
class Structure:
    """The aggregate series of the levels over a set of bottom series."""

    levels: list[tuple[str, ...]]
    columns: list[str]  # every column some level groups by, in the order first named
    series: pd.DataFrame  # per aggregate: level, level_key and each of columns (text; None outside its level)
    summing: sparse.csr_matrix  # [aggregates, bottom]: 1 where the bottom series is in the aggregate

    @property
    def aggregates(self) -> int:
        return self.summing.shape[0]

    def rows_of(self, level: Sequence[str]) -> np.ndarray:
        return np.flatnonzero(self.series["level"].to_numpy() == level_name(level))

    def S(self, dense: bool) -> np.ndarray | sparse.csr_matrix:
        """The summing matrix of every series: the aggregates, then the bottom series (identity)."""
        stacked = sparse.vstack([self.summing, sparse.identity(self.summing.shape[1])], format="csr")
        return stacked.toarray() if dense else stacked


def structure(members: pd.DataFrame, levels: Sequence[Sequence[str]]) -> Structure:
    """The aggregates of ``levels`` over the bottom series ``members`` (one row each, in order,
    with every column a level names, as text)."""
    columns = list(dict.fromkeys(c for level in levels for c in level))
    n = len(members)
    frames, rows, offset = [], [], 0
    for level in levels:
        level = tuple(level)
        if level:
            grouped = members.groupby(list(level), sort=True, dropna=False)
            code = grouped.ngroup().to_numpy()
            keys = grouped.size().index.to_frame(index=False).astype(str)
        else:
            code, keys = np.zeros(n, dtype=np.int64), pd.DataFrame(index=[0])
        frame = pd.DataFrame(
            {
                "level": level_name(level),
                "level_key": keys.agg(SEPARATOR.join, axis=1) if level else TOTAL,
                **{c: keys[c] if c in level else None for c in columns},
            },
            index=range(len(keys)),
        )
        frames.append(frame)
        rows.append(offset + code)
        offset += len(frame)
    series = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.tile(np.arange(n), len(levels))
    summing = sparse.csr_matrix((np.ones(len(row)), (row, col)), shape=(offset, n))
    return Structure([tuple(level) for level in levels], columns, series, summing)


def aggregate_panel(panel: Panel, bottom: np.ndarray, summing: sparse.csr_matrix) -> Panel:
    """The panel of the aggregates: each month's sales the sum of its members' (0 for a member
    outside its span), inside the span of any member."""
    sales = panel.sales[bottom]
    in_span = (summing @ (~np.isnan(sales)).astype(float)) > 0
    total = summing @ np.nan_to_num(sales)
    observed = (summing @ panel.observed[bottom].astype(float)) > 0
    months = panel.months
    any_span = in_span.any(axis=1)
    first = np.where(any_span, in_span.argmax(axis=1), months)
    last = np.where(any_span, months - 1 - in_span[:, ::-1].argmax(axis=1), -1)
    return Panel(
        keys=pd.DataFrame({"series": np.arange(summing.shape[0]).astype(str)}),
        key_dtypes={"series": object},
        first_month=panel.first_month,
        sales=np.where(in_span, total, np.nan),
        observed=observed,
        covariates={},
        attributes={},
        span_first=first.astype(np.int64),
        span_last=last.astype(np.int64),
    )


@dataclass
class Holdout:
    """The bottom forecaster's forecasts of the holdout rows, as production makes them."""

    entity: np.ndarray  # panel rows
    origin: np.ndarray  # month indices
    horizon: np.ndarray
    forecast: np.ndarray
    actual: np.ndarray


@dataclass
class Reconciled:
    """M's reconciled forecasts: the bottom's (one row per bottom series, one column per horizon)
    with their p10/p90, every aggregate's as rows of ``<table>_levels``, and the report."""

    bottom: np.ndarray
    bottom_p10: np.ndarray
    bottom_p90: np.ndarray
    levels: pd.DataFrame
    report: dict[str, Any]


def reconciler(config: HierarchyConfig, series: int) -> tuple[Any, bool, str]:
    """hierarchicalforecast's reconciler for the config and the number of series, whether it
    takes a dense S, and its name."""
    from hierarchicalforecast.methods import BottomUp, MinTrace, MinTraceSparse

    method = config.reconciliation
    if method == "bottom_up":
        return BottomUp(), True, "bottom_up"
    if series > config.sparse_above:
        # mint_shrink's covariance is dense: the sparse form's nearest estimator is wls_var.
        sparse_method = method if method in ("ols", "wls_struct", "wls_var") else "wls_var"
        return MinTraceSparse(method=sparse_method, qp=False), False, f"mint_sparse_{sparse_method}"
    return MinTrace(method=method), True, method


def _fill_missing_errors(errors: np.ndarray, base: np.ndarray) -> np.ndarray:
    """A series with fewer than two holdout errors (new in the holdout), or errors that never
    vary (a series that sold nothing, forecast as nothing), gets a variance from the mean
    absolute relative error of the others at its own forecast's scale (``base``: [series, 1]),
    and no correlation: MinTrace's W needs a positive variance for every series."""
    known = np.isfinite(errors)
    spread = np.zeros(len(errors))
    some = known.sum(axis=1) >= 2
    spread[some] = np.nanstd(np.where(known, errors, np.nan)[some], axis=1)
    few = (known.sum(axis=1) < 2) | ~(np.nan_to_num(spread) > 1e-6)
    if not few.any():
        return errors
    scale_of = np.maximum(np.abs(np.repeat(base, errors.shape[1], axis=1)), 1)
    usable = known & ~few[:, None]
    relative = np.abs(errors[usable]) / scale_of[usable]
    scale = float(np.mean(relative)) if relative.size else 1.0
    signs = np.where(np.arange(errors.shape[1]) % 2 == 0, 1.0, -1.0)
    out = errors.copy()
    out[few] = scale * np.maximum(np.abs(base[few]), 1) * signs
    return out


def reconcile_month(
    panel: Panel,
    active: np.ndarray,
    month_index: int,
    base_bottom: np.ndarray,
    holdout: Holdout,
    members: pd.DataFrame,
    config: HierarchyConfig,
    jobs: int | None = None,
    search_max_series: int | None = None,
    realised: pd.DataFrame | None = None,
    realised_levels: pd.DataFrame | None = None,
) -> Reconciled:
    """Reconcile M's forecasts: ``active`` (panel rows) are the bottom series, ``base_bottom``
    their forecasts ([series, horizon]), ``holdout`` the same forecaster's on the holdout rows,
    ``members`` the level columns of each bottom series (text). The bottom series' bands pool
    the published forecasts' ``realised`` errors (forecasting.modeling.intervals) with the
    holdout's; each level's pool its own published forecasts' realised errors
    (``realised_levels``: a ``level`` column beside forecast_month, horizon, forecast, actual)."""
    started = time.perf_counter()
    horizons = base_bottom.shape[1]
    st = structure(members, config.levels)
    agg_panel = aggregate_panel(panel, active, st.summing)
    # The holdout's (origin, horizon) pairs, then M's horizons: one column of y_hat each.
    pairs = np.unique(np.stack([holdout.origin, holdout.horizon], axis=1), axis=0).reshape(-1, 2)
    origins = np.concatenate([pairs[:, 0], np.full(horizons, month_index)])
    steps = np.concatenate([pairs[:, 1], np.arange(1, horizons + 1)])
    held = len(pairs)

    position = np.full(panel.entities, -1)
    position[active] = np.arange(len(active))
    pair_of = {(int(o), int(h)): j for j, (o, h) in enumerate(pairs)}
    row = position[holdout.entity]
    col = np.array([pair_of[(int(o), int(h))] for o, h in zip(holdout.origin, holdout.horizon, strict=True)])
    kept = row >= 0  # holdout rows of entities forecast for M
    bottom_held = np.zeros((len(active), held))  # no row at an origin: not forecast then (0)
    bottom_actual = np.full((len(active), held), np.nan)
    bottom_held[row[kept], col[kept]] = np.nan_to_num(holdout.forecast[kept])
    bottom_actual[row[kept], col[kept]] = holdout.actual[kept]

    base_agg = _aggregate_forecasts(agg_panel, origins, steps, config, jobs, search_max_series)
    summed = st.summing @ np.concatenate([bottom_held, base_bottom], axis=1)
    base_agg = np.where(np.isfinite(base_agg), np.maximum(base_agg, 0), summed)  # no history: bottom-up
    target_col = pairs[:, 0] + pairs[:, 1] - panel.first_month
    agg_actual = np.nan_to_num(agg_panel.sales[:, target_col]) if held else np.zeros((st.aggregates, 0))

    errors = np.concatenate([agg_actual - base_agg[:, :held], bottom_actual - bottom_held])
    y_hat = np.concatenate([base_agg, np.concatenate([bottom_held, base_bottom], axis=1)])
    pair_h, pair_target = np.asarray(pairs[:, 1]), pairs[:, 0] + pairs[:, 1]
    bottom_then, bottom_now, used = _reconciled(st, y_hat, errors, held, pair_target, config)
    guarded = _guard(bottom_then, bottom_held, bottom_actual, used, config)
    if guarded is not None:  # the entities got worse: bottom-up instead
        bottom_up = config.model_copy(update={"reconciliation": "bottom_up"})
        bottom_then, bottom_now, used = _reconciled(st, y_hat, errors, held, pair_target, bottom_up)
    bottom = np.concatenate([bottom_then, bottom_now], axis=1)
    aggregates = st.summing @ bottom

    report: dict[str, Any] = {"reconciliation": used, "series": int(y_hat.shape[0]), "levels": {}}
    if guarded is not None:
        report["instead_of"] = guarded
    level_rows = {level_name(level): st.rows_of(level) for level in st.levels}
    specs: dict[str, dict | None] = {}
    for name, rows in level_rows.items():
        specs[name], report["levels"][name] = _score_level(
            aggregates[rows, :held],
            base_agg[rows, :held],
            summed[rows, :held],
            agg_actual[rows],
            pair_h,
            pair_target,
            _of_level(realised_levels, name),
        )
    bottom_spec, report["bottom"] = _score_level(
        bottom[:, :held], bottom_held, bottom_held, bottom_actual, pair_h, pair_target, realised
    )
    horizon_of = np.tile(np.arange(1, horizons + 1), (len(active), 1))
    p10, p90 = intervals.apply(bottom_spec, bottom[:, held:].ravel(), horizon_of.ravel())
    levels = _level_rows(st, aggregates[:, held:], specs, month_index)
    report["seconds"] = round(time.perf_counter() - started, 3)
    log.info(
        "Reconciled %d series (%d aggregates over %d entities, %s) in %.1f s",
        y_hat.shape[0],
        st.aggregates,
        len(active),
        used,
        report["seconds"],
    )
    return Reconciled(
        bottom[:, held:],
        p10.reshape(bottom[:, held:].shape),
        p90.reshape(bottom[:, held:].shape),
        levels,
        report,
    )


def _guard(
    reconciled: np.ndarray, unreconciled: np.ndarray, actual: np.ndarray, used: str, config: HierarchyConfig
) -> dict[str, Any] | None:
    """Why the reconciliation ``used`` may not be kept (None: it may): it made the entities'
    holdout WAPE more than ``max_bottom_loss`` worse than their unreconciled forecasts'."""
    known = np.isfinite(actual)
    if config.reconciliation == "bottom_up" or not known.any():
        return None
    before = metrics(actual[known], unreconciled[known])["wape"]
    after = metrics(actual[known], reconciled[known])["wape"]
    if not after > before * (1 + config.max_bottom_loss):
        return None
    log.warning(
        "%s made the entities' holdout WAPE %.4f against %.4f unreconciled (more than %.0f%% worse): "
        "reconciling bottom-up instead",
        used,
        after,
        before,
        100 * config.max_bottom_loss,
    )
    return {"configured": used, "entities_wape": after, "unreconciled_wape": before}


def _reconciled(
    st: Structure,
    y_hat: np.ndarray,
    errors: np.ndarray,
    held: int,
    target: np.ndarray,
    config: HierarchyConfig,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The bottom series' reconciled forecasts of the holdout's columns of ``y_hat`` (the first
    ``held``, of target months ``target``) and of M's (the rest), and the reconciler's name.
    M's use W from every holdout error; the holdout's, W from the errors of the other half of the
    target months only, so that no forecast scored or calibrated on was reconciled with weights
    fitted on its own error."""
    fill = y_hat[:, held : held + 1]  # each series' forecast of M + 1: the scale of a made-up error
    bottom_now, used = _reconcile(st, y_hat[:, held:], errors, fill, config)
    bottom_then = np.zeros((st.summing.shape[1], held))
    months = np.unique(target)
    first_half = np.isin(target, months[: len(months) // 2])
    for fit, check in ((first_half, ~first_half), (~first_half, first_half)):
        if check.any():
            learn = fit if fit.any() else check  # one target month only: in sample
            bottom_then[:, check], _ = _reconcile(
                st, y_hat[:, :held][:, check], errors[:, learn], fill, config
            )
    return bottom_then, bottom_now, used


def _reconcile(
    st: Structure, y_hat: np.ndarray, errors: np.ndarray, fill: np.ndarray, config: HierarchyConfig
) -> tuple[np.ndarray, str]:
    """The bottom series' reconciled forecasts of the columns of ``y_hat`` (every series'
    base forecasts), W estimated from ``errors`` (every series' holdout errors; ``fill``: each
    series' scale for those it lacks), clipped at 0; and the reconciler's name."""
    errors = _fill_missing_errors(errors, fill)
    method, dense, used = reconciler(config, y_hat.shape[0])
    fitted = method.fit_predict(
        S=st.S(dense), y_hat=y_hat, y_insample=errors, y_hat_insample=np.zeros_like(errors)
    )["mean"]
    # Clipped at 0; every aggregate is then the sum of the bottom: non-negative and coherent.
    return np.maximum(np.asarray(fitted)[st.aggregates :], 0.0), used


def _aggregate_forecasts(
    agg_panel: Panel,
    origins: np.ndarray,
    steps: np.ndarray,
    config: HierarchyConfig,
    jobs: int | None,
    search_max_series: int | None,
) -> np.ndarray:
    """The aggregate forecaster's forecast of every aggregate at each (origin, horizon) column."""
    n = agg_panel.entities
    entity = np.repeat(np.arange(n), len(origins))
    origin, horizon = np.tile(origins, n), np.tile(steps, n)
    name = config.aggregate_forecaster
    if name in baselines.STATISTICAL:
        got = baselines.statistical_forecasts(
            agg_panel, entity, origin, horizon, [name], jobs, search_max_series
        )[name]
    else:
        got = baselines.forecast(name, agg_panel, entity, origin, horizon, jobs)
    return np.asarray(got, dtype=float).reshape(n, len(origins))


def _of_level(realised_levels: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    if realised_levels is None or realised_levels.empty:
        return None
    rows = realised_levels[realised_levels["level"] == name]
    return rows.drop(columns="level") if len(rows) else None


def _score_level(
    reconciled: np.ndarray,
    base: np.ndarray,
    bottom_up: np.ndarray,
    actual: np.ndarray,
    horizon: np.ndarray,
    target: np.ndarray,
    realised: pd.DataFrame | None = None,
) -> tuple[dict | None, dict[str, Any]]:
    """A level's p10/p90 bands from its reconciled holdout errors (pooled with ``realised``),
    and its scores: WAPE of the reconciled forecasts, of the base forecasts and of the sum of the
    bottom forecasts, and the coverage of the bands on months they were not calibrated on."""
    known = np.isfinite(actual)
    h = np.broadcast_to(horizon, actual.shape)[known]
    if len(h) and np.bincount(h).max() < MIN_ROWS_PER_HORIZON:
        # Too few rows a horizon for percentiles (a level of a few groups): one band for all.
        h = np.ones_like(h)
        realised = None if realised is None else realised.assign(horizon=1)
    t = np.broadcast_to(target, actual.shape)[known]
    y, f = actual[known], reconciled[known]
    spec = intervals.calibrate(f, y, h, t, realised=realised) if len(y) else None
    held = intervals.coverage(f, y, h, t) if len(y) else None
    return spec, {
        "series": int(actual.shape[0]),
        "rows": int(known.sum()),
        "reconciled": metrics(y, f) if len(y) else None,
        "base": metrics(y, base[known]) if len(y) else None,
        "bottom_up": metrics(y, bottom_up[known]) if len(y) else None,
        "coverage": held,
    }


def _level_rows(
    st: Structure, forecasts: np.ndarray, specs: dict[str, dict | None], month_index: int
) -> pd.DataFrame:
    """One row per aggregate and horizon: level, level_key, the level columns, forecast_month,
    horizon, prediction, p10, p90."""
    horizons = forecasts.shape[1]
    frame = st.series.loc[st.series.index.repeat(horizons)].reset_index(drop=True)
    horizon = np.tile(np.arange(1, horizons + 1), st.aggregates)
    frame["forecast_month"] = [month_from_index(month_index + int(h)).to_timestamp().date() for h in horizon]
    frame["horizon"] = horizon
    frame["prediction"] = forecasts.ravel()
    frame["p10"], frame["p90"] = np.nan, np.nan
    for name, spec in specs.items():
        rows = (frame["level"] == name).to_numpy()
        frame.loc[rows, "p10"], frame.loc[rows, "p90"] = intervals.apply(
            spec, frame.loc[rows, "prediction"].to_numpy(), horizon[rows]
        )
    return frame


def bottom_sums(bottom: pd.DataFrame, levels: pd.DataFrame) -> np.ndarray:
    """Per row of ``levels``, the sum of the predictions of ``bottom`` (one row per entity and
    horizon, with the level columns as text) in its group and horizon: what it must equal."""
    out = np.zeros(len(levels))
    for name, rows in levels.groupby("level", sort=False):
        level = [] if name == TOTAL else str(name).split(SEPARATOR)
        sums = (
            bottom.groupby([*level, "horizon"], dropna=False)["prediction"].sum().rename("_sum").reset_index()
        )
        joined = rows[[*level, "horizon"]].merge(sums, on=[*level, "horizon"], how="left")
        out[levels.index.get_indexer(rows.index)] = joined["_sum"].fillna(0.0).to_numpy()
    return out
