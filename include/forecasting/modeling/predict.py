"""Predict: forecasts for months M+1..M+horizon for every entity active in month M."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.core.months import month_from_index, month_index
from forecasting.data.panel import Panel, build_panel
from forecasting.features import dataset
from forecasting.features.calendar import CALENDAR_FEATURES
from forecasting.modeling import baselines, drivers
from forecasting.modeling import booster as model
from forecasting.modeling.forecaster import (
    MODEL_FORECAST,
    STATISTICAL_FORECAST,
    Baseline,
    Blend,
    Forecaster,
    Model,
)
from forecasting.modeling.scoring import combine

log = logging.getLogger(__name__)


def active_entities(panel: Panel, m: int) -> np.ndarray:
    """The panel rows of the entities with a row in month index ``m`` (those that get forecasts)."""
    col = panel.column(m)
    if not 0 <= col < panel.months:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(panel.observed[:, col])


def forecast_rows(panel: Panel, entity: np.ndarray, m: int, horizon: np.ndarray) -> pd.DataFrame:
    """The identity of forecast rows: entity keys back in the source's types (so analysts join on
    them as they are), forecast_month (M + horizon) and horizon."""
    out = panel.keys.iloc[entity].reset_index(drop=True)
    for key, dtype in panel.key_dtypes.items():
        out[key] = out[key].astype(dtype)
    horizon = np.asarray(horizon)
    months = {int(h): month_from_index(m + int(h)).to_timestamp().date() for h in np.unique(horizon)}
    out["forecast_month"] = pd.Series(horizon).map(months).to_numpy()
    out["horizon"] = horizon
    return out


@dataclass
class ForecastInputs:
    """What a model forecasts month M from: the active entities (rows of the panel) and their
    point-in-time features as of the end of M, with the plans for M + 1..M + horizon as they
    stood then (the ``plan_<covariate>__h<h>`` columns of ``dataset.retrieve``)."""

    panel: Panel
    month: pd.Period
    active: np.ndarray
    features: pd.DataFrame


def check_planned_features(metadata: dict, config: Config) -> None:
    """A model fitted on plans (or a calendar) the config no longer reads may never forecast
    without them."""
    planned = [f for f in metadata["features"] if f.startswith("plan_") or f in CALENDAR_FEATURES]
    unplanned = [f for f in planned if f not in dataset.model_features(config)]
    if unplanned:
        raise RuntimeError(
            f"{metadata['model_version']} reads known-future features the config's plans or calendar "
            f"section does not provide ({', '.join(unplanned)}): configure them, or train a model without them"
        )


def forecast_inputs(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, client=None, panel: Panel | None = None
) -> ForecastInputs:
    """``panel``: the snapshot's (sales only), if built already."""
    panel = panel if panel is not None else build_panel(snapshot, config, sales_only=True)
    m = month_index(month)
    active = active_entities(panel, m)
    # The same point-in-time retrieval as training, so a backfill of M forecasts as M's run did;
    # with plans, each horizon h gets the plan for M + h as it stood at the end of M.
    features = dataset.retrieve(config, panel, active, np.full(len(active), m), client)
    missing = features["sales_lag_1"].isna()
    if missing.any():
        raise RuntimeError(f"{int(missing.sum())} forecast rows found no features for {month} in Feast")
    # Text encoded once, not once per horizon's design matrix.
    return ForecastInputs(panel, month, active, dataset.text_as_categories(features))


def predict_inputs(
    inputs: ForecastInputs, config: Config, booster, metadata: dict, explain: bool = False
) -> pd.DataFrame:
    """One row per active entity and horizon (by horizon, then entity): keys, forecast_month,
    horizon and the model's prediction from ``inputs.features``; with ``explain``, also its
    drivers (``driver_<family>`` in the forecast's units, forecasting.modeling.drivers) and
    ``explained`` (1: the model's drivers explain all of it)."""
    m, active = month_index(inputs.month), inputs.active
    parts = []
    for h in range(1, config.horizon + 1):
        frame = dataset.with_model_columns(
            inputs.features,
            np.full(len(active), h),
            metadata["features"],
            np.full(len(active), m + h),
            config,
        )
        out = forecast_rows(inputs.panel, active, m, np.full(len(active), h))
        X = dataset.design_matrix(frame, config, metadata["categories"], metadata["features"])
        out["prediction"] = model.predict(booster, X)
        made = drivers.explain(booster, X, config) if explain else None
        if made is not None:
            out = pd.concat([out, made.reset_index(drop=True)], axis=1)
            out[drivers.EXPLAINED] = 1.0
        parts.append(out)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def forecast(
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    model_dir: Path,
    client=None,
    panel: Panel | None = None,
    explain: bool = False,
) -> pd.DataFrame:
    """One row per active entity and horizon: keys (source types), forecast_month, horizon,
    prediction (and with ``explain``, its drivers: ``predict_inputs``). ``panel``: the
    snapshot's (sales only), if built already."""
    booster, metadata = model.load(model_dir)
    check_planned_features(metadata, config)
    inputs = forecast_inputs(snapshot, config, month, client, panel)
    result = predict_inputs(inputs, config, booster, metadata, explain)
    log.info(
        "Forecast %d entities x %d horizons for %s with %s",
        len(inputs.active),
        config.horizon,
        month,
        metadata["model_version"],
    )
    return result


def baseline_forecasts(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, names: Sequence[str], panel: Panel | None = None
) -> pd.DataFrame:
    """The rows of ``forecast`` with one column per baseline in ``names`` (instead of
    ``prediction``), each made from each active entity's history up to M, as evaluation scores
    it. The statistical ones are fitted together, once per entity (its forecasts of every
    horizon come from that one fit). ``panel``: the snapshot's (sales only), if built already."""
    panel = panel if panel is not None else build_panel(snapshot, config, sales_only=True)
    m = month_index(month)
    active = active_entities(panel, m)
    horizons = np.arange(1, config.horizon + 1)
    entity, horizon = np.repeat(active, len(horizons)), np.tile(horizons, len(active))
    origin = np.full(len(entity), m)
    jobs = config.evaluation.statistical_jobs
    statistical = [name for name in names if name in baselines.STATISTICAL]
    search = config.evaluation.auto_ets_search_max_series  # the form evaluation scored
    values = baselines.statistical_forecasts(panel, entity, origin, horizon, statistical, jobs, search)
    for name in names:
        if name not in values:
            values[name] = baselines.forecast(name, panel, entity, origin, horizon, jobs)
    out = forecast_rows(panel, entity, m, horizon)
    for name in names:
        if np.isnan(values[name]).any():  # an entity with a row in M always has a history: never publish NaN
            raise RuntimeError(
                f"the {name} baseline has no forecast for {int(np.isnan(values[name]).sum())} rows"
            )
        out[name] = np.clip(values[name], 0, None)
    out = out.sort_values(["horizon"], kind="stable").reset_index(drop=True)  # as forecast(): by horizon
    log.info(
        "Forecast %d entities x %d horizons for %s with %s",
        len(active),
        len(horizons),
        month,
        ", ".join(names),
    )
    return out


def baseline_forecast(
    snapshot: pd.DataFrame, config: Config, month: pd.Period, name: str, panel: Panel | None = None
) -> pd.DataFrame:
    """The rows of ``forecast``, made by the baseline ``name`` (what the gate publishes when no
    model beats it)."""
    return baseline_forecasts(snapshot, config, month, [name], panel).rename(columns={name: "prediction"})


def blend_forecast(
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    blended: Blend,
    models_dir: Path,
    client=None,
    explain: bool = False,
) -> pd.DataFrame:
    """The rows of ``forecast``: the equal-weight mean of the blend's members' forecasts of each
    row, its model's (from ``models_dir``) and its baselines' (forecasting.modeling.scoring.combine,
    as evaluate scored it). With ``explain`` and a model in the blend, the drivers of the model's
    part and the baselines' part (forecasting.modeling.drivers.blended)."""
    panel = build_panel(snapshot, config, sales_only=True)  # one panel for all
    base = baseline_forecasts(snapshot, config, month, blended.baselines, panel)
    identity = [c for c in base.columns if c not in blended.baselines]
    parts = [base[name].to_numpy() for name in blended.baselines]
    made = None
    if blended.model_version is not None:
        version = models_dir / blended.model_version
        made = forecast(snapshot, config, month, version, client, panel, explain)
        # Both are by horizon, then entity, over the same active entities: the same rows in the same order.
        if not made[identity].equals(base[identity]):
            raise RuntimeError(
                f"the model's and the baselines' forecast rows differ: cannot blend them ({blended})"
            )
        parts.insert(0, made["prediction"].to_numpy())
    out = base[identity].copy()
    out["prediction"] = combine(parts)
    # The members the forecast value added's waterfall reads (with_step_forecasts): made already.
    if made is not None:
        out[MODEL_FORECAST] = made["prediction"].to_numpy()
    if config.monitoring.fva_statistical in blended.baselines:
        out[STATISTICAL_FORECAST] = base[config.monitoring.fva_statistical].to_numpy()
    if made is not None and drivers.driver_columns(made):
        share = drivers.blended(made, made["prediction"].to_numpy(), out["prediction"].to_numpy(), len(parts))
        out = pd.concat([out, share], axis=1)
    return out


def with_step_forecasts(
    frame: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    forecaster: Forecaster,
    challenger_dir: Path,
    client=None,
) -> pd.DataFrame:
    """``frame`` (the published forecaster's rows) with the forecasts of the steps before it in
    the forecast value added's waterfall (forecasting.monitoring.value_added), each made only
    where the forecaster did not make it already:

    * ``model_forecast``: the model's own forecast: the published model's (alone, or its part of
      a blend); when the gate published a baseline or a blend of baselines, the model this run
      trained (``challenger_dir``, the one it turned down), forecast now;
    * ``statistical_forecast``: ``monitoring.fva_statistical``'s forecast (Theta by default) for
      every active entity, one fit each, as predict fits a published one (none: null).
    """
    out, keys = frame.copy(), config.source.entity_columns
    panel = None
    if MODEL_FORECAST not in out:
        if isinstance(forecaster, Model):
            out[MODEL_FORECAST] = out["prediction"]
        else:
            panel = build_panel(snapshot, config, sales_only=True)
            made = forecast(snapshot, config, month, challenger_dir, client, panel)
            out[MODEL_FORECAST] = _same_rows(out, made, "prediction", "the challenger's", keys)
    name = config.monitoring.fva_statistical
    if name is not None and STATISTICAL_FORECAST not in out:
        if forecaster == Baseline(name):
            out[STATISTICAL_FORECAST] = out["prediction"]
        else:
            panel = panel if panel is not None else build_panel(snapshot, config, sales_only=True)
            made = baseline_forecasts(snapshot, config, month, [name], panel)
            out[STATISTICAL_FORECAST] = _same_rows(out, made, name, f"the {name}", keys)
    return out


def _same_rows(
    frame: pd.DataFrame, made: pd.DataFrame, column: str, whose: str, keys: list[str]
) -> np.ndarray:
    """``made[column]`` for the rows of ``frame`` (both by horizon, then entity, over the same
    active entities: the same rows in the same order, or refused)."""
    identity = [*keys, "forecast_month", "horizon"]
    if not made[identity].reset_index(drop=True).equals(frame[identity].reset_index(drop=True)):
        raise RuntimeError(f"{whose} forecast rows differ from the published forecaster's")
    return made[column].to_numpy(dtype=float)
