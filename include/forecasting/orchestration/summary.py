"""A short report of one month's run, read from what its stages recorded and from the predictions DB.

    python -m forecasting.orchestration.summary 2026-10                 # M's published run (else its newest)
    python -m forecasting.orchestration.summary 2026-10 --run-id ID     # one run, e.g. one that failed
    python -m forecasting.orchestration.summary                         # the newest published month
    python -m forecasting.orchestration.summary 1992-09 --compare-plans config/dominicks.yaml config/dominicks_plans.yaml

A run that failed is reported with the stage that failed and why: for a failed validation,
every failed expectation with its counts. The exit status is 1 for a failed run.
``--compare-plans WITHOUT WITH`` prints the holdout WAPE of M's published runs of two configs
side by side, refusing two different holdouts (``make dominicks``: without plans and with them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import pandas as pd

from forecasting.core import paths
from forecasting.core.config import Config, load_config
from forecasting.core.names import LATEST, LEVELS, MODELS, RUNS, SCENARIO_STAGES, STAGES, relation_name
from forecasting.modeling.forecaster import Baseline, Blend, Model, parse
from forecasting.orchestration.overrides import summary_lines as override_lines
from forecasting.publishing.query import run_query


def example_query(config: Config) -> str:
    keys = ", ".join(config.source.entity_columns)
    return (
        f"SELECT {keys}, forecast_month, horizon, ROUND(CAST(prediction AS NUMERIC), 1) AS prediction,\n"
        "       ROUND(CAST(p10 AS NUMERIC), 1) AS p10, ROUND(CAST(p90 AS NUMERIC), 1) AS p90, model_version\n"
        f"FROM {relation_name(config.predictions.table, LATEST)}\n"
        f"ORDER BY prediction DESC, {keys}, forecast_month\nLIMIT 5;"
    )


class RunNotFound(SystemExit):
    """No such run, or it has not finished."""


class RunFailed(SystemExit):
    """The run failed; the message says where and why."""


def find_run(config: Config, month: str, run_id: str | None = None) -> Path:
    """The newest attempt of run ``run_id`` of M; without one, M's newest published attempt, else
    its newest attempt."""
    m = pd.Period(month, "M")
    runs = paths.runs_of(config, m)
    if run_id is not None:
        runs = [r for r in runs if r.name == run_id or r.name.startswith(f"{paths.run_key(run_id)}__")]
        if not runs:
            raise RunNotFound(f"no run {run_id} of {month} under {paths.month_dir(config, m)}")
        return runs[-1]
    if not runs:
        raise RunNotFound(f"no run of {month} under {paths.month_dir(config, m)}")
    return paths.published_attempt(config, m) or runs[-1]


def stage_results(run: Path) -> tuple[dict[str, dict], dict | None]:
    """What each stage of the run recorded, and the failure if one stage failed (but the
    scenarios' stages: ``scenario_failure``).

    The forecast_scenarios DAG's stages record into M's published attempt too; their failure is
    reported beside the month's forecasts (which were published), not as the month's failure.
    """
    results = {stage: json.loads(p.read_text()) for stage, p in paths.results_in(run).items()}
    failures = [
        json.loads(p.read_text())
        for stage, p in paths.failures_in(run).items()
        if stage not in SCENARIO_STAGES
    ]
    return results, (failures[0] if failures else None)


def scenario_failure(run: Path) -> dict | None:
    for stage in SCENARIO_STAGES:
        path = paths.failure_in(run, stage)
        if path.is_file():
            return json.loads(path.read_text())
    return None


def scenario_lines(config: Config, results: dict[str, dict], failure: dict | None) -> list[str]:
    """What the forecast_scenarios DAG made of M (config ``plans.scenarios``): the scenarios
    published, each with the forecasts it plans and those it changed; or why it failed."""
    if failure is not None:
        lines = [f"  Scenarios: FAILED in {failure['stage']}: {failure['message'].splitlines()[0]}"]
        lines += [f"   - {f['label']}: {f['details']}" for f in failure.get("failures") or []]
        retry = "fails the same way again" if failure.get("permanent") else "may pass if retried"
        return [*lines, f"  This error {retry}.", ""]
    made, published = results.get("forecast_scenarios"), results.get("publish_scenarios")
    if published is None or made is None:
        if config.plans is None or config.plans.scenarios is None:
            return []
        return [
            "  Scenarios: not published yet (the forecast_scenarios DAG forecasts them after a publish)",
            "",
        ]
    base = published["scenarios"][0] if published["scenarios"] else "base"
    others = [n for n in published["scenarios"] if n != base]
    lines = [
        f"  Scenarios   {len(others)} and the base plan ({base!r}) forecast by {published['model_version']}: "
        f"{published['rows']:,} rows in {published['table']}"
        + ("" if made.get("intervals") else " (no p10/p90: the forecaster has no calibrated intervals)")
    ]
    for name in others:
        lines.append(
            f"    {name:<20} plans {made['overridden'].get(name, 0):,} forecasts, "
            f"changes {made['changed'].get(name, 0):,} of them"
        )
    if made.get("base_differs_from_published"):
        lines.append(
            f"    The base differs from the published forecasts in {made['base_differs_from_published']:,} rows: "
            "Feast's features or plans of the month were rewritten since they were published."
        )
    lines.append("    Uplift per entity and month: sql/scenario_uplift.sql")
    return [*lines, ""]


def describe_failure(month: str, run: Path, failure: dict, results: dict[str, dict]) -> str:
    done = [s for s in STAGES if s in results]
    lines = [
        f"Monthly forecast for {month} FAILED in {failure['stage']} (attempt {failure['attempt']})",
        f"  stages done: {', '.join(done) or 'none'}",
    ]
    if failure.get("failures") is not None:  # validation: the summary line, then every expectation
        # The summary's lines before the expectations: the plain reason first, then their count.
        head = itertools.takewhile(lambda line: not line.startswith(" - "), failure["message"].splitlines())
        lines += [f"  {line}" for line in head]
        lines += [f"   - {f['label']}: {f['details']}" for f in failure["failures"]]
        lines.append(f"  Data Docs: {failure.get('data_docs')}")
    else:
        lines.append(f"  {failure['error']}: {failure['message']}")
    retry = "fails the same way again" if failure.get("permanent") else "may pass if retried"
    lines += [f"  This error {retry}. Files of the run: {run}"]
    return "\n".join(lines)


def realised_accuracy_lines(month: str, monitor: dict | None) -> list[str]:
    """What the monitoring of M found: the forecasts that M's actuals settle, by run and horizon,
    against the best naive forecast made as of the same origin."""
    if monitor is None:
        return [f"  Realised accuracy: not scored yet (the forecast_monitoring DAG scores {month})", ""]
    overall = monitor.get("overall") or []
    if not overall:
        return [
            f"  Realised accuracy: no forecast was published for {month} before this run, nothing to score",
            "",
        ]
    tables = monitor.get("tables", {})
    lines = [
        f"  Realised accuracy of the forecasts for {month} ({monitor['forecasts_scored']:,} scored with its actuals):",
        f"    {'run':<9}{'horizon':>7}{'forecasts':>10}{'WAPE':>8}{'bias':>8}   {'best naive':<16}{'WAPE':>7}{'FVA':>8}",
    ]
    for row in overall:
        wape, naive, fva = row["wape"], row["best_naive_wape"], row["fva"]
        lines.append(
            f"    {row['run_month']:<9}{row['horizon']:>7}{row['forecasts']:>10,}"
            + (f"{wape:>8.3f}{100 * row['bias_pct']:>7.1f}%" if wape is not None else f"{'-':>8}{'-':>8}")
            + f"   {row['best_naive'] or '-':<16}"
            + (f"{naive:>7.3f}" if naive is not None else f"{'-':>7}")
            + (f"{fva:>+8.3f}" if fva is not None else f"{'-':>8}")
        )
    lines += [
        "    FVA: the best naive WAPE minus the forecasts' (> 0: they beat every naive forecast).",
        f"    Over time: {tables.get('accuracy', 'the _accuracy table')}; per entity: "
        f"{tables.get('errors', 'the _errors table')}, {tables.get('tracking_signal', 'the _tracking_signal view')}",
        f"    Step by step (naive, statistical, model, published, final): {tables.get('fva', 'the _fva table')}",
        "",
    ]
    return lines


def drift_lines(month: str, drift: dict | None, alerts: dict | None) -> list[str]:
    """What the drift stage of M found (the drifted features named), and the alerts raised."""
    if drift is None:
        return [f"  Drift: not computed yet (the forecast_monitoring DAG compares {month})", ""]
    compared = [r for r in drift.get("rows", []) if r["kind"] != "entities"]
    flagged = [r for r in compared if r["drifted"]]
    window = (
        f"{compared[0]['reference_first_month']}..{compared[0]['reference_last_month']}" if compared else "?"
    )
    head = f"  Drift of {month} against the training window of {drift['model_version']} ({window}): "
    lines = [
        head
        + (f"{len(flagged)} of {len(compared)} drifted" if flagged else f"none of {len(compared)} drifted")
    ]
    for row in flagged:
        pvalue = "" if row.get("ks_pvalue") is None else f", KS p-value {row['ks_pvalue']:.2g}"
        lines.append(f"    {row['feature']} (PSI {row['psi']:.3f} >= {row['threshold']}{pvalue})")
    shares = {r["feature"]: r for r in drift.get("rows", []) if r["kind"] == "entities"}
    if shares:
        lines.append(
            "    entities: "
            + ", ".join(
                f"{name.replace('_entities', '')} {r['share']:.1%}{' DRIFTED' if r['drifted'] else ''}"
                for name, r in shares.items()
            )
            + f" (threshold {next(iter(shares.values()))['threshold']:.0%}); all rows: {drift.get('table')}"
        )
    if alerts is not None:
        raised = alerts.get("raised", 0)
        if raised:
            where = ", ".join(alerts.get("notified") or []) or "logged only (no alerts.notifiers)"
            lines.append(f"  Alerts: {raised} raised, sent to {where}; in {alerts.get('table')}")
        else:
            lines.append("  Alerts: none raised")
        repeats = alerts.get("repeats") or []
        if repeats:
            # A re-run of M finds M's alerts again: they were told before, not sent again.
            lines.append(f"  Alerts: {len(repeats)} already sent for this month, not sent again")
    return [*lines, ""]


def interval_lines(report: dict, decision: dict | None) -> list[str]:
    """How often the p10-p90 intervals held on holdout months they were not calibrated on (the
    published forecaster's, when evaluate measured it)."""
    coverage = (report.get("intervals") or {}).get("coverage") or {}
    text = (decision or {}).get("forecaster", "")
    compared = (decision or {}).get("sample") or {}
    if text and (decision or {}).get("coverage"):  # the gate's: the published forecaster's own
        held = decision["coverage"]  # type: ignore[index]
        return [
            f"  intervals   p10-p90 held {100 * held['coverage']:.0f}% of the actuals of holdout months they were "
            f"not calibrated on (goal {100 * held['target']:.0f}%; {text}, {held['rows']:,} forecasts)"
        ]
    if text and compared.get("published") == text and compared.get("coverage"):
        held = compared["coverage"]  # calibrated and checked on the rows it was scored on
        return [
            f"  intervals   p10-p90 held {100 * held['coverage']:.0f}% of the actuals of holdout months they were "
            f"not calibrated on (goal {100 * held['target']:.0f}%; {text}, on the sample's "
            f"{held['rows']:,} forecasts)"
        ]
    match parse(text) if text else None:
        case Baseline(baseline):
            name = baseline
        case Blend():
            name = "blend"
        case Model(version) if version != report.get("model_version"):
            return []  # the champion's bands come from its own re-scoring: no cross-check of them
        case _:
            name = "model"
    held = coverage.get(name)
    if not held:
        return []
    return [
        f"  intervals   p10-p90 held {100 * held['coverage']:.0f}% of the actuals of holdout months they were "
        f"not calibrated on (goal {100 * held['target']:.0f}%; {name})"
    ]


def level_lines(config: Config, predicted: dict, published: dict, checked: dict | None) -> list[str]:
    """The hierarchy's levels (config hierarchy): each level's holdout WAPE before and after
    reconciliation, how often its p10-p90 held, and where they were published."""
    levels = predicted.get("levels")
    if not levels:
        return []

    def wape(scored: dict | None, key: str) -> str:
        value = ((scored or {}).get(key) or {}).get("wape")
        return f"{value:>11.3f}" if value is not None else f"{'-':>11}"

    def row(name: str, scored: dict, bottom_up: bool = True) -> str:
        held = (scored.get("coverage") or {}).get("coverage")
        cover = f"{100 * held:>9.0f}%" if held is not None else f"{'-':>10}"
        summed = wape(scored, "bottom_up") if bottom_up else f"{'-':>11}"
        return f"    {name:<18}{scored['series']:>7,}{wape(scored, 'base')}{summed}{wape(scored, 'reconciled')}{cover}"

    method = levels["reconciliation"]
    instead = levels.get("instead_of")
    if instead:  # the guard: the configured method made the entities worse on the holdout
        method += (
            f" instead of {instead['configured']}, which made the entities' WAPE {instead['entities_wape']:.3f} "
            f"against {instead['unreconciled_wape']:.3f} unreconciled"
        )
    lines = [
        f"  Levels ({method}; holdout WAPE, each month reconciled with weights from the other half of the months):",
        f"    {'level':<18}{'series':>7}{'base':>11}{'bottom-up':>11}{'reconciled':>11}{'p10-p90':>10}",
        *(row(name, scored) for name, scored in levels["levels"].items()),
        row("entities", levels["bottom"], bottom_up=False),
    ]
    if checked and checked.get("levels"):
        lines.append(
            f"  checked     {checked['levels']['expectations']} expectations passed on the levels (coherent, >= 0)"
        )
    if "level_rows" in published:
        table = relation_name(config.predictions.table, LEVELS)
        lines.append(
            f"  Published {published['level_rows']:,} level forecasts to table {table} (they add up to the forecasts)"
        )
    return [*lines, ""]


def sample_gate_lines(decision: dict | None) -> list[str]:
    """What the gate did with the sample: the rule's choice against each statistical forecaster
    and blend on the sample's rows, with the paired bootstrap's bound (evaluation.json's
    ``decision.sample``)."""
    compared = (decision or {}).get("sample")
    if not compared:
        return []
    level = f"{compared['confidence']:.0%}"
    lines = [
        f"    The gate compared {compared['chosen']} (WAPE {compared['chosen_wape']:.3f} there) with each of these "
        f"on the same {compared['rows']:,} forecasts, paired; WAPE difference and its {level} upper bound "
        f"({compared['resamples']:,} bootstrap resamples of the {compared['entities']:,} entities):"
    ]
    for c in compared["candidates"]:
        verdict = "lower beyond noise" if c["lower_by_margin"] and c["beyond_noise"] else "not enough"
        lines.append(
            f"      {c['forecaster']:<40}{c['wape']:>7.3f}{c['difference']:>+9.3f}{c['upper']:>+9.3f}  {verdict}"
        )
    margin = f" by {compared['margin']:.1%}" if compared["margin"] else ""
    lines.append(
        f"    -> {compared['published']} is lower{margin} beyond noise: the gate publishes it for every entity."
        if compared["published"]
        else f"    -> none is lower{margin} beyond noise: {compared['chosen']} stays."
    )
    return lines


def holdout_lines(report: dict) -> list[str]:
    """Each forecaster's scores on the holdout (and on the statistical forecasters' sample), the
    verdict against the best baseline, and how the champion fared, from evaluation.json."""
    lines: list[str] = []
    champion = report.get("champion") or {}
    scored = {"model": report["model"]}
    if champion.get("available"):
        scored["champion"] = champion["metrics"]
    scored.update(report["baselines"])
    blend = report.get("blend")
    if blend:  # the model blended with the best baseline, what the gate may publish
        scored[f"blend {blend['baseline']}"] = blend["metrics"]
    for name, m in scored.items():
        lines.append(
            f"    {name:<16}{m['wape']:>7.3f}{m['mae']:>9.2f}{m['rmse']:>9.2f}{100 * m['bias_pct']:>7.1f}%"
        )
    verdict = "beats" if report["beats_best_baseline"] else "does NOT beat"
    lines.append(f"    The model {verdict} the best baseline ({report['best_baseline']}).")
    if blend:
        lines.append(
            f"    blend {blend['baseline']} = the mean of the model's and {blend['baseline']}'s forecasts, "
            "the gate's fallback when no model beats the best baseline."
        )
    sample = report.get("sample")
    if sample:  # the statistical forecasters, scored on a sample of entities (with the model)
        lines.append(
            f"    On a sample of {sample['entities']:,} of {sample['of_entities']:,} entities "
            f"({sample['model']['rows']:,} forecasts), with the statistical forecasters:"
        )
        for name, m in {"model": sample["model"], **sample["baselines"]}.items():
            lines.append(
                f"    {name:<16}{m['wape']:>7.3f}{m['mae']:>9.2f}{m['rmse']:>9.2f}{100 * m['bias_pct']:>7.1f}%"
            )
        verdict = "beats" if sample["beats_best_baseline"] else "does NOT beat"
        lines.append(f"    There the model {verdict} the best baseline ({sample['best_baseline']}).")
        lines += sample_gate_lines(report.get("decision"))
    elif (report.get("decision") or {}).get("sample"):  # few entities: scored on every row
        lines += sample_gate_lines(report.get("decision"))
    if champion.get("model_version"):
        lines.append(
            f"    champion = {champion['model_version']}, scored by its holdout model"
            if champion.get("available")
            else f"    The champion {champion['model_version']} could not score this holdout: {champion['why']}"
        )
    return lines


def tuning_line(record: dict) -> str:
    """What the parameter search of the run's training did (metadata.json's ``tuning``), in one line."""
    spent = f"{record['trials_run']} trials in {record['seconds']:.0f} s of a {record['budget_seconds']:.0f} s budget"
    if record["adopted"]:
        return f"adopted trial {record['best_trial']}'s parameters ({spent}): {record['reason']}"
    return f"kept the configured parameters ({spent}): {record['reason']}"


def summarize(config: Config, month: str, run_id: str | None = None) -> str:
    run = find_run(config, month, run_id)
    stage, failure = stage_results(run)
    if failure is not None:
        raise RunFailed(describe_failure(month, run, failure, stage))
    missing = [
        s for s in ("extract", "validate", "register_features", "evaluate", "publish") if s not in stage
    ]
    if missing:
        raise RunNotFound(f"run {run.name} of {month} is not complete (missing: {', '.join(missing)})")
    report = json.loads(Path(stage["evaluate"]["report"]).read_text())  # the challenger's evaluation
    ex, val, reg, pub = stage["extract"], stage["validate"], stage["register_features"], stage["publish"]

    lines = [
        f"Monthly forecast for {month} (config: {config.path})",
        f"  extracted   {ex['rows']:,} rows, {ex['first_month']}..{ex['last_month']}",
        f"  validated   {val['expectations']} expectations passed on {val['rows']:,} rows "
        f"({val['rows_in_month']:,} in {month}); Data Docs: {val['data_docs']}",
        f"  features    {stage['build_features']['rows']:,} rows in Feast's offline table; "
        f"{reg['materialized_entities']:,} entities materialized online ({reg['feature_view']})",
        f"  model       {pub.get('challenger', pub['model_version'])} (trained by this run)",
        *(f"  tuning      {tuning_line(t)}" for t in [_tuning_record(stage["evaluate"])] if t),
        f"  run         {pub['run_id']}",
        "",
        f"  Holdout ({len(report['holdout_target_months'])} months, {report['model']['rows']:,} forecasts):",
        f"    {'forecaster':<16}{'WAPE':>7}{'MAE':>9}{'RMSE':>9}{'bias':>8}",
    ]
    lines += holdout_lines(report)
    decision = report.get("decision")
    if decision:
        lines += [
            "",
            f"  Gate        {decision['outcome']}: {decision['reason']}",
            f"              published forecaster: {decision['forecaster']}; challenger now "
            f"{decision['challenger_status']} in {relation_name(config.predictions.table, MODELS)}",
        ]
    lines += ["", *interval_lines(report, decision), *demand_class_lines(report), *age_lines(report)]
    checked = stage.get("check_forecasts")
    if checked:
        lines.append(
            f"  checked     {checked['expectations']} expectations passed on the {checked['rows']:,} forecasts; "
            f"Data Docs: {checked['data_docs']}"
        )
    lines += [
        f"  Published {pub['rows']:,} forecasts to table {pub['table']} at {pub['url']}",
        f"  made by {pub['model_version']} (their model_version)",
        "",
        *override_lines(config, pub),
        *level_lines(config, stage.get("predict") or {}, pub, checked),
        *realised_accuracy_lines(month, stage.get("monitor")),
        *drift_lines(month, stage.get("drift"), stage.get("alerts")),
        *scenario_lines(config, stage, scenario_failure(run)),
    ]

    query = example_query(config)
    sample = run_query(config, query)
    lines += [
        "  Try it:",
        *(f"    {line}" for line in query.splitlines()),
        "",
        *(f"    {line}" for line in sample.to_string(index=False).splitlines()),
        "",
        '  Your own SQL: .venv/bin/python -m forecasting.publishing.query "SELECT * FROM '
        f'{relation_name(config.predictions.table, RUNS)}"',
    ]
    return "\n".join(lines)


def demand_class_lines(report: dict) -> list[str]:
    """WAPE per demand class (evaluation.json's ``demand_classes``; older reports have none)."""
    from forecasting.modeling.demand_scores import format_classes

    classes = report.get("demand_classes")
    if not classes or not classes.get("classes"):
        return []
    table = format_classes(classes).splitlines()
    return [
        "  By demand class (each holdout row's as of its origin; WAPE; p10-p90: the model's bands' coverage):",
        *(f"    {line}" for line in table),
    ]


def age_lines(report: dict) -> list[str]:
    """WAPE per age bucket (evaluation.json's ``ages``; older reports have none)."""
    from forecasting.modeling.age_scores import format_ages
    from forecasting.modeling.forecaster import parse
    from forecasting.registry.sample import evaluation_name

    ages = report.get("ages")
    if not ages or not ages.get("buckets"):
        return []
    published = (report.get("decision") or {}).get("forecaster")
    name = evaluation_name(report, parse(published), report.get("model_version", "")) if published else None
    return [
        "  By months of history (each holdout row's as of its origin; new items below "
        f"{ages['lookback']}; WAPE; with siblings: the published {name or 'model'}'s alone > averaged with "
        "the siblings' forecast, * where published so; p10-p90: the model's bands' coverage):",
        *(
            f"    {line}"
            for line in format_ages(ages, report.get("cold_start"), name or "model").splitlines()
        ),
    ]


def _tuning_record(evaluated: dict) -> dict | None:
    path = paths.model_metadata(Path(evaluated["model_dir"]))
    return paths.read_json(path).get("tuning") if path.is_file() else None


def _published_evaluation(config: Config, month: str) -> tuple[dict, dict]:
    """The evaluation.json and metadata.json of the model M's published run of ``config`` trained."""
    m = pd.Period(month, "M")
    run = paths.published_attempt(config, m)
    if run is None:
        raise RunNotFound(f"no published run of {month} under {paths.month_dir(config, m)} ({config.path})")
    model_dir = Path(paths.read_json(paths.result_in(run, "evaluate"))["model_dir"])
    return paths.read_json(paths.evaluation(model_dir)), paths.read_json(paths.model_metadata(model_dir))


def plans_comparison(without: Config, with_plans: Config, month: str) -> str:
    """The holdout WAPE of M's model without plans (``without``'s published run) and with them
    (``with_plans``'s), on the same holdout, beside the best baseline: what the plans are worth.
    Refuses two runs whose holdouts differ (other months or other rows)."""
    rows = []
    for config in (without, with_plans):
        evaluation, metadata = _published_evaluation(config, month)
        rows.append((config, evaluation, metadata))
    holdouts = {(tuple(e["holdout_target_months"]), e["model"]["rows"]) for _, e, _ in rows}
    if len(holdouts) != 1:
        raise RunFailed(
            f"the published runs of {month} were scored on different holdouts ("
            + "; ".join(
                f"{c.path.name}: {', '.join(e['holdout_target_months'])}, {e['model']['rows']:,} rows"
                for c, e, _ in rows
            )
            + "): their WAPEs are not comparable"
        )
    ((months, forecasts),) = holdouts
    lines = [
        f"With and without plans: {month}, the same holdout ({months[0]}..{months[-1]}, {forecasts:,} forecasts)",
        f"  {'config':<28}{'plans':<22}{'WAPE':>7}{'bias':>8}{'trees':>7}   {'best baseline':<24}published",
    ]
    for config, evaluation, metadata in rows:
        model, best = evaluation["model"], evaluation["best_baseline"]
        planned = ", ".join(config.plans.covariates) if config.plans is not None else "none"
        published = (evaluation.get("decision") or {}).get("forecaster", "?")
        lines.append(
            f"  {config.path.name:<28}{planned:<22}{model['wape']:>7.3f}{100 * model['bias_pct']:>+7.1f}%"
            f"{metadata['params'].get('num_boost_round', '?'):>7}   "
            f"{best + ' (' + format(evaluation['baselines'][best]['wape'], '.3f') + ')':<24}{published}"
        )
    before, after = (e["model"]["wape"] for _, e, _ in rows)
    change = after / before - 1 if before else float("nan")
    baselines = min(b["wape"] for _, e, _ in rows for b in e["baselines"].values())
    lines.append(
        f"  With plans the model's holdout WAPE is {abs(change):.1%} {'lower' if change < 0 else 'higher'} "
        f"({before:.3f} -> {after:.3f}); "
        + (
            f"it beats every baseline (best {baselines:.3f})."
            if after < baselines
            else f"it does NOT beat every baseline (best {baselines:.3f})."
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("month", nargs="?", help="logical month YYYY-MM (default: newest published)")
    parser.add_argument("--run-id", help="one run of the month (default: its published run)")
    parser.add_argument(
        "--compare-plans",
        nargs=2,
        metavar=("WITHOUT", "WITH"),
        help="the holdout WAPE of the month's published runs of two configs, without plans and with them",
    )
    args = parser.parse_args(argv)
    if args.compare_plans:
        if args.month is None:
            parser.error("--compare-plans needs the month")
        try:
            without, with_plans = (load_config(path) for path in args.compare_plans)
            print(plans_comparison(without, with_plans, args.month))
        except RunFailed as failed:
            print(failed.code)
            return 1
        return 0
    config = load_config()
    month = args.month
    if month is None:
        published = paths.published_months(config)
        if not published:
            raise SystemExit(f"no published runs under {paths.runs_root(config)}")
        month = published[-1]
    try:
        print(summarize(config, month, args.run_id))
    except RunFailed as failed:
        print(failed.code)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
