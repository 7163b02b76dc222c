"""The Forecasts view's pages, rendered by the Airflow UI plugin (plugins/forecast_quality.py).

* ``render`` (the overview): every month's status, each attempt of each month (published,
  failed validation with the failed expectations, failed elsewhere, running or stopped), linked
  to its Airflow run and its own validation page; and per published month the model against
  every baseline (all metrics, per horizon) from its evaluation.json; then what the
  forecast_monitoring DAG found (forecasting.ui.monitoring): realised accuracy against each
  naive baseline, the latest drift and the alerts.
* ``data_docs_file`` / ``data_docs_html``: an attempt's GX Data Docs, with the CDN links of its
  pages rewritten to the copies in ``assets/`` so they render offline.
* ``page``: the shell every page shares (Airflow-like, light and dark).

Plain functions over the config, the predictions database and the run folders: testable
without Airflow.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.db import make_engine
from forecasting.core.months import month_of
from forecasting.core.names import FORECAST_DAG, STAGES
from forecasting.modeling.forecaster import Baseline, Blend, parse
from forecasting.ui.monitoring import render_monitoring

DAG_ID = FORECAST_DAG
ASSETS = Path(__file__).parent / "assets"

# Airflow 3's colours (its Chakra theme: white/gray.900 backgrounds, blue accents) and the
# system font stack; the inline script follows Airflow's own light/dark switch when the page is
# shown inside the UI (same origin), else the OS setting applies.
STYLE = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1a202c; --muted: #4a5568; --line: #e2e8f0;
  --head: #f7fafc; --accent: #0366d6; --good: #2f855a; --bad: #c53030; --warn: #b7791f;
  --actual: #2b6cb0; --latest: #dd6b20; --a1: #38a169; --a2: #805ad5; --a3: #d53f8c; --band: #dd6b20; }
@media (prefers-color-scheme: dark) { :root:not([data-theme=light]) { --bg: #1a202c; --fg: #e2e8f0;
  --muted: #a0aec0; --line: #2d3748; --head: #222938; --accent: #63b3ed; --good: #68d391; --bad: #fc8181;
  --warn: #f6e05e; --actual: #63b3ed; --latest: #f6ad55; --a1: #68d391; --a2: #b794f4; --a3: #f687b3;
  --band: #f6ad55; } }
:root[data-theme=dark] { --bg: #1a202c; --fg: #e2e8f0; --muted: #a0aec0; --line: #2d3748; --head: #222938;
  --accent: #63b3ed; --good: #68d391; --bad: #fc8181; --warn: #f6e05e; --actual: #63b3ed; --latest: #f6ad55;
  --a1: #68d391; --a2: #b794f4; --a3: #f687b3; --band: #f6ad55; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px; margin: 0; padding: 1rem 1.5rem; background: var(--bg); color: var(--fg); }
a { color: var(--accent); } code { font-size: 12px; }
nav.tabs { display: flex; gap: 1.25rem; border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
nav.tabs a { padding: .5rem 0; text-decoration: none; color: var(--muted); }
nav.tabs a.active { color: var(--fg); border-bottom: 2px solid var(--accent); font-weight: 600; }
h2 { font-size: 20px; margin: .2rem 0 .6rem; } h3 { font-size: 16px; margin: 1.2rem 0 .5rem; }
table { border-collapse: collapse; margin: .3rem 0 1rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; background: var(--head); font-weight: 600; } td.n, th.n { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: var(--muted); } .good { color: var(--good); } .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); } td.nw, .badge { white-space: nowrap; } tr.chosen td { font-weight: 600; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 9px; font-size: 12px; border: 1px solid; }
details { margin: .2rem 0 .8rem; } summary { cursor: pointer; }
ul.failures { margin: .2rem 0; padding-left: 1.1rem; }
form.search { display: flex; flex-wrap: wrap; gap: .8rem; align-items: center; margin-bottom: .5rem; }
input, button, .button { font: inherit; padding: .25rem .5rem; border: 1px solid var(--line); border-radius: 4px;
  background: var(--bg); color: var(--fg); } button, .button { cursor: pointer; text-decoration: none;
  background: var(--accent); color: var(--bg); border-color: var(--accent); }
ul.entities { columns: 4 12rem; padding-left: 1.1rem; }
.explorer { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
/* The numbers keep their own width (cut, they would hide columns on a laptop); the chart takes the
   rest, and goes above them when both do not fit side by side. */
.chart-box { flex: 1 1 560px; min-width: 0; }
.numbers { flex: 0 0 auto; max-width: 100%; max-height: 560px; overflow: auto; scrollbar-gutter: stable; }
.numbers table { margin: 0; } #shown-rows { width: min-content; }  /* headers wrap, numbers don't */
.numbers th { position: sticky; top: 0; white-space: normal; max-width: 4.5rem; }
.numbers td, .numbers th { padding: .25rem .45rem; } .button { display: inline-block; margin: .2rem 0; }
/* A chart's text is in its viewBox units and scales with it (forecasting.ui.charts caps the growth):
   13px stays readable at the 0.75x that a laptop shows a chart at beside its table. */
svg.chart { height: auto; font-size: 13px; }
svg .grid { stroke: var(--line); } svg .axis { stroke: var(--muted); } svg text { fill: var(--muted); }
svg .axis-label { fill: var(--fg); font-size: 14px; } svg .marker { stroke: var(--muted); stroke-dasharray: 2 3; }
.series polyline, .series line { stroke-width: 2; fill: none; } .series circle { stroke: var(--bg); stroke-width: 1; }
.s-actual polyline, .s-actual line { stroke: var(--actual); } .s-actual circle { fill: var(--actual); }
.s-latest polyline, .s-latest line { stroke: var(--latest); } .s-latest circle { fill: var(--latest); }
.s-ahead1 circle { fill: var(--a1); } .s-ahead2 circle { fill: var(--a2); } .s-ahead3 circle { fill: var(--a3); }
.s-ahead1 polyline, .s-ahead1 line { stroke: var(--a1); } .s-ahead2 polyline, .s-ahead2 line { stroke: var(--a2); }
.s-ahead3 polyline, .s-ahead3 line { stroke: var(--a3); } .s-naive polyline, .s-naive line { stroke: var(--muted); }
.s-naive circle { fill: var(--muted); }
.band { fill: var(--band); opacity: .18; }
.s-model polyline, .s-model line { stroke: var(--actual); stroke-width: 2.5; } .s-model circle { fill: var(--actual); }
.s-base1 polyline, .s-base1 line { stroke: var(--a2); } .s-base1 circle { fill: var(--a2); }
.s-base2 polyline, .s-base2 line { stroke: var(--a1); } .s-base2 circle { fill: var(--a1); }
.s-base3 polyline, .s-base3 line { stroke: var(--a3); } .s-base3 circle { fill: var(--a3); }
tr.flagged td { background: color-mix(in srgb, var(--bad) 12%, transparent); }
td.best { font-weight: 600; } td.message { max-width: 32rem; font-size: 12px; }
details.accuracy > summary { margin: .3rem 0; } details.accuracy .chart-box { flex: 1 1 480px; }
details.accuracy .numbers { flex: 1 1 540px; }
.legend { display: flex; flex-wrap: wrap; gap: .9rem; color: var(--muted); font-size: 12px; }
.legend-item svg { vertical-align: middle; margin-right: .3rem; }
"""

THEME_SCRIPT = (
    "<script>try{var m=window.parent.localStorage.getItem('chakra-ui-color-mode');"
    "if(m==='dark'||m==='light')document.documentElement.dataset.theme=m}catch(e){}</script>"
)


def page(config: Config, active: str, body: str) -> str:
    """A whole page of the view: tabs, a line saying which deployment, ``body``."""
    tabs = "".join(
        f'<a href="{href}"{" class=active" if name == active else ""}>{name}</a>'
        for name, href in (("Overview", "./"), ("Explorer", "explorer"))
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Forecasts · {html.escape(active)}</title>{THEME_SCRIPT}<style>{STYLE}</style></head><body>"
        f'<nav class="tabs">{tabs}</nav>'
        f'<p class="muted">Deployment <code>{html.escape(str(config.path))}</code>; predictions in '
        f"<code>{html.escape(config.predictions.table)}</code>.</p>{body}</body></html>"
    )


# --- what happened to every attempt of every month -------------------------------------------


@dataclass
class AttemptStatus:
    month: str
    name: str  # the attempt's folder
    run_id: str | None
    status: str  # published, replaced, failed validation, failed, running or stopped
    stage: str | None = None  # the stage that failed, or the last one done
    message: str = ""
    failures: list[dict] = field(default_factory=list)  # a failed validation's expectations
    validation_page: str | None = None  # relative to the attempt's data_docs folder
    data_docs: bool = False


def attempt_statuses(config: Config, run_states: Mapping[str, str] | None = None) -> list[AttemptStatus]:
    """Every attempt under data_dir/runs, newest month first and, within a month, newest first.

    ``run_states`` (Airflow run id -> state) tells a running attempt from one that stopped.
    """
    root = paths.runs_root(config)
    months = sorted((p.name for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []
    out: list[AttemptStatus] = []
    for month in months:
        try:
            period = month_of(month)
        except ValueError:
            continue
        published = paths.published_attempt(config, period)
        for folder in reversed(paths.runs_of(config, period)):
            out.append(_status(month, folder, published, run_states or {}))
    return out


def _status(month: str, folder: Path, published: Path | None, run_states: Mapping[str, str]) -> AttemptStatus:
    extract = _read(paths.result_in(folder, "extract")) or {}
    run_id = extract.get("run_id")
    failed = [_read(p) or {} for p in paths.failures_in(folder).values()]
    done = [s for s in STAGES if paths.result_in(folder, s).is_file()]
    status = AttemptStatus(
        month=month, name=folder.name, run_id=run_id, status="", stage=done[-1] if done else None
    )
    docs = paths.data_docs_in(folder)
    status.data_docs = paths.docs_index(docs).is_file()
    pages = sorted(docs.glob("validations/**/*.html")) if docs.is_dir() else []
    status.validation_page = pages[-1].relative_to(docs).as_posix() if pages else None
    if paths.result_in(folder, "publish").is_file():
        status.run_id = run_id or (_read(paths.result_in(folder, "publish")) or {}).get("run_id")
        status.status = "published" if folder == published else "replaced"
        status.message = "" if folder == published else "a later attempt of this month was published"
    elif failed:
        failure = failed[0]
        status.stage = failure.get("stage")
        status.message = failure.get("message", "").splitlines()[0] if failure.get("message") else ""
        if failure.get("failures") is not None:
            status.status = "failed validation"
            status.failures = failure["failures"]
        else:
            status.status = "failed"
            status.message = f"{failure.get('error', 'error')}: {failure.get('message', '')}".strip()
    else:
        state = run_states.get(run_id or "")
        status.status = (
            "running" if state in ("running", "queued") else "stopped" if state else "running or stopped"
        )
        status.message = f"Airflow says: {state}" if state else ""
    return status


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- model against baselines, per published month --------------------------------------------


def quality_rows(config: Config) -> list[dict]:
    """One dict per published month, newest first: the runs table joined with its evaluation."""
    engine = make_engine(config.predictions.database)
    runs_table = f"{config.predictions.table}_runs"
    try:
        if not sa.inspect(engine).has_table(runs_table, schema=config.predictions.database.schema):
            return []
        runs = sa.Table(
            runs_table, sa.MetaData(schema=config.predictions.database.schema), autoload_with=engine
        )
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(runs).order_by(runs.c.run_month.desc()))]
    finally:
        engine.dispose()
    for row in rows:
        month = str(row["run_month"])[:7]
        row["month"] = month
        # The published attempt's own evaluation and validation, never a later failed attempt's.
        attempt = paths.published_attempt(config, month_of(month), row["run_id"])
        row["attempt"] = attempt.name if attempt else None
        row["data_docs"] = attempt is not None and paths.docs_index(paths.data_docs_in(attempt)).is_file()
        row["evaluation"] = _evaluation(config, attempt, row["model_version"])
    return rows


def _evaluation(config: Config, attempt: Path | None, model_version: str) -> dict | None:
    """The challenger's evaluation.json of the attempt (it scores the model, the champion and every
    baseline on the same rows); else the published model's own."""
    evaluate = _read(paths.result_in(attempt, "evaluate")) if attempt else None
    candidates = [Path(evaluate["report"])] if evaluate and evaluate.get("report") else []
    candidates.append(paths.evaluation(paths.model_dir(config, model_version)))
    for path in candidates:
        found = _read(path)
        if found is not None:
            return found
    return None


METRICS = (("wape", "WAPE"), ("mae", "MAE"), ("rmse", "RMSE"), ("bias", "bias"), ("bias_pct", "bias %"))


def scoreboard(evaluation: dict) -> list[dict]:
    """Every forecaster scored in ``evaluation``: name, what it is, its metrics and WAPE per horizon."""
    by_horizon = evaluation.get("by_horizon") or {}
    horizons = sorted(by_horizon, key=int)
    out = [
        {
            "name": "model",
            "kind": f"challenger {evaluation.get('model_version', '')}".strip(),
            "metrics": evaluation.get("model") or {},
            "wape_by_horizon": {h: (by_horizon[h].get("model") or {}).get("wape") for h in horizons},
        }
    ]
    champion = evaluation.get("champion") or {}
    if champion.get("available"):
        out.append(
            {
                "name": "champion",
                "kind": f"champion {champion.get('model_version', '')}".strip(),
                "metrics": champion.get("metrics") or {},
                "wape_by_horizon": {
                    h: (champion.get("by_horizon", {}).get(h) or {}).get("wape") for h in horizons
                },
            }
        )
    for name, metrics in (evaluation.get("baselines") or {}).items():
        out.append(
            {
                "name": name,
                "kind": "baseline",
                "metrics": metrics,
                "wape_by_horizon": {h: (by_horizon[h].get(name) or {}).get("wape") for h in horizons},
            }
        )
    blend = evaluation.get("blend")
    if blend:
        out.append(
            {
                "name": "blend",
                "kind": f"mean of the model and {blend['baseline']}",
                "metrics": blend["metrics"],
                "wape_by_horizon": {h: (blend["by_horizon"].get(h) or {}).get("wape") for h in horizons},
            }
        )
    return out


# --- the overview page -----------------------------------------------------------------------


def render(config: Config, run_states: Mapping[str, str] | None = None) -> str:
    """The overview page."""
    rows = quality_rows(config)
    attempts = attempt_statuses(config, run_states)
    body = ["<h2>Forecasts</h2>"]
    if not rows and not attempts:
        body.append("<p>No month has been published yet: run <code>monthly_forecast</code>.</p>")
        return page(config, "Overview", "".join(body))
    body.append(_status_table(attempts))
    body.append(render_monitoring(config))
    if rows:
        body.append(
            "<h3>Model against baselines, per published month</h3>"
            '<p class="muted">Holdout scores from each run\'s evaluation.json: every forecaster on the '
            "same rows (lower is better; bias is forecast minus actual). The forecaster that made the "
            "published rows is in bold.</p>"
        )
        body += [_month_quality(r, open_=i == 0) for i, r in enumerate(rows)]
    else:
        body.append("<p>No month has been published yet.</p>")
    return page(config, "Overview", "".join(body))


STATUS_CLASS = {"published": "good", "failed validation": "bad", "failed": "bad", "replaced": "muted"}


def _status_table(attempts: list[AttemptStatus]) -> str:
    rows = []
    for a in attempts:
        badge = f'<span class="badge {STATUS_CLASS.get(a.status, "warn")}">{html.escape(a.status)}</span>'
        detail = html.escape(a.message)
        if a.failures:
            detail += (
                '<ul class="failures">'
                + "".join(
                    f"<li><code>{html.escape(f.get('label', ''))}</code>: {html.escape(str(f.get('details', '')))}</li>"
                    for f in a.failures
                )
                + "</ul>"
            )
        links = []
        if a.run_id:
            # Relative to the plugin's mount point, so it works behind a base URL; the whole window.
            links.append(
                f'<a target="_top" href="../dags/{DAG_ID}/runs/{url_quote(a.run_id, safe="")}">Airflow run</a>'
            )
        if a.validation_page:
            links.append(f'<a href="{_docs_href(a, a.validation_page)}">validation result</a>')
        if a.data_docs:
            links.append(f'<a href="{_docs_href(a, "index.html")}">Data Docs</a>')
        rows.append(
            f"<tr data-month='{html.escape(a.month)}' data-status='{html.escape(a.status)}'>"
            f"<td class=nw>{html.escape(a.month)}</td><td>{badge}</td>"
            f"<td><code>{html.escape(a.run_id or a.name)}</code></td>"
            f"<td>{html.escape(a.stage or '')}</td><td>{detail}</td><td class=nw>{' · '.join(links)}</td></tr>"
        )
    return (
        "<h3>Every month's runs</h3><table id='month-status'><thead><tr><th>month</th><th>status</th>"
        "<th>run</th><th title='the stage that failed, or the last one done (monitoring comes after publish)'>"
        "last stage</th><th>what happened</th><th>links</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _docs_href(a: AttemptStatus, relative: str) -> str:
    return html.escape(f"data-docs/{a.month}/{a.name}/{url_quote(relative)}")


def _month_quality(r: dict, open_: bool) -> str:
    wape, base = r["holdout_wape"], r["best_baseline_wape"]
    beats = wape is not None and base is not None and wape < base
    verdict = (
        '<span class="good">beats the best baseline</span>'
        if beats
        else '<span class="bad">does not beat the best baseline</span>'
    )
    summary = (
        f"<summary><b>{html.escape(r['month'])}</b> · published by <code>{html.escape(r['model_version'])}</code> · "
        f"{r['forecasts']:,} forecasts · WAPE {_num(wape)} vs {html.escape(r['best_baseline'] or '?')} "
        f"{_num(base)}: {verdict}</summary>"
    )
    evaluation = r["evaluation"]
    if evaluation is None:
        return f"<details{' open' if open_ else ''}>{summary}<p>No evaluation.json found.</p></details>"
    decision = evaluation.get("decision") or {}
    published = r["model_version"]
    board = scoreboard(evaluation)
    horizons = sorted(evaluation.get("by_horizon") or {}, key=int)
    head = (
        "<tr><th>forecaster</th><th>what</th>"
        + "".join(f'<th class="n">{label}</th>' for _, label in METRICS)
        + '<th class="n">rows</th>'
        + "".join(f'<th class="n">WAPE h={h}</th>' for h in horizons)
        + "</tr>"
    )
    lines = []
    for entry in board:
        m = entry["metrics"]
        chosen = _is_published(entry, published, decision)
        cells = "".join(f'<td class="n">{_metric(key, m.get(key))}</td>' for key, _ in METRICS)
        cells += f'<td class="n">{m.get("rows", "")}</td>'
        cells += "".join(f'<td class="n">{_num(entry["wape_by_horizon"].get(h))}</td>' for h in horizons)
        lines.append(
            f"<tr{' class=chosen' if chosen else ''}><td>{html.escape(entry['name'])}</td>"
            f"<td>{html.escape(entry['kind'])}</td>{cells}</tr>"
        )
    gate = (
        f"<p>Gate: <b>{html.escape(str(decision.get('outcome', '')))}</b>: {html.escape(str(decision.get('reason', '')))}</p>"
        if decision
        else ""
    )
    sample = _sample_table(evaluation.get("sample"))
    backtest = _backtest_table(evaluation.get("backtest"))
    months = evaluation.get("holdout_target_months") or []
    span = f"<p class='muted'>Holdout months {months[0]}..{months[-1]}.</p>" if months else ""
    return (
        f"<details{' open' if open_ else ''} data-month='{html.escape(r['month'])}'>{summary}{span}{gate}"
        f"<table class='scores'><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>{sample}"
        f"{backtest}</details>"
    )


def _is_published(entry: dict, published: str, decision: dict) -> bool:
    forecaster = parse(published) if published else None
    if isinstance(forecaster, Baseline | Blend):  # the baseline's own line, or the blend's
        return entry["name"] == (forecaster.name if isinstance(forecaster, Baseline) else "blend")
    if entry["name"] == "champion":
        return decision.get("forecaster") == published and decision.get("champion") == published
    if entry["name"] == "model":
        return not (decision.get("champion") == published and decision.get("challenger") != published)
    return False


def _sample_table(sample: dict | None) -> str:
    if not sample:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f'<td class="n">{_metric(key, m.get(key))}</td>' for key, _ in METRICS)
        + f'<td class="n">{m.get("rows", "")}</td></tr>'
        for name, m in {"model": sample.get("model") or {}, **(sample.get("baselines") or {})}.items()
    )
    return (
        f"<p class='muted'>With the statistical forecasters, on a sample of {sample.get('entities', '?'):,} of "
        f"{sample.get('of_entities', '?'):,} entities:</p><table class='scores'><thead><tr><th>forecaster</th>"
        + "".join(f'<th class="n">{label}</th>' for _, label in METRICS)
        + f'<th class="n">rows</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _backtest_table(backtest: dict | None) -> str:
    """The rolling-origin backtest per origin and overall: the model refit at the origin against
    the best baseline on the same rows (and against every baseline on the statistical ones'
    sample, when they were sampled)."""
    if not backtest or not backtest.get("origins"):
        return ""
    sampled = (backtest.get("overall") or {}).get("sample") is not None

    def versus(scores: dict | None) -> str:
        if not scores:
            return '<td class="n"></td><td></td><td class="n"></td><td></td>'
        model = (scores.get("model") or {}).get("wape")
        best = scores.get("best_baseline") or ""
        base = ((scores.get("baselines") or {}).get(best) or {}).get("wape")
        beats = scores.get("beats_best_baseline")
        verdict = '<span class="good">beats it</span>' if beats else '<span class="bad">does not</span>'
        return (
            f'<td class="n">{_num(model)}</td><td>{html.escape(best)}</td>'
            f'<td class="n">{_num(base)}</td><td>{verdict}</td>'
        )

    entries = [(e.get("origin", "?"), e) for e in backtest["origins"]] + [("overall", backtest["overall"])]
    lines = "".join(
        f"<tr data-origin='{html.escape(str(name))}'><td class=nw>"
        + (f"<b>{name}</b>" if name == "overall" else html.escape(str(name)))
        + f'</td><td class="n">{entry.get("rows", 0):,}</td>{versus(entry)}'
        + (versus(entry.get("sample")) if sampled else "")
        + "</tr>"
        for name, entry in entries
    )
    head = '<th class="n">model WAPE</th><th>best baseline</th><th class="n">its WAPE</th><th></th>'
    over = (
        "<tr><th></th><th></th><th colspan=4>every row</th><th colspan=4>on the sample</th></tr>"
        if sampled
        else ""
    )
    return (
        "<p class='muted'>Rolling-origin backtest: at each origin, a model refit on the targets up to it "
        "forecasts that origin's holdout rows, against the baselines on the same rows.</p>"
        f"<table class='scores backtest'><thead>{over}<tr><th>origin</th><th class=\"n\">rows</th>{head}"
        f"{head if sampled else ''}</tr></thead><tbody>{lines}</tbody></table>"
    )


def _metric(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "bias_pct":
        return f"{100 * value:+.1f}%"
    if key == "bias":
        return f"{value:+.2f}"
    return f"{value:.3f}" if key == "wape" else f"{value:.2f}"


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


# --- Data Docs, offline ----------------------------------------------------------------------

MONTH_PATTERN = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
ATTEMPT_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


class BadRequest(ValueError):
    """A month or run that is not even well-formed (the UI answers 400)."""


def data_docs_file(config: Config, month: str, attempt: str, relative: str) -> Path | None:
    """A file inside the Data Docs of one attempt of month, or None (also for paths that try to
    leave it). Raises BadRequest unless ``month`` is YYYY-MM and ``attempt`` an attempt's name.
    """
    if not MONTH_PATTERN.fullmatch(month):
        raise BadRequest(f"not a month (YYYY-MM): {month!r}")
    if not ATTEMPT_PATTERN.fullmatch(attempt) or paths.run_key(attempt) != attempt:
        raise BadRequest(f"not a run attempt: {attempt!r}")
    root = paths.data_docs(config, month_of(month), attempt).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


# CDN files GX's pages load, by file name, and the vendored copy that stands in for each.
VENDORED = {
    "jquery-3.7.1.min.js": "jquery.min.js",
    "popper.min.js": "popper.min.js",
    "bootstrap.min.js": "bootstrap.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
    "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table.min.css": "bootstrap-table.min.css",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "vega@5": "vega.min.js",
    "vega-lite@5": "vega-lite.min.js",
    "vega-embed@6": "vega-embed.min.js",
    "all.min.css": "fontawesome-all.min.css",  # font-awesome 6.6.0
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
}
# Fonts the vendored stylesheets load from beside themselves (served, never linked from a page).
FONTS = ("fa-solid-900.woff2",)
# GX draws charts with Vega (a vegaEmbed call in the page); a page without one skips their 0.8 MB.
CHART_SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
_EXTERNAL_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="(https?://[^"]+)"[^>]*>\s*</script>', re.I)
_EXTERNAL_LINK = re.compile(r'<link\b[^>]*\bhref="(https?://[^"]+)"[^>]*>', re.I)
_GX_IMAGE = re.compile(r'https://great-expectations-web-assets\.[^"\')\s]+')


def asset_file(name: str) -> Path | None:
    """A vendored asset by name (only the files listed in VENDORED and FONTS)."""
    known = name in set(VENDORED.values()) or name in FONTS
    return ASSETS / name if known and (ASSETS / name).is_file() else None


def data_docs_html(text: str, relative: str) -> str:
    """A Data Docs page that needs no network: CDN scripts and stylesheets point at the vendored
    copies (served at ``<mount>/assets/``) or, where none is vendored, are dropped; Vega's only
    on pages that draw a chart; GX's logos come from the site's own static folder. ``relative`` is
    the page's path inside the Data Docs."""
    depth = relative.count("/")
    to_mount = "../" * (3 + depth)  # data-docs/<month>/<attempt>/<relative>
    to_site = "../" * depth

    def local(url: str) -> str | None:
        name = VENDORED.get(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
        return f"{to_mount}assets/{name}" if name else None

    charts = "vegaEmbed(" in text

    def script(match: re.Match) -> str:
        found = local(match.group(1))
        if found and not charts and found.rsplit("/", 1)[-1] in CHART_SCRIPTS:
            return "<!-- no chart on this page: Vega not loaded -->"
        return f'<script src="{found}"></script>' if found else f"<!-- offline: {match.group(1)} left out -->"

    def link(match: re.Match) -> str:
        found = local(match.group(1))
        if found:
            return f'<link rel="stylesheet" href="{found}">'
        if "stylesheet" in match.group(0):
            return f"<!-- offline: {match.group(1)} left out -->"
        return match.group(0)

    text = _EXTERNAL_SCRIPT.sub(script, text)
    text = _EXTERNAL_LINK.sub(link, text)
    return _GX_IMAGE.sub(f"{to_site}static/images/logo-long.png", text)
