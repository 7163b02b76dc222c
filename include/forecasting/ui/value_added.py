"""The Forecasts view's forecast value added (on the overview, in the monitoring sections): what
each step of the process took off the error once the actuals were in (``<table>_fva``,
forecasting.monitoring.value_added).

* The waterfall: per forecast month (the newest ``MONTHS``) and horizon, over every entity, each
  step's WAPE (naive, statistical, model, published, final) and what it took off the step
  before; rows of several runs for one month and horizon pooled by their absolute errors.
* The planners: per forecast month, each planner's overridden forecasts, their WAPE before and
  after the override, and the value the overrides added (filled once overrides exist).

Each reader returns plain rows, None while ``<table>_fva`` does not exist, on SQLite and
PostgreSQL alike; ``templates/monitoring.html`` draws them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from forecasting.core import names
from forecasting.core.config import Config
from forecasting.publishing.fva_table import STEPS
from forecasting.publishing.query import run_query
from forecasting.ui.explorer import relation

MONTHS = 6  # the newest scored months shown
ALL, PLANNER = "(all)", "planner"  # forecasting.monitoring.value_added's segment_columns


def table_name(config: Config) -> str:
    return names.relation_name(config.predictions.table, names.FVA)


def _pooled_wape(group: pd.DataFrame) -> float | None:
    """The WAPE of rows of several runs: their absolute errors (WAPE x actual sum) over their actuals."""
    actual = group["actual_sum"].astype(float)
    wape = group["wape"].astype(float)
    known = wape.notna() & (actual > 0)
    return float((wape[known] * actual[known]).sum() / actual[known].sum()) if known.any() else None


def waterfall(config: Config, present: set[str]) -> list[dict] | None:
    """Per forecast month (newest first, the last MONTHS) and horizon: the forecasts compared,
    how many an override changed, and per step its WAPE and value added (None: no such step)."""
    name = table_name(config)
    if name not in present:
        return None
    frame = run_query(
        config,
        "SELECT forecast_month, horizon, step, forecasts, overridden, actual_sum, wape "
        f"FROM {relation(config, name)} WHERE segment_column = :all ORDER BY forecast_month, horizon",
        params={"all": ALL},
    )
    if frame.empty:
        return None
    frame["month"] = frame["forecast_month"].map(lambda v: f"{pd.Timestamp(v):%Y-%m}")
    newest = sorted(frame["month"].unique(), reverse=True)[:MONTHS]
    out = []
    for (month, horizon), group in frame[frame["month"].isin(newest)].groupby(["month", "horizon"]):
        wapes = {step: _pooled_wape(rows) for step, rows in group.groupby("step")}
        steps: list[dict[str, Any]] = []
        before: float | None = None
        for step in STEPS:
            wape = wapes.get(step)
            added = None if wape is None or before is None else before - wape
            steps.append({"step": step, "wape": wape, "value_added": added})
            before = wape if wape is not None else before
        first = group[group["step"] == group["step"].iloc[0]]  # one step's rows: each run once
        out.append(
            {
                "month": month,
                "horizon": int(horizon),
                "forecasts": int(first["forecasts"].sum()),
                "overridden": int(first["overridden"].sum()),
                "steps": steps,
            }
        )
    return sorted(out, key=lambda r: (r["month"], -r["horizon"]), reverse=True)


def planners(config: Config, present: set[str]) -> list[dict] | None:
    """Per forecast month (newest first) and planner, over every horizon: the forecasts the
    planner's overrides changed, their WAPE as published and as overridden, and the difference
    (> 0: the overrides helped). None: no override scored yet."""
    name = table_name(config)
    if name not in present:
        return None
    frame = run_query(
        config,
        "SELECT forecast_month, segment AS planner, step, forecasts, actual_sum, wape "
        f"FROM {relation(config, name)} WHERE segment_column = :planner AND step IN ('published', 'final')",
        params={"planner": PLANNER},
    )
    if frame.empty:
        return None
    frame["month"] = frame["forecast_month"].map(lambda v: f"{pd.Timestamp(v):%Y-%m}")
    out = []
    for (month, planner), group in frame.groupby(["month", "planner"]):
        published = _pooled_wape(group[group["step"] == "published"])
        final = _pooled_wape(group[group["step"] == "final"])
        out.append(
            {
                "month": month,
                "planner": planner,
                "forecasts": int(group.loc[group["step"] == "final", "forecasts"].sum()),
                "published_wape": published,
                "final_wape": final,
                "value_added": None if published is None or final is None else published - final,
            }
        )
    by_planner = sorted(out, key=lambda r: r["planner"])
    return sorted(by_planner, key=lambda r: r["month"], reverse=True)


def value_added_view(config: Config, present: set[str]) -> dict[str, Any] | None:
    """What the monitoring template's value-added section shows (None: nothing scored)."""
    rows = waterfall(config, present)
    if rows is None:
        return None
    return {"table": table_name(config), "steps": STEPS, "rows": rows, "planners": planners(config, present)}
