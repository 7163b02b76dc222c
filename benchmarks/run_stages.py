"""Time every stage of the monthly pipeline, each in a process of its own as an Airflow task is.

    .venv/bin/python benchmarks/run_stages.py --repeat 3                      # the demo: 500 series
    .venv/bin/python benchmarks/run_stages.py --series 10000 25000 50000 100000 --repeat 1
    .venv/bin/python benchmarks/run_stages.py --series 10000 --dask 2        # on a LocalCluster
    .venv/bin/python benchmarks/run_stages.py --series 10000 --preloaded     # as the LocalExecutor forks

Each repetition starts from an empty folder (fresh Feast registry, no models) with synthetic
sales (``--series`` store × item series over ``--months`` months, 100 items per store), and runs
the stages one after the other in fresh processes, so every stage pays its imports as a task
does; a stage's peak memory is its own process's peak RSS. Beside ``train`` come the bare
library calls on the same data, so the pipeline's overhead is a visible ratio:

* bare join: DuckDB's own point-in-time join (SQL over the same feature files and the same
  entity rows train asked Feast about);
* bare fits: ``xgboost.train`` on the same matrices with the same rounds (the holdout fit with
  its early-stopping evaluations, then the production fit).

and what importing the libraries train uses costs a fresh process (pandas, SQLAlchemy, Feast,
XGBoost): a fixed price every task pays before its first row, at any size, shown beside the
ratio so that the overhead that grows with the data is visible on its own.

With ``--preloaded``, the stages run instead in processes forked from one that imported
``forecasting.orchestration.warm_up.TASK_MODULES`` first: what a task costs under Airflow's LocalExecutor with
the scheduler's preload (plugins/forecast_task_preload.py), the imports paid once per scheduler.

The report (Markdown) gives medians over repetitions, the machine and its load; paste it into
docs/benchmarks.md. Nothing here is a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from forecasting.core.names import FORECAST_STAGES

REPO = Path(__file__).resolve().parents[1]
# monthly_forecast's stages, from the pandas-free forecasting.core.names: importing the pipeline
# would load pandas into this process, whose memory every stage process would then start from
# (see one_repetition).
STAGES = list(FORECAST_STAGES)
MONTH = "2024-12"
RUN_ID = "benchmark"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def write_config(folder: Path, dask: int) -> Path:
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    raw["source"]["url"] = f"sqlite:///{folder}/source.db"
    raw["feature_store"]["registry"] = str(folder / "registry.db")
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": str(folder / "online.db")}
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    if dask:
        raw["compute"] = {"dask_scheduler": "${DASK_SCHEDULER}"}
    path = folder / "forecast.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def seed(folder: Path, series: int, months: int) -> int:
    """Synthetic sales into the source SQLite (sqlite3 itself: seeding is not what is measured)."""
    import sqlite3

    from forecasting.datasets.synthetic import generate_sales

    items = min(series, 100)
    sales = generate_sales(
        stores=max(1, series // items), items=items, months=months, end_month=MONTH, seed=7
    )
    sales["month"] = sales["month"].astype(str)
    with sqlite3.connect(folder / "source.db") as conn:
        sales.to_sql("sales", conn, index=False, if_exists="replace", chunksize=500_000)
    conn.close()
    return len(sales)


def in_child(args: list[str], env: dict) -> tuple[dict, float, float]:
    """Run this script with ``args`` in a fresh process: (its JSON answer, wall seconds, peak MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024


def stages_forked(config_path: str) -> dict:
    """Every stage, one after the other, each in a process forked from this one once it has
    imported the tasks' modules (the scheduler's preload): wall seconds and peak RSS of each."""
    import traceback

    from forecasting.orchestration.warm_up import import_task_modules

    preload = import_task_modules()
    stages, attempt, model_dir = {}, None, None
    for stage in STAGES:
        read, write = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the task
            os.close(read)
            try:
                payload, code = json.dumps(run_stage(stage, config_path, attempt, model_dir), default=str), 0
            except BaseException:
                payload, code = traceback.format_exc(), 1
            with os.fdopen(write, "w") as out:
                out.write(payload)
            os._exit(code)
        os.close(write)
        with os.fdopen(read) as answer_pipe:
            payload = answer_pipe.read()
        _, status, usage = os.wait4(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{stage} failed:\n{payload[-4000:]}")
        stages[stage] = {"seconds": time.perf_counter() - started, "peak_mib": usage.ru_maxrss / 1024}
        answer = json.loads(payload)
        attempt, model_dir = answer.get("attempt", attempt), answer.get("model_dir", model_dir)
    return {"preload_seconds": preload, "stages": stages, "attempt": attempt, "model_dir": model_dir}


def one_repetition(series: int, months: int, dask: int, bare: bool, preloaded: bool = False) -> dict:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    with tempfile.TemporaryDirectory(prefix="forecast-bench-") as name, cluster(dask, env):
        folder = Path(name)
        config = write_config(folder, dask)
        # Seeded in a child too: a child's peak RSS starts at its parent's (Linux keeps the
        # high-water mark across fork and exec), so this process must stay small.
        rows, _, _ = in_child(
            ["--seed", str(folder), "--series-count", str(series), "--months", str(months)], env
        )
        result: dict = {"rows": rows["rows"], "series": series, "stages": {}}
        attempt = model_dir = None
        if preloaded:
            answer, _, _ = in_child(["--stages-forked", str(config)], env)
            result["stages"], result["preload_seconds"] = answer["stages"], answer["preload_seconds"]
            attempt, model_dir = answer["attempt"], answer["model_dir"]
        for stage in [] if preloaded else STAGES:
            args = ["--stage", stage, "--config", str(config)]
            if attempt:
                args += ["--attempt", attempt]
            if model_dir:
                args += ["--model-dir", model_dir]
            answer, wall, peak = in_child(args, env)
            result["stages"][stage] = {"seconds": wall, "peak_mib": peak}
            attempt = answer.get("attempt", attempt)
            model_dir = answer.get("model_dir", model_dir)
        evaluation = json.loads((Path(model_dir) / "evaluation.json").read_text())
        result["model_wape"] = evaluation["model"]["wape"]
        result["best_baseline"] = evaluation["best_baseline"]
        result["best_baseline_wape"] = evaluation["baselines"][evaluation["best_baseline"]]["wape"]
        metadata = json.loads((Path(model_dir) / "metadata.json").read_text())
        result["fitted_rows"] = metadata["rows"]["fitted"]
        result["labelled_rows"] = metadata["rows"]["all"]
        backtest = metadata.get("backtest") or {}
        result["backtest_seconds"] = backtest.get("seconds", 0.0)
        result["backtest_fits"] = len(backtest.get("fits", []))
        if bare:
            answer, _, peak = in_child(
                ["--bare", str(config), "--attempt", attempt, "--model-dir", model_dir], env
            )
            result["bare"] = {**answer, "peak_mib": peak}
            imports, _, _ = in_child(["--imports"], env)
            result["bare"].update(imports)
        return result


class cluster:
    """A dask LocalCluster of ``workers`` processes for the run (none when 0), named in DASK_SCHEDULER."""

    def __init__(self, workers: int, env: dict):
        self.workers, self.env, self.cluster = workers, env, None

    def __enter__(self):
        if self.workers:
            from dask.distributed import LocalCluster

            self.cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                preload=["forecasting.orchestration.dask_worker"],
            )
            self.env["DASK_SCHEDULER"] = self.cluster.scheduler_address
        return self

    def __exit__(self, *exc):
        if self.cluster is not None:
            self.cluster.close()


def run_stage(stage: str, config_path: str, attempt: str | None, model_dir: str | None) -> dict:
    from forecasting.core.config import load_config
    from forecasting.orchestration import pipeline

    config = load_config(config_path)
    if stage == "extract":
        return pipeline.extract(MONTH, RUN_ID, config)
    if stage in ("evaluate", "predict"):
        return getattr(pipeline, stage)(MONTH, attempt, model_dir, config)
    if stage == "publish":
        return pipeline.publish(MONTH, attempt, model_dir, RUN_ID, config)
    return getattr(pipeline, stage)(MONTH, attempt, config)


def bare(config_path: str, attempt: str, model_dir: str) -> dict:
    """The bare library calls train makes, on the same data: DuckDB's point-in-time join of the
    same entity rows over the same feature files, and xgboost.train on the same matrices."""
    import duckdb
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.data.panel import build_panel
    from forecasting.features import dataset
    from forecasting.features.catalogue import TIMESTAMP, feature_names
    from forecasting.features.store import FEATURE_TTL
    from forecasting.modeling import booster as model

    config = load_config(config_path)
    month = pd.Period(MONTH, "M")
    snapshot = pd.read_parquet(paths.snapshot(config, month, attempt))
    panel = build_panel(snapshot, config, sales_only=True)
    rows = dataset.labelled(panel, config, month)
    split = dataset.split(rows, config, month)
    fit_rows = rows.take(dataset.sample(rows, config))
    holdout_rows = rows.take(split.holdout)
    entity, origin, (fit_at, _) = dataset.pairs(fit_rows, holdout_rows)
    keys = config.source.entity_columns
    entity_df = panel.keys.iloc[entity].reset_index(drop=True)
    entity_df[TIMESTAMP] = dataset.month_stamps(origin).astype("datetime64[us, UTC]")
    entity_df["_row"] = np.arange(len(entity_df))
    names = feature_names(config)
    on = " AND ".join(f'f."{k}" = e."{k}"' for k in keys)
    # Feast's semantics: the latest row at or before the entity row's time, if within the TTL.
    fresh = f"e.{TIMESTAMP} - f.{TIMESTAMP} <= INTERVAL '{FEATURE_TTL.days} days'"
    columns = ", ".join(f'CASE WHEN {fresh} THEN f."{n}" END AS "{n}"' for n in names)
    sql = f"""
        SELECT e._row, {columns}
        FROM entity_df e ASOF LEFT JOIN read_parquet('{paths.feature_table(config)}/*.parquet') f
          ON {on} AND e.{TIMESTAMP} >= f.{TIMESTAMP}
        ORDER BY e._row"""
    started = time.perf_counter()
    features = duckdb.sql(sql).df()
    join_seconds = time.perf_counter() - started

    metadata = json.loads((Path(model_dir) / "metadata.json").read_text())
    frame = dataset.with_model_columns(features[names].take(fit_at), fit_rows.horizon, metadata["features"])
    X = dataset.design_matrix(frame, config, metadata["categories"])
    fit_split = dataset.split(fit_rows, config, month)
    params = model.booster_params(config.model)
    rounds = metadata["params"]["num_boost_round"]
    started = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(
        X[fit_split.train], label=fit_rows.label[fit_split.train], enable_categorical=True
    )
    dval = xgb.QuantileDMatrix(
        X[fit_split.validation],
        label=fit_rows.label[fit_split.validation],
        ref=dtrain,
        enable_categorical=True,
    )
    xgb.train(
        params,
        dtrain,
        rounds + config.model.early_stopping_rounds,
        evals=[(dval, "validation")],
        verbose_eval=False,
    )
    dall = xgb.QuantileDMatrix(X, label=fit_rows.label, enable_categorical=True)
    xgb.train(params, dall, rounds)
    fit_seconds = time.perf_counter() - started
    return {
        "join_seconds": join_seconds,
        "join_rows": len(entity_df),
        "fit_seconds": fit_seconds,
        "fit_rows": len(fit_rows),
        "rounds": rounds,
    }


# What train imports before it touches a row (measured in a fresh process: see import_seconds).
# forecasting first, as in train: it imports Feast without typeguard's instrumentation.
TRAIN_IMPORTS = ("forecasting", "pandas", "sqlalchemy", "feast", "xgboost")


def import_seconds() -> dict:
    import importlib

    started = time.perf_counter()
    for name in TRAIN_IMPORTS:
        importlib.import_module(name)
    return {"import_seconds": time.perf_counter() - started}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def growth(by_series: dict[int, list[dict]]) -> list[str]:
    """Per stage, the time factor per doubling of the series between the two largest sizes, and
    the extrapolation to 1M series from that growth (a power law through those two points)."""
    if len(by_series) < 2:
        return []
    (small, low), (large, high) = sorted(by_series.items())[-2:]

    def median(group: list[dict], stage: str, what: str) -> float:
        return statistics.median(r["stages"][stage][what] for r in group)

    doubling, million, peaks = [], [], []
    total_1m = 0.0
    for stage in STAGES:
        t0, t1 = median(low, stage, "seconds"), median(high, stage, "seconds")
        exponent = math.log(t1 / t0) / math.log(large / small)
        doubling.append(f"{2**exponent:.2f}×")
        estimate = t1 * (1_000_000 / large) ** max(exponent, 0.0)
        total_1m += estimate
        million.append(f"{estimate:,.0f} s")
        m0, m1 = median(low, stage, "peak_mib"), median(high, stage, "peak_mib")
        mem_exponent = math.log(m1 / m0) / math.log(large / small)
        peaks.append(m1 * (1_000_000 / large) ** max(mem_exponent, 0.0))
    return [
        f"| × per doubling ({small:,} → {large:,}) | | " + " | ".join(doubling) + " | | |",
        "| 1M series, extrapolated | | " + " | ".join(million) + f" | {total_1m:,.0f} | {max(peaks):,.0f} |",
    ]


def report(runs: list[dict], dask: int) -> str:
    by_series: dict[int, list[dict]] = {}
    for run in runs:
        by_series.setdefault(run["series"], []).append(run)
    where = f"a dask LocalCluster of {dask} worker processes" if dask else "in-process"
    if all("preload_seconds" in run for run in runs):
        where += ", each stage forked from a process that had imported the tasks' modules (--preloaded)"
    lines = [
        f"Median of {len(next(iter(by_series.values())))} run(s) per size, {where}; {machine()}; {load()}",
        "",
    ]
    head = "| series | source rows | " + " | ".join(STAGES) + " | total s | max peak MiB |"
    lines += [head, "|" + "---:|" * (len(STAGES) + 4)]
    for series, group in sorted(by_series.items()):
        cells = [f"{series:,}", f"{group[0]['rows']:,}"]
        for stage in STAGES:
            seconds = statistics.median(r["stages"][stage]["seconds"] for r in group)
            peak = statistics.median(r["stages"][stage]["peak_mib"] for r in group)
            cells.append(f"{seconds:.1f} s / {peak:,.0f} MiB")
        total = statistics.median(sum(s["seconds"] for s in r["stages"].values()) for r in group)
        peak = statistics.median(max(s["peak_mib"] for s in r["stages"].values()) for r in group)
        cells += [f"{total:.0f}", f"{peak:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += growth(by_series)
    lines += [
        "",
        "| series | labelled rows | fitted rows | model WAPE | best baseline | train s | of which backtest s "
        "(fits) | bare join s (rows) | bare fits s (rounds) | (train − backtest) / bare | imports s "
        "| (train − backtest − imports) / bare |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for series, group in sorted(by_series.items()):
        run = group[len(group) // 2]
        train = statistics.median(r["stages"]["train"]["seconds"] for r in group)
        # The backtest's refits (evaluation.backtest_origins) are work the bare calls do not do.
        backtest = statistics.median(r.get("backtest_seconds", 0.0) for r in group)
        b = run.get("bare")
        bare_cells = (
            [
                f"{b['join_seconds']:.1f} ({b['join_rows']:,})",
                f"{b['fit_seconds']:.1f} ({b['rounds']})",
                f"{(train - backtest) / (b['join_seconds'] + b['fit_seconds']):.2f}×",
                *(
                    # Forked from the preloaded process, train imported nothing: nothing to set apart.
                    ["none (preloaded)", "(the column before)"]
                    if "preload_seconds" in run
                    else [
                        f"{b['import_seconds']:.1f}",
                        f"{(train - backtest - b['import_seconds']) / (b['join_seconds'] + b['fit_seconds']):.2f}×",
                    ]
                ),
            ]
            if b
            else ["", "", "", "", ""]
        )
        lines.append(
            f"| {series:,} | {run['labelled_rows']:,} | {run['fitted_rows']:,} | {run['model_wape']:.3f} | "
            f"{run['best_baseline']} {run['best_baseline_wape']:.3f} | {train:.1f} | "
            f"{backtest:.1f} ({run.get('backtest_fits', 0)}) | " + " | ".join(bare_cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--series", type=int, nargs="+", default=[500], help="store x item series (default: the demo's 500)"
    )
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dask", type=int, default=0, metavar="WORKERS", help="run on a LocalCluster")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare library calls")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument(
        "--preloaded",
        action="store_true",
        help="fork each stage from a process that imported the tasks' modules",
    )
    parser.add_argument("--stages-forked", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--bare", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--imports", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--attempt", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--seed", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--series-count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        print(json.dumps({"rows": seed(Path(args.seed), args.series_count, args.months)}))
        return
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.config, args.attempt, args.model_dir), default=str))
        return
    if args.imports:
        print(json.dumps(import_seconds()))
        return
    if args.stages_forked:
        print(json.dumps(stages_forked(args.stages_forked)))
        return
    if args.bare:
        print(json.dumps(bare(args.bare, args.attempt, args.model_dir)))
        return
    runs = []
    for series in args.series:
        for _ in range(args.repeat):
            runs.append(one_repetition(series, args.months, args.dask, not args.no_bare, args.preloaded))
            print(
                f"{series:,} series: {sum(s['seconds'] for s in runs[-1]['stages'].values()):.0f} s",
                file=sys.stderr,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    print(report(runs, args.dask))
    if args.preloaded:
        preload = statistics.median(r["preload_seconds"] for r in runs)
        print(
            f"\nStages forked from a process that had imported the tasks' modules in {preload:.1f} s (median)."
        )


if __name__ == "__main__":
    main()
