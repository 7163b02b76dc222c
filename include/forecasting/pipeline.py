"""The monthly pipeline as stage functions with plain inputs and JSON-ready outputs.

Each Airflow task calls one of these with the logical month ("YYYY-MM") and what upstream
tasks returned; each loads the deployment's config itself (``FORECAST_CONFIG``), so a task can
run on any worker. ``extract`` starts a new *attempt* (``paths.new_attempt``: a folder of its
own, passed on to every later stage), so a later or failed attempt never overwrites the
snapshot, Data Docs or results of the one that was published. Each stage records what it
returned as ``<stage>.json``, or why it failed as ``<stage>.failed.json`` (read by
``forecasting.summary`` and the UI). ``run_month`` runs them in order without Airflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from forecasting import paths
from forecasting.compute import client_for
from forecasting.config import Config, load_config
from forecasting.months import month_of

log = logging.getLogger(__name__)

STAGES = (
    "extract",
    "validate",
    "build_features",
    "register_features",
    "train",
    "evaluate",
    "predict",
    "publish",
)


@contextmanager
def _stage(name: str, month: str, attempt: str, config: Config | None) -> Iterator[tuple[Config, pd.Period]]:
    """Load the config and M; if the stage fails, record why beside the attempt's files."""
    config = config or load_config()
    m = month_of(month)
    paths.stage_failure(config, m, attempt, name).unlink(missing_ok=True)
    try:
        yield config, m
    except Exception as err:
        from forecasting.errors import is_permanent

        failure = {
            "stage": name,
            "month": str(m),
            "attempt": attempt,
            "error": type(err).__name__,
            "message": str(err),
            "permanent": is_permanent(err),
        }
        report = getattr(err, "report", None)  # a failed validation names every expectation
        if report is not None:
            failure["failures"] = report.failures
            failure["data_docs"] = report.data_docs
        paths.write_json_atomically(failure, paths.stage_failure(config, m, attempt, name))
        raise


def _record(config: Config, month: pd.Period, attempt: str, stage: str, result: dict) -> dict:
    result = {"month": str(month), "attempt": attempt, **result}
    paths.write_json_atomically(result, paths.stage_result(config, month, attempt, stage))
    return result


def _snapshot(config: Config, month: pd.Period, attempt: str) -> pd.DataFrame:
    return pd.read_parquet(paths.snapshot(config, month, attempt))


def extract(month: str, run_id: str, config: Config | None = None) -> dict:
    """Start a new attempt of run ``run_id`` for M: its result names the attempt's folder."""
    from forecasting.extract import extract as run

    attempt = paths.new_attempt(run_id)
    with _stage("extract", month, attempt, config) as (config, m):
        snap = run(config, m, paths.snapshot(config, m, attempt))
        result = {
            "run_id": run_id,
            "snapshot": str(snap.path),
            "rows": snap.rows,
            "first_month": snap.first_month,
            "last_month": snap.last_month,
        }
        return _record(config, m, attempt, "extract", result)


def validate(month: str, attempt: str, config: Config | None = None) -> dict:
    """Raises validate.DataValidationError, naming each failed expectation, on bad data."""
    from forecasting.validate import validate_snapshot

    with _stage("validate", month, attempt, config) as (config, m):
        docs = paths.data_docs(config, m, attempt)
        report = validate_snapshot(_snapshot(config, m, attempt), config, m, docs)
        result = {
            "rows": report.rows,
            "rows_in_month": report.rows_in_month,
            "expectations": report.expectations,
            "data_docs": report.data_docs,
        }
        return _record(config, m, attempt, "validate", result)


def build_features(month: str, attempt: str, config: Config | None = None) -> dict:
    from forecasting.features import build_features as run

    with _stage("build_features", month, attempt, config) as (config, m), client_for(config) as client:
        built = run(_snapshot(config, m, attempt), config, m, client)
        result = {
            "rows": built.rows_written,
            "months": built.months_written,
            "entities": built.entities,
            "first_month": built.first_month,
            "last_month": built.last_month,
        }
        return _record(config, m, attempt, "build_features", result)


def register_features(month: str, attempt: str, config: Config | None = None) -> dict:
    """Apply the Feast definitions and materialize month M into the online store."""
    from forecasting import store

    with _stage("register_features", month, attempt, config) as (config, m):
        definitions = store.apply(config)
        materialized = store.materialize(config, m)
        result = {
            "feature_view": definitions.view.name,
            "feature_service": definitions.service.name,
            "materialized_entities": materialized,
        }
        return _record(config, m, attempt, "register_features", result)


def train(month: str, attempt: str, config: Config | None = None) -> dict:
    from forecasting.train import train as run

    with _stage("train", month, attempt, config) as (config, m), client_for(config) as client:
        model = run(_snapshot(config, m, attempt), config, m, client)
        result = {
            "model_version": model.version,
            "model_dir": str(model.directory),
            "rows": model.metadata["rows"],
            "trees": model.metadata["params"]["num_boost_round"],
        }
        return _record(config, m, attempt, "train", result)


def evaluate(
    month: str,
    attempt: str,
    model_dir: str,
    config: Config | None = None,
    force_model_version: str | None = None,
    forced_by: str | None = None,
) -> dict:
    """Score the challenger and the baselines on the holdout, then the gate (forecasting.gate):
    the champion scores the same rows, and the result names the forecaster predict uses."""
    from forecasting.evaluate import evaluate as run
    from forecasting.gate import run_gate

    with _stage("evaluate", month, attempt, config) as (config, m):
        report = run(_snapshot(config, m, attempt), config, m, Path(model_dir))
        best = report.baselines[report.best_baseline]["wape"]
        if not report.beats_baselines:
            log.warning(
                "The model (WAPE %.3f) does not beat the %s baseline (WAPE %.3f) on the holdout",
                report.model["wape"],
                report.best_baseline,
                best,
            )
        run_id = paths.read_json(paths.stage_result(config, m, attempt, "extract")).get("run_id")
        decision = run_gate(
            config, m, Path(model_dir), run_id=run_id, force=force_model_version, forced_by=forced_by
        )
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
        return _record(config, m, attempt, "evaluate", result)


def predict(
    month: str, attempt: str, model_dir: str, config: Config | None = None, forecaster: str | None = None
) -> dict:
    """Forecast M+1..M+horizon with the forecaster the gate chose (``forecaster``: a model
    version or ``baseline:<name>``; default: the decision in ``model_dir``'s evaluation.json)."""
    from forecasting.models import BASELINE_PREFIX
    from forecasting.predict import baseline_forecast, forecast

    with _stage("predict", month, attempt, config) as (config, m):
        if forecaster is None:
            decision = paths.read_json(Path(model_dir) / "evaluation.json").get("decision") or {}
            forecaster = (
                decision.get("forecaster")
                or paths.read_json(Path(model_dir) / "metadata.json")["model_version"]
            )
        snapshot = _snapshot(config, m, attempt)
        if forecaster.startswith(BASELINE_PREFIX):
            frame = baseline_forecast(snapshot, config, m, forecaster.removeprefix(BASELINE_PREFIX))
        else:
            with client_for(config) as client:
                frame = forecast(snapshot, config, m, paths.models(config) / forecaster, client)
        path = paths.forecasts(config, m, attempt)
        paths.write_parquet_atomically(frame, path)
        result = {"forecasts": str(path), "rows": len(frame), "forecaster": forecaster}
        return _record(config, m, attempt, "predict", result)


def publish(month: str, attempt: str, model_dir: str, run_id: str, config: Config | None = None) -> dict:
    """Write the forecasts predict made; their ``model_version`` is the forecaster that made them."""
    from forecasting.publish import publish as run

    with _stage("publish", month, attempt, config) as (config, m):
        metadata = paths.read_json(Path(model_dir) / "metadata.json")
        evaluation = paths.read_json(Path(model_dir) / "evaluation.json")
        predicted = paths.read_json(paths.stage_result(config, m, attempt, "predict"))
        forecaster = predicted.get("forecaster") or metadata["model_version"]
        frame = pd.read_parquet(paths.forecasts(config, m, attempt))
        published = run(frame, config, m, model_version=forecaster, run_id=run_id, evaluation=evaluation)
        result = {
            "table": published.table,
            "url": published.url,
            "rows": published.rows,
            "replaced": published.replaced,
            "model_version": forecaster,
            "challenger": metadata["model_version"],
            "run_id": run_id,
        }
        _record(config, m, attempt, "publish", result)
        paths.prune_superseded_runs(config, m, keep=attempt)
        return result


def run_month(month: str, run_id: str, config: Config | None = None) -> dict:
    """Every stage in order, as the DAG runs them (for scripts and tests without a scheduler)."""
    config = config or load_config()
    results = {"extract": extract(month, run_id, config)}
    attempt = results["extract"]["attempt"]
    for stage in ("validate", "build_features", "register_features", "train"):
        results[stage] = globals()[stage](month, attempt, config)
    model_dir = results["train"]["model_dir"]
    results["evaluate"] = evaluate(month, attempt, model_dir, config)
    results["predict"] = predict(month, attempt, model_dir, config, results["evaluate"]["forecaster"])
    results["publish"] = publish(month, attempt, model_dir, run_id, config)
    return results
