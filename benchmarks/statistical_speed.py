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


def time_form(model, frame: pd.DataFrame, horizon: int, jobs: int) -> float:
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    engine = StatsForecast(models=[model], freq=1, n_jobs=jobs, fallback_model=Naive())
    started = time.perf_counter()
    engine.forecast(df=frame, h=horizon)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--measure", type=int, default=2000, help="series actually fitted per timing")
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--forms", nargs="+", default=["auto_ets", "ets_aada", "ets_mam", "theta", "naive"])
    args = parser.parse_args()

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; statsforecast on {args.measure} series of "
        f"{args.months} months, {args.jobs} jobs, median of {args.repeat}"
    )
    frame = series_frame(args.measure, args.months, seed=0)
    time_form(forms(12)["theta"], frame.head(args.months * 10), args.horizon, 1)  # numba's compilation
    print(f"{'form':<10}{'ms/series':>11}" + "".join(f"{f'{n:,} series (s)':>20}" for n in args.series))
    for name in args.forms:
        model = forms(12)[name]
        time_form(model, frame.head(args.months * 10), args.horizon, 1)  # compile before timing
        seconds = statistics.median(time_form(model, frame, args.horizon, args.jobs) for _ in range(args.repeat))
        per_series = seconds / args.measure
        print(f"{name:<10}{1000 * per_series:>11.2f}" + "".join(f"{per_series * n:>20.0f}" for n in args.series))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
