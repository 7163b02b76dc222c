"""The drivers of a forecast: each family's contribution to it, in the forecast's units.

XGBoost's exact TreeSHAP (``booster.contributions``) splits each row's *margin* among the
columns the model reads, plus a bias; the columns are summed by family
(forecasting.features.families). How the margin's parts become units:

* A log-link objective (Tweedie, Poisson, gamma: the default) forecasts ``P = exp(margin)``, so
  the families' parts multiply: ``P = R * exp(phi_1) * ... * exp(phi_k)``. From a reference ``R``
  each family gets ``L(P, R) * phi_f``, where ``L(P, R) = (P - R) / (ln P - ln R)`` is the
  logarithmic mean of P and R (the log-mean Divisia index, LMDI-I): the parts sum to ``P - R``
  exactly, each has its family's sign, and none blows up when the margin is near zero. The
  reference is the series' recent level ``1 + mean`` for a model scaled by the recent mean (it
  starts from that level: ``R`` is counted in ``level``, the trees' average factor in ``bias``),
  else the trees' average forecast (counted in ``bias``).
* An identity-link objective forecasts the margin itself: each family's part is its sum, the
  bias the trees' average; a forecast clipped at zero counts the clip in ``bias``.

Either way a row's families sum to its forecast (tests/modeling/test_drivers.py checks it).
A blend's published forecast is the mean of its members: its model's drivers, times the
model's weight, explain the model's part; ``baselines`` is the rest, which no driver explains.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.features.families import BIAS, FAMILIES, LEVEL, families_of
from forecasting.modeling import booster as model

log = logging.getLogger(__name__)

PREFIX = "driver_"
# A blend's statistical members' part of the published forecast (no driver explains it).
BASELINES = "baselines"
# The share of the published forecast that the model's drivers explain.
EXPLAINED = "explained"


def column(family: str) -> str:
    return f"{PREFIX}{family}"


def driver_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if str(c).startswith(PREFIX)]


def _logarithmic_mean(p: np.ndarray, r: np.ndarray, log_ratio: np.ndarray) -> np.ndarray:
    """(P - R) / (ln P - ln R), and P where the two are (nearly) equal (its limit)."""
    close = np.abs(log_ratio) < 1e-9
    return np.where(close, p, (p - r) / np.where(close, 1.0, log_ratio))


def explain(booster, X: pd.DataFrame, config: Config) -> pd.DataFrame | None:
    """One row per row of X: ``driver_<family>`` for each family of the model's columns and
    ``driver_bias``, in the forecast's units, summing to ``booster.predict``'s forecast of the
    row; None (logged) for an objective whose margin is neither the forecast nor its log."""
    link = model.link(booster)
    if link is None:
        log.warning("No drivers: the model's objective has neither a log nor an identity link")
        return None
    most = config.model.exact_drivers_max_series
    contribs, base_margin = model.contributions(booster, X, exact=most is None or len(X) <= most)
    of_column = families_of(list(X.columns), config)
    present = [f for f in FAMILIES if f in of_column]
    phi = {f: contribs[:, [i for i, g in enumerate(of_column) if g == f]].sum(axis=1) for f in present}
    bias = contribs[:, -1]
    total = contribs.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    if link == "log":
        reference = base_margin if base_margin is not None else bias
        if base_margin is not None:
            phi[BIAS] = bias - base_margin  # the trees' average factor, beyond the recent level
        prediction, start = np.exp(total), np.exp(reference)
        weight = _logarithmic_mean(prediction, start, total - reference)
        out = {column(f): weight * part for f, part in phi.items()}
        anchor = LEVEL if base_margin is not None else BIAS
        out[column(anchor)] = out.get(column(anchor), 0.0) + start
    else:
        out = {column(f): part for f, part in phi.items()}
        out[column(BIAS)] = bias + (np.clip(total, 0, None) - total)  # the clip at zero
    order = [column(f) for f in FAMILIES if column(f) in out]
    return pd.DataFrame({c: np.asarray(out[c], dtype=float) for c in order}, index=X.index)


def blended(
    drivers: pd.DataFrame, model_prediction: np.ndarray, prediction: np.ndarray, members: int
) -> pd.DataFrame:
    """A blend's drivers: the model's, times its weight (1 / members), and ``driver_baselines``,
    the part of ``prediction`` its statistical members make; ``explained``, the model's share."""
    weight = 1.0 / members
    out = drivers[driver_columns(drivers)] * weight
    model_part = weight * np.asarray(model_prediction, float)
    out[column(BASELINES)] = np.asarray(prediction, float) - model_part
    with np.errstate(divide="ignore", invalid="ignore"):
        out[EXPLAINED] = np.where(prediction > 0, model_part / prediction, weight)
    return out


def long_form(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The wide ``driver_<family>`` columns of ``frame`` (with keys, forecast_month, horizon,
    prediction and ``explained``) as one row per family: contribution and share (of the
    prediction; NULL where it is zero)."""
    identity = [*keys, "forecast_month", "horizon"]
    columns = driver_columns(frame)
    long = frame.melt(
        id_vars=[*identity, "prediction", EXPLAINED],
        value_vars=columns,
        var_name="family",
        value_name="contribution",
    )
    long["family"] = long["family"].str.removeprefix(PREFIX)
    prediction = long.pop("prediction").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = long["contribution"].to_numpy(float) / prediction
    long["share"] = np.where(prediction != 0, share, np.nan)
    return long[[*identity, "family", "contribution", "share", EXPLAINED]]
