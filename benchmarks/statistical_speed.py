"""How long AutoETS and Theta take per series, as predict needs them for every active entity.

The gate may publish a statistical forecaster or a combination with one for every entity, so
predict fits one per active entity (one fit per entity, forecast ``--horizon`` months ahead).
This measures statsforecast's cost per series on synthetic monthly series of ``--months``
months (a level, a trend, a 12-month season and noise, as benchmarks/run_stages.py makes them),
for each candidate form, and extrapolates to ``--series`` series (a fit's cost does not depend
on how many other series there are; the fits are timed on ``--measure`` of them, ``--repeat``
times, the median reported). Printed with the machine's cores and its load, since the machine
is shared::

    python benchmarks/statistical_speed.py --series 10000 100000 --measure 2000 --jobs 2

Forms: ``auto_ets`` (error, trend, season and damping chosen by AICc: up to 30 fits per series),
``ets_aada`` / ``ets_mam`` (one fixed form each), ``theta`` (the classic Theta method), ``naive``
(the reference floor: statsforecast's own overhead).

What the fixed form costs in accuracy, on a real data set's holdout rows (a trained run's
``holdout.parquet``, scored as evaluate scores AutoETS: each row from its entity's history up to
its origin)::

    FORECAST_CONFIG=config/tourism.yaml python benchmarks/statistical_speed.py \
        --accuracy data/tourism/models/<version> --snapshot data/tourism/runs/<month>/<attempt>/raw.parquet
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import pandas as pd


def series_frame(count: int, months: int, seed: int) -> pd.DataFrame:
    """``count`` synthetic monthly series of ``months`` months in statsforecast's long format."""
    rng = np.random.default_rng(seed)
    t = np.arange(months)
    level = rng.gamma(2.0, 50.0, count)[:, None]
    trend = rng.normal(0, 0.005, count)[:, None] * t
    season = 1 + 0.3 * np.sin(2 * np.pi * (t + rng.integers(0, 12, count)[:, None]) / 12)
    y = np.maximum(level * (1 + trend) * season * (1 + rng.normal(0, 0.15, (count, months))), 0)
    return pd.DataFrame(
        {"unique_id": np.repeat(np.arange(count), months), "ds": np.tile(t, count), "y": y.ravel()}
    )


def forms(season_length: int) -> dict:
    from statsforecast import models

    return {
        "auto_ets": models.AutoETS(season_length=season_length, alias="auto_ets"),
        "ets_aada": models.AutoETS(season_length=season_length, model="AAA", damped=True, alias="ets_aada"),
        "ets_mam": models.AutoETS(season_length=season_length, model="MAM", damped=False, alias="ets_mam"),
        "theta": models.Theta(season_length=season_length, alias="theta"),
        "naive": models.Naive(alias="naive"),
    }


def time_form(model, frame: pd.DataFrame, horizon: int, jobs: int) -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds of one fit and forecast of every series (the CPU
    seconds count only with ``jobs`` 1: the load of a shared machine does not inflate them)."""
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    engine = StatsForecast(models=[model], freq=1, n_jobs=jobs, fallback_model=Naive())
    started, cpu = time.perf_counter(), time.process_time()
    engine.forecast(df=frame, h=horizon)
    return time.perf_counter() - started, time.process_time() - cpu


def accuracy(model_dir: str, snapshot_path: str, jobs: int, entities: int | None) -> None:
    """WAPE of AutoETS searched (ZZZ) and fixed (AAdA) and of Theta on the holdout rows (of a
    seeded sample of ``entities`` entities; None: all), overall and per horizon, with the CPU
    seconds each took."""
    from pathlib import Path

    from forecasting.core import paths
    from forecasting.core.config import load_config
    from forecasting.core.months import label_index
    from forecasting.data.panel import build_panel
    from forecasting.features import dataset
    from forecasting.modeling.baselines import statistical_forecasts
    from forecasting.modeling.scoring import metrics

    config = load_config()
    holdout = dataset.read_rows(paths.holdout_rows(Path(model_dir)))
    if entities is not None:
        distinct = holdout[dataset.ENTITY].unique()
        chosen = np.random.default_rng(0).choice(distinct, size=min(entities, len(distinct)), replace=False)
        holdout = holdout[holdout[dataset.ENTITY].isin(chosen)].reset_index(drop=True)
    panel = build_panel(pd.read_parquet(snapshot_path), config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    origin = label_index(holdout[dataset.ORIGIN])
    horizon = holdout[dataset.HORIZON].to_numpy()
    actual = holdout[dataset.LABEL].to_numpy()
    print(
        f"{len(holdout):,} holdout rows of {len(np.unique(entity)):,} entities, {len(np.unique(origin))} origins"
    )
    for label, names, limit in (
        ("AutoETS searched (ZZZ)", ["auto_ets"], None),
        ("AutoETS fixed (AAdA)", ["auto_ets"], 1),
        ("Theta", ["theta"], None),
    ):
        cpu = time.process_time()
        got = statistical_forecasts(panel, entity, origin, horizon, names, jobs, limit)[names[0]]
        spent = time.process_time() - cpu
        by_h = " ".join(
            f"h{h} {metrics(actual[horizon == h], got[horizon == h])['wape']:.4f}" for h in np.unique(horizon)
        )
        print(f"{label:<24} WAPE {metrics(actual, got)['wape']:.4f}  ({by_h})  {spent:.0f} cpu s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--measure", type=int, default=2000, help="series actually fitted per timing")
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--forms", nargs="+", default=["auto_ets", "ets_aada", "ets_mam", "theta", "naive"])
    parser.add_argument(
        "--accuracy", metavar="MODEL_DIR", help="score the forms on this run's holdout instead"
    )
    parser.add_argument("--snapshot", help="with --accuracy: the run's raw.parquet")
    parser.add_argument("--entities", type=int, help="with --accuracy: a seeded sample of this many entities")
    args = parser.parse_args()
    if args.accuracy:
        accuracy(args.accuracy, args.snapshot, args.jobs, args.entities)
        return

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; statsforecast on {args.measure} series of "
        f"{args.months} months, {args.jobs} jobs, median of {args.repeat}"
    )
    frame = series_frame(args.measure, args.months, seed=0)
    time_form(forms(12)["theta"], frame.head(args.months * 10), args.horizon, 1)  # numba's compilation
    print(
        f"{'form':<10}{'wall ms/series':>15}{'cpu ms/series':>15}"
        + "".join(f"{f'{n:,} series (cpu s)':>22}" for n in args.series)
    )
    for name in args.forms:
        model = forms(12)[name]
        time_form(model, frame.head(args.months * 10), args.horizon, 1)  # compile before timing
        timings = [time_form(model, frame, args.horizon, args.jobs) for _ in range(args.repeat)]
        wall = statistics.median(t[0] for t in timings) / args.measure
        cpu = statistics.median(t[1] for t in timings) / args.measure
        print(
            f"{name:<10}{1000 * wall:>15.2f}{1000 * cpu:>15.2f}"
            + "".join(f"{cpu * n:>22.0f}" for n in args.series),
            flush=True,
        )
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
