"""What the drivers cost: the model's forecasts of month M with and without their drivers
(exact TreeSHAP, forecasting.modeling.drivers), and publishing them with and without
``<table>_drivers``.

    nice -n 10 .venv/bin/python benchmarks/drivers_cost.py --series 10000 100000 [--url <postgres admin URL>]

Per size: synthetic sales (benchmarks/run_stages.py's), the stages up to train run once
in-process with the demo config, then, ``--repeat`` times each, the trained model forecasts M
(``forecasting.modeling.predict.forecast``) without and with ``explain``, and publish writes
the forecasts without and with their drivers (SQLite, and PostgreSQL with ``--url``: a
temporary database). Prints a Markdown table of medians; nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from run_stages import MONTH, RUN_ID, load, machine, seed, write_config  # noqa: E402


def timed(call, repeat: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def one_size(series: int, months: int, repeat: int, url: str | None) -> dict:
    import pandas as pd

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.modeling import drivers
    from forecasting.modeling.predict import forecast
    from forecasting.orchestration import pipeline
    from forecasting.publishing.publish import publish

    with tempfile.TemporaryDirectory(prefix="drivers-cost-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        seed(folder, series, months)
        config_path = write_config(folder, 0)
        config = load_config(config_path)
        attempt = pipeline.extract(MONTH, RUN_ID, config)["attempt"]
        for stage in ("validate", "build_features", "register_features"):
            getattr(pipeline, stage)(MONTH, attempt, config)
        trained = pipeline.train(MONTH, attempt, config)
        model_dir = Path(trained["model_dir"])
        m = pd.Period(MONTH, "M")
        snapshot = pd.read_parquet(paths.snapshot(config, m, attempt))
        plain_s, plain = timed(lambda: forecast(snapshot, config, m, model_dir), repeat)
        explained_s, made = timed(lambda: forecast(snapshot, config, m, model_dir, explain=True), repeat)
        long_s, long = timed(lambda: drivers.long_form(made, config.source.entity_columns), repeat)
        rows = plain[["store_id", "item_id", "forecast_month", "horizon", "prediction"]]
        out = {
            "series": series,
            "rows": len(plain),
            "driver_rows": len(long),
            "trees": trained["trees"],
            "predict": plain_s,
            "predict_explain": explained_s,
            "long_form": long_s,
        }
        targets = {"SQLite": None}
        if url:
            from forecasting.publishing.postgres import temporary_database

            targets["PostgreSQL"] = stack.enter_context(temporary_database(url))
        for name, database in targets.items():
            if database:
                raw = yaml.safe_load(Path(config_path).read_text())
                raw["predictions"]["url"] = database
                (folder / "postgres.yaml").write_text(yaml.safe_dump(raw))
                config = load_config(folder / "postgres.yaml")

            def write(with_drivers: bool, config=config):
                return publish(
                    rows,
                    config,
                    m,
                    model_version="bench",
                    run_id=RUN_ID,
                    drivers=long if with_drivers else None,
                )

            write(True)  # creates the tables
            out[f"publish {name}"] = timed(lambda w=write: w(False), repeat)[0]
            out[f"publish+drivers {name}"] = timed(lambda w=write: w(True), repeat)[0]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, nargs="+", default=[10_000])
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="a PostgreSQL admin URL: publish there too (a temporary database)")
    args = parser.parse_args()
    results = [one_size(n, args.months, args.repeat, args.url) for n in args.series]
    print(f"Machine: {machine()}; {load()} at the end; medians of {args.repeat}.\n")
    timings = [k for k in results[0] if k not in ("series", "rows", "driver_rows", "trees")]
    head = "| series | forecast rows | trees | driver rows | " + " | ".join(f"{k} s" for k in timings) + " |"
    print(head)
    print("|---:" * (4 + len(timings)) + "|")
    for r in results:
        cells = " | ".join(f"{r[k]:.2f}" for k in timings)
        print(f"| {r['series']:,} | {r['rows']:,} | {r['trees']} | {r['driver_rows']:,} | {cells} |")


if __name__ == "__main__":
    main()
