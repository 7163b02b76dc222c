"""The publish stage's part for the planners' overrides (forecasting.publishing.apply_overrides):
each entity's level columns, which a level's override is spread over, and the alert a refused
override raises (a planner's typo is never silently dropped, nor does it hold the publish)."""

from __future__ import annotations

import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.names import FORECAST_DAG, OVERRIDE_OUTCOMES, OVERRIDES, relation_name
from forecasting.data.panel import key_text
from forecasting.monitoring.alerts import Alert, raise_alerts


def entity_members(config: Config, m: pd.Period, attempt: str, forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per entity forecast: its entity columns and the hierarchy's level columns, as text."""
    from forecasting.modeling.hierarchy import level_columns, level_members  # the hierarchy's heavy imports

    src = config.source
    columns = list(dict.fromkeys([*src.entity_columns, src.time_column, *level_columns(config)]))
    snapshot = pd.read_parquet(paths.existing(paths.snapshot(config, m, attempt)), columns=columns)
    keys = pd.DataFrame({k: key_text(forecasts[k]) for k in src.entity_columns}).drop_duplicates()
    keys = keys.reset_index(drop=True)
    found = level_members(snapshot, config, keys)
    return pd.concat([keys, found.drop(columns=[c for c in found if c in keys])], axis=1)


def alert_refused(config: Config, m: pd.Period, run_id: str, overrides: dict) -> dict | None:
    """One alert naming every override M's publish refused (none: None), sent and recorded as
    forecast_monitoring's alerts are (forecasting.monitoring.alerts)."""
    refusals = overrides.get("refusals") or []
    if not refusals:
        return None
    outcomes = relation_name(config.predictions.table, OVERRIDE_OUTCOMES)
    message = (
        f"The publish of {m} refused {len(refusals)} planner override(s), not applied to its forecasts: "
        + "; ".join(refusals)
        + f". Correct them (a new version of each) or withdraw them; {outcomes} records each run's."
    )
    alert = Alert(
        FORECAST_DAG, str(m), "override", "overrides_refused", "overrides", len(refusals), 0, message, run_id
    )
    return raise_alerts(config, [alert])


def summary_lines(config: Config, published: dict) -> list[str]:
    """The run summary's lines on the overrides its publish applied and refused (each named)."""
    overrides = published.get("overrides")
    if overrides is None:  # published before overrides existed
        return []
    table = relation_name(config.predictions.table, OVERRIDES)
    if not overrides["applied"] and not overrides["refused"]:
        return [f"  Overrides   none in force in {table}: final = prediction", ""]
    lines = [
        f"  Overrides   {overrides['applied']} applied to {overrides['adjusted_forecasts']:,} forecasts "
        f"(their final; prediction kept), {overrides['refused']} refused, from {table}"
    ]
    lines += [f"    REFUSED {refusal}" for refusal in overrides["refusals"]]
    return [*lines, ""]
