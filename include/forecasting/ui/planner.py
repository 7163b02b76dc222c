"""The overview of the Forecasts view, for planners: what they ask first, about the newest run.

* **This month's forecast by level**: per level of the hierarchy (config ``hierarchy``; without
  one, the entities' total), each forecast month's forecast with its p10-p90, the previous run's
  forecast of the same month and the change; the total and each level's largest groups, the rest
  one click away in the explorer by level (forecasting.ui.levels).
* **Biggest changes since the previous run**: the entities and the level groups whose forecast of
  the months both runs forecast moved most (in units), either way.
* **Biased**: the entities whose tracking signal (``<table>_tracking_signal``, 1 month ahead:
  forecast_monitoring's) is beyond ±BIASED, and the level groups whose own is.
* **Alerts**: the newest of ``<table>_alerts`` (forecasting.ui.monitoring).

The numbers come from forecasting.ui.plan_data (read once per published run). The engineers'
detail (every attempt, the model against the baselines, backtests, validation, drift) is the
Runs page (forecasting.ui.overview).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.names import ALERTS, relation_name
from forecasting.publishing.query import QueryError
from forecasting.ui.levels import cell
from forecasting.ui.monitoring import recent_alerts
from forecasting.ui.plan_data import BIASED, ENTITY, TOTAL, PlanData, missing_relation, plan_data
from forecasting.ui.templating import render_page

GROUPS_SHOWN = 5  # a level's largest groups on the overview
CHANGES_SHOWN = 10
BIASED_SHOWN = 10
ALERTS_SHOWN = 10


def totals_by_level(data: PlanData) -> list[dict[str, Any]]:
    """Per level (config order): its groups shown (the largest by volume) and how many it has;
    each group's forecast, p10, p90, previous run's forecast and change per forecast month."""
    months: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in data.group_months.sort_values("forecast_month").to_dict(orient="records"):
        months[(str(record["level"]), str(record["level_key"]))].append(record)
    if data.groups.empty:  # no hierarchy: the entities' total
        return [{"level": TOTAL, "groups": 1, "rows": [_group_months(TOTAL, months[(TOTAL, TOTAL)])]}]
    out = []
    for level in [TOTAL, *(name for name in data.levels if name != TOTAL)]:
        groups = data.groups[data.groups["level"] == level]
        if groups.empty:
            continue
        ranked = groups.sort_values("volume", ascending=False, kind="stable")["level_key"].head(GROUPS_SHOWN)
        rows = [_group_months(str(key), months[(level, str(key))]) for key in ranked]
        out.append({"level": level, "groups": len(groups), "rows": rows})
    return out


def _group_months(key: str, months: list[dict[str, Any]]) -> dict[str, Any]:
    """A group's row of the totals: per forecast month its forecast, band and change, and their sum."""
    cells = {
        r["forecast_month"]: {
            "prediction": cell("next", r["prediction"]),
            "interval": f"{cell('p10', r['p10'])}–{cell('p90', r['p90'])}" if pd.notna(r["p10"]) else "",
            "change": _change(r["prediction"], r["previous"]),
        }
        for r in months
    }
    known = [r for r in months if pd.notna(r["previous"])]
    now, before = sum(r["prediction"] for r in known), sum(r["previous"] for r in known)
    total = {
        "prediction": cell("volume", sum(r["prediction"] for r in months)),
        "change": _change(now, before) if known else None,
    }
    return {"key": key, "months": cells, "total": total}


def _change(now: float, before: float) -> dict[str, str] | None:
    if before is None or pd.isna(before):
        return None
    change = float(now) - float(before)
    percent = f" ({change / float(before):+.1%})" if before else ""
    return {"text": cell("change", change) + percent, "sign": "up" if change >= 0 else "down"}


def biggest_changes(data: PlanData) -> dict[str, list[dict[str, Any]]]:
    """The entities and the level groups (but the total) whose forecast moved most."""
    entities = _largest(data.entities, "change", CHANGES_SHOWN)
    groups = data.groups[data.groups["level"] != TOTAL] if len(data.groups) else data.groups
    return {
        "entities": [_entity_row(data, r) for r in entities.to_dict(orient="records")],
        "groups": [
            _group_row(r) for r in _largest(groups, "change", CHANGES_SHOWN).to_dict(orient="records")
        ],
    }


def biased(data: PlanData) -> dict[str, Any]:
    """The entities and the groups whose tracking signal is beyond ±BIASED, the largest first."""
    entities = data.entities[data.entities["bias"].abs() >= BIASED]
    groups = data.groups[data.groups["bias"].abs() >= BIASED] if len(data.groups) else data.groups
    return {
        "entities": [
            _entity_row(data, r) for r in _largest(entities, "bias", BIASED_SHOWN).to_dict(orient="records")
        ],
        "entity_count": len(entities),
        "groups": [_group_row(r) for r in _largest(groups, "bias", BIASED_SHOWN).to_dict(orient="records")],
        "group_count": len(groups),
    }


def _largest(frame: pd.DataFrame, column: str, limit: int) -> pd.DataFrame:
    if frame.empty:
        return frame
    size = frame[column].abs().fillna(-np.inf).to_numpy()
    top = np.argsort(-size, kind="stable")[:limit]
    return frame.iloc[top][size[top] > -np.inf]


def _numbers(row: dict[str, Any]) -> dict[str, str]:
    names = ("volume", "previous", "change", "change_pct", "error", "bias", "next")
    return {c: cell(c, row.get(c)) for c in names}


def _entity_row(data: PlanData, row: dict[str, Any]) -> dict[str, Any]:
    entity = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in data.keys}
    return {
        "name": entity,
        "href": "explorer",
        "link": entity,
        "sign": _sign(row.get("change")),
        **_numbers(row),
    }


def _group_row(row: dict[str, Any]) -> dict[str, Any]:
    link = {"level": row["level"], "key": row["level_key"]}
    return {
        "name": f"{row['level']} {row['level_key']}",
        "href": "levels",
        "link": link,
        "sign": _sign(row.get("change")),
        **_numbers(row),
    }


def _sign(value: Any) -> str:
    return "" if value is None or pd.isna(value) else ("up" if value >= 0 else "down")


def _alerts(config: Config) -> tuple[list[dict], int] | None:
    """The newest alerts and how many there are (None: no alerts table yet)."""
    name = relation_name(config.predictions.table, ALERTS)
    try:  # without asking the database's catalogue first: one connection fewer per page
        return recent_alerts(config, limit=ALERTS_SHOWN, present={name})
    except (QueryError, sa.exc.DBAPIError) as err:
        if missing_relation(err):
            return None
        raise


def render_overview(config: Config) -> str:
    """The planners' overview page."""
    started = time.perf_counter()
    data = plan_data(config)
    if data is None:
        return render_page(config, "Overview", "planner.html", published=False)
    alerts = _alerts(config)
    return render_page(
        config,
        "Overview",
        "planner.html",
        published=True,
        latest_run=data.latest_run,
        previous_run=data.previous_run,
        stale=data.stale,
        months=data.months,
        hierarchy=bool(len(data.groups)),
        totals=totals_by_level(data),
        changes=biggest_changes(data),
        biased=biased(data),
        biased_signals=data.biased_signals,
        threshold=BIASED,
        entity_level=ENTITY,
        alerts=None if alerts is None else {"rows": alerts[0], "total": alerts[1]},
        overrides=data.overrides,
        milliseconds=f"{1000 * (time.perf_counter() - started):.0f}",
    )
