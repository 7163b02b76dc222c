"""The monthly pipeline as stage functions with plain inputs and JSON-ready outputs.

Each Airflow task calls one of these with the logical month ("YYYY-MM") and what upstream
tasks returned; each loads the deployment's config itself (``FORECAST_CONFIG``), so a task
can run on any worker. ``run_month`` runs them in order without Airflow.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from forecasting import paths
from forecasting.config import Config, load_config
from forecasting.months import month_of

log = logging.getLogger(__name__)


def _setup(month: str, config: Config | None) -> tuple[Config, pd.Period]:
    return (config or load_config()), month_of(month)


def _record(config: Config, month: pd.Period, stage: str, result: dict) -> dict:
    """Keep each stage's result beside the run's files (read by ``forecasting.summary``)."""
    paths.write_json_atomically(result, paths.run_dir(config, month) / f"{stage}.json")
    return result


def _snapshot(config: Config, month: pd.Period) -> pd.DataFrame:
    return pd.read_parquet(paths.snapshot(config, month))


def extract(month: str, config: Config | None = None) -> dict:
    from forecasting.extract import extract as run

    config, m = _setup(month, config)
    snap = run(config, m)
    return _record(config, m, "extract", {
        "month": month, "snapshot": str(snap.path), "rows": snap.rows,
        "first_month": snap.first_month, "last_month": snap.last_month})


def validate(month: str, config: Config | None = None) -> dict:
    """Raises validate.DataValidationError, naming each failed expectation, on bad data."""
    from forecasting.validate import validate_snapshot

    config, m = _setup(month, config)
    report = validate_snapshot(_snapshot(config, m), config, m, paths.data_docs(config, m))
    return _record(config, m, "validate", {
        "month": month, "rows": report.rows, "rows_in_month": report.rows_in_month,
        "expectations": report.expectations, "data_docs": report.data_docs})


def build_features(month: str, config: Config | None = None) -> dict:
    from forecasting.features import build_features as run

    config, m = _setup(month, config)
    built = run(_snapshot(config, m), config, m)
    return _record(config, m, "build_features", {
        "month": month, "rows": built.rows_written, "months": built.months_written,
        "entities": built.entities, "first_month": built.first_month, "last_month": built.last_month})


def register_features(month: str, config: Config | None = None) -> dict:
    """Apply the Feast definitions and materialize month M into the online store."""
    from forecasting import store

    config, m = _setup(month, config)
    definitions = store.apply(config)
    materialized = store.materialize(config, m)
    return _record(config, m, "register_features", {
        "month": month, "feature_view": definitions.view.name,
        "feature_service": definitions.service.name, "materialized_entities": materialized})


def train(month: str, config: Config | None = None) -> dict:
    from forecasting.train import train as run

    config, m = _setup(month, config)
    model = run(_snapshot(config, m), config, m)
    return _record(config, m, "train", {
        "month": month, "model_version": model.version, "model_dir": str(model.directory),
        "rows": model.metadata["rows"], "trees": model.metadata["params"]["num_boost_round"]})


def evaluate(month: str, model_dir: str, config: Config | None = None) -> dict:
    from forecasting.evaluate import evaluate as run

    config, m = _setup(month, config)
    report = run(_snapshot(config, m), config, m, Path(model_dir))
    if not report.beats_baselines:
        log.warning("The model (WAPE %.3f) does not beat the %s baseline (WAPE %.3f) on the holdout",
                    report.model["wape"], report.best_baseline,
                    report.baselines[report.best_baseline]["wape"])
    return _record(config, m, "evaluate", {
        "month": month, "report": str(report.path), "model_wape": report.model["wape"],
        "best_baseline": report.best_baseline,
        "best_baseline_wape": report.baselines[report.best_baseline]["wape"],
        "beats_best_baseline": report.beats_baselines})


def predict(month: str, model_dir: str, config: Config | None = None) -> dict:
    from forecasting import predict as stage

    config, m = _setup(month, config)
    frame = stage.forecast(_snapshot(config, m), config, m, Path(model_dir))
    path = stage.save_forecasts(frame, config, m)
    return _record(config, m, "predict", {"month": month, "forecasts": str(path), "rows": len(frame)})


def publish(month: str, model_dir: str, run_id: str, config: Config | None = None) -> dict:
    from forecasting.publish import publish as run

    config, m = _setup(month, config)
    model_dir = Path(model_dir)
    metadata = paths.read_json(model_dir / "metadata.json")
    evaluation = paths.read_json(model_dir / "evaluation.json")
    frame = pd.read_parquet(paths.run_dir(config, m) / "forecasts.parquet")
    result = run(frame, config, m, model_version=metadata["model_version"], run_id=run_id,
                 evaluation=evaluation)
    return _record(config, m, "publish", {
        "month": month, "table": result.table, "url": result.url, "rows": result.rows,
        "replaced": result.replaced, "model_version": metadata["model_version"], "run_id": run_id})


def run_month(month: str, run_id: str, config: Config | None = None) -> dict:
    """Every stage in order, as the DAG runs them (for scripts and tests without a scheduler)."""
    config = config or load_config()
    results = {"extract": extract(month, config), "validate": validate(month, config),
               "build_features": build_features(month, config),
               "register_features": register_features(month, config), "train": train(month, config)}
    model_dir = results["train"]["model_dir"]
    results["evaluate"] = evaluate(month, model_dir, config)
    results["predict"] = predict(month, model_dir, config)
    results["publish"] = publish(month, model_dir, run_id, config)
    return results
