"""Server time of the Forecasts view's planners' pages (the overview, the explorer by level and
its downloads) on a big deployment.

Builds, as ``explorer_speed.py`` does, a predictions table of ``--series`` entities x ``--runs``
published months x 3 horizons, with the hierarchy's levels (the total, 4 regions, the stores,
10 categories, region x category) published beside each run (``<table>_levels``), the newest
run's snapshot (60 months of actuals and the attributes), and what forecast_monitoring leaves for
the tracking signal: 12 months of 1-month-ahead errors per entity in ``<table>_errors``. Then
times, in milliseconds (median and worst of ``--loads``):

* ``numbers read``: every series' numbers read (forecasting.ui.plan_data): by the api-server's
  warm-up thread when it starts, and in a thread after each publish or monitoring run (the pages
  meanwhile show the numbers held); no page waits for it but the first after a start;
* each page with the numbers held: the overview, each level's list, the largest group of each level (its
  chart and its members), every entity sorted by change and by bias with a filter, and the
  downloads (CSV and Parquet) of a 100-row list and of the whole entity list.

    python benchmarks/planner_speed.py --series 100000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres   # a throwaway database
    python benchmarks/planner_speed.py --series 2000                 # SQLite, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from explorer_speed import HORIZON, KEYS, entities

from forecasting.core import paths
from forecasting.core.config import Config, parse_config
from forecasting.core.db import make_engine
from forecasting.monitoring.accuracy import ensure_monitoring_schema
from forecasting.publishing.postgres import temporary_database
from forecasting.publishing.publish import publish
from forecasting.ui import levels, plan_data, planner
from forecasting.ui.export import export

LEVELS = [[], ["region"], ["store_id"], ["category"], ["region", "category"]]
REGIONS, CATEGORIES = 4, 10


def config_for(url: str, folder: Path) -> Config:
    raw = {
        "data_dir": str(folder),
        "source": {
            "url": "sqlite:///unused.db",
            "table": "sales",
            "entity_columns": KEYS,
            "time_column": "month",
            "target_column": "units",
            "attributes": ["region", "category"],
        },
        "feature_store": {"project": "benchmark"},
        "horizon": HORIZON,
        "hierarchy": {"levels": LEVELS},
        "predictions": {"url": url, "table": "forecasts"},
    }
    return parse_config(raw, folder / "benchmark.yaml")


def with_attributes(keys: pd.DataFrame) -> pd.DataFrame:
    return keys.assign(
        region=[f"r{s % REGIONS}" for s in keys["store_id"]],
        category=[f"c{i % CATEGORIES}" for i in keys["item_id"]],
    )


def level_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The levels of a run's forecasts: each group's the sum of its entities', with a band."""
    members = with_attributes(frame).assign(store_id=frame["store_id"].astype(str))
    parts = []
    for level in LEVELS:
        sums = members.groupby([*level, "forecast_month", "horizon"], as_index=False)["prediction"].sum()
        sums["level"] = ",".join(level) or "total"
        sums["level_key"] = sums[level].astype(str).agg(",".join, axis=1) if level else "total"
        parts.append(sums)
    out = pd.concat(parts, ignore_index=True)
    return out.assign(p10=0.8 * out["prediction"], p90=1.2 * out["prediction"])


def build(config: Config, series: int, runs: int, rng: np.random.Generator) -> None:
    keys = entities(series)
    last = pd.Period("2024-12", "M")
    ones_ahead = []
    for run in pd.period_range(last - runs + 1, last, freq="M"):
        frame = pd.concat(
            [
                keys.assign(
                    forecast_month=(run + h).to_timestamp().date(),
                    horizon=h,
                    prediction=rng.gamma(2, 20, len(keys)),
                )
                for h in range(1, HORIZON + 1)
            ]
        )
        frame = frame.assign(p10=0.7 * frame["prediction"], p90=1.3 * frame["prediction"])
        run_id = f"scheduled__{run + 1}-01"
        made = datetime.now(UTC)
        publish(
            frame,
            config,
            run,
            model_version=f"{run}-bench",
            run_id=run_id,
            created_at=made,
            levels=level_rows(frame),
        )
        ones_ahead.append(frame[frame["horizon"] == 1].assign(run_month=run.to_timestamp().date()))
        attempt = f"{paths.run_key(run_id)}__20250101T000000000000Z"
        paths.write_json_atomically({"run_id": run_id}, paths.stage_result(config, run, attempt, "publish"))
        if run == last:
            months = pd.period_range(last - 59, last, freq="M").to_timestamp()
            snapshot = with_attributes(keys).loc[keys.index.repeat(len(months))].reset_index(drop=True)
            snapshot["month"] = np.tile(months, len(keys))
            snapshot["units"] = rng.poisson(30, len(snapshot)).astype(float)
            snapshot = snapshot.sort_values(["month", *KEYS], kind="stable")
            paths.write_parquet_atomically(snapshot, paths.snapshot(config, run, attempt))
    _errors(config, pd.concat(ones_ahead[:-1]), rng)


def _errors(config: Config, ones_ahead: pd.DataFrame, rng: np.random.Generator) -> None:
    """``<table>_errors`` as forecast_monitoring leaves it: every 1-month-ahead forecast of a month
    whose actuals are in, scored (the tracking-signal view reads them)."""
    actual = rng.poisson(30, len(ones_ahead)).astype(float)
    rows = ones_ahead.assign(
        model_version="bench",
        actual=actual,
        error=ones_ahead["prediction"] - actual,
        scored_at=datetime.now(UTC),
    )[
        [
            *KEYS,
            "forecast_month",
            "horizon",
            "run_month",
            "model_version",
            "actual",
            "prediction",
            "error",
            "scored_at",
        ]
    ]
    engine = make_engine(config.predictions.database)
    try:
        with engine.begin() as conn:
            _, errors = ensure_monitoring_schema(conn, config, {k: np.int64 for k in KEYS})
            for start in range(0, len(rows), 100_000):
                part = rows.iloc[start : start + 100_000]
                conn.execute(errors.insert(), part.to_dict(orient="records"))
    finally:
        engine.dispose()


def timed(step: Callable[[], object], loads: int) -> list[float]:
    out = []
    for _ in range(loads):
        started = time.perf_counter()
        step()
        out.append(1000 * (time.perf_counter() - started))
    return out


def pages(config: Config, data: plan_data.PlanData) -> dict[str, Callable[[], object]]:
    """Each page (and download) timed, by name."""
    out: dict[str, Callable[[], object]] = {"overview": lambda: planner.render_overview(config)}
    for level in data.levels:
        out[f"level {level}: its groups"] = lambda level=level: levels.render_levels(config, {"level": level})
        groups = data.groups[data.groups["level"] == level]
        largest = str(groups.sort_values("volume")["level_key"].iloc[-1])
        out[f"level {level}: largest group, chart and members"] = lambda level=level, key=largest: (
            levels.render_levels(config, {"level": level, "key": key, "sort": "change"})
        )
    every = {"level": "entity", "sort": "change", "min_volume": "100"}
    out["every entity by change, volume >= 100"] = lambda: levels.render_levels(config, every)
    out["every entity by bias"] = lambda: levels.render_levels(config, {"level": "entity", "sort": "bias"})
    out["download CSV, 100 rows"] = lambda: export(config, every, "csv")
    out["download Parquet, 100 rows"] = lambda: export(config, every, "parquet")
    whole = {"level": "entity", "sort": "volume", "limit": str(levels.EXPORT_LIMIT)}
    out["download CSV, every entity"] = lambda: export(config, whole, "csv")
    out["download Parquet, every entity"] = lambda: export(config, whole, "parquet")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=12, help="published months (default 12)")
    parser.add_argument("--loads", type=int, default=5, help="times each page is timed (default 5)")
    parser.add_argument("--url", help="PostgreSQL admin URL: a throwaway database is made there")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="planner-speed-")))
        url = (
            stack.enter_context(temporary_database(args.url))
            if args.url
            else f"sqlite:///{folder}/predictions.db"
        )
        config = config_for(url, folder)
        started = time.perf_counter()
        build(config, args.series, args.runs, rng)
        print(
            f"built {args.series:,} series x {args.runs} runs x {HORIZON} horizons in {time.perf_counter() - started:.0f} s"
        )
        cold = []
        for _ in range(max(1, args.loads // 2)):
            plan_data._CACHE.clear()  # as at the api-server's start
            cold += timed(lambda: plan_data.plan_data(config), 1)
        data = plan_data.plan_data(config)
        assert data is not None and len(data.entities) == args.series
        print("| page | median ms | worst ms |\n|---|---:|---:|")
        print(
            f"| numbers read (at start; after a publish, in a thread) | {statistics.median(cold):.0f} | {max(cold):.0f} |"
        )
        for name, step in pages(config, data).items():
            values = timed(step, args.loads)
            print(f"| {name} | {statistics.median(values):.0f} | {max(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
