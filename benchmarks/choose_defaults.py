"""Choose ONE set of modelling defaults across the real data sets (issue 22, docs/quality.md).

The procedure, rerun with one command::

    nice -n 10 .venv/bin/python benchmarks/choose_defaults.py          # every stage, resumable
    .venv/bin/python benchmarks/choose_defaults.py --report            # the tables from the results

* **Data sets** (each seeded on first use into ``data/<set>/source.db``, read with its shipped
  config's *data* settings): the selection sets Dominick's orange juice, tourism and M3 monthly;
  the check set M1 monthly, never scored until the choice is made; the demo (synthetic), only
  as a sanity check.
* **Where candidates are scored**: rolling origins *before* each set's final holdout. A cutoff c
  is a run of month c on the data up to c (the run's window, features, labels, holdout, early
  stopping exactly as the pipeline makes them for c, nothing after c read): the holdout model's
  forecasts of c's holdout rows, and AutoETS's and Theta's of the same rows (each fitted on the
  entity's history up to the row's origin). Cutoffs: the month before the final holdout starts,
  and (where the data allows) one holdout length earlier. The final holdout (the run of the
  last month) is scored only for the report, after the choice.
* **Criterion**: the mean over the selection sets of the mean over their cutoffs of
  log(WAPE_model / WAPE_AutoETS) on the same rows: a ratio to a strong per-series forecaster
  puts data sets of any difficulty on one scale (a WAPE of 0.07 on tourism and 0.45 on
  Dominick's), and the log makes a 10% gain on one set weigh as a 10% loss on another, so no set
  dominates. Lower is better; below 0, the model beats AutoETS.
* **Search**: stage 1, the structure (lags, derived feature groups, scaling by the recent mean:
  12 candidates); stage 2, variations of the XGBoost parameters, rolling windows and early
  stopping around the two best of stage 1. The best of both stages is the choice.

The features are the library's (``forecasting.features.catalogue.feature_arrays``: the arrays
``build_features`` writes to Feast's offline table, read back here at each row's origin instead
of through Feast's point-in-time join, which returns the same row), the rows, split, sample,
model columns and fits the library's (``forecasting.features.dataset``,
``forecasting.modeling.booster``), the baselines the library's
(``forecasting.modeling.baselines``). Results go to ``data/choose_defaults/results.jsonl``, one
line per candidate, set and cutoff; a rerun skips what is there.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from forecasting.core.config import Config
from forecasting.core.config.deployment import parse_config
from forecasting.data.extract import read_window
from forecasting.data.panel import build_panel
from forecasting.features import dataset
from forecasting.features.catalogue import feature_arrays, feature_frame, feature_names, stored
from forecasting.modeling import booster
from forecasting.modeling.baselines import naive_forecasts, statistical_forecasts
from forecasting.modeling.forecaster import MODEL, combination_name, combinations
from forecasting.modeling.scoring import combine, metrics
from forecasting.modeling.train import check_trainable

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("choose_defaults")
OUT = REPO / "data" / "choose_defaults"
STATISTICAL = ("auto_ets", "theta")


@dataclass(frozen=True)
class DataSet:
    name: str
    config: str  # config/<name>.yaml: its data settings
    role: str  # "select", "check" or "sanity"
    final: str | None  # the final month (None: the demo's, the last month in its table)
    seed: list[str]  # the command that seeds it (run when its source.db is missing)
    series: int | None = None  # a seeded sample of this many series (None: all), to bound the cost


def _seed_demo() -> list[str]:
    return [
        "-m",
        "forecasting.datasets.synthetic",
        "--stores",
        "10",
        "--items",
        "50",
        "--months",
        "60",
        "--seed",
        "7",
    ]


SETS = {
    s.name: s
    for s in (
        DataSet(
            "dominicks",
            "config/dominicks.yaml",
            "select",
            "1992-09",
            ["-m", "forecasting.datasets.dominicks"],
        ),
        DataSet(
            "tourism", "config/tourism.yaml", "select", "2007-12", ["-m", "forecasting.datasets.tourism"]
        ),
        DataSet("m3", "config/m3.yaml", "select", "2007-12", ["-m", "forecasting.datasets.mcomp", "m3"], 300),
        DataSet("m1", "config/m1.yaml", "check", "2007-12", ["-m", "forecasting.datasets.mcomp", "m1"], 300),
        DataSet("demo", "config/demo.yaml", "sanity", None, _seed_demo()),
    )
}

# What a config may set that is modelling, not data: every candidate states all of it, so the
# shipped configs' values (stripped of these) never leak into a candidate.
LAGS = {
    "default": [1, 2, 3, 6, 12],
    "1-13": list(range(1, 14)),
    "1-13,24": [*range(1, 14), 24],
}
BASE = {
    "features": {"lags": LAGS["default"], "rolling_windows": [3, 6, 12], "derived": []},
    "model": {
        "scale_by_recent_mean": False,
        "num_boost_round": 2000,
        "early_stopping_rounds": 50,
        "validation_months": 3,
        "training_origins": None,
        "params": {},
    },
}


def candidate(lags: str, derived: bool, scale: bool, **extra: Any) -> tuple[str, dict]:
    over = copy.deepcopy(BASE)
    over["features"]["lags"] = LAGS[lags]
    over["features"]["derived"] = ["seasonal", "relative"] if derived else []
    over["model"]["scale_by_recent_mean"] = scale
    name = f"lags={lags} derived={'sr' if derived else '-'} scale={'y' if scale else 'n'}"
    for key, value in extra.items():
        section, _, field = key.partition(".")
        if section == "params":
            over["model"]["params"][field] = value
        else:
            over[section][field] = value
        name += f" {field}={value}"
    return name, over


def stage1() -> dict[str, dict]:
    """The structure: today's defaults, scaling alone, the long lags, the derived groups (a
    full 3 x 2 x 2 factorial was more than the shared machine allowed: these six are its
    corners and the steps between the demo's defaults and tourism's settings)."""
    return dict(
        candidate(lags, derived, scale)
        for lags, derived, scale in (  # the two ends first: they are what a short run compares
            ("default", False, False),
            ("1-13,24", True, True),
            ("default", False, True),
            ("1-13,24", False, True),
            ("1-13,24", True, False),
            ("1-13", True, True),
        )
    )


# Stage 2's variations, each applied to the best structure of stage 1.
VARIATIONS: list[dict[str, Any]] = [
    {"params.max_depth": 4},
    {"params.min_child_weight": 20},
    {"params.learning_rate": 0.1},
    {"params.tweedie_variance_power": 1.5},
    {"features.rolling_windows": [3, 6, 12, 24]},
]
# How many of the best candidates on the first cutoff are scored on the second too.
CONFIRM = 3


def load(spec: DataSet, overrides: dict | None = None) -> Config:
    path = REPO / spec.config
    raw = yaml.safe_load(path.read_text())
    for section, values in (overrides or {}).items():
        raw[section] = {**raw.get(section, {}), **copy.deepcopy(values)}
        if section == "model":
            raw["model"]["params"] = {**raw["model"].get("params", {}), **values.get("params", {})}
    return parse_config(raw, path, unexpanded=raw)


def ensure_seeded(spec: DataSet) -> None:
    import subprocess

    config = load(spec)
    url = config.source.database.url
    if url is None or not url.startswith("sqlite:///"):
        raise SystemExit(f"{spec.name}: expected a SQLite source, got {url!r}")
    db = Path(url.removeprefix("sqlite:///"))
    if not db.is_file():
        extra = [] if spec.name == "demo" else ["--url", url]
        log.info("Seeding %s into %s", spec.name, db)
        subprocess.run([sys.executable, *spec.seed, *extra], check=True, cwd=REPO)


def final_month(spec: DataSet) -> pd.Period:
    if spec.final is not None:
        return pd.Period(spec.final, "M")
    import sqlalchemy as sa

    src = load(spec).source
    engine = sa.create_engine(str(src.database.url))
    with engine.connect() as conn:
        last = conn.execute(sa.text(f"SELECT max({src.time_column}) FROM {src.table}")).scalar_one()
    engine.dispose()
    return pd.Period(str(last)[:7], "M")


def cutoffs(spec: DataSet) -> list[pd.Period]:
    """The rolling origins a set is scored at: before its final holdout (see the docstring)."""
    config, last = load(spec), final_month(spec)
    holdout = config.evaluation.holdout_months
    first = last - holdout
    # Dominick's 27 months leave room for one run before its 6-month final holdout.
    return [first] if spec.name == "dominicks" else [first, first - holdout]


@dataclass
class Scored:
    entity: np.ndarray
    origin: np.ndarray
    horizon: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    trees: int
    seconds: float


_SNAPSHOTS: dict[tuple[str, str], pd.DataFrame] = {}


def snapshot(spec: DataSet, month: pd.Period) -> pd.DataFrame:
    """The rows a run of ``month`` reads (the data settings' window, nothing after ``month``)."""
    key = (spec.name, str(month))
    if key not in _SNAPSHOTS:
        config = load(spec)
        frame = read_window(config, month)
        if spec.series is not None:  # the same series at every cutoff: drawn from the sorted names
            keys = frame[config.source.entity_columns[0]]
            names = np.sort(keys.unique())
            chosen = np.random.default_rng(0).choice(names, size=min(spec.series, len(names)), replace=False)
            frame = frame[keys.isin(chosen)].reset_index(drop=True)
        _SNAPSHOTS[key] = frame
    return _SNAPSHOTS[key]


def fit_and_forecast(config: Config, snap: pd.DataFrame, month: pd.Period) -> Scored:
    """The holdout model of a run of ``month`` (as ``forecasting.modeling.train`` fits it) and its
    forecasts of the holdout rows."""
    started = time.perf_counter()
    panel = build_panel(snap, config)
    rows = dataset.labelled(panel, config, month)
    split = dataset.split(rows, config, month)
    check_trainable(rows, split, config, month)
    fit_rows = rows.take(dataset.sample(rows, config))
    holdout_rows = rows.take(split.holdout)

    arrays = feature_arrays(panel, config)
    cells = np.full(arrays.valid.shape, -1, dtype=np.int64)
    r, c = np.nonzero(arrays.valid)
    cells[r, c] = np.arange(len(r))
    table = dataset.text_as_categories(stored(feature_frame(arrays, config), config)[feature_names(config)])
    wanted = dataset.model_features(config)

    def frame_of(which: dataset.Rows) -> pd.DataFrame:
        at = cells[which.entity, which.origin - panel.first_month]
        if (at < 0).any():
            raise RuntimeError(f"{int((at < 0).sum())} rows have no feature row")
        return dataset.with_model_columns(table.take(at), which.horizon, wanted, which.target, config)

    fit_frame = frame_of(fit_rows)
    categories = dataset.categories_of(fit_frame, config)
    X = dataset.design_matrix(fit_frame, config, categories)
    fit_split = dataset.split(fit_rows, config, month)
    model = booster.fit(
        X[fit_split.train],
        fit_rows.label[fit_split.train],
        config,
        validation=(X[fit_split.validation], fit_rows.label[fit_split.validation]),
    )
    rounds = model.best_iteration + 1 if fit_split.validation.any() else model.num_boosted_rounds()
    model = model[:rounds]
    holdout_X = dataset.design_matrix(frame_of(holdout_rows), config, categories)
    return Scored(
        holdout_rows.entity,
        holdout_rows.origin,
        holdout_rows.horizon,
        holdout_rows.label,
        booster.predict(model, holdout_X),
        rounds,
        time.perf_counter() - started,
    )


_BASELINES: dict[tuple[str, str], dict[tuple[int, int], dict[str, np.ndarray]]] = {}


def baselines(spec: DataSet, month: pd.Period, scored: Scored) -> dict[str, np.ndarray]:
    """AutoETS's, Theta's and the naive baselines' forecasts of the scored rows, each
    (entity, origin) fitted once per set and cutoff (cached on disk: the costly part)."""
    key = (spec.name, str(month))
    cache_file = OUT / "baselines" / f"{spec.name}-{month}.npz"
    if key not in _BASELINES:
        _BASELINES[key] = {}
        if cache_file.is_file():
            stored_ = np.load(cache_file)
            for i, (e, o) in enumerate(zip(stored_["entity"], stored_["origin"], strict=True)):
                _BASELINES[key][(int(e), int(o))] = {
                    n: stored_[n][i] for n in stored_.files if n not in ("entity", "origin")
                }
    known = _BASELINES[key]
    config = load(spec)
    panel = build_panel(snapshot(spec, month), config, sales_only=True)
    pairs = sorted({(int(e), int(o)) for e, o in zip(scored.entity, scored.origin, strict=True)} - set(known))
    if pairs:
        steps = config.horizon
        entity = np.repeat([p[0] for p in pairs], steps)
        origin = np.repeat([p[1] for p in pairs], steps)
        horizon = np.tile(np.arange(1, steps + 1), len(pairs))
        got = {**naive_forecasts(panel, entity, origin, horizon)}
        got.update(statistical_forecasts(panel, entity, origin, horizon, STATISTICAL, jobs=1))
        for i, p in enumerate(pairs):
            known[p] = {n: np.asarray(v[i * steps : (i + 1) * steps]) for n, v in got.items()}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        items = sorted(known.items())
        names = list(items[0][1])
        np.savez(
            cache_file,
            entity=np.array([p[0] for p, _ in items]),
            origin=np.array([p[1] for p, _ in items]),
            **{n: np.vstack([v[n] for _, v in items]) for n in names},
        )
    names = list(next(iter(known.values())))
    return {
        n: np.array(
            [
                known[(int(e), int(o))][n][int(h) - 1]
                for e, o, h in zip(scored.entity, scored.origin, scored.horizon, strict=True)
            ]
        )
        for n in names
    }


def combined(model: np.ndarray, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The combinations the gate may publish (``forecasting.modeling.forecaster.combinations``:
    equal-weight means of the model, AutoETS and Theta, two or three at a time), named as in
    evaluation.json; ``blend_auto_ets`` is the model with AutoETS, as earlier results name it."""
    members = {MODEL: model, **{n: base[n] for n in STATISTICAL}}
    out = {}
    for combo in combinations(STATISTICAL):
        name = combination_name(combo)
        out[name] = combine([members[m] for m in combo])
    out["blend_auto_ets"] = out[combination_name((MODEL, "auto_ets"))]
    return out


def score(spec: DataSet, month: pd.Period, name: str, overrides: dict) -> dict:
    config = load(spec, overrides)
    scored = fit_and_forecast(config, snapshot(spec, month), month)
    base = baselines(spec, month, scored)
    forecasts = {"model": scored.forecast, **base, **combined(scored.forecast, base)}
    wape = {n: metrics(scored.actual, f)["wape"] for n, f in forecasts.items()}
    by_horizon = {
        str(h): {
            n: metrics(scored.actual[scored.horizon == h], f[scored.horizon == h])["wape"]
            for n, f in forecasts.items()
        }
        for h in sorted(np.unique(scored.horizon).tolist())
    }
    return {
        "candidate": name,
        "set": spec.name,
        "month": str(month),
        "final": month == final_month(spec),
        "overrides": overrides,
        "rows": len(scored.actual),
        "trees": scored.trees,
        "seconds": round(scored.seconds, 1),
        "wape": wape,
        "by_horizon": by_horizon,
        "log_ratio_auto_ets": math.log(wape["model"] / wape["auto_ets"]),
    }


def results() -> list[dict]:
    path = OUT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run(candidates: dict[str, dict], sets: list[str], final: bool = False, first_only: bool = False) -> None:
    done = {(r["candidate"], r["set"], r["month"]) for r in results()}
    OUT.mkdir(parents=True, exist_ok=True)
    for set_name in sets:
        spec = SETS[set_name]
        ensure_seeded(spec)
        months = [final_month(spec)] if final else cutoffs(spec)[: 1 if first_only else None]
        for name, overrides in candidates.items():
            for month in months:
                if (name, set_name, str(month)) in done:
                    continue
                result = score(spec, month, name, overrides)
                with (OUT / "results.jsonl").open("a") as out:
                    out.write(json.dumps(result) + "\n")
                log.info(
                    "%-9s %s %-60s model %.4f auto_ets %.4f theta %.4f  log ratio %+.3f  (%d trees, %.0f s)",
                    set_name,
                    month,
                    name,
                    result["wape"]["model"],
                    result["wape"]["auto_ets"],
                    result["wape"]["theta"],
                    result["log_ratio_auto_ets"],
                    result["trees"],
                    result["seconds"],
                )


def ranking(
    candidates: dict[str, dict], sets: list[str], every_cutoff: bool = False
) -> list[tuple[float, str, dict[str, float]]]:
    """Each candidate's criterion (mean over sets of its mean log ratio over the set's cutoffs:
    the first cutoff only, or ``every_cutoff``), best first; only candidates scored at all of
    them on every set."""
    wanted = {s: [str(m) for m in cutoffs(SETS[s])][: None if every_cutoff else 1] for s in sets}
    by: dict[str, dict[str, list[float]]] = {}
    for r in results():
        if r["candidate"] in candidates and r["set"] in sets and r["month"] in wanted[r["set"]]:
            by.setdefault(r["candidate"], {}).setdefault(r["set"], []).append(r["log_ratio_auto_ets"])
    out = []
    for name, per_set in by.items():
        if all(len(per_set.get(s, [])) == len(wanted[s]) for s in sets):
            means = {s: float(np.mean(v)) for s, v in per_set.items()}
            out.append((float(np.mean(list(means.values()))), name, means))
    return sorted(out)


def all_candidates() -> dict[str, dict]:
    found = stage1()
    ranked = ranking(found, selection_sets())
    for _, best, _ in ranked[:1]:
        for variation in VARIATIONS:
            base = found[best]
            lags = next(k for k, v in LAGS.items() if v == base["features"]["lags"])
            name, over = candidate(
                lags, bool(base["features"]["derived"]), base["model"]["scale_by_recent_mean"], **variation
            )
            found[name] = over
    return found


def chosen_defaults(found: dict[str, dict], select: list[str]) -> str:
    """The choice: the best on every cutoff of the candidates confirmed on all of them."""
    return ranking(found, select, every_cutoff=True)[0][1]


def per_set_best(found: dict[str, dict], select: list[str]) -> dict[str, str]:
    """Each selection set's own best candidate on its first cutoff (what tuning per set would pick)."""
    ranked = ranking(found, select)
    return {s: min(ranked, key=lambda r: r[2][s])[1] for s in select}


def selection_sets() -> list[str]:
    return [s.name for s in SETS.values() if s.role == "select"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print the tables from the results only")
    parser.add_argument("--stage", choices=["1", "2", "final", "all"], default="all")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), help="stages 1 and 2 on these sets only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("forecasting").setLevel(logging.WARNING)
    select = selection_sets()
    if not args.report:
        only = args.sets or select
        if args.stage in ("1", "all"):
            run(stage1(), only, first_only=True)
        if args.stage in ("2", "all"):
            run(all_candidates(), only, first_only=True)
        if args.stage in ("final", "all"):
            found = all_candidates()
            confirmed = {name: found[name] for _, name, _ in ranking(found, select)[:CONFIRM]}
            run(confirmed, select)  # their second cutoff: does the ranking hold?
            chosen = chosen_defaults(found, select)
            run({chosen: found[chosen]}, [s.name for s in SETS.values() if s.role != "select"])
            run({chosen: found[chosen]}, list(SETS), final=True)
            for s, best in per_set_best(found, select).items():
                run({best: found[best]}, [s], final=True)
    report(select)
    return 0


def report(select: list[str]) -> None:
    found = all_candidates()
    for title, every in (("the first cutoff", False), ("every cutoff", True)):
        ranked = ranking(found, select, every_cutoff=every)
        print(f"\n## Candidates, {title} before the final holdouts (mean log WAPE ratio to AutoETS)\n")
        print("| rank | candidate | criterion | " + " | ".join(select) + " |")
        print("|---:|---|---:|" + "---:|" * len(select))
        for i, (crit, name, means) in enumerate(ranked, 1):
            print(f"| {i} | {name} | {crit:+.3f} | " + " | ".join(f"{means[s]:+.3f}" for s in select) + " |")
    if not ranking(found, select, every_cutoff=True):
        return
    chosen = chosen_defaults(found, select)
    print(f"\nChosen: {chosen}\n")
    print("## Every scored run of the chosen defaults (WAPE, horizons together)\n")
    print("| set | month | final | rows | trees | model | AutoETS | Theta | seasonal naive | model+AutoETS |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results():
        if r["candidate"] == chosen:
            w = r["wape"]
            print(
                f"| {r['set']} | {r['month']} | {'yes' if r['final'] else ''} | {r['rows']} | {r['trees']} | "
                f"{w['model']:.4f} | {w['auto_ets']:.4f} | {w['theta']:.4f} | {w['seasonal_naive']:.4f} | "
                f"{w['blend_auto_ets']:.4f} |"
            )
    print(
        "\n## Final holdout by horizon, chosen defaults: model, AutoETS, Theta, seasonal naive, model+AutoETS\n"
    )
    for r in results():
        if r["candidate"] == chosen and r["final"]:
            for h, w in r["by_horizon"].items():
                names = ("model", "auto_ets", "theta", "seasonal_naive", "blend_auto_ets")
                print(f"| {r['set']} | {h} | " + " | ".join(f"{w[n]:.4f}" for n in names) + " |")
    print("\n## Each selection set's own best (on its first cutoff), on its final holdout: model, AutoETS\n")
    for s, best in per_set_best(found, select).items():
        for r in results():
            if r["candidate"] == best and r["set"] == s and r["final"]:
                print(f"| {s} | {best} | {r['wape']['model']:.4f} | {r['wape']['auto_ets']:.4f} |")


if __name__ == "__main__":
    raise SystemExit(main())
