"""A short report of one month's run, read from what its stages recorded and from the predictions DB.

    python -m forecasting.summary 2026-10                 # M's published run (else its newest)
    python -m forecasting.summary 2026-10 --run-id ID     # one run, e.g. one that failed
    python -m forecasting.summary                         # the newest published month

A run that failed is reported with the stage that failed and why: for a failed validation,
every failed expectation with its counts. The exit status is 1 for a failed run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from forecasting import paths
from forecasting.config import Config, load_config
from forecasting.pipeline import STAGES
from forecasting.query import run_query


def example_query(config: Config) -> str:
    keys = ", ".join(config.source.entity_columns)
    return (
        f"SELECT {keys}, forecast_month, horizon, ROUND(CAST(prediction AS NUMERIC), 1) AS prediction, "
        "model_version\n"
        f"FROM {config.predictions.table}_latest\n"
        f"ORDER BY prediction DESC, {keys}, forecast_month\nLIMIT 5;"
    )


class RunNotFound(SystemExit):
    """No such run, or it has not finished."""


class RunFailed(SystemExit):
    """The run failed; the message says where and why."""


def find_run(config: Config, month: str, run_id: str | None = None) -> Path:
    """The newest attempt of run ``run_id`` of M; without one, M's newest published attempt, else
    its newest attempt."""
    m = pd.Period(month, "M")
    runs = paths.runs_of(config, m)
    if run_id is not None:
        runs = [r for r in runs if r.name == run_id or r.name.startswith(f"{paths.run_key(run_id)}__")]
        if not runs:
            raise RunNotFound(f"no run {run_id} of {month} under {paths.month_dir(config, m)}")
        return runs[-1]
    if not runs:
        raise RunNotFound(f"no run of {month} under {paths.month_dir(config, m)}")
    return paths.published_attempt(config, m) or runs[-1]


def stage_results(run: Path) -> tuple[dict[str, dict], dict | None]:
    """What each stage of the run recorded, and the failure if one stage failed."""
    results = {p.stem: json.loads(p.read_text()) for p in run.glob("*.json") if ".failed" not in p.name}
    failures = [json.loads(p.read_text()) for p in run.glob("*.failed.json")]
    return results, (failures[0] if failures else None)


def describe_failure(month: str, run: Path, failure: dict, results: dict[str, dict]) -> str:
    done = [s for s in STAGES if s in results]
    lines = [
        f"Monthly forecast for {month} FAILED in {failure['stage']} (attempt {failure['attempt']})",
        f"  stages done: {', '.join(done) or 'none'}",
    ]
    if failure.get("failures") is not None:  # validation: the summary line, then every expectation
        lines.append(f"  {failure['message'].splitlines()[0]}")
        lines += [f"   - {f['label']}: {f['details']}" for f in failure["failures"]]
        lines.append(f"  Data Docs: {failure.get('data_docs')}")
    else:
        lines.append(f"  {failure['error']}: {failure['message']}")
    retry = "fails the same way again" if failure.get("permanent") else "may pass if retried"
    lines += [f"  This error {retry}. Files of the run: {run}"]
    return "\n".join(lines)


def summarize(config: Config, month: str, run_id: str | None = None) -> str:
    run = find_run(config, month, run_id)
    stage, failure = stage_results(run)
    if failure is not None:
        raise RunFailed(describe_failure(month, run, failure, stage))
    missing = [
        s for s in ("extract", "validate", "register_features", "evaluate", "publish") if s not in stage
    ]
    if missing:
        raise RunNotFound(f"run {run.name} of {month} is not complete (missing: {', '.join(missing)})")
    report = json.loads(Path(stage["evaluate"]["report"]).read_text())  # the challenger's evaluation
    ex, val, reg, pub = stage["extract"], stage["validate"], stage["register_features"], stage["publish"]

    lines = [
        f"Monthly forecast for {month} (config: {config.path})",
        f"  extracted   {ex['rows']:,} rows, {ex['first_month']}..{ex['last_month']}",
        f"  validated   {val['expectations']} expectations passed on {val['rows']:,} rows "
        f"({val['rows_in_month']:,} in {month}); Data Docs: {val['data_docs']}",
        f"  features    {stage['build_features']['rows']:,} rows in Feast's offline table; "
        f"{reg['materialized_entities']:,} entities materialized online ({reg['feature_view']})",
        f"  model       {pub.get('challenger', pub['model_version'])} (trained by this run)",
        f"  run         {pub['run_id']}",
        "",
        f"  Holdout ({len(report['holdout_target_months'])} months, {report['model']['rows']:,} forecasts):",
        f"    {'forecaster':<16}{'WAPE':>7}{'MAE':>9}{'RMSE':>9}{'bias':>8}",
    ]
    champion = report.get("champion") or {}
    scored = {"model": report["model"]}
    if champion.get("available"):
        scored["champion"] = champion["metrics"]
    scored.update(report["baselines"])
    for name, m in scored.items():
        lines.append(
            f"    {name:<16}{m['wape']:>7.3f}{m['mae']:>9.2f}{m['rmse']:>9.2f}{100 * m['bias_pct']:>7.1f}%"
        )
    verdict = "beats" if report["beats_best_baseline"] else "does NOT beat"
    lines.append(f"    The model {verdict} the best baseline ({report['best_baseline']}).")
    sample = report.get("sample")
    if sample:  # the statistical forecasters, scored on a sample of entities (with the model)
        lines.append(
            f"    On a sample of {sample['entities']:,} of {sample['of_entities']:,} entities "
            f"({sample['model']['rows']:,} forecasts), with the statistical forecasters:"
        )
        for name, m in {"model": sample["model"], **sample["baselines"]}.items():
            lines.append(
                f"    {name:<16}{m['wape']:>7.3f}{m['mae']:>9.2f}{m['rmse']:>9.2f}{100 * m['bias_pct']:>7.1f}%"
            )
        verdict = "beats" if sample["beats_best_baseline"] else "does NOT beat"
        lines.append(f"    There the model {verdict} the best baseline ({sample['best_baseline']}).")
    if champion.get("model_version"):
        lines.append(
            f"    champion = {champion['model_version']}, scored by its holdout model"
            if champion.get("available")
            else f"    The champion {champion['model_version']} could not score this holdout: {champion['why']}"
        )
    decision = report.get("decision")
    if decision:
        lines += [
            "",
            f"  Gate        {decision['outcome']}: {decision['reason']}",
            f"              published forecaster: {decision['forecaster']}; challenger now "
            f"{decision['challenger_status']} in {config.predictions.table}_models",
        ]
    lines += [
        "",
        f"  Published {pub['rows']:,} forecasts to table {pub['table']} at {pub['url']}",
        f"  made by {pub['model_version']} (their model_version)",
        "",
    ]

    query = example_query(config)
    sample = run_query(config, query)
    lines += [
        "  Try it:",
        *(f"    {line}" for line in query.splitlines()),
        "",
        *(f"    {line}" for line in sample.to_string(index=False).splitlines()),
        "",
        '  Your own SQL: .venv/bin/python -m forecasting.query "SELECT * FROM '
        f'{config.predictions.table}_runs"',
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("month", nargs="?", help="logical month YYYY-MM (default: newest published)")
    parser.add_argument("--run-id", help="one run of the month (default: its published run)")
    args = parser.parse_args(argv)
    config = load_config()
    month = args.month
    if month is None:
        published = sorted(p.parent.parent.name for p in (config.data_dir / "runs").glob("*/*/publish.json"))
        if not published:
            raise SystemExit(f"no published runs under {config.data_dir / 'runs'}")
        month = published[-1]
    try:
        print(summarize(config, month, args.run_id))
    except RunFailed as failed:
        print(failed.code)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
