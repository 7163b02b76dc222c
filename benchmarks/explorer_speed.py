"""Server time of the Forecasts view's explorer for one entity, on a big deployment.

Builds a predictions table of ``--series`` entities x ``--runs`` published months x 3 horizons
(through publish(), so with the table's own primary key and indexes) and the newest run's
snapshot (``--series`` x 60 months of actuals, in source order as extract writes it), then times
the explorer for ``--entities`` random entities: the predictions query (read-only query layer,
index on the entity columns), the snapshot read (parquet filtered on the entity columns) and the
whole page. Prints the median and worst of each in milliseconds, and the query plan on PostgreSQL.

    python benchmarks/explorer_speed.py --series 100000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres   # a throwaway database
    python benchmarks/explorer_speed.py --series 2000                 # SQLite, seconds
"""

from __future__ import annotations

import argparse
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
from forecasting.ui import explorer

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
        },
        "feature_store": {"project": "benchmark"},
        "horizon": HORIZON,
        "predictions": {"url": url, "table": "forecasts"},
    }
    return parse_config(raw, folder / "benchmark.yaml")


def entities(series: int) -> pd.DataFrame:
    items = -(-series // STORES)
    grid = pd.MultiIndex.from_product([range(1, STORES + 1), range(1, items + 1)], names=KEYS)
    return grid.to_frame(index=False).head(series)


def build(config: Config, series: int, runs: int, rng: np.random.Generator) -> None:
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
            # Extract writes rows as the source returns them: month by month, not entity by entity.
            snapshot = snapshot.sort_values(["month", *KEYS], kind="stable")
            paths.write_parquet_atomically(snapshot, paths.snapshot(config, run, attempt))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=12, help="published months (default 12)")
    parser.add_argument("--entities", type=int, default=20, help="entities timed (default 20)")
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
        started = time.perf_counter()
        build(config, args.series, args.runs, rng)
        print(
            f"built {args.series:,} series x {args.runs} runs x {HORIZON} horizons in {time.perf_counter() - started:.0f} s"
        )
        shape = explorer.table_shape(config)
        assert shape is not None
        keys = entities(args.series).sample(args.entities, random_state=1)
        timings: dict[str, list[float]] = {"predictions": [], "history": [], "page": []}
        for store, item in keys.itertuples(index=False):
            entity = {"store_id": int(store), "item_id": int(item)}
            found = explorer.entity_forecasts(config, shape, entity)
            assert len(found.predictions) == args.runs * HORIZON and len(found.history) == 60
            for step in ("predictions", "history"):
                timings[step].append(1000 * found.seconds[step])
            started = time.perf_counter()
            explorer.render_explorer(config, {k: str(v) for k, v in entity.items()})
            timings["page"].append(1000 * (time.perf_counter() - started))
        print("| step | median ms | worst ms |\n|---|---:|---:|")
        for step, values in timings.items():
            print(f"| {step} | {statistics.median(values):.0f} | {max(values):.0f} |")
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
