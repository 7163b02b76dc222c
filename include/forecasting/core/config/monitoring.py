"""The ``monitoring`` section: how realised accuracy is reported, the forecast value added
measured, drift detected, and whether the published intervals keep covering."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from forecasting.core.config.base import Section, fail
from forecasting.core.config.sections import STATISTICAL_BASELINES


def _statistical(value: Any) -> Any:
    if value is not None and value not in STATISTICAL_BASELINES:
        raise fail(f"must be one of {', '.join(STATISTICAL_BASELINES)} or null, got {value!r}")
    return value


class IntervalsWatchConfig(Section):
    """Whether the published p10-p90 intervals keep covering (forecasting.monitoring.coverage,
    forecasting.monitoring.alerts), and how much of the latest realised errors the next run's
    bands learn from (forecasting.modeling.intervals)."""

    # An 80% interval holding 70-90% of a month's actuals is within a month's noise at demo scale.
    min_coverage: float = Field(
        default=0.70,
        ge=0.0,
        description="Alert when the realised p10-p90 coverage of a horizon is below this.",
    )
    max_coverage: float = Field(
        default=0.90,
        ge=0.0,
        description="Alert when the realised p10-p90 coverage of a horizon is above this.",
    )
    # One month outside the band can be one unusual month; two in a row is a pattern.
    months: int = Field(
        default=2,
        ge=0,
        description="Alert when the coverage is outside the band this many scored months in a row (0: never).",
    )
    # Three months: enough rows to move a band, recent enough to be the regime the next run meets.
    realised_months: int = Field(
        default=3,
        ge=0,
        description="The next run's bands pool the holdout's errors with the realised errors of the last "
        "this many scored months (<table>_errors; 0: the holdout's only).",
    )

    @model_validator(mode="after")
    def _band(self) -> IntervalsWatchConfig:
        if not self.min_coverage < self.max_coverage <= 1:
            raise fail(
                f"min_coverage {self.min_coverage} must be below max_coverage {self.max_coverage}, "
                "and both shares between 0 and 1",
                "max_coverage",
            )
        return self


class MonitoringConfig(Section):
    """How realised accuracy and the forecast value added are reported
    (forecasting.monitoring.accuracy, forecasting.monitoring.value_added), drift detected
    (forecasting.monitoring.drift) and the intervals watched (``intervals``)."""

    segment: str | None = Field(
        default=None, description="An entity column or attribute: <table>_accuracy also has a row per value."
    )
    # 0.1-0.2: a moderate shift, above 0.2: a significant one.
    psi_threshold: float = Field(
        default=0.2,
        ge=0.0,
        description="A feature drifted when its PSI against the training window is at least this (and KS rejects).",
    )
    ks_alpha: float = Field(
        default=0.01, ge=0.0, description="The Kolmogorov-Smirnov test's level for 'same distribution'."
    )
    psi_bins: int = Field(
        default=10,
        ge=2,
        description="PSI's bins: quantiles of the training window (plus one for missing values).",
    )
    entity_share_threshold: float = Field(
        default=0.1, ge=0.0, description="The share of new or vanished entities that counts as drift."
    )
    drift_sample_rows: int = Field(
        default=100_000, ge=1000, description="Rows compared at most on each side (a seeded sample beyond)."
    )
    # A full year has every season once, without years of trend (prices follow inflation).
    reference_months: int | None = Field(
        default=12,
        ge=1,
        description="The reference is the last this many months of the training window (null: all of it).",
    )

    # Theta: the cheapest statistical forecaster (about 2 CPU ms a series, docs/modeling.md), fitted
    # for every active entity at predict so the waterfall's statistical step covers every row.
    fva_statistical: Annotated[str | None, BeforeValidator(_statistical)] = Field(
        default="theta",
        description="The statistical forecaster of the forecast value added's waterfall, forecast for every "
        "published row (null: no statistical step).",
    )
    intervals: IntervalsWatchConfig = Field(
        default_factory=IntervalsWatchConfig,
        description="Realised p10-p90 coverage: its alert band, and the realised errors the next bands pool.",
    )

    # A plan that moves a fifth between two runs without a reason is worth a look.
    max_total_revision: float | None = Field(
        default=0.2,
        ge=0.0,
        description="Alert when a run moves the total forecast of the months an earlier run also forecast "
        "by more than this share (<table>_churn.total_revision; null: never).",
    )
    # A store's or a category's plan moves more than the company's: a looser bar than the total's.
    max_level_revision: float | None = Field(
        default=0.25,
        ge=0.0,
        description="Alert when a run moves a hierarchy level group's forecast of the months the run before "
        "also forecast by more than this share, beyond what its newest month's actual explains (the "
        "share by which it came in off that earlier run's forecast; null: never).",
    )

    @field_validator("ks_alpha", "entity_share_threshold")
    @classmethod
    def _share(cls, value: float) -> float:
        if value > 1:
            raise fail(f"is a share between 0 and 1, got {value!r}")
        return value
