"""New items (cold start): how forecasts of young entities fare, per age bucket (issue 24, docs/quality.md).

    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python benchmarks/cold_start.py run    # resumable
    .venv/bin/python benchmarks/cold_start.py report                                    # the tables

Each case is a whole run of the pipeline, in process (``forecasting.orchestration.pipeline.run_month``:
extract to publish and the realised accuracy), and reads its evaluation.json's ``ages`` (the
model and every baseline by months of history as of each holdout row's origin, with the p10/p90
coverage per bucket) and the siblings' forecaster's scores (``cold_start``):

* ``synthetic``: 10 stores x 100 items over 60 months, 30% of the items launched in the last 12
  months (``generate_sales(launch_share=0.3, launch_within=12)``), the demo's config otherwise;
* ``tourism``: the tourism competition's series (config/tourism.yaml), run at months where a cohort
  of series is young (71 series start in 1991-06, 2 in 1992-06: runs of 1991-09, 1991-12, 1992-06).

Results go to ``data/cold_start/results.jsonl``, one line per case (a rerun skips those done;
``--label`` names a variant, e.g. before and after a change).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "data" / "cold_start"
SYNTHETIC_MONTH = "2026-10"
TOURISM_MONTHS = ("1991-09", "1991-12", "1992-06")
log = logging.getLogger("cold_start")


def synthetic_config() -> Path:
    """The demo's config over data/cold_start/synthetic, its source seeded with many launches."""
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import generate_sales, seed_source_database

    folder = OUT / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    raw["data_dir"] = str(folder)
    raw["source"]["url"] = f"sqlite:///{folder}/source.db"
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    raw["feature_store"]["registry"] = str(folder / "feast" / "registry.db")
    raw["feature_store"]["online_store"]["path"] = str(folder / "feast" / "online.db")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    if not (folder / "source.db").is_file():
        frame = generate_sales(10, 100, 60, SYNTHETIC_MONTH, 7, launch_share=0.3, launch_within=12)
        seed_source_database(load_config(path).source.database.url, frame, "sales")
    return path


def tourism_config(label: str) -> Path:
    """config/tourism.yaml over data/cold_start/tourism_<label> (variants may run side by side),
    reading data/tourism/source.db."""
    folder = OUT / f"tourism_{label}"
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((REPO / "config" / "tourism.yaml").read_text())
    raw["data_dir"] = str(folder)
    raw["source"]["url"] = f"sqlite:///{REPO}/data/tourism/source.db"
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    raw["feature_store"]["registry"] = str(folder / "feast" / "registry.db")
    raw["feature_store"]["online_store"]["path"] = str(folder / "feast" / "online.db")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cases(label: str = "before") -> list[tuple[str, Path, str]]:
    tourism = REPO / "config" / "tourism.yaml" if label == "before" else tourism_config(label)
    return [
        ("synthetic", synthetic_config(), SYNTHETIC_MONTH),
        *(("tourism", tourism, month) for month in TOURISM_MONTHS),
    ]


def results() -> list[dict]:
    path = OUT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run(label: str, only: list[str]) -> None:
    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.orchestration.pipeline import run_month

    done = {(r["set"], r["month"], r["label"]) for r in results()}
    for name, config_path, month in cases(label):
        if (name, month, label) in done or (only and name not in only):
            continue
        config = load_config(config_path)
        started = time.perf_counter()
        made = run_month(month, f"cold_start_{label}_{month}", config)
        report = paths.read_json(paths.evaluation(Path(made["train"]["model_dir"])))
        result = {
            "set": name,
            "month": month,
            "label": label,
            "seconds": round(time.perf_counter() - started),
            "forecaster": made["evaluate"]["forecaster"],
            "model": report["model"]["wape"],
            "ages": report.get("ages"),
            "cold_start": report.get("cold_start"),
            "monitor": [r for r in made["monitor"]["overall"] if r.get("segment_column", "(all)") == "(all)"],
        }
        with (OUT / "results.jsonl").open("a") as out:
            out.write(json.dumps(result) + "\n")
        log.info("%s %s (%s): %.0f s", name, month, label, result["seconds"])


def siblings(only: list[str]) -> None:
    """The siblings' forecaster (forecasting.modeling.cold_start) on the holdout rows of each
    case's published run, per age bucket, beside the holdout model: alone where it has a
    forecast (the model elsewhere) and averaged with the model."""
    import numpy as np
    import pandas as pd

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.core.months import label_index, month_of
    from forecasting.data.panel import build_panel
    from forecasting.features import dataset
    from forecasting.features.age import age_buckets, history_months
    from forecasting.modeling import booster
    from forecasting.modeling.cold_start import sibling_forecasts
    from forecasting.modeling.scoring import metrics

    for name, config_path, month in cases():
        if only and name not in only:
            continue
        config = load_config(config_path)
        m = month_of(month)
        attempt = paths.published_attempt(config, m)
        if attempt is None:
            continue
        model_dir = Path(paths.read_json(paths.stage_result(config, m, attempt.name, "train"))["model_dir"])
        snap = pd.read_parquet(paths.snapshot(config, m, attempt.name))
        panel = build_panel(snap, config, sales_only=True)
        holdout = dataset.read_rows(paths.holdout_rows(model_dir))
        b, meta = booster.load(model_dir, holdout=True)
        model = booster.predict(b, dataset.design_matrix(holdout, config, meta["categories"]))
        entity, origin = holdout[dataset.ENTITY].to_numpy(), label_index(holdout[dataset.ORIGIN])
        horizon, actual = holdout[dataset.HORIZON].to_numpy(), holdout[dataset.LABEL].to_numpy()
        lookback = config.features.lookback_months
        sib = sibling_forecasts(panel, entity, origin, horizon, lookback)
        bucket = age_buckets(history_months(panel, entity, origin), lookback)
        print(f"\n{name} {month}: siblings' forecast on {np.isfinite(sib).sum()} of {len(sib)} rows")
        for label in pd.unique(bucket):
            rows = bucket == label
            has = rows & np.isfinite(sib)
            both = np.where(np.isfinite(sib), (sib + model) / 2, model)
            print(
                f"  {label:<12}{rows.sum():>6} rows  model {metrics(actual[rows], model[rows])['wape']:.3f}"
                f"  siblings-else-model {metrics(actual[rows], np.where(np.isfinite(sib), sib, model)[rows])['wape']:.3f}"
                f"  mean {metrics(actual[rows], both[rows])['wape']:.3f}"
                f"  | on {has.sum()} rows with siblings: model {metrics(actual[has], model[has])['wape']:.3f}"
                f" siblings {metrics(actual[has], sib[has])['wape']:.3f}"
            )


def report() -> None:
    for r in results():
        print(f"\n{r['set']} {r['month']} [{r['label']}], published {r['forecaster']}")
        for name, b in (r.get("ages") or {}).get("buckets", {}).items():
            scores = {k: v["wape"] for k, v in b.items() if isinstance(v, dict) and "wape" in v}
            held = b["interval_coverage"].get("model", {}).get("coverage")
            print(
                f"  {name:<12}{b['rows']:>7} rows {b['entities']:>5} ent  "
                + "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
                + (f"  cover {held:.2f}" if held is not None else "")
            )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["run", "report", "siblings"])
    parser.add_argument("--label", default="before")
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.what == "run":
        run(args.label, args.only)
    elif args.what == "siblings":
        siblings(args.only)
    else:
        report()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "include"))
    main()
