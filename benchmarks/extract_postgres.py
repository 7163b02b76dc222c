"""Reading the extract's window from PostgreSQL: pandas.read_sql against the ADBC (Arrow) path.

    .venv/bin/python benchmarks/extract_postgres.py [--series 100000] [--repeat 3]
        [--database NAME] [--code DIR] [--workdir DIR]

The source is the synthetic store x item sales of ``benchmarks/extract_validate.py`` (100 items a
store, 60 months ending 2024-12: 100,000 series are 4,806,397 rows), seeded once by one
``COPY ... FROM STDIN (FORMAT csv)`` of the frame written by Arrow into a temporary database
(dropped at the end; server from FORECAST_TEST_POSTGRES_URL, default the local one). The seeding
is timed apart and is not the benchmark. ``--database NAME`` seeds a database of that name once
and keeps it for the next invocation instead.

Then, in turn, each way of reading the same 60-month window (``forecasting.data.extract.
window_query`` with its parameters) runs ``--repeat`` times, each in a fresh Python process:

* ``pandas.read_sql``: the bare call on a SQLAlchemy (psycopg) connection, untyped;
* ``bare ADBC``: ``adbc_driver_postgresql`` ``fetch_arrow_table`` alone, no pandas;
* ``read_window (SQLAlchemy)``: ``forecasting.data.extract.read_window`` with
  ``source.postgres_adbc: false``, the row reader every other dialect uses, typed;
* ``read_window (ADBC)``: the same with the ADBC path, typed: what the extract stage runs;
* ``read_window (--code)``: with ``--code DIR``, ``read_window`` of the code in DIR (e.g. an older
  ``include/`` exported with ``git archive``), to compare versions on the same data.

Reported per way: the median (min, max) wall seconds, the median CPU seconds of the client
process (user + system; the machine may be shared, and CPU time moves less with its load than
wall time), the peak RSS, and the load average before each run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from extract_validate import ADMIN_URL, DDL, END_MONTH, ITEMS, generate, write_config
from run_stages import machine  # the same folder: run as a script, it is on sys.path

WAYS = ("read_sql", "bare_adbc", "row_reader", "adbc")
LABELS = {
    "read_sql": "pandas.read_sql",
    "bare_adbc": "bare ADBC (Arrow only)",
    "row_reader": "read_window (SQLAlchemy)",
    "adbc": "read_window (ADBC)",
    "code": "read_window (--code)",
}


# --- the source ---------------------------------------------------------------------------------


def seed(url: str, series: int) -> None:
    """The synthetic sales of ``series`` series into table ``sales``, by one CSV COPY."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import sqlalchemy as sa

    frame = generate(series)
    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False), buffer, pacsv.WriteOptions(include_header=False)
    )
    data = memoryview(buffer.getbuffer())
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"CREATE TABLE sales ({DDL})")
        columns = ", ".join(frame.columns)
        with conn.cursor().copy(f"COPY sales ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, len(data), 1 << 24):
                copy.write(data[start : start + (1 << 24)])
        conn.execute("ANALYZE sales")


@contextlib.contextmanager
def source(series: int, keep: str | None) -> Iterator[str]:
    """The URL of a database holding the seeded sales: a temporary one, or ``keep`` (seeded on
    first use, kept afterwards)."""
    import sqlalchemy as sa

    from forecasting.publishing.postgres import temporary_database

    if keep is None:
        with temporary_database(ADMIN_URL, prefix="forecast_bench_pg") as url:
            timed_seed(url, series)
            yield url
        return
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = sa.make_url(ADMIN_URL).set(database=keep).render_as_string(hide_password=False)
    try:
        with admin.connect() as conn:
            exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (keep,)).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{keep}"')
    finally:
        admin.dispose()
    if not exists:
        timed_seed(url, series)
    yield url


def timed_seed(url: str, series: int) -> None:
    started = time.perf_counter()
    seed(url, series)
    print(
        f"seeded {series:,} series in {time.perf_counter() - started:.1f} s (not the benchmark)",
        file=sys.stderr,
    )


# --- one measurement, in a child process --------------------------------------------------------


def child(way: str, config_path: str) -> None:
    import pandas as pd

    from forecasting.core.config import load_config
    from forecasting.core.db import make_engine
    from forecasting.core.months import month_end, month_start
    from forecasting.data import extract

    config = load_config(Path(config_path))
    month = pd.Period(END_MONTH, "M")
    if way == "row_reader":
        config = config.model_copy(
            update={"source": config.source.model_copy(update={"postgres_adbc": False})}
        )
    engine = make_engine(config.source.database)
    params = {
        "window_end": month_end(month).date(),
        "window_start": month_start(extract.window_start(config.source, month)).date(),
        "earliest": extract.EARLIEST_TIME.date(),
        "latest": extract.LATEST_TIME.date(),
    }
    query = extract.window_query(config, engine.dialect, has_start=True)
    import adbc_driver_postgresql.dbapi  # imports are not timed (read_sql's pandas is not either)

    wall, cpu = time.perf_counter(), time.process_time()
    if way == "read_sql":
        with engine.connect() as conn:
            rows = len(pd.read_sql(query.bindparams(**params), conn))
    elif way == "bare_adbc":
        from forecasting.data.postgres_read import connection_string, literal_sql

        with engine.connect() as conn:
            sql = literal_sql(conn, query, params)
        with adbc_driver_postgresql.dbapi.connect(connection_string(engine.url, engine.dialect)) as fast:
            with fast.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetch_arrow_table().num_rows
    else:
        rows = len(extract.read_window(config, month))
    result = {
        "rows": rows,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


def measure(way: str, config: Path, code: str | None) -> dict:
    env = dict(os.environ)
    if way == "code":
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(code or "").resolve()), env.get("PYTHONPATH")])
        )
    load = os.getloadavg()[0]
    child_way = "adbc" if way == "code" else way
    out = subprocess.run(
        [sys.executable, __file__, "--child", child_way, str(config)], capture_output=True, text=True, env=env
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"{way} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"load_before": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000, help=f"a multiple of {ITEMS}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    parser.add_argument("--database", help="seed this database once and keep it (default: a temporary one)")
    parser.add_argument("--code", help="also time read_window of the code in this folder (another version)")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "forecast-extract-postgres"))
    parser.add_argument("--child", nargs=2, metavar=("WAY", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    print(f"{machine()}; load average at start {os.getloadavg()}", file=sys.stderr)
    ways = [*args.ways, *(["code"] if args.code else [])]
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    with source(args.series, args.database) as url:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
            config = write_config(Path(folder), url)
            for rep in range(args.repeat):
                for way in ways:  # in turn, so that a change in the machine's load hits every way
                    result = measure(way, config, args.code)
                    runs[way].append(result)
                    print(
                        f"  {rep + 1}/{args.repeat} {LABELS[way]:26} {result['seconds']:7.2f} s, "
                        f"cpu {result['cpu_seconds']:6.2f} s, load {result['load_before']:.1f}",
                        file=sys.stderr,
                    )
    report(runs, args)
    return 0


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    baseline = (
        statistics.median(r["seconds"] for r in runs.get("read_sql", [])) if "read_sql" in runs else None
    )
    print(f"\nmedian of {args.repeat}, {runs[next(iter(runs))][0]['rows']:,} rows; {machine()}\n")
    print("| way | median s | min s | max s | CPU s | peak MiB | load avg | read_sql / this |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for way, measured in runs.items():
        seconds = [r["seconds"] for r in measured]
        median = statistics.median(seconds)
        speedup = f"{baseline / median:.1f}×" if baseline else ""
        print(
            f"| {LABELS[way]} | {median:.2f} | {min(seconds):.2f} | {max(seconds):.2f} "
            f"| {statistics.median(r['cpu_seconds'] for r in measured):.2f} "
            f"| {statistics.median(r['peak_mib'] for r in measured):.0f} "
            f"| {statistics.median(r['load_before'] for r in measured):.1f} | {speedup} |"
        )


if __name__ == "__main__":
    sys.exit(main())
