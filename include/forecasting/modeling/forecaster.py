"""Who made a forecast: a trained model, a baseline, or the blend of the two.

Inside the library a forecaster is one of three typed values, dispatched on with ``match`` or
``isinstance``. Its text form is the public interface (the DAG param ``force_model_version``, the
registry's ``published`` column, the predictions table's ``model_version`` column, evaluation.json's
``decision``): :func:`parse` reads it once at that edge and ``str()`` writes it back, unchanged::

    Model("2026-10-1a2b3c4d5e")           "2026-10-1a2b3c4d5e"
    Baseline("seasonal_naive")            "baseline:seasonal_naive"
    Blend("2026-10-1a2b3c4d5e", "theta")  "blend:2026-10-1a2b3c4d5e+theta"
"""

from __future__ import annotations

from dataclasses import dataclass

BASELINE_PREFIX = "baseline:"
BLEND_PREFIX = "blend:"


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
    """The plain mean of a model's and a baseline's forecasts of each row."""

    model_version: str
    baseline: str

    def __str__(self) -> str:
        return f"{BLEND_PREFIX}{self.model_version}+{self.baseline}"


Forecaster = Model | Baseline | Blend


def parse(text: str) -> Forecaster:
    """The forecaster a text names (the inverse of ``str()``); a text with neither prefix is a
    model version. Raises ValueError for a malformed blend or an empty text."""
    if not text:
        raise ValueError("an empty text names no forecaster (a model version, baseline:<name> or a blend)")
    if text.startswith(BASELINE_PREFIX):
        return Baseline(text.removeprefix(BASELINE_PREFIX))
    if text.startswith(BLEND_PREFIX):
        version, plus, baseline = text.removeprefix(BLEND_PREFIX).rpartition("+")
        if not (version and plus and baseline):
            raise ValueError(f"{text!r} is not a blend's name (blend:<model version>+<baseline>)")
        return Blend(version, baseline)
    return Model(text)


def model_version(forecaster: Forecaster) -> str | None:
    """The model whose forecasts ``forecaster`` publishes (all or half of them); None for a baseline."""
    match forecaster:
        case Model(version):
            return version
        case Blend(version, _):
            return version
        case Baseline():
            return None
