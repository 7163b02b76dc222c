"""The Runs page of the Forecasts view (the engineers' detail; the planners' overview is
forecasting.ui.planner), rendered by the Airflow UI plugin (plugins/forecast_quality.py).

* ``render`` (the Runs page): every month's status, each attempt of each month (published,
  failed validation with the failed expectations, failed elsewhere, running or stopped), linked
  to its Airflow run and its own validation page; and per published month the model against
  every baseline (all metrics, per horizon) from its evaluation.json; then what the
  forecast_monitoring DAG found (forecasting.ui.monitoring): realised accuracy against each
  naive baseline, the latest drift and the alerts.
Plain functions over the config, the predictions database and the run folders (testable
without Airflow) compute what the page shows; ``templates/overview.html`` and
``templates/overview_parts.html`` draw it. An attempt's Data Docs are served by
forecasting.ui.data_docs.
"""

from __future__ import annotations

import json
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
from forecasting.core.names import FORECAST_DAG, RUNS, STAGES, relation_name
from forecasting.modeling.forecaster import Baseline, Blend, parse
from forecasting.ui.monitoring import render_monitoring
from forecasting.ui.overrides import newest_run
from forecasting.ui.templating import macro, render_page

DAG_ID = FORECAST_DAG

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
    runs_table = relation_name(config.predictions.table, RUNS)
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
    """The Runs page."""
    rows = quality_rows(config)
    attempts = attempt_statuses(config, run_states)
    if not rows and not attempts:
        return render_page(config, "Runs", "overview.html", months=[], attempts=[], overrides=None)
    return render_page(
        config,
        "Runs",
        "overview.html",
        overrides=newest_run(config),  # how many overrides the newest publish applied and refused
        attempts=[_attempt_view(a) for a in attempts],
        monitoring=render_monitoring(config),
        months=[_month_view(r, open_=i == 0) for i, r in enumerate(rows)],
    )


def _attempt_view(a: AttemptStatus) -> dict[str, Any]:
    """An attempt's row of the status table: its status and its links (label, href, whole window)."""
    links = []
    if a.run_id:
        # Relative to the plugin's mount point, so it works behind a base URL; the whole window.
        links.append(("Airflow run", f"../dags/{DAG_ID}/runs/{url_quote(a.run_id, safe='')}", True))
    if a.validation_page:
        links.append(("validation result", _docs_href(a, a.validation_page), False))
    if a.data_docs:
        links.append(("Data Docs", _docs_href(a, "index.html"), False))
    return {**vars(a), "links": links}


def _docs_href(a: AttemptStatus, relative: str) -> str:
    return f"data-docs/{a.month}/{a.name}/{url_quote(relative)}"


def _month_view(r: dict, open_: bool) -> dict[str, Any]:
    """What a published month's section shows: its summary line, the gate, the scoreboard (the
    published forecaster marked), the sample's and the backtest's tables."""
    wape, base = r["holdout_wape"], r["best_baseline_wape"]
    view: dict[str, Any] = {
        "month": r["month"],
        "model_version": r["model_version"],
        "forecasts": r["forecasts"],
        "wape": wape,
        "best_baseline": r["best_baseline"],
        "best_baseline_wape": base,
        "beats": wape is not None and base is not None and wape < base,
        "open": open_,
        "evaluation": r["evaluation"] is not None,
    }
    evaluation = r["evaluation"]
    if evaluation is None:
        return view
    decision = evaluation.get("decision") or {}
    board = [
        {**entry, "chosen": _is_published(entry, r["model_version"], decision)}
        for entry in scoreboard(evaluation)
    ]
    return {
        **view,
        "decision": decision,
        "board": board,
        "horizons": sorted(evaluation.get("by_horizon") or {}, key=int),
        "holdout_months": evaluation.get("holdout_target_months") or [],
        "sample": _sample_view(evaluation.get("sample")),
        "backtest": _backtest_view(evaluation.get("backtest")),
    }


def _month_quality(r: dict, open_: bool) -> str:
    """A published month's section of the overview."""
    return str(macro("overview_parts.html", "month_quality")(_month_view(r, open_)))


def _is_published(entry: dict, published: str, decision: dict) -> bool:
    forecaster = parse(published) if published else None
    if isinstance(forecaster, Baseline | Blend):  # the baseline's own line, or the blend's
        return entry["name"] == (forecaster.name if isinstance(forecaster, Baseline) else "blend")
    if entry["name"] == "champion":
        return decision.get("forecaster") == published and decision.get("champion") == published
    if entry["name"] == "model":
        return not (decision.get("champion") == published and decision.get("challenger") != published)
    return False


def _sample_view(sample: dict | None) -> dict[str, Any] | None:
    """The statistical forecasters' scores on their sample of entities, the model's first."""
    if not sample:
        return None
    scores = {"model": sample.get("model") or {}, **(sample.get("baselines") or {})}
    return {
        "entities": sample.get("entities", "?"),
        "of_entities": sample.get("of_entities", "?"),
        "scores": list(scores.items()),
    }


def _backtest_view(backtest: dict | None) -> dict[str, Any] | None:
    """The rolling-origin backtest per origin and overall: the model refit at the origin against
    the best baseline on the same rows (and on the statistical ones' sample, when sampled)."""
    if not backtest or not backtest.get("origins"):
        return None
    sampled = (backtest.get("overall") or {}).get("sample") is not None
    entries = [(e.get("origin", "?"), e) for e in backtest["origins"]] + [("overall", backtest["overall"])]
    return {
        "sampled": sampled,
        "entries": [
            {
                "name": str(name),
                "rows": entry.get("rows", 0),
                "every": _versus(entry),
                "sample": _versus(entry.get("sample")) if sampled else None,
            }
            for name, entry in entries
        ],
    }


def _versus(scores: dict | None) -> dict[str, Any] | None:
    if not scores:
        return None
    best = scores.get("best_baseline") or ""
    return {
        "model": (scores.get("model") or {}).get("wape"),
        "best": best,
        "base": ((scores.get("baselines") or {}).get(best) or {}).get("wape"),
        "beats": scores.get("beats_best_baseline"),
    }


def _backtest_table(backtest: dict | None) -> str:
    """The backtest's table under a published month's scores ("" without a backtest)."""
    return str(macro("overview_parts.html", "backtest_table")(_backtest_view(backtest)))
