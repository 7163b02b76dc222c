"""The ``plans`` section: planned covariates of future months, and what-if scenarios of them."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from forecasting.core.config.base import fail, with_database
from forecasting.core.config.sections import ColumnName, ColumnNames, ReadsTable, SourceConfig

# What a plan of no value for a covariate means (``plans.fill``): left empty, the model sees
# "no plan" as a missing value.
FILL_EMPTY = "empty"
# The scenario the base plan's forecasts are published as in <table>_scenarios (``plans.scenarios.base``).
BASE_SCENARIO = "base"
SCENARIO_NAME_LENGTH = 64  # <table>_scenarios.scenario is a VARCHAR(64)


def plan_feature(covariate: str) -> str:
    """The feature a planned covariate becomes: its value planned for the target month."""
    return f"plan_{covariate}"


class ScenariosConfig(ReadsTable):
    """What-if scenarios: alternative plans (see forecasting.scenarios).

    A table or query with one row per scenario, entity and month: the values a scenario plans
    for some or all of the planned covariates (a null keeps the base plan's). Entity and month
    columns are the plans'; the database is the plans' unless the section names one."""

    scenario_column: ColumnName = Field(
        default="scenario", description="The column naming each row's scenario."
    )
    base: str = Field(
        default=BASE_SCENARIO, description="The name the base plan's forecasts get among the scenarios."
    )

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return with_database(data, context["base"], inherited=context["plans_database"])

    @field_validator("base")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name or not name.strip() or len(name) > SCENARIO_NAME_LENGTH:
            raise fail(f"must be a name of 1 to {SCENARIO_NAME_LENGTH} characters, got {name!r}")
        return name


class PlansConfig(ReadsTable):
    """Planned covariates (prices, promotions...) of future months: known-future features.

    A table or query with one row per entity, target month and revision: the month's planned
    values as they stood from ``planned_at`` on (see forecasting.features.plans). The database is
    the source's unless the section names one."""

    entity_columns: ColumnNames = Field(description="The source's entity columns (unset: the source's).")
    month_column: ColumnName = Field(
        description="A date/timestamp in the month planned for (unset: the source's time column)."
    )
    covariates: ColumnNames = Field(
        description="Numeric planned columns; each becomes the feature plan_<covariate>."
    )
    planned_at: ColumnName = Field(
        default="planned_at", description="When the plan (revision) was made: a timestamp."
    )
    # A covariate without a fill must be planned for every active entity and forecast month.
    fill: dict[str, float | str] = Field(
        default_factory=dict,
        description=f"Per covariate: what a missing plan means, a number or {FILL_EMPTY!r}.",
    )
    scenarios: ScenariosConfig | None = Field(
        default=None, description="What-if scenarios of the plans (null: none)."
    )

    @property
    def feature_names(self) -> list[str]:
        return [plan_feature(c) for c in self.covariates]

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        source: SourceConfig = context["source"]
        data = with_database(data, context["base"], inherited=source.database)
        # The scenarios' default database is the plans' (read by ScenariosConfig.from_file).
        context["plans_database"] = data["database"]
        if not data.get("entity_columns"):
            data["entity_columns"] = list(source.entity_columns)
        elif data["entity_columns"] != source.entity_columns:
            raise _source_columns(source, data["entity_columns"])
        data.setdefault("month_column", source.time_column)
        return data

    @field_validator("fill", mode="before")
    @classmethod
    def _fill(cls, value: Any, info: ValidationInfo) -> Any:

        value = value or {}
        if not isinstance(value, dict):
            raise fail(f"must map covariates to a number or {FILL_EMPTY!r}, got {value!r}")
        covariates = info.data.get("covariates", [])
        fill: dict[str, float | str] = {}
        for covariate, given in value.items():
            if covariate not in covariates:
                raise fail(f"is not one of plans.covariates ({', '.join(covariates)})", str(covariate))
            if given == FILL_EMPTY:
                fill[covariate] = FILL_EMPTY
            elif isinstance(given, int | float) and not isinstance(given, bool) and math.isfinite(given):
                fill[covariate] = float(given)
            else:
                raise fail(f"must be a number or {FILL_EMPTY!r}, got {given!r}", str(covariate))
        return fill

    @model_validator(mode="after")
    def _roles(self, info: ValidationInfo) -> PlansConfig:
        if not self.covariates:
            raise fail("must name at least one planned column", "covariates")
        roles = [*self.entity_columns, self.month_column, self.planned_at, *self.covariates]
        duplicated = sorted({c for c in roles if roles.count(c) > 1})
        if duplicated:
            raise fail(f"columns given more than one role: {', '.join(duplicated)}")
        if self.scenarios is not None and self.scenarios.scenario_column in (
            *self.entity_columns,
            self.month_column,
        ):
            column = self.scenarios.scenario_column
            raise fail(f"{column!r} is already an entity or month column", "scenarios.scenario_column")
        if info.context is not None:
            self._check_against(info.context["source"])
        return self

    def _check_against(self, source: SourceConfig) -> None:
        """Refuse a plan feature that would take the name of a source column."""
        taken = {*source.covariates, *source.attributes, *source.entity_columns}
        clashing = [plan_feature(c) for c in self.covariates if plan_feature(c) in taken]
        if clashing:
            raise fail(f"{clashing[0]} is already a source column: rename it there", "covariates")


def _source_columns(source: SourceConfig, given: Any) -> Exception:
    return fail(
        f"must be the source's entity columns ({', '.join(source.entity_columns)}), got {given!r}",
        "entity_columns",
    )
