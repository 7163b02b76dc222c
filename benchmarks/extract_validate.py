"""Time and peak memory of the extract and validate stages on synthetic sources of growing size.

    .venv/bin/python benchmarks/extract_validate.py [--series 10000 25000 50000 100000] [--repeat 3]
        [--backends sqlite postgresql] [--code DIR] [--label NAME] [--workdir DIR] [--json FILE]

For each size (stores x items = series, 60 months each, ``forecasting.datasets.synthetic``), the
source is seeded once and kept in ``--workdir`` (SQLite, by sqlite3 executemany) or in a temporary
PostgreSQL database (COPY; dropped at the end; server from FORECAST_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres). Every measurement then runs in a fresh
Python process, as an Airflow task does:

* extract: ``forecasting.data.extract.extract`` (read the 60-month window, type it, write the parquet
  snapshot), once per backend;
* validate: ``pd.read_parquet`` of the SQLite extract's snapshot + ``validate_snapshot`` (the GX
  checkpoint and its Data Docs), as the pipeline's validate stage does.

Reported per stage: the median (and min/max) over ``--repeat`` runs of the stage's seconds (imports
not included; they are reported apart), and the peak resident memory of the process
(``resource.getrusage``, imports included). ``--code DIR`` puts DIR first on the children's
PYTHONPATH, e.g. an older ``include/`` exported with ``git archive``, to compare versions on the
same sources. The load average before each measurement is kept, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_stages import machine  # the same folder: run as a script, it is on sys.path

REPO = Path(__file__).resolve().parents[1]
END_MONTH = "2024-12"
MONTHS = 60
ITEMS = 100  # series = stores x ITEMS
DDL = (
    "store_id INTEGER NOT NULL, item_id INTEGER NOT NULL, month DATE NOT NULL, units FLOAT NOT NULL,"
    " price FLOAT NOT NULL, promo SMALLINT NOT NULL, store_size VARCHAR(16) NOT NULL,"
    " region VARCHAR(16) NOT NULL, category VARCHAR(32) NOT NULL, PRIMARY KEY (store_id, item_id, month)"
)
ADMIN_URL = os.environ.get(
    "FORECAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# --- sources ----------------------------------------------------------------------------------


def generate(series: int):
    from forecasting.datasets.synthetic import generate_sales

    if series % ITEMS:
        raise SystemExit(f"--series must be a multiple of {ITEMS}")
    return generate_sales(stores=series // ITEMS, items=ITEMS, months=MONTHS, end_month=END_MONTH, seed=7)


def _rows(frame):
    """Plain Python tuples, the month as ISO text (what SQLAlchemy's Date writes into SQLite)."""
    import pandas as pd

    months = pd.to_datetime(frame["month"]).dt.strftime("%Y-%m-%d")
    columns = [frame[c].tolist() for c in frame.columns]
    columns[list(frame.columns).index("month")] = months.tolist()
    return list(zip(*columns, strict=True))


def seed_sqlite(path: Path, frame) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute(f"CREATE TABLE sales ({DDL})")
        con.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows(frame))
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)


def seed_postgres(url: str, frame) -> None:
    import psycopg
    import sqlalchemy as sa

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"CREATE TABLE sales ({DDL})")
        with conn.cursor().copy(f"COPY sales ({', '.join(frame.columns)}) FROM STDIN") as copy:
            for row in _rows(frame):
                copy.write_row(row)
        conn.execute("ANALYZE sales")


def sqlite_source(workdir: Path, series: int) -> tuple[Path, int]:
    """The cached SQLite source for ``series`` (seeded on first use) and its row count."""
    path = workdir / f"source_{series}.db"
    if not path.exists():
        started = time.perf_counter()
        frame = generate(series)
        seed_sqlite(path, frame)
        print(
            f"seeded {len(frame):,} rows into {path} in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
    con = sqlite3.connect(path)
    try:
        (rows,) = con.execute("SELECT count(*) FROM sales").fetchone()
    finally:
        con.close()
    return path, rows


def write_config(folder: Path, url: str) -> Path:
    import yaml

    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    raw["source"]["url"] = url
    raw["source"]["history_months"] = MONTHS
    raw["feature_store"]["registry"] = str(folder / "registry.db")
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": str(folder / "online.db")}
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "forecast.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# --- one measurement, in a child process -----------------------------------------------------


def child(stage: str, config_path: str, snapshot: str, docs: str) -> None:
    started = time.perf_counter()
    import pandas as pd

    from forecasting.core.config import load_config

    config = load_config(Path(config_path))
    month = pd.Period(END_MONTH, "M")
    if stage == "extract":
        from forecasting.data.extract import extract

        imported = time.perf_counter()
        snap = extract(config, month, Path(snapshot))
        result = {"rows": snap.rows}
    else:
        import great_expectations  # noqa: F401  (imports are reported apart)

        from forecasting.data.checkpoint import DataValidationError
        from forecasting.data.validate import validate_snapshot

        imported = time.perf_counter()
        try:
            report = validate_snapshot(pd.read_parquet(snapshot), config, month, Path(docs))
        except DataValidationError as err:  # a benchmark of a failing run still has a time
            report = err.report
        result = {"rows": report.rows, "success": report.success, "expectations": report.expectations}
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result |= {"seconds": done - imported, "import_seconds": imported - started, "peak_mib": peak}
    print(json.dumps(result))


def measure(args, stage: str, config: Path, snapshot: Path, docs: Path) -> dict:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    if args.code:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(args.code).resolve()), env.get("PYTHONPATH")])
        )
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, __file__, "--child", stage, str(config), str(snapshot), str(docs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"{stage} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"load_before": load}


# --- the report -------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "import_s": statistics.median(r["import_seconds"] for r in runs),
        "peak_mib": statistics.median(r["peak_mib"] for r in runs),
        "load": statistics.median(r["load_before"] for r in runs),
    }


@contextlib.contextmanager
def postgres_source(frame_for, series: int):
    from forecasting.publishing.postgres import temporary_database

    with temporary_database(ADMIN_URL, prefix="forecast_bench") as url:
        started = time.perf_counter()
        seed_postgres(url, frame_for(series))
        print(
            f"seeded PostgreSQL for {series} series in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 25_000, 50_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--stages", nargs="+", choices=["extract", "validate"], default=["extract", "validate"]
    )
    parser.add_argument("--code", help="put this folder first on the children's PYTHONPATH (another version)")
    parser.add_argument("--label", default="current")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "forecast-extract-validate"))
    parser.add_argument("--json", help="append every measurement to this JSON-lines file")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--child", nargs=4, metavar=("STAGE", "CONFIG", "SNAPSHOT", "DOCS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{args.label}: {machine()}; load average at start {os.getloadavg()}", file=sys.stderr)
    table = []
    for series in args.series:
        source, rows = sqlite_source(workdir, series)
        with tempfile.TemporaryDirectory(prefix="bench-", dir=workdir) as tmp:
            folder = Path(tmp)
            runs: dict[str, list[dict]] = {}
            backends = list(args.backends)
            if "validate" in args.stages and "sqlite" not in backends:
                backends.insert(0, "sqlite")  # validate reads the SQLite extract's snapshot
            with contextlib.ExitStack() as stack:
                urls = {"sqlite": f"sqlite:///{source}"}
                if "postgresql" in backends:
                    urls["postgresql"] = stack.enter_context(postgres_source(generate, series))
                configs = {b: write_config(folder / b, urls[b]) for b in backends}
                for rep in range(args.repeat):
                    for backend in backends:
                        snapshot = folder / f"{backend}.parquet"
                        result = measure(args, "extract", configs[backend], snapshot, folder / "docs")
                        if "extract" in args.stages and backend in args.backends:
                            runs.setdefault(f"extract ({backend})", []).append(result)
                    if "validate" in args.stages:
                        docs = folder / f"docs-{rep}"
                        result = measure(args, "validate", configs["sqlite"], folder / "sqlite.parquet", docs)
                        runs.setdefault("validate", []).append(result)
                    print(f"  {series} series, repetition {rep + 1}: done", file=sys.stderr)
            for name, measured in runs.items():
                row = {
                    "label": args.label,
                    "series": series,
                    "rows": rows,
                    "stage": name,
                    **summarise(measured),
                }
                table.append(row)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({**row, "runs": measured}) + "\n")
                print(
                    f"  {name:22} {series:>7,} series {rows:>10,} rows: {row['median_s']:8.2f} s "
                    f"(min {row['min_s']:.2f}, max {row['max_s']:.2f}), {row['peak_mib']:7.0f} MiB, "
                    f"load {row['load']:.1f}",
                    file=sys.stderr,
                )

    print(f"\n{args.label}, median of {args.repeat}; {machine()}\n")
    print("| stage | series | rows | median s | min s | max s | imports s | peak MiB | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['stage']} | {r['series']:,} | {r['rows']:,} | {r['median_s']:.2f} | {r['min_s']:.2f} "
            f"| {r['max_s']:.2f} | {r['import_s']:.2f} | {r['peak_mib']:.0f} | {r['load']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
