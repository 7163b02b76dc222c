"""An HTML page of forecast quality: every published month's model beside its naive baselines.

Rendered by the Airflow UI plugin (plugins/forecast_quality.py) from the ``<table>_runs`` table
and each model's evaluation.json; plain functions, so it is testable without Airflow.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import sqlalchemy as sa

from forecasting import paths
from forecasting.config import Config
from forecasting.db import make_engine
from forecasting.months import month_of

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Forecast quality</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; }}
 table {{ border-collapse: collapse; }} th, td {{ padding: .35rem .7rem; border-bottom: 1px solid #d9e2ec; }}
 th {{ text-align: left; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
 .good {{ color: #1f7a3f; }} .bad {{ color: #b42318; font-weight: 600; }} small {{ color: #52606d; }}
</style></head><body>
<h2>Forecast quality</h2>
<p><small>Deployment <code>{config}</code>: predictions in <code>{table}</code>. Holdout WAPE of the
model that made each month's forecasts, against the best naive baseline (lower is better).</small></p>
{body}
</body></html>"""


def quality_rows(config: Config) -> list[dict]:
    """One dict per published month, newest first: the runs table joined with each evaluation."""
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
        evaluation = paths.models(config) / row["model_version"] / "evaluation.json"
        row["month"] = month
        row["evaluation"] = json.loads(evaluation.read_text()) if evaluation.exists() else None
        # The published attempt's own validation, never a later failed attempt's.
        attempt = paths.published_attempt(config, month_of(month), row["run_id"])
        row["attempt"] = attempt.name if attempt else None
        row["data_docs"] = attempt is not None and (attempt / "data_docs" / "index.html").is_file()
    return rows


def render(config: Config) -> str:
    rows = quality_rows(config)
    if not rows:
        body = "<p>No month has been published yet: run <code>monthly_forecast</code>.</p>"
    else:
        head = (
            "<tr><th>month</th><th>model</th><th>forecasts</th><th>model WAPE</th>"
            "<th>best baseline</th><th>baseline WAPE</th><th></th><th>Data Docs</th></tr>"
        )
        body = "<table>" + head + "".join(_row(r) for r in rows) + "</table>"
    return PAGE.format(
        config=html.escape(str(config.path)), table=html.escape(config.predictions.table), body=body
    )


def _row(r: dict) -> str:
    wape, base = r["holdout_wape"], r["best_baseline_wape"]
    beats = wape is not None and base is not None and wape < base
    verdict = '<span class="good">beats it</span>' if beats else '<span class="bad">does not beat it</span>'
    docs = (
        f'<a href="data-docs/{r["month"]}/{html.escape(r["attempt"])}/index.html">validation</a>'
        if r["data_docs"]
        else ""
    )
    cells = [
        html.escape(r["month"]),
        f"<code>{html.escape(r['model_version'])}</code>",
        f'<td class="n">{r["forecasts"]:,}</td>',
        f'<td class="n">{_num(wape)}</td>',
        html.escape(r["best_baseline"] or ""),
        f'<td class="n">{_num(base)}</td>',
        verdict,
        docs,
    ]
    return "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>"


def _num(value) -> str:
    return "" if value is None else f"{value:.3f}"


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
