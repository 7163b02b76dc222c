"""Who made a forecast: a trained model, a baseline, or a combination of them.

Inside the library a forecaster is one of three typed values, dispatched on with ``match`` or
``isinstance``. Its text form is the public interface (the DAG param ``force_model_version``, the
registry's ``published`` column, the predictions table's ``model_version`` column, evaluation.json's
``decision``): :func:`parse` reads it once at that edge and ``str()`` writes it back, unchanged::

    Model("2026-10-1a2b3c4d5e")                       "2026-10-1a2b3c4d5e"
    Baseline("seasonal_naive")                        "baseline:seasonal_naive"
    Blend("2026-10-1a2b3c4d5e", "theta")              "blend:2026-10-1a2b3c4d5e+theta"
    Blend("2026-10-1a2b3c4d5e", "auto_ets", ("theta",))  "blend:2026-10-1a2b3c4d5e+auto_ets+theta"
    Blend(None, "auto_ets", ("theta",))               "blend:auto_ets+theta"

A blend (a *combination*) is the equal-weight mean of its members' forecasts of each row
(:func:`forecasting.modeling.scoring.combine`). :func:`combinations` lists the ones evaluation
scores and the gate may publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations as subsets

BASELINE_PREFIX = "baseline:"
BLEND_PREFIX = "blend:"
# evaluation's name for the model's forecasts, as a member of a combination.
MODEL = "model"
# Predict's columns (and the predictions table's) beside the published forecast, for the forecast
# value added's waterfall (forecasting.monitoring.value_added): the model's own forecast of the
# row and the statistical forecaster's (monitoring.fva_statistical).
MODEL_FORECAST = "model_forecast"
STATISTICAL_FORECAST = "statistical_forecast"


@dataclass(frozen=True)
class Model:
    """A trained model, by its version (its folder under the models directory)."""

    version: str

    def __str__(self) -> str:
        return self.version


@dataclass(frozen=True)
class Baseline:
    """A baseline (``forecasting.modeling.baselines``), by its name."""

    name: str

    def __str__(self) -> str:
        return f"{BASELINE_PREFIX}{self.name}"


@dataclass(frozen=True)
class Blend:
    """The equal-weight mean of a model's forecasts (None: no model) and one or more baselines'
    (``baseline``, then ``more``) of each row."""

    model_version: str | None
    baseline: str
    more: tuple[str, ...] = ()

    @property
    def baselines(self) -> tuple[str, ...]:
        return (self.baseline, *self.more)

    @property
    def members(self) -> tuple[str, ...]:
        """Its members as evaluation names them (``model`` for the model, then the baselines)."""
        return (*(() if self.model_version is None else (MODEL,)), *self.baselines)

    def __str__(self) -> str:
        model = [] if self.model_version is None else [self.model_version]
        return f"{BLEND_PREFIX}{'+'.join([*model, *self.baselines])}"


Forecaster = Model | Baseline | Blend


def parse(text: str) -> Forecaster:
    """The forecaster a text names (the inverse of ``str()``); a text with neither prefix is a
    model version. In a blend's name the first member is a model version unless it names a
    baseline. Raises ValueError for a malformed blend or an empty text."""
    from forecasting.modeling.baselines import BASELINES  # the names a blend's first member may be

    if not text:
        raise ValueError("an empty text names no forecaster (a model version, baseline:<name> or a blend)")
    if text.startswith(BASELINE_PREFIX):
        return Baseline(text.removeprefix(BASELINE_PREFIX))
    if text.startswith(BLEND_PREFIX):
        members = text.removeprefix(BLEND_PREFIX).split("+")
        if len(members) < 2 or not all(members):
            raise ValueError(
                f"{text!r} is not a blend's name (blend:<model version>+<baseline>[+<baseline>...] "
                "or blend:<baseline>+<baseline>[+...])"
            )
        version = None if members[0] in BASELINES else members.pop(0)
        if not members:
            raise ValueError(f"{text!r} blends a model with no baseline")
        return Blend(version, members[0], tuple(members[1:]))
    return Model(text)


def model_version(forecaster: Forecaster) -> str | None:
    """The model whose forecasts ``forecaster`` publishes (all or part of them); None for a
    baseline or a blend of baselines only."""
    match forecaster:
        case Model(version):
            return version
        case Blend(version, _):
            return version
        case Baseline():
            return None


def combinations(statistical: Sequence[str]) -> list[tuple[str, ...]]:
    """The combinations evaluation scores and the gate may publish, by their members' names: every
    set of two or more of the model and the statistical forecasters (with AutoETS and Theta:
    model+auto_ets, model+theta, auto_ets+theta, model+auto_ets+theta), in that order."""
    members = (MODEL, *statistical)
    return [c for size in range(2, len(members) + 1) for c in subsets(members, size)]


def combination_name(members: Sequence[str]) -> str:
    """A combination's column in evaluation's forecasts and evaluation.json: ``model+auto_ets``."""
    return "+".join(members)


def as_blend(members: Sequence[str], version: str) -> Blend:
    """The forecaster of a combination of ``members`` (evaluation's names) with ``version`` as the model."""
    model = version if MODEL in members else None
    baselines = [m for m in members if m != MODEL]
    return Blend(model, baselines[0], tuple(baselines[1:]))
