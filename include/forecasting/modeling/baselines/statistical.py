"""Statistical baselines: AutoETS and Theta (statsforecast) for evaluation rows, point in time.

A row is (entity, origin, horizon): forecast the entity's target in month origin + horizon from
its history up to and including the origin month, nothing later. Each distinct (entity, origin)
pair is one series, fitted once and forecast ``max(horizon)`` months ahead, and every series of
every origin goes to statsforecast in one vectorised call per model group.

* History: the entity's months in the panel from the first month of its span to the origin
  (a month without a row inside the span is 0, as for the model's features and the naive
  baselines). The panel holds the run's window (``source.history_months``), so the statistical
  forecasters see exactly the months the model could see.
* Seasonality (12 months): a series of at least two full years (24 months) is fitted with
  ``AutoETS(season_length=12)`` and ``Theta(season_length=12)``. A shorter series cannot
  estimate 12 seasonal states from a second year: it gets the non-seasonal forms instead,
  ``AutoETS(season_length=1)`` (error, trend and damping chosen by AICc, no season) and
  ``Theta(season_length=1)`` (no seasonal decomposition). A series too short for even those
  (statsforecast refuses ETS on a handful of points and Theta on 3 or fewer) gets its last
  value (``Naive``).
* A series with no negative value gets no negative forecast (clipped at 0: sales).
* AutoETS's form: chosen per series by AICc among every error, trend, damping and season
  (``ZZZ``, up to 30 fits a series), unless the panel holds more than
  ``evaluation.auto_ets_search_max_series`` entities: then one fixed form, additive error, damped
  additive trend and additive season (:data:`FIXED_ETS`, "AAdA"; "AAdN" without a season), one fit
  a series. The search costs about eight fixed fits (``benchmarks/statistical_speed.py``, figures in
  docs/modeling.md), too much for every entity of a month at 100,000 series, and the form
  depends on the panel's size only, so evaluation scores the form predict publishes.

The forecasters are the names in ``evaluation.statistical_baselines``, each a
:class:`StatisticalBaseline` in ``forecasting.modeling.baselines``' registry. To bound the cost (a
fit per series, growing with the series' length), evaluation scores them on at most
``evaluation.statistical_max_series`` entities: above that, on a seeded sample of entities
(:func:`sample_entities`), with the model and every baseline scored on the same rows.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecasting.core.config import Config
from forecasting.data.panel import Panel

log = logging.getLogger(__name__)

SEASON_LENGTH = 12
# AutoETS's form above evaluation.auto_ets_search_max_series entities: (error, trend, season), damped.
# Additive throughout: a multiplicative form refuses series with a zero month.
FIXED_ETS = ("A", "A", "A")
# Fewer months than this: the non-seasonal forms (see the module docstring).
MIN_SEASONAL_MONTHS = 2 * SEASON_LENGTH


class StatisticalBaseline(ABC):
    """A baseline fitted per series by statsforecast (a model with the baseline's name as alias);
    the statistical baselines of a call are fitted together, in one vectorised call per group."""

    name: str

    @abstractmethod
    def model(self, season_length: int, search: bool = True):
        """The statsforecast model, aliased ``self.name``, for series of this season length
        (``search``: False asks for the cheaper fixed form, where the forecaster has one)."""

    def forecast(
        self,
        panel: Panel,
        entity: np.ndarray,
        origin: np.ndarray,
        horizon: np.ndarray,
        jobs: int | None = None,
    ) -> np.ndarray:
        return forecasts(panel, entity, origin, horizon, [self], jobs)[self.name]


class AutoETS(StatisticalBaseline):
    """Exponential smoothing, error, trend, damping and season chosen by AICc."""

    name = "auto_ets"

    def model(self, season_length: int, search: bool = True):
        from statsforecast import models  # statsforecast imports numba: only when fitted

        if search:
            return models.AutoETS(season_length=season_length, alias=self.name)
        error, trend, season = FIXED_ETS
        form = f"{error}{trend}{season if season_length > 1 else 'N'}"
        return models.AutoETS(season_length=season_length, model=form, damped=True, alias=self.name)


class Theta(StatisticalBaseline):
    """The Theta method (with seasonal decomposition when seasonal)."""

    name = "theta"

    def model(self, season_length: int, search: bool = True):
        from statsforecast import models

        return models.Theta(season_length=season_length, alias=self.name)


# TSB's smoothing of the demand probability and of the demand size: a slow, common choice
# (Teunter, Syntetos and Babai 2011 searched 0.05-0.3 for both).
TSB_ALPHAS = (0.1, 0.1)


class CrostonSBA(StatisticalBaseline):
    """Croston's method with the Syntetos-Boylan approximation's debiasing (intermittent demand)."""

    name = "croston_sba"

    def model(self, season_length: int, search: bool = True):
        from statsforecast import models

        return models.CrostonSBA(alias=self.name)


class TSB(StatisticalBaseline):
    """Teunter-Syntetos-Babai: smooths the probability of demand, so a series that stops selling
    decays towards 0 (Croston's forecast never moves without a demand)."""

    name = "tsb"

    def model(self, season_length: int, search: bool = True):
        from statsforecast import models

        return models.TSB(alpha_d=TSB_ALPHAS[0], alpha_p=TSB_ALPHAS[1], alias=self.name)


class IMAPA(StatisticalBaseline):
    """The intermittent multiple aggregation prediction algorithm: the mean of SES forecasts of
    the series aggregated over several periods."""

    name = "imapa"

    def model(self, season_length: int, search: bool = True):
        from statsforecast import models

        return models.IMAPA(alias=self.name)


def forecasts(
    panel: Panel,
    entity: np.ndarray,
    origin: np.ndarray,
    horizon: np.ndarray,
    baselines: Sequence[StatisticalBaseline],
    jobs: int | None = None,
    search_max_series: int | None = None,
) -> dict[str, np.ndarray]:
    """Each named forecaster's forecast of every row (entity: panel rows, origin: month indices,
    horizon: months ahead), from the entity's history up to its origin; NaN where the entity has
    no history at its origin. Fitted in ``jobs`` processes (None: one per core); a panel of more
    than ``search_max_series`` entities gets AutoETS's fixed form (None: always the search)."""
    entity, origin, horizon = (np.asarray(a, dtype=np.int64) for a in (entity, origin, horizon))
    names = [b.name for b in baselines]
    out = {name: np.full(len(entity), np.nan) for name in names}
    if not names or not len(entity):
        return out

    # One series per distinct (entity, origin) pair.
    pair_key = np.stack([entity, origin], axis=1)
    pairs, at = np.unique(pair_key, axis=0, return_inverse=True)
    at = at.ravel()
    pair_entity, pair_origin = pairs[:, 0], pairs[:, 1]
    start = panel.span_first[pair_entity]
    stop = np.minimum(pair_origin - panel.first_month, panel.span_last[pair_entity]) + 1  # exclusive
    length = np.maximum(stop - start, 0)
    steps = int(horizon.max())

    values = np.full((len(pairs), steps), np.nan)
    predicted = {name: values.copy() for name in names}
    started = time.perf_counter()
    for seasonal in (True, False):
        group = np.flatnonzero(
            (length >= MIN_SEASONAL_MONTHS) if seasonal else (length > 0) & (length < MIN_SEASONAL_MONTHS)
        )
        if not len(group):
            continue
        got = _fit_forecast(
            panel,
            pair_entity[group],
            start[group],
            length[group],
            steps,
            baselines,
            seasonal,
            _jobs(jobs, len(group)),
            search_max_series is None or len(panel.keys) <= search_max_series,
        )
        for name in names:
            predicted[name][group] = got[name]
    log.info(
        "%s for %d series (%d entities x %d origins, up to %d months ahead) in %.1f s",
        " and ".join(names),
        len(pairs),
        len(np.unique(pair_entity)),
        len(np.unique(pair_origin)),
        steps,
        time.perf_counter() - started,
    )
    for name in names:
        out[name] = predicted[name][at, horizon - 1]
    return out


def _fit_forecast(
    panel: Panel,
    entity: np.ndarray,
    start: np.ndarray,
    length: np.ndarray,
    steps: int,
    baselines: Sequence[StatisticalBaseline],
    seasonal: bool,
    jobs: int,
    search: bool = True,
) -> dict[str, np.ndarray]:
    """[series, steps] forecasts of each forecaster for the series sales[entity, start:start+length]."""
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    total = int(length.sum())
    series = np.repeat(np.arange(len(entity)), length)
    offset = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
    y = panel.sales[np.repeat(entity, length), np.repeat(start, length) + offset]
    frame = pd.DataFrame({"unique_id": series, "ds": offset, "y": y})
    season_length = SEASON_LENGTH if seasonal else 1
    engine = StatsForecast(
        models=[b.model(season_length, search) for b in baselines],
        freq=1,
        n_jobs=jobs,
        fallback_model=Naive(),
    )
    result = engine.forecast(df=frame, h=steps)
    row = result["unique_id"].to_numpy().astype(np.int64)
    step = result["ds"].to_numpy().astype(np.int64) - length[row]  # ds of the first forecast = length
    nonnegative = np.ones(len(entity), dtype=bool)
    np.logical_and.at(nonnegative, series, y >= 0)
    out = {}
    for name in (b.name for b in baselines):
        grid = np.full((len(entity), steps), np.nan)
        grid[row, step] = result[name].to_numpy(dtype=float)
        out[name] = np.where(nonnegative[:, None], np.maximum(grid, 0.0), grid)
    return out


# Fewer series than this are fitted in this process: forking workers would cost more than it saves.
MIN_SERIES_PER_JOB = 50


def _jobs(configured: int | None, series: int) -> int:
    """How many processes statsforecast fits ``series`` series in: the configured number (None:
    one per core), at most one per MIN_SERIES_PER_JOB series, and one in a daemonic process
    (a multiprocessing pool's worker may not start processes of its own)."""
    if multiprocessing.current_process().daemon:
        return 1
    return max(1, min(configured or os.cpu_count() or 1, series // MIN_SERIES_PER_JOB))


def sample_entities(entity: np.ndarray, config: Config) -> np.ndarray | None:
    """Which rows the statistical forecasters (and, on the same rows, the model and the naive
    baselines) are scored on when the rows hold more than ``evaluation.statistical_max_series``
    entities: a mask of the rows of that many entities drawn uniformly with the model's seed from
    the distinct entities in their fixed order (the panel's), so the same data always gives the
    same sample. None: all rows (no sampling needed or configured)."""
    budget = config.evaluation.statistical_max_series
    distinct = np.unique(entity)
    if budget is None or len(distinct) <= budget or not config.evaluation.statistical_baselines:
        return None
    chosen = np.sort(np.random.default_rng(config.model.seed).choice(distinct, size=budget, replace=False))
    return np.isin(entity, chosen)
