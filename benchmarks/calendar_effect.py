"""The calendar features with and without, on every real data set (issue 24, docs/quality.md).

    nice -n 10 .venv/bin/python benchmarks/calendar_effect.py            # resumable
    .venv/bin/python benchmarks/calendar_effect.py --report               # the table

Each set is read with its shipped config and the library's modelling defaults (as
``benchmarks/choose_defaults.py`` does, whose runs these are): the holdout model of a run of
each cutoff before the final holdout (the backtest: where a default is chosen) and of the final
month (the final holdout: reported, not chosen on), fitted without the ``calendar:`` section and
with it (the set's country), scored by WAPE on the same holdout rows; and, as the yardstick of
noise, without it but with another ``model.seed`` (``--noise``: the change a different sample of
rows and columns alone makes). Results go to ``data/calendar_effect/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from choose_defaults import REPO, SETS, cutoffs, ensure_seeded, final_month, fit_and_forecast, load, snapshot

from forecasting.modeling.scoring import metrics

OUT = REPO / "data" / "calendar_effect"
log = logging.getLogger("calendar_effect")
# The country whose calendar each set gets. Tourism's and M3's dates are made up (every series
# aligned to end in December 2007): their calendar is a check that an unrelated calendar costs
# nothing, not a test of a real holiday effect.
COUNTRY = {"dominicks": "US", "tourism": "AU", "m3": "US"}


def results() -> list[dict]:
    path = OUT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


NOISE = "seed"  # the variant "without, another model.seed"


def run(sets: list[str], noise: bool = False) -> None:
    done = {(r["set"], r["month"], r["calendar"]) for r in results()}
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sets:
        spec = SETS[name]
        ensure_seeded(spec)
        months = [*cutoffs(spec), final_month(spec)]
        for month in months:
            for with_calendar in (NOISE,) if noise else (False, True):
                if (name, str(month), with_calendar) in done:
                    continue
                overrides: dict = {"calendar": {"country": COUNTRY[name]}} if with_calendar is True else {}
                if with_calendar == NOISE:
                    overrides = {"model": {"seed": load(spec).model.seed + 1}}
                config = load(spec, overrides)
                scored = fit_and_forecast(config, snapshot(spec, month), month)
                result = {
                    "set": name,
                    "month": str(month),
                    "final": month == final_month(spec),
                    "calendar": with_calendar,
                    "country": COUNTRY[name] if with_calendar is True else None,
                    "rows": len(scored.actual),
                    "trees": scored.trees,
                    "seconds": round(scored.seconds, 1),
                    "wape": metrics(scored.actual, scored.forecast)["wape"],
                    "by_horizon": {
                        str(h): metrics(
                            scored.actual[scored.horizon == h], scored.forecast[scored.horizon == h]
                        )["wape"]
                        for h in sorted(np.unique(scored.horizon).tolist())
                    },
                }
                with (OUT / "results.jsonl").open("a") as out:
                    out.write(json.dumps(result) + "\n")
                log.info("%s", result)


def report() -> None:
    rows = results()
    print(
        "| set | run month | scored on | rows | WAPE without | WAPE with | change | another seed, without |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    by = {(r["set"], r["month"], r["calendar"]): r for r in rows}
    for (name, month, with_calendar), r in sorted(by.items(), key=str):
        if with_calendar is not False or (name, month, True) not in by:
            continue
        w = by[(name, month, True)]
        change = w["wape"] / r["wape"] - 1
        where = "final holdout" if r["final"] else "backtest cutoff"
        other = by.get((name, month, NOISE))
        seed = f"{100 * (other['wape'] / r['wape'] - 1):+.1f}%" if other else ""
        print(
            f"| {name} ({w['country']}) | {month} | {where} | {r['rows']:,} | {r['wape']:.4f} | "
            f"{w['wape']:.4f} | {100 * change:+.1f}% | {seed} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="*", default=list(COUNTRY))
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--noise", action="store_true", help="the without runs again with another model.seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report:
        report()
    else:
        run(args.sets, args.noise)


if __name__ == "__main__":
    main()
