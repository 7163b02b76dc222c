"""The monthly forecast's pipeline as stage functions with plain inputs and JSON-ready outputs.

Each Airflow task of ``monthly_forecast`` calls one of these with the logical month ("YYYY-MM")
and what upstream tasks returned; each loads the deployment's config itself
(``FORECAST_CONFIG``), so a task can run on any worker. ``extract`` starts a new *attempt*
(``paths.new_attempt``: a folder of its own, passed on to every later stage), so a later or
failed attempt never overwrites the snapshot, Data Docs or results of the one that was
published. Each stage records what it returned as ``<stage>.json``, or why it failed as
``<stage>.failed.json`` (forecasting.orchestration.stage; read by
``forecasting.orchestration.summary`` and the UI). The stages of the DAGs a publish starts are
in forecasting.orchestration.after_publish. ``run_month`` runs them all in order without Airflow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from forecasting.core import paths
from forecasting.core.compute import client_for
from forecasting.core.config import Config, ConfigError, load_config
from forecasting.core.months import month_index
from forecasting.orchestration.after_publish import (
    alerts,
    drift,
    forecast_scenarios,
    monitor,
    publish_scenarios,
)
from forecasting.orchestration.stage import read_sales, read_snapshot, record, running

log = logging.getLogger(__name__)


def extract(month: str, run_id: str, config: Config | None = None) -> dict:
    """Start a new attempt of run ``run_id`` for M: its result names the attempt's folder."""
    from forecasting.data.extract import extract as run

    attempt = paths.new_attempt(run_id)
    with running("extract", month, attempt, config) as (config, m):
        snap = run(config, m, paths.snapshot(config, m, attempt))
        result = {
            "run_id": run_id,
            "snapshot": str(snap.path),
            "rows": snap.rows,
            "first_month": snap.first_month,
            "last_month": snap.last_month,
        }
        if config.plans is not None:  # the plans as they stood at the end of M (forecasting.features.plans)
            from forecasting.data.extract import extract_plans

            planned = extract_plans(config, m, paths.plans(config, m, attempt))
            plans = {"path": str(planned.path), "rows": planned.rows, "known_at": planned.known_at}
            return record(config, m, attempt, "extract", {**result, "plans": plans})
        return record(config, m, attempt, "extract", result)


def validate(month: str, attempt: str, config: Config | None = None) -> dict:
    """Raises DataValidationError, naming each failed expectation, on bad data."""
    from forecasting.data.validate import validate_snapshot

    with running("validate", month, attempt, config) as (config, m):
        docs = paths.data_docs(config, m, attempt)
        report = validate_snapshot(read_snapshot(config, m, attempt), config, m, docs)
        result = {
            "rows": report.rows,
            "rows_in_month": report.rows_in_month,
            "expectations": report.expectations,
            "data_docs": report.data_docs,
        }
        if config.plans is not None:
            checked = _validate_and_store_plans(config, m, attempt)
            return record(config, m, attempt, "validate", {**result, "plans": checked})
        return record(config, m, attempt, "validate", result)


def _validate_and_store_plans(config: Config, m: pd.Period, attempt: str) -> dict:
    """The validate stage's part for the plans: Great Expectations over them (fails closed,
    raising DataValidationError), then the plans' offline table; what to record."""
    from forecasting.data.validate import validate_plans
    from forecasting.features.plans import write_plan_features

    plans = pd.read_parquet(paths.plans(config, m, attempt))
    docs = paths.plan_docs(config, m, attempt)
    report = validate_plans(plans, read_snapshot(config, m, attempt), config, m, docs)
    built = write_plan_features(plans, config, m)
    return {
        "rows": report.rows,
        "expectations": report.expectations,
        "data_docs": report.data_docs,
        "target_months": built.files,
        "first_month": built.first_month,
        "last_month": built.last_month,
    }


def build_features(month: str, attempt: str, config: Config | None = None) -> dict:
    from forecasting.features.catalogue import build_features as run

    with running("build_features", month, attempt, config) as (config, m), client_for(config) as client:
        built = run(read_snapshot(config, m, attempt), config, m, client)
        result = {
            "rows": built.rows_written,
            "months": built.months_written,
            "entities": built.entities,
            "first_month": built.first_month,
            "last_month": built.last_month,
        }
        return record(config, m, attempt, "build_features", result)


def register_features(month: str, attempt: str, config: Config | None = None) -> dict:
    """Apply the Feast definitions and materialize month M into the online store."""
    from forecasting.features import store

    with running("register_features", month, attempt, config) as (config, m):
        definitions = store.apply(config)
        materialized = store.materialize(config, m)
        result = {
            "feature_view": definitions.view.name,
            "feature_service": definitions.service.name,
            "materialized_entities": materialized,
        }
        return record(config, m, attempt, "register_features", result)


def train(month: str, attempt: str, config: Config | None = None) -> dict:
    from forecasting.modeling.train import train as run

    with running("train", month, attempt, config) as (config, m), client_for(config) as client:
        model = run(read_sales(config, m, attempt), config, m, client)
        result = {
            "model_version": model.version,
            "model_dir": str(model.directory),
            "rows": model.metadata["rows"],
            "trees": model.metadata["params"]["num_boost_round"],
        }
        return record(config, m, attempt, "train", result)


def evaluate(
    month: str,
    attempt: str,
    model_dir: str,
    config: Config | None = None,
    force_model_version: str | None = None,
    forced_by: str | None = None,
) -> dict:
    """Score the challenger and the baselines on the holdout, then the gate (forecasting.registry.gate):
    the champion scores the same rows, and the result names the forecaster predict uses."""
    from forecasting.modeling.evaluate import evaluate as run
    from forecasting.modeling.forecaster import parse
    from forecasting.monitoring.coverage import realised_errors
    from forecasting.registry.gate import run_gate

    with running("evaluate", month, attempt, config) as (config, m):
        # The bands learn from the published forecasts' latest realised errors too.
        report = run(read_sales(config, m, attempt), config, m, Path(model_dir), realised_errors(config, m))
        best = report.baselines[report.best_baseline]["wape"]
        if not report.beats_baselines:
            log.warning(
                "The model (WAPE %.3f) does not beat the %s baseline (WAPE %.3f) on the holdout",
                report.model["wape"],
                report.best_baseline,
                best,
            )
        run_id = paths.read_json(paths.stage_result(config, m, attempt, "extract")).get("run_id")
        try:
            force = parse(force_model_version) if force_model_version else None
        except ValueError as err:
            raise ConfigError(f"force_model_version {force_model_version!r}: {err}") from err
        decision = run_gate(config, m, Path(model_dir), run_id=run_id, force=force, forced_by=forced_by)
        result = {
            "report": str(report.path),
            "model_dir": model_dir,
            "model_wape": report.model["wape"],
            "best_baseline": report.best_baseline,
            "best_baseline_wape": best,
            "beats_best_baseline": report.beats_baselines,
            "champion": decision["champion"],
            "champion_wape": decision["champion_wape"],
            "decision": decision["outcome"],
            "reason": decision["reason"],
            "forecaster": decision["forecaster"],
            "forecaster_wape": decision["wape"],
        }
        return record(config, m, attempt, "evaluate", result)


def predict(
    month: str, attempt: str, model_dir: str, config: Config | None = None, forecaster: str | None = None
) -> dict:
    """Forecast M+1..M+horizon with the forecaster the gate chose (``forecaster``: a model
    version, ``baseline:<name>`` or ``blend:[<version>+]<name>[+<name>...]``; default: the decision in ``model_dir``'s evaluation.json)."""
    from forecasting.data.panel import build_panel
    from forecasting.features import age
    from forecasting.features.demand import DEMAND_CLASS, label_forecasts
    from forecasting.modeling import cold_start, drivers, intervals
    from forecasting.modeling.forecaster import Baseline, Blend, Model, parse
    from forecasting.modeling.predict import baseline_forecast, blend_forecast, forecast, with_step_forecasts
    from forecasting.registry.sample import cold_start_buckets

    with running("predict", month, attempt, config) as (config, m):
        decision = paths.read_json(paths.evaluation(Path(model_dir))).get("decision") or {}
        if forecaster is None:
            forecaster = (
                decision.get("forecaster")
                or paths.read_json(paths.model_metadata(Path(model_dir)))["model_version"]
            )
        snapshot = read_sales(config, m, attempt)
        match parse(forecaster):
            case Baseline(name):
                frame = baseline_forecast(snapshot, config, m, name)
            case Blend() as blended:
                with client_for(config) as client:
                    frame = blend_forecast(
                        snapshot, config, m, blended, paths.models(config), client, explain=True
                    )
            case Model(version):
                with client_for(config) as client:
                    version_dir = paths.models(config) / version
                    frame = forecast(snapshot, config, m, version_dir, client, explain=True)
        with client_for(config) as client:  # the model's and the statistical step's, for the value added
            frame = with_step_forecasts(
                frame, snapshot, config, m, parse(forecaster), Path(model_dir), client
            )
        # Each entity's demand class as of M (smooth, erratic, intermittent, lumpy), published with it.
        panel = build_panel(snapshot, config, sales_only=True)
        keys, at = config.source.entity_columns, month_index(m)
        frame[DEMAND_CLASS] = label_forecasts(frame, panel, keys, at)
        # Its months of history as of M: a new item leans on its siblings where evaluate found it better.
        frame[age.HISTORY_MONTHS] = age.label_forecasts(frame, panel, keys, at)
        used = cold_start_buckets(paths.read_json(paths.evaluation(Path(model_dir))), parse(forecaster))
        frame = cold_start.apply_to_forecasts(frame, panel, keys, at, config.features.lookback_months, used)
        # The forecaster's own p10/p90 bands (per demand class), calibrated on this run's holdout by evaluate.
        bands = decision.get("intervals") if decision.get("forecaster") == forecaster else None
        if bands is None:
            log.warning("No prediction intervals for %s: p10 and p90 are left empty", forecaster)
        groups = age.interval_groups(
            frame[DEMAND_CLASS], frame[age.HISTORY_MONTHS], config.features.lookback_months
        )
        frame["p10"], frame["p90"] = intervals.apply(bands, frame["prediction"], frame["horizon"], groups)
        # The drivers apart (one row per family), so the checks and publish read the forecasts as before.
        explained = (
            drivers.long_form(frame, config.source.entity_columns) if drivers.driver_columns(frame) else None
        )
        frame = frame.drop(columns=[*drivers.driver_columns(frame), drivers.EXPLAINED], errors="ignore")
        paths.drivers(config, m, attempt).unlink(missing_ok=True)  # a re-run's baseline has none
        if explained is not None:
            paths.write_parquet_atomically(explained, paths.drivers(config, m, attempt))
        paths.level_forecasts(config, m, attempt).unlink(missing_ok=True)
        hierarchy = None
        if config.hierarchy is not None:  # reconciled with the levels' forecasts, into levels.parquet
            frame, hierarchy = _reconcile(frame, config, m, attempt, Path(model_dir), forecaster)
        path = paths.forecasts(config, m, attempt)
        paths.write_parquet_atomically(frame, path)
        result = {"forecasts": str(path), "rows": len(frame), "forecaster": forecaster}
        result["driver_rows"] = 0 if explained is None else len(explained)
        if hierarchy is not None:
            result["levels"] = hierarchy
        return record(config, m, attempt, "predict", result)


def _reconcile(
    frame: pd.DataFrame, config: Config, m: pd.Period, attempt: str, model_dir: Path, forecaster: str
) -> tuple[pd.DataFrame, dict]:
    """M's forecasts reconciled with the hierarchy's levels (forecasting.orchestration.levels),
    the levels' rows written to levels.parquet; what to record."""
    from forecasting.modeling.hierarchy import level_columns
    from forecasting.orchestration.levels import reconcile

    assert config.hierarchy is not None
    src = config.source
    columns = [*src.entity_columns, src.time_column, src.target_column, *level_columns(config)]
    snapshot = pd.read_parquet(
        paths.existing(paths.snapshot(config, m, attempt)), columns=list(dict.fromkeys(columns))
    )
    frame, levels, report = reconcile(frame, snapshot, config, m, model_dir, forecaster)
    path = paths.level_forecasts(config, m, attempt)
    paths.write_parquet_atomically(levels, path)
    # Each level's holdout scores beside the forecasters' in evaluation.json (of this forecaster).
    evaluation = paths.read_json(paths.evaluation(model_dir))
    paths.write_json_atomically(
        {**evaluation, "hierarchy": {"forecaster": forecaster, **report}}, paths.evaluation(model_dir)
    )
    return frame, {"forecasts": str(path), "rows": len(levels), **report}


def check_forecasts(month: str, attempt: str, config: Config | None = None) -> dict:
    """Great Expectations over predict's forecasts (forecasting.publishing.checks): raises
    DataValidationError, naming each failed check, and publish does not run."""
    from forecasting.publishing.checks import check_forecasts as run
    from forecasting.publishing.checks import previous_run

    with running("check_forecasts", month, attempt, config) as (config, m):
        forecasts = pd.read_parquet(paths.forecasts(config, m, attempt))
        docs = paths.forecast_docs(config, m, attempt)
        report = run(forecasts, read_sales(config, m, attempt), config, m, docs, previous_run(config, m))
        result: dict[str, Any] = {
            "rows": report.rows,
            "expectations": report.expectations,
            "data_docs": report.data_docs,
        }
        if config.hierarchy is not None:  # the levels: coherent with the forecasts, ≥ 0, complete
            result["levels"] = _check_levels(forecasts, config, m, attempt, docs / "levels")
        return record(config, m, attempt, "check_forecasts", result)


def _check_levels(forecasts: pd.DataFrame, config: Config, m: pd.Period, attempt: str, docs: Path) -> dict:
    from forecasting.data.panel import key_text
    from forecasting.modeling.hierarchy import level_columns, level_members
    from forecasting.publishing.checks import check_levels

    src = config.source
    columns = list(dict.fromkeys([*src.entity_columns, src.time_column, *level_columns(config)]))
    snapshot = pd.read_parquet(paths.existing(paths.snapshot(config, m, attempt)), columns=columns)
    keys = pd.DataFrame({k: key_text(forecasts[k]) for k in src.entity_columns})
    levels = pd.read_parquet(paths.existing(paths.level_forecasts(config, m, attempt)))
    report = check_levels(levels, forecasts, level_members(snapshot, config, keys), config, m, docs)
    return {"rows": report.rows, "expectations": report.expectations, "data_docs": report.data_docs}


def publish(month: str, attempt: str, model_dir: str, run_id: str, config: Config | None = None) -> dict:
    """Write the forecasts predict made; their ``model_version`` is the forecaster that made them."""
    from forecasting.orchestration.overrides import alert_refused, entity_members
    from forecasting.publishing.publish import publish as run

    with running("publish", month, attempt, config) as (config, m):
        metadata = paths.read_json(paths.model_metadata(Path(model_dir)))
        evaluation = paths.read_json(paths.evaluation(Path(model_dir)))
        predicted = paths.read_json(paths.stage_result(config, m, attempt, "predict"))
        forecaster = predicted.get("forecaster") or metadata["model_version"]
        frame = pd.read_parquet(paths.forecasts(config, m, attempt))
        explained = paths.drivers(config, m, attempt)
        levels = members = None
        if config.hierarchy is not None:  # the reconciled levels, in the same transaction
            levels = pd.read_parquet(paths.existing(paths.level_forecasts(config, m, attempt)))
            members = entity_members(config, m, attempt, frame)  # a level's override is spread on them
        published = run(
            frame,
            config,
            m,
            model_version=forecaster,
            run_id=run_id,
            evaluation=evaluation,
            drivers=pd.read_parquet(explained) if explained.exists() else None,
            levels=levels,
            members=members,
        )
        result = {
            "table": published.table,
            "url": published.url,
            "rows": published.rows,
            "replaced": published.replaced,
            "driver_rows": published.drivers,
            "model_version": forecaster,
            "challenger": metadata["model_version"],
            "run_id": run_id,
            "overrides": published.overrides,  # applied, refused (each named): also in <table>_runs
        }
        alert_refused(config, m, run_id, published.overrides)
        if published.level_rows is not None:
            result["level_rows"] = published.level_rows
        record(config, m, attempt, "publish", result)
        paths.prune_superseded_runs(config, m, keep=attempt)
        return result


def run_month(month: str, run_id: str, config: Config | None = None) -> dict:
    """Every stage in order, as the DAGs run them (for scripts and tests without a scheduler):
    the monthly forecast, then the monitoring (and the scenarios, if configured) that its publish
    starts."""
    config = config or load_config()
    results = {"extract": extract(month, run_id, config)}
    attempt = results["extract"]["attempt"]
    for stage in ("validate", "build_features", "register_features", "train"):
        results[stage] = globals()[stage](month, attempt, config)
    model_dir = results["train"]["model_dir"]
    results["evaluate"] = evaluate(month, attempt, model_dir, config)
    results["predict"] = predict(month, attempt, model_dir, config, results["evaluate"]["forecaster"])
    results["check_forecasts"] = check_forecasts(month, attempt, config)
    results["publish"] = publish(month, attempt, model_dir, run_id, config)
    results["monitor"] = monitor(month, run_id, attempt, config)
    results["drift"] = drift(month, run_id, attempt, config)
    results["alerts"] = alerts(month, run_id, attempt, config)
    if config.plans is not None and config.plans.scenarios is not None:
        results["forecast_scenarios"] = forecast_scenarios(month, run_id, attempt, config)
        results["publish_scenarios"] = publish_scenarios(month, run_id, attempt, config)
    return results
