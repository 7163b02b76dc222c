"""A short report of one month's run, read from what its stages recorded and from the predictions DB.

    python -m forecasting.summary 2026-10        # month M; default: the newest run on disk
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from forecasting import paths
from forecasting.config import Config, load_config
from forecasting.evaluate import BASELINES
from forecasting.query import run_query


def example_query(config: Config) -> str:
    keys = ", ".join(config.source.entity_columns)
    return (f"SELECT {keys}, forecast_month, horizon, ROUND(prediction, 1) AS prediction, model_version\n"
            f"FROM {config.predictions.table}_latest\n"
            f"ORDER BY prediction DESC, {keys}, forecast_month\nLIMIT 5;")


def summarize(config: Config, month: str) -> str:
    run = paths.run_dir(config, pd.Period(month, "M"))
    stage = {p.stem: json.loads(p.read_text()) for p in run.glob("*.json")}
    missing = [s for s in ("extract", "validate", "register_features", "evaluate", "publish") if s not in stage]
    if missing:
        raise SystemExit(f"no complete run for {month} in {run} (missing: {', '.join(missing)})")
    report = json.loads((paths.models(config) / stage["publish"]["model_version"] / "evaluation.json").read_text())
    ex, val, reg, pub = stage["extract"], stage["validate"], stage["register_features"], stage["publish"]

    lines = [
        f"Monthly forecast for {month} (config: {config.path})",
        f"  extracted   {ex['rows']:,} rows, {ex['first_month']}..{ex['last_month']}",
        f"  validated   {val['expectations']} expectations passed on {val['rows']:,} rows "
        f"({val['rows_in_month']:,} in {month}); Data Docs: {val['data_docs']}",
        f"  features    {stage['build_features']['rows']:,} rows in Feast's offline table; "
        f"{reg['materialized_entities']:,} entities materialized online ({reg['feature_view']})",
        f"  model       {pub['model_version']}",
        "",
        f"  Holdout ({len(report['holdout_target_months'])} months, {report['model']['rows']:,} forecasts):",
        f"    {'forecaster':<16}{'WAPE':>7}{'MAE':>9}{'RMSE':>9}{'bias':>8}",
    ]
    for name in ("model", *BASELINES):
        m = report["model"] if name == "model" else report["baselines"][name]
        lines.append(f"    {name:<16}{m['wape']:>7.3f}{m['mae']:>9.2f}{m['rmse']:>9.2f}{100 * m['bias_pct']:>7.1f}%")
    verdict = "beats" if report["beats_best_baseline"] else "does NOT beat"
    lines += [f"    The model {verdict} the best baseline ({report['best_baseline']}).", "",
              f"  Published {pub['rows']:,} forecasts to table {pub['table']} at {pub['url']}", ""]

    query = example_query(config)
    sample = run_query(config, query)
    lines += ["  Try it:", *(f"    {line}" for line in query.splitlines()), "",
              *(f"    {line}" for line in sample.to_string(index=False).splitlines()), "",
              "  Your own SQL: .venv/bin/python -m forecasting.query \"SELECT * FROM "
              f"{config.predictions.table}_runs\""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("month", nargs="?", help="logical month YYYY-MM (default: newest run)")
    args = parser.parse_args(argv)
    config = load_config()
    month = args.month
    if month is None:
        runs = sorted(p.name for p in (config.data_dir / "runs").glob("*") if (p / "publish.json").exists())
        if not runs:
            raise SystemExit(f"no published runs under {config.data_dir / 'runs'}")
        month = runs[-1]
    print(summarize(config, month))
    return 0


if __name__ == "__main__":
    sys.exit(main())
