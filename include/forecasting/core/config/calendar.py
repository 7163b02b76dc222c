"""The ``calendar`` section: the country (and region) whose trading days and public holidays
become known-future features of each forecast's target month (forecasting.features.calendar)."""

from __future__ import annotations

from functools import cache

from pydantic import Field, field_validator, model_validator

from forecasting.core.config.base import Section, fail

DEFAULT_WEEKEND = (5, 6)  # Saturday and Sunday (Monday is 0, as Python's date.weekday())


@cache
def _supported() -> dict[str, list[str]]:
    import holidays

    return {code: list(subdivisions) for code, subdivisions in holidays.list_supported_countries().items()}


class CalendarConfig(Section):
    """Trading days and holidays of the target month as features (absent: no calendar features).

    The holidays are the PyPI package ``holidays``'s for ``country`` (an ISO 3166-1 alpha-2
    code) and, if set, its ``subdivision`` (a state or province code of that country)."""

    country: str = Field(description="ISO 3166-1 alpha-2 code of the country, e.g. US, AU, DE.")
    subdivision: str | None = Field(
        default=None,
        description="A subdivision code of the country, e.g. NSW for AU (null: the national holidays).",
    )
    weekend: list[int] = Field(
        default_factory=lambda: list(DEFAULT_WEEKEND),
        description="Days of the week that are not trading days, Monday 0 to Sunday 6.",
    )

    @field_validator("country")
    @classmethod
    def _country(cls, country: str) -> str:
        if country not in _supported():
            raise fail(
                f"is not a country the holidays package knows (an ISO 3166-1 alpha-2 code), got {country!r}"
            )
        return country

    @field_validator("weekend")
    @classmethod
    def _weekend(cls, days: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in days) or len(set(days)) != len(days) or len(days) > 6:
            raise fail(f"must be distinct days 0 (Monday) to 6 (Sunday), at most six, got {days!r}")
        return sorted(days)

    @model_validator(mode="after")
    def _subdivision(self) -> CalendarConfig:
        known = _supported()[self.country]
        if self.subdivision is not None and self.subdivision not in known:
            raise fail(
                f"is not a subdivision of {self.country} (one of: {', '.join(known) or 'none'}), "
                f"got {self.subdivision!r}",
                "subdivision",
            )
        return self
