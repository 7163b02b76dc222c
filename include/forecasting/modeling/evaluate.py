"""Evaluate: score the holdout model on the last K months against naive and statistical baselines.

Every forecaster is scored on exactly the same rows (entity, origin, horizon), and each
baseline uses only what was known at the origin, as the model does. The statistical baselines
(AutoETS and Theta, ``forecasting.modeling.baselines``) are scored on every holdout row too, unless the
holdout holds more than ``evaluation.statistical_max_series`` entities: then evaluation.json's
``model``/``baselines``/``by_horizon`` are the naive baselines on every row, and its ``sample``
section has the model and every baseline, statistical ones included, on the rows of a seeded
sample of that many entities. Its ``blend`` is the mean of the model's and the best baseline's
forecasts (of those scored on every row), a forecaster the gate may publish.

The combinations (``forecasting.modeling.forecaster.combinations``: the equal-weight means of the
model, AutoETS and Theta, two or three at a time) are scored on the rows the statistical
forecasters were scored on, into evaluation.json's ``combinations`` (and the backtest's, with the
refit models as the model member): the gate chooses among them on the backtest.

Every forecaster's p10/p90 bands (``intervals``) are calibrated on its errors as production makes
its forecasts: where the backtest ran, with the refit models (a model refit each month, as the
production model is) as the model and as every combination's model member, pooled with the
published forecasts' realised errors of the last months when monitoring has them (``realised``:
forecasting.modeling.intervals); their coverage is measured on holdout months the bands were not
calibrated on (``forecasting.modeling.intervals.coverage``).

New items (entities younger than the feature lookback): evaluation.json's ``ages`` scores every
forecaster per age bucket (``forecasting.modeling.age_scores``), its ``cold_start`` says per
forecaster in which buckets its mean with the siblings' forecast beat it beyond noise
(``forecasting.modeling.cold_start``); the forecasts as production makes them, and so the bands,
include that mean there, and a young entity's bands are their own (the interval group ``new``).

The rolling-origin backtest (``forecasting.modeling.backtest``: a model refit per origin of the
holdout's last ``evaluation.backtest_origins``, forecasting that origin's rows) is scored on its
rows the same way, per origin, per horizon and overall, into evaluation.json's ``backtest``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config
from forecasting.core.months import label_index
from forecasting.data.panel import Panel, build_panel
from forecasting.features import dataset
from forecasting.features.age import bucket_names, history_months, interval_groups
from forecasting.features.dataset import HORIZON, LABEL, ORIGIN, TARGET_MONTH
from forecasting.features.demand import demand_classes
from forecasting.modeling import backtest, cold_start, intervals
from forecasting.modeling import booster as model
from forecasting.modeling.age_scores import format_ages, holdout_buckets, score_ages
from forecasting.modeling.baselines import NAIVE_BASELINES, naive_forecasts, statistical_forecasts
from forecasting.modeling.baselines.statistical import sample_entities
from forecasting.modeling.demand_scores import format_classes, score_demand_classes
from forecasting.modeling.forecaster import MODEL, combination_name, combinations
from forecasting.modeling.scoring import combine, lowest_wape, metrics

log = logging.getLogger(__name__)


def baseline_forecasts(rows: pd.DataFrame, snapshot: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The naive baselines of evaluation rows given by entity keys (strings), origin ("YYYY-MM")
    and horizon."""
    panel = build_panel(snapshot, config, sales_only=True)
    keys = config.source.entity_columns
    index = panel.keys.reset_index().rename(columns={"index": "_entity"})
    entity = rows[keys].astype(str).merge(index, on=keys, how="left")["_entity"].to_numpy()
    known = ~pd.isna(entity)
    origin = label_index(rows[ORIGIN])
    horizon = rows[HORIZON].to_numpy()
    values = {name: np.full(len(rows), np.nan) for name in NAIVE_BASELINES}
    got = naive_forecasts(panel, entity[known].astype(np.int64), origin[known], horizon[known])
    for name in NAIVE_BASELINES:
        values[name][known] = got[name]
    return pd.DataFrame(values, index=rows.index)


@dataclass
class EvaluationReport:
    path: Path
    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    by_horizon: dict[str, dict[str, dict[str, float]]]
    # The model and every baseline on a sample of entities (when the statistical ones were sampled).
    sample: dict | None = None
    # The rolling-origin backtest (evaluation.json's ``backtest``; None: none was run).
    backtest: dict | None = None
    # The model blended with the best baseline (evaluation.json's ``blend``: that baseline's name,
    # its metrics overall and per horizon).
    blend: dict | None = None
    # The combinations on the statistical forecasters' rows (evaluation.json's ``combinations``).
    combinations: dict | None = None
    # Per demand class (evaluation.json's ``demand_classes``, forecasting.modeling.demand_scores).
    demand_classes: dict | None = None
    # Per age bucket (evaluation.json's ``ages``, forecasting.modeling.age_scores).
    ages: dict | None = None
    # New items: the siblings' forecast and where it is used (forecasting.modeling.cold_start).
    cold_start: dict | None = None

    @property
    def best_baseline(self) -> str:
        return min(self.baselines, key=lambda name: self.baselines[name]["wape"])

    @property
    def beats_baselines(self) -> bool:
        return self.model["wape"] < self.baselines[self.best_baseline]["wape"]


@dataclass
class HoldoutForecasts:
    """Every forecaster's forecast of each holdout row, with the rows' identity."""

    holdout: pd.DataFrame
    metadata: dict
    entity: np.ndarray
    origin: np.ndarray
    horizon: np.ndarray
    actual: np.ndarray
    # "model" (the holdout model), every naive baseline, every statistical one and every
    # combination of the model and them (NaN off the sample).
    forecasts: dict[str, np.ndarray]
    statistical: list[str]  # evaluation.statistical_baselines
    sampled: np.ndarray | None  # the rows the statistical ones were scored on (None: every row)
    # Each forecast's members (evaluation's names; a model or a baseline is its own only member).
    members: dict[str, tuple[str, ...]]
    panel: Panel | None = None  # the snapshot's (sales only)
    demand_class: np.ndarray | None = None  # each row's entity's demand class as of its origin
    # New items (forecasting.modeling.cold_start): each row's age bucket and siblings' forecast,
    # and per forecaster the buckets whose forecasts production averages with the siblings'.
    age_bucket: np.ndarray | None = None
    sibling: np.ndarray | None = None
    # Each row's group for the p10/p90 bands: ``new`` for a young entity, else its demand class.
    interval_group: np.ndarray | None = None
    cold_start: dict[str, list[str]] = field(default_factory=dict)

    @property
    def combinations(self) -> tuple[str, ...]:
        return tuple(combination_name(c) for c in combinations(self.statistical))

    def add_combination(self, name: str, members: tuple[str, ...]) -> None:
        self.members[name] = members
        self.forecasts[name] = combine([self.forecasts[m] for m in members])

    def production_forms(self) -> tuple[dict[str, np.ndarray], str]:
        """Each forecast as production makes it (``plain_forms``), its young rows averaged with
        the siblings' forecast in the buckets ``cold_start`` names for it."""
        forms, calibrated_on = self.plain_forms()
        if not self.cold_start or self.sibling is None or self.age_bucket is None:
            return forms, calibrated_on
        return {
            name: cold_start.with_siblings(f, self.sibling, self.age_bucket, self.cold_start.get(name, []))
            for name, f in forms.items()
        }, calibrated_on

    def plain_forms(self) -> tuple[dict[str, np.ndarray], str]:
        """Each forecaster's forecasts as production makes them, and where that came from: with the backtest's
        refit models as the model member where the backtest forecast the row, the holdout
        model's elsewhere (the holdout's earlier origins, where it is barely staler than a model
        refit there, and the longer horizons the backtest's origins do not reach: without them
        a long horizon's bands would rest on the last target month alone), or the holdout
        model's everywhere when there was no backtest."""
        if backtest.BACKTEST not in self.holdout:
            return self.forecasts, "holdout"
        refit = self.holdout[backtest.BACKTEST].to_numpy(dtype=float)
        if not np.isfinite(refit).any():
            return self.forecasts, "holdout"
        model = np.where(np.isfinite(refit), refit, self.forecasts[MODEL])
        got = {m[0]: self.forecasts[m[0]] for m in self.members.values() if len(m) == 1} | {MODEL: model}
        return {
            name: combine([got[m] for m in members]) for name, members in self.members.items()
        }, "backtest"

    def score(self, rows: np.ndarray, which: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """The model's and each of ``which``'s metrics on ``rows``."""
        return {name: metrics(self.actual[rows], self.forecasts[name][rows]) for name in ("model", *which)}

    def by_horizon(self, rows: np.ndarray, which: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
        return {
            str(h): self.score(rows & (self.horizon == h), which)
            for h in sorted(np.unique(self.horizon[rows]))
        }


def forecast_holdout(snapshot: pd.DataFrame, config: Config, model_dir: Path) -> HoldoutForecasts:
    """The holdout model's and every baseline's forecasts of the holdout rows."""
    booster, metadata = model.load(model_dir, holdout=True)
    holdout = dataset.read_rows(paths.holdout_rows(model_dir))
    panel = build_panel(snapshot, config, sales_only=True)
    entity = holdout[dataset.ENTITY].to_numpy()
    if len(panel.keys) <= entity.max(initial=-1) or not (
        panel.keys.iloc[entity].reset_index(drop=True) == holdout[config.source.entity_columns]
    ).all(axis=None):
        raise RuntimeError(f"{model_dir}/holdout.parquet was not made from this snapshot")
    origin = label_index(holdout[ORIGIN])
    horizon = holdout[HORIZON].to_numpy()
    forecasts = naive_forecasts(panel, entity, origin, horizon)
    forecasts["model"] = model.predict(
        booster, dataset.design_matrix(holdout, config, metadata["categories"])
    )
    names = config.evaluation.statistical_baselines
    sampled = sample_entities(entity, config)
    scored = np.ones(len(holdout), bool) if sampled is None else sampled
    jobs, search = config.evaluation.statistical_jobs, config.evaluation.auto_ets_search_max_series
    got = statistical_forecasts(panel, entity[scored], origin[scored], horizon[scored], names, jobs, search)
    for name in names:
        forecasts[name] = np.full(len(holdout), np.nan)
        forecasts[name][scored] = got[name]
    actual = holdout[LABEL].to_numpy()
    members: dict[str, tuple[str, ...]] = {name: (name,) for name in forecasts}
    made = HoldoutForecasts(
        holdout,
        metadata,
        entity,
        origin,
        horizon,
        actual,
        forecasts,
        names,
        sampled,
        members,
        panel,
        demand_classes(panel, entity, origin),
    )
    for combination in combinations(names):
        made.add_combination(combination_name(combination), combination)
    return made


def score_sample(scored: HoldoutForecasts, config: Config) -> dict | None:
    """evaluation.json's ``sample``: the model and every baseline on the sampled entities' rows
    (None: the statistical baselines were scored on every row)."""
    sampled = scored.sampled
    if sampled is None:
        return None
    everyone = (*NAIVE_BASELINES, *scored.statistical)
    on_sample = scored.score(sampled, everyone)
    model_on_sample = on_sample.pop("model")
    best = min(on_sample, key=lambda name: on_sample[name]["wape"])
    return {
        "entities": int(len(np.unique(scored.entity[sampled]))),
        "of_entities": int(len(np.unique(scored.entity))),
        "seed": config.model.seed,
        "model": model_on_sample,
        "baselines": on_sample,
        "best_baseline": best,
        "beats_best_baseline": model_on_sample["wape"] < on_sample[best]["wape"],
        "by_horizon": scored.by_horizon(sampled, everyone),
    }


def score_combinations(scored: HoldoutForecasts) -> dict | None:
    """evaluation.json's ``combinations``: each combination on the rows its statistical members
    were scored on (every row, or the sample's), overall and per horizon, beside the model there
    (None: no statistical forecasters, so no combination)."""
    names = scored.combinations
    if not names:
        return None
    rows = np.ones(len(scored.holdout), bool) if scored.sampled is None else scored.sampled
    overall = scored.score(rows, names)
    return {
        "scored_on": "holdout" if scored.sampled is None else "sample",
        "rows": int(rows.sum()),
        "model": overall.pop("model"),
        "forecasters": overall,
        "by_horizon": scored.by_horizon(rows, names),
    }


def score_backtest(scored: HoldoutForecasts, on_all: tuple[str, ...], partner: str) -> dict | None:
    """The backtest's refit models against the same forecasts of the same rows (None: a model
    trained by an older release has no backtest column)."""
    holdout = scored.holdout
    if backtest.BACKTEST not in holdout:
        return None
    return backtest.score(
        scored.actual,
        holdout[backtest.BACKTEST].to_numpy(dtype=float),
        scored.forecasts,
        scored.origin,
        scored.horizon,
        on_all,
        (*NAIVE_BASELINES, *scored.statistical),
        scored.sampled,
        (scored.metadata.get("backtest") or {}).get("fits", []),
        blend_baseline=partner,
        combinations={name: scored.members[name] for name in scored.combinations},
    )


def evaluate(
    snapshot: pd.DataFrame,
    config: Config,
    month: pd.Period,
    model_dir: Path,
    realised: pd.DataFrame | None = None,
) -> EvaluationReport:
    """Score the holdout model and the baselines; write evaluation.json beside the model, the
    bands pooled with the ``realised`` errors (forecasting.monitoring.coverage.realised_errors)."""
    scored = forecast_holdout(snapshot, config, model_dir)
    on_all = (*NAIVE_BASELINES, *scored.statistical) if scored.sampled is None else NAIVE_BASELINES
    every_row = np.ones(len(scored.holdout), bool)
    overall = scored.score(every_row, on_all)
    by_horizon = scored.by_horizon(every_row, on_all)
    # The model blended with the best baseline scored on every row: what the gate publishes when
    # neither model beats that baseline but their mean does.
    partner = lowest_wape({name: overall[name] for name in on_all})
    scored.add_combination("blend", (MODEL, partner))
    blend_scores = {
        "baseline": partner,
        "metrics": scored.score(every_row, ("blend",))["blend"],
        "by_horizon": {h: s["blend"] for h, s in scored.by_horizon(every_row, ("blend",)).items()},
    }
    new_items = choose_cold_start(scored, config)
    report = EvaluationReport(
        path=paths.evaluation(model_dir),
        model=overall.pop("model"),
        baselines=overall,
        by_horizon=by_horizon,
        sample=score_sample(scored, config),
        backtest=score_backtest(scored, on_all, partner),
        blend=blend_scores,
        combinations=score_combinations(scored),
        demand_classes=score_demand_classes(scored, on_all, config),
        ages=score_ages(scored, on_all, config),
        cold_start=new_items,
    )
    write_evaluation(report, scored, month, realised)
    path = paths.realised_errors(model_dir)  # the gate calibrates the champion's bands with them too
    path.unlink(missing_ok=True)
    if realised is not None and len(realised):
        paths.write_parquet_atomically(realised, path)
    write_sample_rows(scored, model_dir)
    write_holdout_forecasts(scored, model_dir, config)
    return report


def choose_cold_start(scored: HoldoutForecasts, config: Config) -> dict:
    """evaluation.json's ``cold_start``: the siblings' forecast of the young holdout rows and,
    per forecaster, the age buckets where its mean with it beats it beyond noise (forecasting.modeling.cold_start);
    from then on ``scored.production_forms`` (the bands, the coverage) use it there."""
    assert scored.panel is not None and scored.demand_class is not None
    lookback = config.features.lookback_months
    scored.age_bucket = holdout_buckets(scored, config)
    months = history_months(scored.panel, scored.entity, scored.origin)
    scored.interval_group = interval_groups(scored.demand_class, months, lookback)
    scored.sibling = cold_start.sibling_forecasts(
        scored.panel, scored.entity, scored.origin, scored.horizon, lookback
    )
    forms, _ = scored.plain_forms()
    young = bucket_names(lookback)[:-1]
    noise = (config.gate.bootstrap_resamples, config.gate.bootstrap_confidence, config.model.seed)
    section = cold_start.choose(
        forms, scored.actual, scored.entity, scored.age_bucket, scored.sibling, young, noise
    )
    scored.cold_start = section["used"]
    return section


def write_holdout_forecasts(scored: HoldoutForecasts, model_dir: Path, config: Config) -> None:
    """holdout_forecasts.parquet, for a config with a hierarchy (forecasting.modeling.hierarchy
    reconciles with the published forecaster's errors there): each row's identity and actual and
    the forecasts of the model (as production makes them) and of every baseline (NaN off the
    sample for the statistical ones). No hierarchy: no file."""
    path = paths.holdout_forecasts(model_dir)
    if config.hierarchy is None:
        path.unlink(missing_ok=True)
        return
    forecasts, _ = scored.production_forms()
    single = [name for name, members in scored.members.items() if len(members) == 1]
    frame = pd.DataFrame(
        {
            "entity": scored.entity,
            "origin": scored.origin,
            "horizon": scored.horizon,
            "actual": scored.actual,
            **{name: forecasts[name] for name in single},
        }
    )
    paths.write_parquet_atomically(frame, path)


def write_sample_rows(scored: HoldoutForecasts, model_dir: Path) -> None:
    """sample_rows.parquet: the rows the statistical forecasters were scored on (the sample, or
    every row when there are few entities) with every forecast of them, for the gate's paired
    comparison there (forecasting.registry.sample). No statistical forecasters: no file."""
    path = paths.sample_rows(model_dir)
    if not scored.statistical:
        path.unlink(missing_ok=True)
        return
    rows = np.ones(len(scored.holdout), bool) if scored.sampled is None else scored.sampled
    frame = pd.DataFrame(
        {
            "row": np.flatnonzero(rows),
            "entity": scored.entity[rows],
            "horizon": scored.horizon[rows],
            "target": label_index(scored.holdout[TARGET_MONTH])[rows],
            "actual": scored.actual[rows],
            **{
                name: scored.forecasts[name][rows]
                for name in ("model", *NAIVE_BASELINES, *scored.statistical)
            },
        }
    )
    paths.write_parquet_atomically(frame, path)


def write_evaluation(
    report: EvaluationReport, scored: HoldoutForecasts, month: pd.Period, realised: pd.DataFrame | None = None
) -> None:
    """evaluation.json, with every forecaster's p10/p90 bands from its errors as production makes
    its forecasts (what predict publishes with the gate's choice), pooled with the ``realised``
    errors, and how often they held on months they were not calibrated on; the scores logged."""
    actual, horizon = scored.actual, scored.horizon
    forecasts, calibrated_on = scored.production_forms()
    target = label_index(scored.holdout[TARGET_MONTH])
    # Bands per demand class (as of each row's origin; a young entity's: its own, ``new``),
    # widened for the shift between months, pooled with the realised errors.
    classes = scored.interval_group if scored.interval_group is not None else scored.demand_class
    interval_specs = {
        name: intervals.calibrate(f, actual, horizon, target, classes, realised)
        for name, f in forecasts.items()
    }
    interval_coverage = {
        name: intervals.coverage(f, actual, horizon, target, classes) for name, f in forecasts.items()
    }
    version = scored.metadata["model_version"]
    written: dict[str, Any] = {
        "model_version": version,
        "run_month": str(month),
        "holdout_target_months": sorted(scored.holdout[TARGET_MONTH].unique().tolist()),
        "model": report.model,
        "baselines": report.baselines,
        "best_baseline": report.best_baseline,
        "beats_best_baseline": report.beats_baselines,
        "by_horizon": report.by_horizon,
        "statistical_baselines": {
            "forecasters": scored.statistical,
            "scored_on": "holdout" if report.sample is None else "sample",
        },
        "sample": report.sample,
        "blend": report.blend,
        "combinations": report.combinations,
        "intervals": {
            "levels": [intervals.LOWER, intervals.UPPER],
            # "backtest": the model's errors are the refit models' where the backtest ran (as production's),
            # the holdout model's elsewhere; "holdout": the holdout model's.
            "calibrated_on": calibrated_on,
            "realised": _realised_summary(realised),
            "forecasters": interval_specs,
            "coverage": interval_coverage,
        },
        "backtest": report.backtest,
        "demand_classes": report.demand_classes,
        "ages": report.ages,
        "cold_start": report.cold_start,
    }
    paths.write_json_atomically(written, report.path)
    log.info("Holdout evaluation of %s:\n%s", version, format_table(report))
    if report.backtest is not None:
        log.info(
            "Rolling-origin backtest of %s (WAPE of a model refit at each origin, of the holdout model "
            "and of the best baseline, on the origin's rows):\n%s",
            version,
            backtest.format_table(report.backtest),
        )
    if report.demand_classes is not None:
        log.info("By demand class (as of each row's origin):\n%s", format_classes(report.demand_classes))
    if report.ages is not None:
        log.info(
            "By months of history (as of each row's origin; with siblings: the model's forecasts as production makes them "
            "without > with the siblings' averaged in, * where predict does so):\n%s",
            format_ages(report.ages, report.cold_start),
        )
    held = interval_coverage["model"]
    if held is not None:
        log.info(
            "The model's p10-p90 intervals held %.0f%% of the actuals of holdout months they were not "
            "calibrated on (goal %.0f%%)",
            100 * held["coverage"],
            100 * held["target"],
        )


def _realised_summary(realised: pd.DataFrame | None) -> dict[str, Any]:
    """evaluation.json's record of the realised errors the bands pooled: their months and rows."""
    if realised is None or not len(realised):
        return {"rows": 0, "months": []}
    months = sorted({str(m)[:7] for m in realised["forecast_month"]})
    return {"rows": len(realised), "months": months}


def format_table(report: EvaluationReport) -> str:
    def table(model_metrics: dict[str, float], others: dict[str, dict[str, float]]) -> list[str]:
        lines = [f"{'forecaster':<16}{'WAPE':>8}{'MAE':>10}{'RMSE':>10}{'bias %':>9}"]
        for name, m in [("model", model_metrics), *others.items()]:
            lines.append(
                f"{name:<16}{m['wape']:>8.3f}{m['mae']:>10.2f}{m['rmse']:>10.2f}{100 * m['bias_pct']:>8.1f}%"
            )
        return lines

    lines = table(report.model, report.baselines)
    if report.blend is not None:
        b = report.blend
        lines += table(report.model, {f"blend {b['baseline']}": b["metrics"]})[2:]
    if report.combinations is not None:
        c = report.combinations
        lines += [
            f"Combinations (equal weights) on the {c['rows']:,} rows the statistical forecasters were scored on:"
        ]
        lines += table(c["model"], c["forecasters"])[1:]
    if report.sample is not None:
        s = report.sample
        lines += [f"On a sample of {s['entities']} of {s['of_entities']} entities:"]
        lines += table(s["model"], s["baselines"])
    return "\n".join(lines)
