"""The baselines every model is measured against, and that the gate may publish instead of it.

Each baseline forecasts a row (entity, origin, horizon) from the entity's history up to the
origin only, as the model does. Two kinds, one protocol (:class:`BaselineMethod`):

* naive (``naive.py``): read off the history (seasonal naive, last value, mean of 3 months),
  cheap enough for every row, and the ones monitoring tracks month after month;
* statistical (``statistical.py``): fitted per series by statsforecast (AutoETS, Theta), the
  ones ``evaluation.statistical_baselines`` names.

Adding a baseline is one class (a :class:`~naive.NaiveBaseline` with ``forecast``, or a
:class:`~statistical.StatisticalBaseline` with the statsforecast ``model``) and one entry in
:data:`NAIVE` or :data:`STATISTICAL` below; a statistical one is also named in
``forecasting.core.config.STATISTICAL_BASELINES`` so the config accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from forecasting.data.panel import Panel
from forecasting.modeling.baselines.naive import LastValue, Mean3, NaiveBaseline, SeasonalNaive
from forecasting.modeling.baselines.statistical import (
    IMAPA,
    TSB,
    AutoETS,
    CrostonSBA,
    StatisticalBaseline,
    Theta,
)
from forecasting.modeling.baselines.statistical import forecasts as fit_statistical


class BaselineMethod(Protocol):
    """A baseline: its name (as in ``baseline:<name>``) and its forecast of rows (entity: panel
    rows, origin: month indices, horizon: months ahead; ``jobs``: processes it may fit in)."""

    name: str

    def forecast(
        self,
        panel: Panel,
        entity: np.ndarray,
        origin: np.ndarray,
        horizon: np.ndarray,
        jobs: int | None = None,
    ) -> np.ndarray: ...


# The registry, in the order evaluation reports them.
NAIVE: dict[str, NaiveBaseline] = {b.name: b for b in (SeasonalNaive(), LastValue(), Mean3())}
STATISTICAL: dict[str, StatisticalBaseline] = {b.name: b for b in (AutoETS(), Theta())}
BASELINES: dict[str, BaselineMethod] = {**NAIVE, **STATISTICAL}
# Scored on the intermittent and lumpy demand classes only (``evaluation.intermittent_baselines``).
INTERMITTENT: dict[str, StatisticalBaseline] = {b.name: b for b in (CrostonSBA(), TSB(), IMAPA())}

# The naive baselines' names: scored on every holdout row and tracked by monitoring.
NAIVE_BASELINES: tuple[str, ...] = tuple(NAIVE)


def naive_forecasts(
    panel: Panel, entity: np.ndarray, origin: np.ndarray, horizon: np.ndarray
) -> dict[str, np.ndarray]:
    """Every naive baseline's forecast of each row."""
    return {name: b.forecast(panel, entity, origin, horizon) for name, b in NAIVE.items()}


def statistical_forecasts(
    panel: Panel,
    entity: np.ndarray,
    origin: np.ndarray,
    horizon: np.ndarray,
    names: Sequence[str],
    jobs: int | None = None,
    search_max_series: int | None = None,
) -> dict[str, np.ndarray]:
    """The named statistical baselines' forecasts of each row, fitted together (NaN where the
    entity has no history at its origin), in ``jobs`` processes (None: one per core); AutoETS's
    fixed form for a panel of more than ``search_max_series`` entities (None: always the search)."""
    unknown = sorted(set(names) - set(STATISTICAL))
    if unknown:
        raise ValueError(f"unknown statistical forecasters {unknown} (known: {list(STATISTICAL)})")
    chosen = [STATISTICAL[name] for name in names]
    return fit_statistical(panel, entity, origin, horizon, chosen, jobs, search_max_series)


def intermittent_forecasts(
    panel: Panel,
    entity: np.ndarray,
    origin: np.ndarray,
    horizon: np.ndarray,
    names: Sequence[str],
    jobs: int | None = None,
) -> dict[str, np.ndarray]:
    """The named intermittent-demand forecasters' forecasts of each row, fitted together."""
    unknown = sorted(set(names) - set(INTERMITTENT))
    if unknown:
        raise ValueError(f"unknown intermittent forecasters {unknown} (known: {list(INTERMITTENT)})")
    return fit_statistical(panel, entity, origin, horizon, [INTERMITTENT[n] for n in names], jobs)


def forecast(
    name: str,
    panel: Panel,
    entity: np.ndarray,
    origin: np.ndarray,
    horizon: np.ndarray,
    jobs: int | None = None,
) -> np.ndarray:
    """The baseline ``name``'s forecast of each row; ValueError for a name not in the registry."""
    if name not in BASELINES:
        raise ValueError(f"no baseline {name!r} (have: {', '.join(BASELINES)})")
    return np.asarray(BASELINES[name].forecast(panel, entity, origin, horizon, jobs), dtype=float)
