"""The Forecasts view's Overrides page: what the newest run did with the planners' overrides
(applied, and every refusal named), the overrides in force, a form to record, change or withdraw
one, and the audit trail (every version of every override).

The plugin (plugins/forecast_quality.py) serves it; recording needs Airflow's permission to
trigger monthly_forecast runs (a viewer may only read), and the name of the user Airflow
authenticated is the override's ``created_by``. The checks are the library's
(forecasting.publishing.overrides): a typo is refused at once, named, and the form shown again
with what was typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.publishing import tables
from forecasting.publishing.apply_overrides import SEPARATOR, TOTAL
from forecasting.publishing.overrides import (
    OverrideError,
    nothing_published,
    read_overrides,
    record_override,
    withdraw_override,
)
from forecasting.publishing.overrides_table import ACTIVE, KINDS
from forecasting.ui.templating import render_page

TRAIL_ROWS = 500  # the newest versions the page lists (SQL reads them all)


def level_names(config: Config) -> list[str]:
    return [SEPARATOR.join(c) or TOTAL for c in (config.hierarchy.levels if config.hierarchy else [])]


def newest_run(config: Config, engine: sa.Engine | None = None) -> dict | None:
    """The newest published run's month and override counts, and what became of each override
    in force at its publish (None: nothing published, or by a release before overrides)."""
    declared = tables.for_config(config)
    runs, outcomes = declared.runs, declared.override_outcomes
    if engine is None and nothing_published(config):  # not even a database yet: none made here
        return None
    owned = engine is None
    engine = engine or make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(outcomes.name, schema=outcomes.schema):
                return None
            latest = sa.select(runs.c.run_month, runs.c.overrides_applied, runs.c.overrides_refused)
            run = conn.execute(latest.order_by(runs.c.run_month.desc()).limit(1)).mappings().first()
            if run is None or run["overrides_applied"] is None:
                return None
            found = conn.execute(
                sa.select(outcomes)
                .where(outcomes.c.run_month == run["run_month"])
                .order_by(outcomes.c.outcome.desc(), outcomes.c.override_id)
            )
            return {
                "month": str(run["run_month"])[:7],
                "applied": run["overrides_applied"],
                "refused": run["overrides_refused"],
                "outcomes": [dict(o) for o in found.mappings()],
            }
    except sa.exc.DBAPIError:  # a database not there yet, or made by an older release
        return None
    finally:
        if owned:
            engine.dispose()


def _rows(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict(orient="records"):
        level = record.get("level")
        if level is None or pd.isna(level):
            target = ", ".join(f"{k} {_plain(record[k])}" for k in keys)
        else:
            target = "the total" if level == TOTAL else f"{level} {record['level_key']}"
        expires = record.get("expires_on")
        out.append(
            {
                **record,
                "target": target,
                "months": f"{str(record['first_month'])[:7]}..{str(record['last_month'])[:7]}",
                "expires_on": "" if expires is None or pd.isna(expires) else str(expires)[:10],
                "created_at": str(record["created_at"])[:19],
            }
        )
    return out


def _plain(value: Any) -> str:
    """An entity value as typed (3, not 3.0: a level's rows make the column floats)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def render_overrides(
    config: Config,
    *,
    form: Mapping[str, str] | None = None,
    error: str | None = None,
    recorded: str | None = None,
) -> str:
    """The Overrides page; ``form`` and ``error``: a form refused (shown again, with why)."""
    keys = config.source.entity_columns
    trail = read_overrides(config)
    current: list[dict] = []
    done = None  # the version just recorded, if ``recorded`` names an override
    if not trail.empty:
        mine = trail[trail["override_id"] == recorded]
        done = mine.sort_values("version").iloc[-1].to_dict() if len(mine) else None
        newest = trail.sort_values("version").drop_duplicates("override_id", keep="last")
        current = _rows(newest[newest["status"] == ACTIVE].sort_values("created_at", ascending=False), keys)
    return render_page(
        config,
        "Overrides",
        "overrides.html",
        run=newest_run(config),
        current=current,
        trail=_rows(trail.head(TRAIL_ROWS), keys),
        trail_total=len(trail),
        keys=keys,
        levels=level_names(config),
        kinds=KINDS,
        form=dict(form or {}),
        error=error,
        recorded=done,
    )


def record_from_form(config: Config, form: Mapping[str, str], user: str) -> dict:
    """Record (or, with ``supersedes``, change) the override the form describes, as ``user``."""
    level = (form.get("level") or "").strip() or None
    try:
        value = float(form.get("value") or "")
    except ValueError:
        raise OverrideError(f"value {form.get('value')!r} is not a number") from None
    keys = config.source.entity_columns
    return record_override(
        config,
        entity=None if level else {k: (form.get(k) or "").strip() for k in keys},
        level=level,
        level_key=(form.get("level_key") or "").strip() or None,
        first_month=(form.get("first_month") or "").strip(),
        last_month=(form.get("last_month") or "").strip() or None,
        kind=(form.get("kind") or "").strip(),
        value=value,
        reason=form.get("reason") or "",
        created_by=user,
        expires_on=(form.get("expires_on") or "").strip() or None,
        supersedes=(form.get("supersedes") or "").strip() or None,
    )


def withdraw_from_form(config: Config, form: Mapping[str, str], user: str) -> dict:
    return withdraw_override(config, (form.get("override_id") or "").strip(), form.get("reason") or "", user)
