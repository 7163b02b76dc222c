"""The Forecasts view's monitoring sections (on the overview page, forecasting.ui.overview): what the
forecast_monitoring DAG wrote to the predictions database.

* Realised accuracy: per horizon, the WAPE of the published forecasts for each month whose
  actuals are in, against each naive baseline as of the same origin (``<table>_accuracy``): a
  line chart and its numbers; and the biggest misses of the newest scored month
  (``<table>_errors``), linked into the explorer; the realised p10-p90 coverage beside each WAPE;
  with a hierarchy, the newest month's accuracy of each level (its groups' totals).
* Forecast value added: the waterfall naive → statistical → model → published → final, and each
  planner's overrides (``<table>_fva``, forecasting.ui.value_added).
* Drift: ``<table>_drift`` of the newest month compared, the flagged rows highlighted and named.
* Alerts: ``<table>_alerts``, newest first.

Each reader returns plain rows (what the page shows, what tests compare with the tables), None
while its table does not exist. On SQLite and PostgreSQL alike. ``render_monitoring`` hands
them to ``templates/monitoring.html``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup

from forecasting.core import names
from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.modeling.baselines import NAIVE_BASELINES as BASELINES
from forecasting.monitoring import drift
from forecasting.publishing.query import run_query
from forecasting.ui.charts import Series, line_chart
from forecasting.ui.explorer import quote, relation
from forecasting.ui.templating import render
from forecasting.ui.value_added import value_added_view

MISSES = 10  # the biggest misses shown
ALERTS = 50  # the newest alerts shown
ALL = "(all)"  # the accuracy rows over every entity (forecasting.monitoring.accuracy.ALL)
LEVEL = "level"  # a hierarchy level's accuracy rows (forecasting.monitoring.level_accuracy)


def table_names(config: Config) -> dict[str, str]:
    name = config.predictions.table
    kinds = (names.ACCURACY, names.ERRORS, names.DRIFT, names.ALERTS, names.FVA)
    return {kind: names.relation_name(name, kind) for kind in kinds}


def existing(config: Config) -> set[str]:
    """Which of the monitoring tables exist in the predictions database."""
    wanted = set(table_names(config).values())
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            found = set(sa.inspect(conn).get_table_names(schema=config.predictions.database.schema))
    finally:
        engine.dispose()
    return wanted & found


def _month(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m}"


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# --- readers -----------------------------------------------------------------------------------


def accuracy_trend(config: Config, present: set[str] | None = None) -> list[dict] | None:
    """Per forecast month (oldest first) and horizon, over every entity: forecasts, actual sum,
    the published forecasts' WAPE, each naive baseline's WAPE (``wape_<name>``), the best of
    them, the forecast value added over it and the realised p10-p90 coverage. Rows of several run months or model versions for
    one forecast month and horizon are pooled (their absolute errors added up)."""
    name = table_names(config)["accuracy"]
    if name not in (existing(config) if present is None else present):
        return None
    baselines = ", ".join(f"{quote(f'{b}_wape')}" for b in BASELINES)
    frame = run_query(
        config,
        f"SELECT forecast_month, run_month, horizon, model_version, forecasts, actual_sum, wape, {baselines}, "
        f"interval_forecasts, coverage FROM {relation(config, name)} WHERE segment_column = :all "
        "ORDER BY forecast_month, horizon, run_month, model_version",
        params={"all": ALL},
    )
    out = []
    for (month, horizon), group in frame.groupby([frame["forecast_month"].map(_month), "horizon"], sort=True):
        actual = group["actual_sum"].astype(float)
        row: dict[str, Any] = {
            "month": month,
            "horizon": int(horizon),
            "run_months": sorted({_month(v) for v in group["run_month"]}),
            "model_versions": sorted(set(group["model_version"])),
            "forecasts": int(group["forecasts"].sum()),
            "actual_sum": float(actual.sum()),
        }
        for key, column in [("wape", "wape"), *((f"wape_{b}", f"{b}_wape") for b in BASELINES)]:
            values = group[column].astype(float)
            if len(group) == 1:
                row[key] = _float(values.iloc[0])
            else:  # pooled: WAPE x actual sum is the rows' absolute error
                known = values.notna() & (actual > 0)
                row[key] = (
                    float((values[known] * actual[known]).sum() / actual[known].sum())
                    if known.any()
                    else None
                )
        naive = {b: row[f"wape_{b}"] for b in BASELINES if row[f"wape_{b}"] is not None}
        best = min(naive, key=lambda b: naive[b]) if naive else None
        row["best_naive"] = best
        row["best_naive_wape"] = naive[best] if best else None
        row["fva"] = None if best is None or row["wape"] is None else naive[best] - row["wape"]
        row["coverage"] = _pooled_coverage(group)
        out.append(row)
    return out


def level_accuracy(config: Config, present: set[str] | None = None) -> tuple[str, list[dict]] | None:
    """The newest scored month's realised accuracy of each hierarchy level and horizon (the
    accuracy rows with ``segment_column = 'level'``; forecasting.monitoring.level_accuracy):
    groups, WAPE over the groups' totals, the best naive WAPE, value added and p10-p90 coverage.
    None: no level scored yet."""
    name = table_names(config)["accuracy"]
    if name not in (existing(config) if present is None else present):
        return None
    table = relation(config, name)
    frame = run_query(
        config,
        f"SELECT forecast_month, run_month, horizon, segment, forecasts, wape, best_naive, best_naive_wape, fva, "
        f"coverage FROM {table} WHERE segment_column = :level AND forecast_month = "
        f"(SELECT MAX(forecast_month) FROM {table} WHERE segment_column = :level) "
        "ORDER BY horizon, segment, run_month",
        params={"level": LEVEL},
    )
    if frame.empty:
        return None
    rows = [
        {
            "level": r["segment"],
            "horizon": int(r["horizon"]),
            "run_month": _month(r["run_month"]),
            "groups": int(r["forecasts"]),
            **{k: _float(r[k]) for k in ("wape", "best_naive_wape", "fva", "coverage")},
            "best_naive": r["best_naive"],
        }
        for r in frame.to_dict(orient="records")
    ]
    return _month(frame["forecast_month"].iloc[0]), rows


def _pooled_coverage(group: pd.DataFrame) -> float | None:
    """The share of actuals inside their p10-p90 over the rows of several runs (None: no interval)."""
    counted = pd.to_numeric(group["interval_forecasts"]).fillna(0).astype(float)
    held = group["coverage"].astype(float)
    known = held.notna() & (counted > 0)
    return float((held[known] * counted[known]).sum() / counted[known].sum()) if known.any() else None


def biggest_misses(config: Config, present: set[str] | None = None) -> tuple[str, list[dict]] | None:
    """The newest scored month and its forecasts with the largest absolute errors."""
    name = table_names(config)["errors"]
    if name not in (existing(config) if present is None else present):
        return None
    keys = config.source.entity_columns
    table = relation(config, name)
    frame = run_query(
        config,
        f"SELECT {', '.join(quote(k) for k in keys)}, forecast_month, horizon, actual, prediction, error "
        f"FROM {table} WHERE forecast_month = (SELECT max(forecast_month) FROM {table}) "
        f"ORDER BY abs(error) DESC, horizon LIMIT {MISSES}",
    )
    if frame.empty:
        return None
    return _month(frame["forecast_month"].iloc[0]), frame.drop(columns="forecast_month").to_dict(
        orient="records"
    )


# The drift table's columns but its month (the section is about one month).
DRIFT_COLUMNS = [c for c in drift.COLUMNS if c != "run_month"]
KIND_ORDER = {"feature": 0, "target": 1, "entities": 2}


def latest_drift(
    config: Config, present: set[str] | None = None
) -> tuple[str, list[dict], list[tuple[str, list[str]]]] | None:
    """The newest month in ``<table>_drift``, its rows (features, the target, then the entity
    shares), and per earlier month (newest first) what was flagged."""
    name = table_names(config)["drift"]
    if name not in (existing(config) if present is None else present):
        return None
    table = relation(config, name)
    frame = run_query(
        config,
        f"SELECT run_month, {', '.join(DRIFT_COLUMNS)} FROM {table} ORDER BY run_month DESC, kind, feature",
    )
    if frame.empty:
        return None
    frame["month"] = frame["run_month"].map(_month)
    frame["drifted"] = frame["drifted"].astype(bool)
    latest = frame["month"].max()
    rows = []
    for record in frame[frame["month"] == latest].to_dict(orient="records"):
        row = {c: record[c] for c in DRIFT_COLUMNS}
        for c in ("psi", "ks_statistic", "ks_pvalue", "share", "threshold"):
            row[c] = _float(row[c])
        for c in ("entities", "reference_rows", "scoring_rows"):
            row[c] = None if pd.isna(row[c]) else int(row[c])
        for c in ("reference_first_month", "reference_last_month"):
            row[c] = None if row[c] is None or pd.isna(row[c]) else _month(row[c])
        rows.append(row)
    rows.sort(key=lambda r: (KIND_ORDER.get(r["kind"], 3), r["feature"]))
    earlier = [
        (month, sorted(group.loc[group["drifted"], "feature"]))
        for month, group in frame[frame["month"] < latest].groupby("month", sort=False)
    ]
    return latest, rows, sorted(earlier, reverse=True)


ALERT_COLUMNS = [
    "alert_id",
    "raised_at",
    "dag_id",
    "run_id",
    "task_id",
    "month",
    "kind",
    "metric",
    "subject",
    "value",
    "threshold",
    "message",
    "notified",
]


def recent_alerts(
    config: Config, limit: int = ALERTS, present: set[str] | None = None
) -> tuple[list[dict], int] | None:
    """The newest ``limit`` alerts, newest first, and how many the table holds."""
    name = table_names(config)["alerts"]
    if name not in (existing(config) if present is None else present):
        return None
    table = relation(config, name)
    total = int(run_query(config, f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])
    frame = run_query(
        config,
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM {table} ORDER BY raised_at DESC, alert_id DESC LIMIT {int(limit)}",
    )
    rows = []
    for record in frame.to_dict(orient="records"):
        raised = pd.Timestamp(record["raised_at"])
        raised = raised.tz_localize("UTC") if raised.tzinfo is None else raised.tz_convert("UTC")
        rows.append(
            {
                **record,
                "raised_at": raised,
                "month": None
                if record["month"] is None or pd.isna(record["month"])
                else _month(record["month"]),
                "value": _float(record["value"]),
                "threshold": _float(record["threshold"]),
            }
        )
    return rows, total


# --- the sections ------------------------------------------------------------------------------


def render_monitoring(config: Config) -> Markup:
    """The monitoring sections of the overview, or one line saying there is no monitoring yet."""
    names = table_names(config)
    present = existing(config)
    if not present:
        return Markup(render("monitoring.html", names=names, present=False))
    trend = accuracy_trend(config, present)
    return Markup(
        render(
            "monitoring.html",
            names=names,
            present=True,
            baselines=BASELINES,
            accuracy=_accuracy_view(trend) if trend else None,
            misses=_misses_view(config, present) if trend else None,
            levels=level_accuracy(config, present) if trend else None,
            value_added=value_added_view(config, present) if trend else None,
            drift=_drift_view(config, present),
            alerts=_alerts_view(config, present),
        )
    )


SERIES_STYLE = {"model": "model", **{b: f"base{i + 1}" for i, b in enumerate(BASELINES)}}


def _accuracy_view(trend: list[dict]) -> list[dict[str, Any]]:
    """Per horizon: its chart and its rows, newest month first (the first horizon's is open)."""
    horizons = sorted({r["horizon"] for r in trend})
    out = []
    for i, horizon in enumerate(horizons):
        rows = [r for r in trend if r["horizon"] == horizon]
        out.append(
            {
                "horizon": horizon,
                "ahead": _ahead(horizon),
                "open": i == 0,
                "chart": _accuracy_chart(horizon, rows),
                "rows": [{**r, "runs": runs(r)} for r in reversed(rows)],
            }
        )
    return out


def _ahead(horizon: int) -> str:
    return f"{horizon} month{'s' if horizon != 1 else ''} ahead"


def _accuracy_chart(horizon: int, rows: list[dict]) -> Markup:
    series = [
        Series(
            "model",
            "published forecasts",
            [(r["month"], r["wape"]) for r in rows if r["wape"] is not None],
            style=SERIES_STYLE["model"],
        )
    ]
    series += [
        Series(
            b,
            f"{b} (naive)",
            [(r["month"], r[f"wape_{b}"]) for r in rows if r[f"wape_{b}"] is not None],
            dashed=True,
            style=SERIES_STYLE[b],
        )
        for b in BASELINES
    ]
    return Markup(
        line_chart(
            series,
            title=f"Realised WAPE, forecasts {_ahead(horizon)}, against the naive baselines",
            y_label="WAPE (lower is better)",
            x_label="forecast month",
            width=600,  # drawn beside its table: about its own size on a laptop
            height=300,
        )
    )


def runs(row: dict) -> str:
    """Which runs and models made a month's forecasts (a row's tooltip)."""
    return f"run {', '.join(row['run_months'])}, model {', '.join(row['model_versions'])}"


def _misses_view(config: Config, present: set[str]) -> dict[str, Any] | None:
    found = biggest_misses(config, present)
    if found is None:
        return None
    month, misses = found
    keys = config.source.entity_columns
    return {"month": month, "rows": [{**r, "entity": {k: r[k] for k in keys}} for r in misses]}


def _drift_view(config: Config, present: set[str]) -> dict[str, Any] | None:
    found = latest_drift(config, present)
    if found is None:
        return None
    month, rows, earlier = found
    first = rows[0]
    window = (
        {
            "first": first["reference_first_month"],
            "last": first["reference_last_month"],
            "model_version": first["model_version"],
        }
        if first.get("reference_first_month")
        else None
    )
    flagged = [r["feature"] for r in rows if r["drifted"]]
    return {"month": month, "rows": rows, "earlier": earlier, "window": window, "flagged": flagged}


def _alerts_view(config: Config, present: set[str]) -> dict[str, Any] | None:
    found = recent_alerts(config, present=present)
    if found is None or not found[1]:
        return None
    rows, total = found
    shown = f"the newest {len(rows)} of {total}" if total > len(rows) else f"all {total}"
    return {"shown": shown, "rows": [{**r, "notices": _notices(r["notified"])} for r in rows]}


def _notices(text: str) -> list[dict[str, str]]:
    """An alert's ``notified`` column ("smtp:a@x,b@y; slack FAILED: ...") as one notice per channel."""
    out = []
    for part in (p.strip() for p in (text or "").split(";")):
        if not part:
            continue
        channel, _, rest = part.partition(":")
        if part == "log only":
            out.append({"how": "logged"})
        elif " FAILED" in part:
            out.append({"how": "failed", "said": part, "channel": part.split(" FAILED")[0]})
        else:
            out.append({"how": "sent", "channel": channel, "to": rest.replace(",", ", ")})
    return out
