"""The Forecasts view's monitoring sections (on the overview page, forecasting.ui.overview): what the
forecast_monitoring DAG wrote to the predictions database.

* Realised accuracy: per horizon, the WAPE of the published forecasts for each month whose
  actuals are in, against each naive baseline as of the same origin (``<table>_accuracy``): a
  line chart and its numbers; and the biggest misses of the newest scored month
  (``<table>_errors``), linked into the explorer.
* Drift: ``<table>_drift`` of the newest month compared, the flagged rows highlighted and named.
* Alerts: ``<table>_alerts``, newest first.

Each reader returns plain rows (what the page shows, what tests compare with the tables), None
while its table does not exist. On SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.modeling.baselines import NAIVE_BASELINES as BASELINES
from forecasting.monitoring import drift
from forecasting.publishing.query import run_query
from forecasting.ui.charts import Series, line_chart
from forecasting.ui.explorer import quote, relation

MISSES = 10  # the biggest misses shown
ALERTS = 50  # the newest alerts shown
ALL = "(all)"  # the accuracy rows over every entity (forecasting.monitoring.accuracy.ALL)


def table_names(config: Config) -> dict[str, str]:
    name = config.predictions.table
    return {kind: f"{name}_{kind}" for kind in ("accuracy", "errors", "drift", "alerts")}


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
    them and the forecast value added over it. Rows of several run months or model versions for
    one forecast month and horizon are pooled (their absolute errors added up)."""
    name = table_names(config)["accuracy"]
    if name not in (existing(config) if present is None else present):
        return None
    baselines = ", ".join(f"{quote(f'{b}_wape')}" for b in BASELINES)
    frame = run_query(
        config,
        f"SELECT forecast_month, run_month, horizon, model_version, forecasts, actual_sum, wape, {baselines} "
        f"FROM {relation(config, name)} WHERE segment_column = :all "
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
        out.append(row)
    return out


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


def render_monitoring(config: Config) -> str:
    """The monitoring sections of the overview, or one line saying there is no monitoring yet."""
    names = table_names(config)
    present = existing(config)
    if not present:
        return (
            "<h3 id='monitoring'>Monitoring</h3><p class='muted' id='no-monitoring'><b>No monitoring yet.</b> "
            "The <code>forecast_monitoring</code> DAG scores the published forecasts once their month's "
            "actuals are in, compares the data with the model's training window and raises alerts; its "
            f"tables (<code>{html.escape(names['accuracy'])}</code>, <code>{html.escape(names['drift'])}"
            f"</code>, <code>{html.escape(names['alerts'])}</code>) appear with its first run.</p>"
        )
    return "".join(
        (
            "<div id='monitoring'>",
            accuracy_section(config, present),
            drift_section(config, present),
            alerts_section(config, present),
            "</div>",
        )
    )


def _num(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _fmt(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


SERIES_STYLE = {"model": "model", **{b: f"base{i + 1}" for i, b in enumerate(BASELINES)}}


def accuracy_section(config: Config, present: set[str] | None = None) -> str:
    name = table_names(config)["accuracy"]
    trend = accuracy_trend(config, present)
    if not trend:
        return (
            "<h3>Realised accuracy</h3><p class='muted' id='no-accuracy'>No month scored yet: the realised "
            f"accuracy (<code>{html.escape(name)}</code>) appears once <code>forecast_monitoring</code> has "
            "scored a month whose actuals are in.</p>"
        )
    horizons = sorted({r["horizon"] for r in trend})
    parts = [
        "<h3>Realised accuracy</h3><p class='muted'>WAPE of the published forecasts once their month's "
        "actuals were in, against each naive baseline made as of the same month (from <code>"
        f"{html.escape(name)}</code>, over every entity; lower is better; forecast value added = best "
        "naive WAPE − WAPE, above 0 when the forecasts beat every naive one).</p>"
    ]
    for i, horizon in enumerate(horizons):
        rows = [r for r in trend if r["horizon"] == horizon]
        parts.append(_horizon_block(horizon, rows, open_=i == 0))
    parts.append(_misses(config, present))
    return "".join(parts)


def _ahead(horizon: int) -> str:
    return f"{horizon} month{'s' if horizon != 1 else ''} ahead"


def _horizon_block(horizon: int, rows: list[dict], open_: bool) -> str:
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
    chart = line_chart(
        series,
        title=f"Realised WAPE, forecasts {_ahead(horizon)}, against the naive baselines",
        y_label="WAPE (lower is better)",
        x_label="forecast month",
        width=600,  # drawn beside its table: about its own size on a laptop
        height=300,
    )
    head = (
        "<tr><th>month</th><th class='n'>forecasts</th><th class='n'>model</th>"
        + "".join(f"<th class='n'>{html.escape(b).replace('_', '_<wbr>')}</th>" for b in BASELINES)
        + "<th>best naive</th><th class='n'>value added</th></tr>"
    )
    lines = []
    for r in reversed(rows):
        fva = r["fva"]
        verdict = "" if fva is None else ("good" if fva > 0 else "bad")
        cells = "".join(
            f"<td class='n{' best' if b == r['best_naive'] else ''}' data-col='{html.escape(b)}'>"
            f"{_num(r[f'wape_{b}'])}</td>"
            for b in BASELINES
        )
        lines.append(
            f"<tr data-month='{r['month']}' data-horizon='{horizon}'>"
            f"<td class=nw title='{html.escape(runs(r))}'>{r['month']}</td><td class='n'>{r['forecasts']:,}</td>"
            f"<td class='n {verdict}' data-col='model'>{_num(r['wape'])}</td>{cells}"
            f"<td>{html.escape(r['best_naive'] or '').replace('_', '_<wbr>')}</td>"
            f"<td class='n {verdict}'>{'' if fva is None else f'{fva:+.3f}'}</td></tr>"
        )
    latest = rows[-1]
    said = (
        f"{latest['month']}: WAPE {_num(latest['wape'])}, best naive {html.escape(latest['best_naive'] or '?')} "
        f"{_num(latest['best_naive_wape'])}"
    )
    return (
        f"<details class='accuracy' data-horizon='{horizon}'{' open' if open_ else ''}>"
        f"<summary><b>{_ahead(horizon)}</b> · {said}</summary>"
        f"<div class='explorer'><div class='chart-box'>{chart}</div><div class='numbers'>"
        f"<table class='accuracy-numbers'><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>"
        "</div></div></details>"
    )


def runs(row: dict) -> str:
    """Which runs and models made a month's forecasts (a row's tooltip)."""
    return f"run {', '.join(row['run_months'])}, model {', '.join(row['model_versions'])}"


def _misses(config: Config, present: set[str] | None) -> str:
    found = biggest_misses(config, present)
    if found is None:
        return ""
    month, misses = found
    keys = config.source.entity_columns
    lines = "".join(
        f"<tr><td><a href='explorer?{html.escape(urlencode({k: r[k] for k in keys}))}'>"
        f"{html.escape(', '.join(f'{k} {r[k]}' for k in keys))}</a></td><td class='n'>{r['horizon']}</td>"
        f"<td class='n'>{r['actual']:,.1f}</td><td class='n'>{r['prediction']:,.1f}</td>"
        f"<td class='n'>{r['error']:+,.1f}</td></tr>"
        for r in misses
    )
    return (
        f"<h3>Biggest misses of {month}</h3><p class='muted'>The forecasts for {month} furthest from its "
        "actuals (error = forecast − actual); each links to the entity in the explorer.</p>"
        "<table id='misses'><thead><tr><th>entity</th><th class='n'>months ahead</th><th class='n'>actual</th>"
        f"<th class='n'>forecast</th><th class='n'>error</th></tr></thead><tbody>{lines}</tbody></table>"
    )


def drift_section(config: Config, present: set[str] | None = None) -> str:
    name = table_names(config)["drift"]
    found = latest_drift(config, present)
    if found is None:
        return (
            "<h3>Drift</h3><p class='muted' id='no-drift'>No month compared yet: the drift of each month "
            f"against the model's training window (<code>{html.escape(name)}</code>) appears once "
            "<code>forecast_monitoring</code> has run.</p>"
        )
    month, rows, earlier = found
    flagged = [r["feature"] for r in rows if r["drifted"]]
    first = rows[0]
    window = (
        f" against the training window {first['reference_first_month']}..{first['reference_last_month']} of "
        f"<code>{html.escape(str(first['model_version']))}</code>"
        if first.get("reference_first_month")
        else ""
    )
    named = (
        f"<p class='bad' id='drifted'>Drifted in {month}: "
        + ", ".join(f"<code>{html.escape(f)}</code>" for f in flagged)
        + ".</p>"
        if flagged
        else f"<p class='good' id='drifted'>Nothing drifted in {month}.</p>"
    )
    lines = []
    for r in rows:
        entity_row = r["kind"] == "entities"
        flag = "<span class='badge bad'>drifted</span>" if r["drifted"] else "<span class='muted'>no</span>"
        lines.append(
            f"<tr data-feature='{html.escape(r['feature'])}' data-drifted='{str(r['drifted']).lower()}'"
            f"{' class=flagged' if r['drifted'] else ''}><td><code>{html.escape(r['feature'])}</code></td>"
            f"<td>{html.escape(r['kind'])}</td><td class='n'>{_num(r['psi'])}</td>"
            f"<td class='n'>{_num(r['ks_statistic'])}</td>"
            f"<td class='n'>{_fmt(r['ks_pvalue'], '.2g')}</td><td class='n'>{_fmt(r['share'], '.1%')}</td>"
            f"<td class='n'>{_fmt(r['entities'] if entity_row else None, ',')}</td>"
            f"<td class='n'>{_fmt(r['threshold'], '.0%' if entity_row else '.2f')}</td>"
            f"<td>{flag}</td></tr>"
        )
    history = (
        "<p class='muted'>Earlier months: "
        + "; ".join(f"{m}: {', '.join(f) if f else 'nothing drifted'}" for m, f in earlier)
        + ".</p>"
        if earlier
        else ""
    )
    return (
        f"<h3>Drift of {month}</h3><p class='muted'>{month}'s feature rows and actuals{window} (from "
        f"<code>{html.escape(name)}</code>): population stability index (PSI) and the two-sample "
        "Kolmogorov-Smirnov test; a row is flagged when PSI reaches its threshold and the test rejects "
        "“same distribution”. The entity rows are the shares of new entities (no history before the "
        "month) and of vanished ones (sold the month before, not in it).</p>"
        f"{named}<table id='drift'><thead><tr><th>feature</th><th>kind</th><th class='n'>PSI</th>"
        "<th class='n'>KS statistic</th><th class='n'>KS p-value</th><th class='n'>share</th>"
        "<th class='n'>entities</th><th class='n'>threshold</th><th>flagged</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>{history}"
    )


KIND_CLASS = {"task_failure": "bad", "accuracy": "warn", "drift": "warn"}


def _notified(text: str) -> str:
    parts = [p.strip() for p in (text or "").split(";") if p.strip()]
    out = []
    for part in parts:
        kind, _, rest = part.partition(":")
        if part == "log only":
            out.append("<span class='muted'>logged only</span>")
        elif " FAILED" in part:
            out.append(
                f"<span class='bad' title='{html.escape(part)}'>{html.escape(part.split(' FAILED')[0])}: failed</span>"
            )
        else:
            out.append(f"{html.escape(kind)} to {html.escape(rest.replace(',', ', '))}")
    return "<br>".join(out)


def alerts_section(config: Config, present: set[str] | None = None) -> str:
    name = table_names(config)["alerts"]
    found = recent_alerts(config, present=present)
    if found is None or not found[1]:
        return (
            f"<h3>Alerts</h3><p class='muted' id='no-alerts'>No alert raised yet (<code>{html.escape(name)}</code>: "
            "failed tasks, realised accuracy and drift beyond the config's thresholds).</p>"
        )
    rows, total = found
    shown = f"the newest {len(rows)} of {total}" if total > len(rows) else f"all {total}"
    lines = "".join(
        f"<tr data-alert='{r['alert_id']}' data-kind='{html.escape(r['kind'])}'>"
        f"<td class=nw>{r['raised_at']:%Y-%m-%d %H:%M}</td><td class=nw>{r['month'] or ''}</td>"
        f"<td><span class='badge {KIND_CLASS.get(r['kind'], 'warn')}'>{html.escape(r['kind'])}</span></td>"
        f"<td>{html.escape(r['metric'])}</td><td><code>{html.escape(r['subject'])}</code></td>"
        f"<td class='n'>{_fmt(r['value'], '.4g')}</td><td class='n'>{_fmt(r['threshold'], '.4g')}</td>"
        f"<td>{_notified(r['notified'])}</td>"
        f"<td class='message'>{html.escape(r['message'])}<br><span class='muted'>{html.escape(r['dag_id'])}"
        f"{' · ' + html.escape(r['run_id']) if r['run_id'] else ''}</span></td></tr>"
        for r in rows
    )
    return (
        f"<h3>Alerts</h3><p class='muted'>From <code>{html.escape(name)}</code>, newest first ({shown}). "
        "Checking a month again does not repeat an alert already sent; a changed value is a new one.</p>"
        "<table id='alerts'><thead><tr><th>raised (UTC)</th><th>month</th><th>kind</th><th>metric</th>"
        "<th>about</th><th class='n'>value</th><th class='n'>threshold</th><th>notified</th><th>message</th>"
        f"</tr></thead><tbody>{lines}</tbody></table>"
    )
