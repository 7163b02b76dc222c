"""Time each stage of the monthly pipeline on the demo data, without Airflow in the way.

    .venv/bin/python benchmarks/run_stages.py [--repeat 3] [--stores 10 --items 50 --months 60]

Each repetition starts from an empty folder (fresh Feast registry, no models), runs every stage
in one process as the DAG's tasks would, and records wall time per stage; the report gives the
median over repetitions, the peak resident memory, and the machine. Paste it into the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["extract", "validate", "build_features", "register_features", "train", "evaluate", "predict",
          "publish"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def one_repetition(args) -> dict[str, float]:
    """Run in a child process so that every repetition pays the same imports as a task does."""
    with tempfile.TemporaryDirectory(prefix="forecast-bench-") as folder:
        folder = Path(folder)
        raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
        raw["data_dir"] = str(folder / "data")
        raw["source"]["url"] = f"sqlite:///{folder}/source.db"
        raw["feature_store"]["registry"] = str(folder / "registry.db")
        raw["feature_store"]["online_store"] = {"type": "sqlite", "path": str(folder / "online.db")}
        raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
        (folder / "forecast.yaml").write_text(yaml.safe_dump(raw))
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(folder / "forecast.yaml"), "--stores", str(args.stores),
             "--items", str(args.items), "--months", str(args.months)],
            check=True, capture_output=True, text=True, env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
        return yaml.safe_load(out.stdout.strip().splitlines()[-1])


def child(config_path: str, args) -> None:
    from forecasting import pipeline
    from forecasting.config import load_config
    from forecasting.datasets.synthetic import generate_sales, seed_source_database

    config = load_config(config_path)
    sales = generate_sales(stores=args.stores, items=args.items, months=args.months, end_month="2024-12")
    seed_source_database(config.source.database.url, sales, table=config.source.table)
    month, timings, model_dir = "2024-12", {"rows": len(sales)}, None
    for stage in STAGES:
        started = time.perf_counter()
        if stage in ("evaluate", "predict"):
            pipeline.__dict__[stage](month, model_dir, config)
        elif stage == "publish":
            pipeline.publish(month, model_dir, "benchmark", config)
        else:
            result = pipeline.__dict__[stage](month, config)
            model_dir = result.get("model_dir", model_dir)
        timings[stage] = time.perf_counter() - started
    timings["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(yaml.safe_dump(timings, default_flow_style=True, width=10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    runs = [one_repetition(args) for _ in range(args.repeat)]
    print(f"Pipeline stages on {runs[0]['rows']:,} rows ({args.stores} stores x {args.items} items x "
          f"{args.months} months), median of {args.repeat} runs; {machine()}\n")
    print("| stage | median s | min s | max s |\n|---|---:|---:|---:|")
    for stage in [*STAGES, "total"]:
        values = [sum(r[s] for s in STAGES) if stage == "total" else r[stage] for r in runs]
        print(f"| {stage} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    print(f"| peak memory (MiB) | {statistics.median(r['peak_rss_mib'] for r in runs):.0f} | | |")


if __name__ == "__main__":
    main()
