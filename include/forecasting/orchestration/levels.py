"""The predict stage's part for a config with a hierarchy: M's forecasts reconciled with the
levels' (forecasting.modeling.hierarchy), using the published forecaster's holdout errors.

The forecaster is the gate's choice, so its holdout forecasts are picked here (the registry's
layer knows a champion's): the challenger's and every baseline's from evaluate's
holdout_forecasts.parquet, a champion's by its saved holdout model, a blend's as the mean of its
members'.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import month_index
from forecasting.data.panel import build_panel, key_text
from forecasting.features import dataset
from forecasting.modeling import hierarchy
from forecasting.modeling.forecaster import MODEL, Baseline, Blend, Model, parse
from forecasting.modeling.scoring import combine
from forecasting.monitoring.coverage import realised_level_errors

log = logging.getLogger(__name__)


def _member_forecasts(
    member: str, version: str | None, held: pd.DataFrame, config: Config, model_dir: Path
) -> np.ndarray:
    """One member's holdout forecasts: the challenger's or a baseline's as evaluate saved them,
    a champion's from its holdout model (the challenger's when it cannot forecast these rows)."""
    from forecasting.registry.champion import ChampionUnavailable, predict_saved_model

    if member != MODEL:
        got = held[member].to_numpy(dtype=float)
        # A statistical baseline scored on a sample only: the model's forecasts off the sample.
        return np.where(np.isfinite(got), got, held[MODEL].to_numpy(dtype=float))
    challenger = paths.read_json(paths.model_metadata(model_dir))["model_version"]
    if version is None or version == challenger:
        return held[MODEL].to_numpy(dtype=float)
    rows = dataset.read_rows(paths.holdout_rows(model_dir))
    first = str(pd.Period(min(rows[dataset.TARGET_MONTH]), "M") - 1)
    try:
        return predict_saved_model(config, version, rows, first)[0]
    except ChampionUnavailable as err:
        log.warning(
            "Reconciling with the challenger's holdout errors: the champion %s cannot forecast them (%s)",
            version,
            err,
        )
        return held[MODEL].to_numpy(dtype=float)


def holdout_of(forecaster: str, config: Config, model_dir: Path) -> hierarchy.Holdout:
    """The forecaster's forecasts of the holdout rows, as production makes them."""
    held = pd.read_parquet(paths.existing(paths.holdout_forecasts(model_dir)))
    match parse(forecaster):
        case Baseline(name):
            forecast = _member_forecasts(name, None, held, config, model_dir)
        case Blend() as blended:
            forecast = combine(
                [
                    _member_forecasts(m, blended.model_version, held, config, model_dir)
                    for m in blended.members
                ]
            )
        case Model(version):
            forecast = _member_forecasts(MODEL, version, held, config, model_dir)
    return hierarchy.Holdout(
        entity=held["entity"].to_numpy(),
        origin=held["origin"].to_numpy(),
        horizon=held["horizon"].to_numpy(),
        forecast=np.asarray(forecast, dtype=float),
        actual=held["actual"].to_numpy(dtype=float),
    )


def reconcile(
    frame: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    model_dir: Path,
    forecaster: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """M's forecasts (``frame``: predict's rows) reconciled, with new p10/p90, the levels' rows,
    and the report. ``snapshot`` holds the entity, time, target and level columns."""
    assert config.hierarchy is not None
    src = config.source
    panel = build_panel(
        snapshot[[*src.entity_columns, src.time_column, src.target_column]], config, sales_only=True
    )
    index = panel.keys.reset_index().rename(columns={"index": "_row"})
    keys = pd.DataFrame({k: key_text(frame[k]) for k in src.entity_columns})
    rows = keys.merge(index, on=src.entity_columns, how="left")["_row"]
    if rows.isna().any():
        raise RuntimeError(f"{int(rows.isna().sum())} forecast rows have no entity in the snapshot")
    row = rows.to_numpy(dtype=np.int64)
    active = np.unique(row)
    position = np.searchsorted(active, row)
    horizon = frame["horizon"].to_numpy(dtype=np.int64)
    base = np.zeros((len(active), config.horizon))
    base[position, horizon - 1] = frame["prediction"].to_numpy(dtype=float)
    members = hierarchy.level_members(snapshot, config, panel.keys.iloc[active].reset_index(drop=True))
    made = hierarchy.reconcile_month(
        panel,
        active,
        month_index(month),
        base,
        holdout_of(forecaster, config, model_dir),
        members,
        config.hierarchy,
        config.evaluation.statistical_jobs,
        config.evaluation.auto_ets_search_max_series,
        _realised(model_dir),
        realised_level_errors(config, month),
    )
    out = frame.copy()
    out["prediction"] = made.bottom[position, horizon - 1]
    out["p10"] = made.bottom_p10[position, horizon - 1]
    out["p90"] = made.bottom_p90[position, horizon - 1]
    return out, made.levels, made.report


def _realised(model_dir: Path) -> pd.DataFrame | None:
    """The realised errors evaluate pooled into its bands (beside the model; None: none)."""
    path = paths.realised_errors(model_dir)
    return pd.read_parquet(path) if path.is_file() else None
