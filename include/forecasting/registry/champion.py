"""A registered model's saved holdout model on another run's holdout rows: the champion scored on
exactly the challenger's rows, for the gate (forecasting.registry.gate), and a saved model's
forecasts of the hierarchy's rows (forecasting.orchestration.levels).

The holdout model was fitted only on targets before its own first holdout month; it may score a
challenger's rows only when that month is no later than the challenger's, so it has never seen
the targets it is scored on (checked in ``predict_saved_model``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.features import dataset
from forecasting.features.dataset import HORIZON, LABEL, TARGET_MONTH
from forecasting.modeling import booster as model
from forecasting.modeling import intervals
from forecasting.modeling.scoring import metrics


class ChampionUnavailable(Exception):
    """The champion cannot score the challenger's holdout rows; the message says why."""


def score_saved_model(
    config: Config, version: str, holdout: pd.DataFrame, first_holdout_month: str
) -> dict[str, Any]:
    """A registered model's holdout model scored on ``holdout`` (the challenger's rows): its
    metrics overall and per horizon. Raises ChampionUnavailable when it cannot score them."""
    return scores_of(predict_saved_model(config, version, holdout, first_holdout_month), holdout)


def predict_saved_model(
    config: Config, version: str, holdout: pd.DataFrame, first_holdout_month: str
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """A registered model's holdout model's forecasts of ``holdout``'s rows, and the categories
    it had not seen (scored as missing). Raises ChampionUnavailable when it cannot forecast them."""
    directory = paths.model_dir(config, version)
    for needed in (
        paths.booster(directory, holdout=True),
        paths.booster(directory),
        paths.model_metadata(directory),
    ):
        if not needed.is_file():
            raise ChampionUnavailable(f"{needed} is missing")
    booster, metadata = model.load(directory, holdout=True)
    # Its holdout model was fitted on targets before its own first holdout month: that must not
    # be later than the challenger's, or it has seen some of the targets it would be scored on.
    own_first = pd.Period(metadata["run_month"], "M") - (int(metadata["holdout_months"]) - 1)
    if own_first > pd.Period(first_holdout_month, "M"):
        raise ChampionUnavailable(
            f"its holdout model was fitted on targets up to {own_first - 1}, inside this holdout "
            f"(from {first_holdout_month})"
        )
    features = metadata["features"]
    missing = [f for f in features if f not in holdout.columns]
    if missing:
        raise ChampionUnavailable(f"it reads features this run does not have: {', '.join(missing)}")
    categories = metadata["categories"]
    unseen = {
        c: sorted(set(holdout[c].dropna().astype(str)) - set(values))
        for c, values in categories.items()
        if c in holdout.columns
    }
    try:
        X = dataset.design_matrix(holdout, config, categories, features=features)
        predicted = model.predict(booster, X)
    except (ValueError, TypeError, KeyError) as err:
        raise ChampionUnavailable(f"it cannot read this run's feature rows: {err}") from err
    except Exception as err:  # xgboost.core.XGBoostError: a feature type or count it refuses
        if type(err).__name__ != "XGBoostError":
            raise
        raise ChampionUnavailable(f"XGBoost refused this run's feature rows: {err}") from err
    return predicted, {c: v for c, v in unseen.items() if v}


def scores_of(
    made: tuple[np.ndarray, dict[str, list[str]]], holdout: pd.DataFrame, realised: pd.DataFrame | None = None
) -> dict[str, Any]:
    """evaluation.json's ``champion``: a saved model's forecasts of ``holdout`` scored overall and
    per horizon, and its own p10/p90 bands from its errors there (pooled with ``realised``, as
    evaluate's)."""
    predicted, unseen = made
    actual = holdout[LABEL].to_numpy()
    by_horizon = {
        str(h): metrics(actual[rows], predicted[rows])
        for h in sorted(holdout[HORIZON].unique())
        for rows in [(holdout[HORIZON] == h).to_numpy()]
    }
    horizon, target = holdout[HORIZON].to_numpy(), holdout[TARGET_MONTH].astype(str).to_numpy()
    result: dict[str, Any] = {
        "metrics": metrics(actual, predicted),
        "by_horizon": by_horizon,
        # Its own p10/p90 bands from its errors on these rows, should it be published.
        "intervals": intervals.calibrate(predicted, actual, horizon, target, realised=realised),
    }
    if unseen:  # scored as missing values, as the model would in production
        result["unseen_categories"] = unseen
    return result
