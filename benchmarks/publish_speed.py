"""How fast forecasts land in the PostgreSQL predictions table, per way of writing them.

Makes a fresh database on the server (dropped afterwards), creates the predictions table as
publish does (primary key and indexes included), and for each method replaces one month's
N rows in one transaction (DELETE the month, write the rows, COMMIT), several times:

* ``copy``: our PostgreSQL path (forecasting.publishing.postgres.copy_rows: COPY into a TEMP staging
  table, then INSERT ... SELECT), from the same list of dicts publish builds;
* ``sqlalchemy``: the generic path (``conn.execute(table.insert(), records)``, which
  SQLAlchemy batches into multi-row INSERTs) — what other databases get;
* ``to_sql multi``: ``DataFrame.to_sql(method="multi", chunksize=...)``;
* ``publish()``: the whole publish call (COPY path) end to end, for context: frame to
  records, the month's lock row, schema check, the DELETE, the runs row.

Prints the median rows per second of each, and the machine, as a Markdown table::

    python benchmarks/publish_speed.py --rows 200000 --repeat 3 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecasting.core.config import Config, parse_config
from forecasting.core.months import month_start
from forecasting.publishing.postgres import copy_rows, temporary_database
from forecasting.publishing.publish import ensure_schema, publish

MONTH = pd.Period("2024-12", "M")
KEYS = ["store_id", "item_id"]


def forecast_rows(n: int, horizon: int = 3, seed: int = 0) -> pd.DataFrame:
    """About ``n`` forecast rows: stores x items x horizons, as predict.forecast returns them."""
    stores = 100
    items = max(1, round(n / (stores * horizon)))
    grid = pd.MultiIndex.from_product(
        [
            np.arange(1, stores + 1, dtype=np.int64),
            np.arange(1, items + 1, dtype=np.int64),
            np.arange(1, horizon + 1),
        ],
        names=[*KEYS, "horizon"],
    ).to_frame(index=False)
    grid["forecast_month"] = [month_start(MONTH + int(h)).date() for h in grid["horizon"]]
    grid["prediction"] = np.random.default_rng(seed).gamma(2.0, 15.0, len(grid))
    return grid[[*KEYS, "forecast_month", "horizon", "prediction"]]


def config_for(url: str, folder: Path) -> Config:
    return parse_config(
        {
            "data_dir": str(folder),
            "source": {
                "url": "sqlite:///unused.db",
                "table": "sales",
                "entity_columns": KEYS,
                "time_column": "month",
                "target_column": "units",
            },
            "feature_store": {"project": "benchmark"},
            "predictions": {"url": url, "table": "forecasts"},
        },
        folder / "benchmark.yaml",
    )


def machine(engine: sa.Engine) -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with engine.connect() as conn:
        server = conn.exec_driver_sql("SHOW server_version").scalar()
    import psycopg

    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "postgresql": server,
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "sqlalchemy": sa.__version__,
        "pandas": pd.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunksize", type=int, default=1000, help="rows per INSERT for to_sql multi")
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "FORECAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server, as a user that may CREATE DATABASE",
    )
    args = parser.parse_args(argv)

    frame = forecast_rows(args.rows)
    n = len(frame)
    run_month = month_start(MONTH).date()
    full = frame.assign(
        run_month=run_month, model_version="benchmark", run_id="benchmark", created_at=datetime.now(UTC)
    )
    full = full[
        [
            "run_month",
            *KEYS,
            "forecast_month",
            "horizon",
            "prediction",
            "model_version",
            "run_id",
            "created_at",
        ]
    ]

    with (
        temporary_database(args.url, prefix="forecast_bench") as url,
        tempfile.TemporaryDirectory() as folder,
    ):
        config = config_for(url, Path(folder))
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            table, _ = ensure_schema(conn, config, {k: frame[k].dtype for k in KEYS})

        def replace_month(write: Callable[[sa.Connection], None]) -> Callable[[], None]:
            def run() -> None:
                with engine.begin() as conn:
                    conn.execute(sa.delete(table).where(table.c.run_month == run_month))
                    write(conn)

            return run

        methods: dict[str, Callable[[], None]] = {
            "copy (ours: COPY -> TEMP staging -> INSERT ... SELECT)": replace_month(
                lambda conn: copy_rows(conn, table, full.to_dict(orient="records"))
            ),
            "sqlalchemy (generic path: insert(), executemany)": replace_month(
                lambda conn: conn.execute(table.insert(), full.to_dict(orient="records"))
            ),
            f"pandas to_sql(method='multi', chunksize={args.chunksize})": replace_month(
                lambda conn: full.to_sql(
                    table.name,
                    conn,
                    if_exists="append",
                    index=False,
                    method="multi",
                    chunksize=args.chunksize,
                )
            ),
            "publish() end to end (COPY path)": lambda: publish(
                frame, config, MONTH, model_version="benchmark", run_id="benchmark"
            ),
        }
        results = {}
        for name, run in methods.items():
            seconds = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
                with engine.connect() as conn:
                    landed = conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(table.c.run_month == run_month)
                    ).scalar()
                assert landed == n, f"{name}: {landed} rows landed, expected {n}"
            results[name] = statistics.median(seconds)
            print(f"{name}: median {results[name]:.2f}s over {args.repeat}", file=sys.stderr)
        info = machine(engine)
        engine.dispose()

    print(
        f"Publishing {n:,} forecast rows (one month replaced in one transaction; "
        f"median of {args.repeat} runs):\n"
    )
    print("| method | seconds | rows/s |")
    print("| --- | ---: | ---: |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} |")
    print(
        f"\nMachine: {info['cores']} cores, {info['cpu']}; PostgreSQL {info['postgresql']} "
        f"(same host); Python {info['python']}, psycopg {info['psycopg']}, "
        f"SQLAlchemy {info['sqlalchemy']}, pandas {info['pandas']}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
