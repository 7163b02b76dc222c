"""Server time of the Forecasts view's explorer for one entity, and of its Scenarios page, on a
big deployment.

Builds a predictions table of ``--series`` entities x ``--runs`` published months x 3 horizons
(through publish(), so with the table's own primary key and indexes), the newest run's
snapshot (``--series`` x 60 months of actuals with a price and a promotion, in source order as
extract writes it) and plans (plans.parquet), and that run's what-if scenarios (the base and
``--scenarios`` more, each planning a tenth of the forecasts, through publish_scenarios), then
times the explorer for ``--entities`` random entities: the predictions query (read-only query
layer, index on the entity columns), the snapshot read (parquet filtered on the entity columns),
the plans and scenarios reads, and the whole page (every month, and zoomed to 24); and the
Scenarios page once per scenario (its first view, which reads the publication's
``<table>_scenario_totals``; then again, kept per publication; and the first view of a database
published before that table, which scans the month's rows). Prints the median and worst of each
in milliseconds of wall time, the median of this process's CPU time (a loaded machine stretches
wall time, not CPU time; the database server's CPU is not in it), the load average before and
after, and the query plan on PostgreSQL.

    python benchmarks/explorer_speed.py --series 100000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres   # a throwaway database
    python benchmarks/explorer_speed.py --series 2000                 # SQLite, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core import paths
from forecasting.core.config import Config, parse_config
from forecasting.publishing.postgres import temporary_database
from forecasting.publishing.publish import publish
from forecasting.scenarios.publish import publish_scenarios
from forecasting.ui import explorer, scenarios

KEYS = ["store_id", "item_id"]
STORES = 100
HORIZON = 3


def config_for(url: str, folder: Path) -> Config:
    raw = {
        "data_dir": str(folder),
        "source": {
            "url": "sqlite:///unused.db",
            "table": "sales",
            "entity_columns": KEYS,
            "time_column": "month",
            "target_column": "units",
            "covariates": ["price", "promo"],
        },
        "plans": {
            "table": "sales_plans",
            "month_column": "month",
            "covariates": ["price", "promo"],
            "planned_at": "planned_at",
            "scenarios": {"table": "sales_scenarios"},
        },
        "hierarchy": {"levels": [[], ["store_id"]]},
        "feature_store": {"project": "benchmark"},
        "horizon": HORIZON,
        "predictions": {"url": url, "table": "forecasts"},
    }
    return parse_config(raw, folder / "benchmark.yaml")


def entities(series: int) -> pd.DataFrame:
    items = -(-series // STORES)
    grid = pd.MultiIndex.from_product([range(1, STORES + 1), range(1, items + 1)], names=KEYS)
    return grid.to_frame(index=False).head(series)


def build(config: Config, series: int, runs: int, rng: np.random.Generator, scenario_count: int) -> None:
    keys = entities(series)
    last = pd.Period("2024-12", "M")
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
        run_id = f"scheduled__{run + 1}-01"
        publish(frame, config, run, model_version=f"{run}-bench", run_id=run_id, created_at=datetime.now(UTC))
        attempt = f"{paths.run_key(run_id)}__20250101T000000000000Z"
        paths.write_json_atomically({"run_id": run_id}, paths.stage_result(config, run, attempt, "publish"))
        if run == last:
            months = pd.period_range(last - 59, last, freq="M").to_timestamp()
            snapshot = keys.loc[keys.index.repeat(len(months))].reset_index(drop=True)
            snapshot["month"] = np.tile(months, len(keys))
            snapshot["units"] = rng.poisson(30, len(snapshot)).astype(float)
            snapshot["price"] = rng.uniform(1, 5, len(snapshot)).round(2)
            snapshot["promo"] = (rng.random(len(snapshot)) < 0.1).astype(float)
            # Extract writes rows as the source returns them: month by month, not entity by entity.
            snapshot = snapshot.sort_values(["month", *KEYS], kind="stable")
            paths.write_parquet_atomically(snapshot, paths.snapshot(config, run, attempt))
            plans = frame[[*KEYS, "forecast_month"]].rename(columns={"forecast_month": "month"})
            plans = plans.assign(
                month=pd.to_datetime(plans["month"]),
                price=rng.uniform(1, 5, len(plans)).round(2),
                promo=(rng.random(len(plans)) < 0.1).astype(float),
                planned_at=(run).to_timestamp(),
            )
            paths.write_parquet_atomically(plans, paths.plans(config, run, attempt))
            build_scenarios(config, frame, run, scenario_count, rng)


def build_scenarios(
    config: Config, base: pd.DataFrame, run: pd.Period, count: int, rng: np.random.Generator
) -> None:
    """The run's scenarios as forecast_scenarios publishes them: the base (the published
    forecasts) and ``count`` scenarios, each planning a random tenth of the forecasts (+ 30%)."""
    frames = [base.assign(scenario="base", overridden=False)]
    for i in range(count):
        planned = rng.random(len(base)) < 0.1
        frames.append(
            base.assign(
                scenario=f"scenario_{i + 1}",
                overridden=planned,
                prediction=np.where(planned, base["prediction"] * 1.3, base["prediction"]),
            )
        )
    rows = pd.concat(frames, ignore_index=True).assign(plan_promo=0.0, plan_price=1.0)
    started = time.perf_counter()
    publish_scenarios(rows, config, run, model_version=f"{run}-bench", run_id=f"scenarios__{run}")
    print(f"published {len(rows):,} scenario rows and their totals in {time.perf_counter() - started:.1f} s")


def rename(config: Config, old: str, new: str) -> None:
    """Rename a table of the predictions database (the summary hidden: a database before it)."""
    engine = sa.create_engine(config.predictions.database.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))
    engine.dispose()


def time_scenarios_page(
    config: Config, args: argparse.Namespace, timings: dict[str, list[float]], cpu: dict[str, list[float]]
) -> None:
    """The Scenarios page once per scenario in turn, as a planner clicks through them: its first
    view (nothing kept: after the api-server started or a publish), again, and the first view
    with ``<table>_scenario_totals`` hidden (a database published before it: the month's scan)."""

    def view(step: str, given: dict[str, str]) -> None:
        started, cpu_started = time.perf_counter(), time.process_time()
        page = scenarios.render_scenarios(config, given)
        timings[step].append(1000 * (time.perf_counter() - started))
        cpu[step].append(1000 * (time.process_time() - cpu_started))
        assert "scenario-movers" in page

    for i in range(args.entities):
        given = {"scenario": f"scenario_{i % args.scenarios + 1}"}
        scenarios.clear_cache()
        view("scenarios page, first view", given)
        view("scenarios page, again", given)
    rename(config, "forecasts_scenario_totals", "kept_totals")
    try:
        for i in range(args.entities):
            scenarios.clear_cache()
            view(
                "scenarios page, first view without the summary",
                {"scenario": f"scenario_{i % args.scenarios + 1}"},
            )
    finally:
        rename(config, "kept_totals", "forecasts_scenario_totals")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=12, help="published months (default 12)")
    parser.add_argument("--entities", type=int, default=20, help="entities timed (default 20)")
    parser.add_argument("--scenarios", type=int, default=2, help="scenarios beside the base (default 2)")
    parser.add_argument("--url", help="PostgreSQL admin URL: a throwaway database is made there")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="explorer-speed-")))
        url = (
            stack.enter_context(temporary_database(args.url))
            if args.url
            else f"sqlite:///{folder}/predictions.db"
        )
        config = config_for(url, folder)
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        started = time.perf_counter()
        build(config, args.series, args.runs, rng, args.scenarios)
        print(
            f"built {args.series:,} series x {args.runs} runs x {HORIZON} horizons in {time.perf_counter() - started:.0f} s"
        )
        shape = explorer.table_shape(config)
        assert shape is not None
        keys = entities(args.series).sample(args.entities, random_state=1)
        timings: dict[str, list[float]] = {
            "predictions": [],
            "history": [],
            "plans and scenarios": [],
            "page": [],
            "page, zoom 24": [],
            "scenarios page, first view": [],
            "scenarios page, again": [],
            "scenarios page, first view without the summary": [],
        }
        cpu: dict[str, list[float]] = {step: [] for step in timings}
        for store, item in keys.itertuples(index=False):
            entity = {"store_id": int(store), "item_id": int(item)}
            found = explorer.entity_forecasts(config, shape, entity)
            assert len(found.predictions) == args.runs * HORIZON and len(found.history) == 60
            for step in ("predictions", "history", "plans and scenarios"):
                timings[step].append(1000 * found.seconds[step])
            for zoom, step in (("all", "page"), ("24", "page, zoom 24")):
                started, cpu_started = time.perf_counter(), time.process_time()
                explorer.render_explorer(config, {**{k: str(v) for k, v in entity.items()}, "zoom": zoom})
                timings[step].append(1000 * (time.perf_counter() - started))
                cpu[step].append(1000 * (time.process_time() - cpu_started))
        time_scenarios_page(config, args, timings, cpu)
        print("| step | median ms | worst ms | median CPU ms |\n|---|---:|---:|---:|")
        for step, values in timings.items():
            cpu_ms = f"{statistics.median(cpu[step]):.0f}" if cpu[step] else ""
            print(f"| {step} | {statistics.median(values):.0f} | {max(values):.0f} | {cpu_ms} |")
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if args.url:
            sql, params = explorer.entity_query(config, shape, {"store_id": 1, "item_id": 1})
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                plan = conn.execute(sa.text(f"EXPLAIN ANALYZE {sql}"), params).scalars().all()
            engine.dispose()
            print("\n".join(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
