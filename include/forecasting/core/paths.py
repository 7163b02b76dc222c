"""Where each stage keeps its files under the config's data_dir: one folder per month M and run."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from forecasting.core.config import Config
from forecasting.core.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


def run_key(run_id: str) -> str:
    """A folder name for a run id: Airflow's ``manual__2026-11-01T00:00:00+00:00`` becomes
    ``manual__2026-11-01T00-00-00-00-00``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.") or "run"


def new_attempt(run_id: str) -> str:
    """A fresh folder name for one attempt of a run: Airflow keeps a run's id when it is cleared
    and run again, and a failed attempt must not overwrite what the published one left."""
    return f"{run_key(run_id)}__{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def runs_root(config: Config) -> Path:
    """One folder per month M (``month_dir``)."""
    return config.data_dir / "runs"


def month_dir(config: Config, month: pd.Period) -> Path:
    """Every attempt of every run of month M, one folder each."""
    return runs_root(config) / str(month)


def run_dir(config: Config, month: pd.Period, attempt: str) -> Path:
    """One attempt's own files (see ``new_attempt``)."""
    if run_key(attempt) != attempt:
        raise ValueError(f"not an attempt folder name: {attempt!r}")
    return month_dir(config, month) / attempt


def snapshot(config: Config, month: pd.Period, attempt: str) -> Path:
    return snapshot_in(run_dir(config, month, attempt))


def snapshot_in(attempt_dir: Path) -> Path:
    """``snapshot`` of the attempt whose folder is ``attempt_dir``."""
    return attempt_dir / "raw.parquet"


def plans(config: Config, month: pd.Period, attempt: str) -> Path:
    """The plans as they stood at the end of M (every revision known then), beside the snapshot."""
    return run_dir(config, month, attempt) / "plans.parquet"


def forecasts(config: Config, month: pd.Period, attempt: str) -> Path:
    return run_dir(config, month, attempt) / "forecasts.parquet"


def drivers(config: Config, month: pd.Period, attempt: str) -> Path:
    """The drivers of predict's forecasts (forecasting.modeling.drivers), one row per family."""
    return run_dir(config, month, attempt) / "drivers.parquet"


def level_forecasts(config: Config, month: pd.Period, attempt: str) -> Path:
    """The reconciled forecasts of the hierarchy's levels (config hierarchy), beside the forecasts."""
    return run_dir(config, month, attempt) / "levels.parquet"


def scenario_forecasts(config: Config, month: pd.Period, attempt: str) -> Path:
    """The what-if scenarios' forecasts (forecasting.scenarios), in M's published attempt."""
    return run_dir(config, month, attempt) / "scenarios.parquet"


def stage_result(config: Config, month: pd.Period, attempt: str, stage: str) -> Path:
    """What a stage returned (``<stage>.json``)."""
    return result_in(run_dir(config, month, attempt), stage)


def result_in(attempt_dir: Path, stage: str) -> Path:
    """``stage_result`` of the attempt whose folder is ``attempt_dir``."""
    return attempt_dir / f"{stage}.json"


def stage_failure(config: Config, month: pd.Period, attempt: str, stage: str) -> Path:
    """Why a stage failed (``<stage>.failed.json``)."""
    return failure_in(run_dir(config, month, attempt), stage)


def failure_in(attempt_dir: Path, stage: str) -> Path:
    """``stage_failure`` of the attempt whose folder is ``attempt_dir``."""
    return attempt_dir / f"{stage}.failed.json"


def results_in(attempt_dir: Path) -> dict[str, Path]:
    """Every stage result of the attempt: stage name to its ``result_in`` file."""
    return {p.stem: p for p in sorted(attempt_dir.glob("*.json")) if not p.name.endswith(".failed.json")}


def failures_in(attempt_dir: Path) -> dict[str, Path]:
    """Every stage failure of the attempt: stage name to its ``failure_in`` file."""
    return {p.name.removesuffix(".failed.json"): p for p in sorted(attempt_dir.glob("*.failed.json"))}


def data_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """GX rebuilds a Data Docs site from its latest run only, so each attempt keeps its own."""
    return data_docs_in(run_dir(config, month, attempt))


def data_docs_in(attempt_dir: Path) -> Path:
    """``data_docs`` of the attempt whose folder is ``attempt_dir``."""
    return attempt_dir / "data_docs"


def forecast_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the forecasts' checks (forecasting.publishing.checks), beside the snapshot's."""
    return run_dir(config, month, attempt) / "forecast_docs"


def plan_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the plans' checks (validate.validate_plans), beside the snapshot's."""
    return run_dir(config, month, attempt) / "plan_docs"


def scenario_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the scenarios' checks (forecasting.scenarios)."""
    return run_dir(config, month, attempt) / "scenario_docs"


def docs_index(docs_dir: Path) -> Path:
    """The front page of a Data Docs site (``data_docs``, ``forecast_docs``, ``plan_docs``)."""
    return docs_dir / "index.html"


def runs_of(config: Config, month: pd.Period) -> list[Path]:
    """The attempt folders of month M, oldest first (their names end with when they began)."""
    folder = month_dir(config, month)
    runs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return sorted(runs, key=lambda p: (p.name.rpartition("__")[2], p.name))


def published_attempt(config: Config, month: pd.Period, run_id: str | None = None) -> Path | None:
    """M's newest attempt that published (of run ``run_id`` if given), or None."""
    published = [
        r
        for r in runs_of(config, month)
        if result_in(r, "publish").is_file()
        and (run_id is None or read_json(result_in(r, "publish")).get("run_id") == run_id)
    ]
    return published[-1] if published else None


def published_months(config: Config) -> list[str]:
    """The months ("YYYY-MM") with a published attempt, oldest first."""
    return sorted(
        {p.parent.parent.name for p in runs_root(config).glob(f"*/*/{result_in(Path(), 'publish')}")}
    )


# Big files of a run: once another run of the month is published they only take space. Its
# stage results, failures and Data Docs stay, so what happened to every attempt can be read.
SUPERSEDED_FILES = (
    "raw.parquet",
    "plans.parquet",
    "forecasts.parquet",
    "drivers.parquet",
    "levels.parquet",
    "scenarios.parquet",
)


def prune_superseded_runs(config: Config, month: pd.Period, keep: str) -> list[Path]:
    """Delete the big files of M's other attempts, after attempt ``keep`` was published, but
    never those of an attempt still running (its lease is fresh: another deployment or run
    working on M over the same data_dir). Returns the attempts pruned."""
    kept = run_dir(config, month, keep)
    release_lease(kept)  # published: nothing of this attempt runs any more
    pruned = []
    for folder in runs_of(config, month):
        if folder == kept:
            continue
        holder = live_lease(folder)
        if holder is not None:
            log.info("Kept the files of %s: it is still running (%s)", folder.name, describe_lease(holder))
            continue
        present = [folder / name for name in SUPERSEDED_FILES if (folder / name).exists()]
        if present:
            write_json_atomically({"by": keep, "at": datetime.now(UTC).isoformat()}, folder / PRUNED)
            for path in present:
                path.unlink(missing_ok=True)
            pruned.append(folder)
    return pruned


# --- leases: which attempts are running, so that no other run deletes their files -------------

# A file per attempt folder: who works on it now (host, pid, stage) and when it last said so.
# Held by every stage for as long as it runs (``hold_lease``), refreshed every HEARTBEAT; an
# attempt between two stages (a retry's delay, a queue) keeps it until LEASE_STALE has passed.
LEASE = ".lease"  # JSON; not *.json, which are stage results (results_in)
# Left in an attempt folder whose big files were pruned: which attempt's publish pruned them.
PRUNED = ".pruned"
LEASE_HEARTBEAT = timedelta(seconds=60)
LEASE_STALE = timedelta(hours=24)


@contextmanager
def hold_lease(attempt_dir: Path, stage: str) -> Iterator[None]:
    """Mark ``attempt_dir`` as running while the block runs, with a heartbeat every
    LEASE_HEARTBEAT from a thread. The lease stays after the block (the next stage takes it on)
    unless the attempt has published (the stages after publish hold it only while they run);
    a stage that fails for good ends it (``release_lease``)."""
    stop = threading.Event()

    def beat() -> None:
        lease = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "stage": stage,
            "heartbeat": datetime.now(UTC).isoformat(),
        }
        write_json_atomically(lease, attempt_dir / LEASE)

    def keep_beating() -> None:
        while not stop.wait(LEASE_HEARTBEAT.total_seconds()):
            beat()

    beat()
    thread = threading.Thread(target=keep_beating, name=f"lease {attempt_dir.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if result_in(attempt_dir, "publish").is_file():
            release_lease(attempt_dir)
        else:
            beat()  # the end of the stage is the last sign of life until the next one starts


def release_lease(attempt_dir: Path) -> None:
    (attempt_dir / LEASE).unlink(missing_ok=True)


def live_lease(attempt_dir: Path) -> dict | None:
    """The attempt's lease if it is fresh (a heartbeat within LEASE_STALE), else None."""
    try:
        lease = read_json(attempt_dir / LEASE)
        heartbeat = datetime.fromisoformat(lease["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):  # none, or half a file: not running
        return None
    return lease if datetime.now(UTC) - heartbeat < LEASE_STALE else None


def describe_lease(lease: dict) -> str:
    return f"{lease.get('stage')} in pid {lease.get('pid')} on {lease.get('host')}, last heard at {lease.get('heartbeat')}"


def existing(path: Path) -> Path:
    """``path``, which a stage of its attempt needs; if it is gone, a DataError that says why:
    the attempt was superseded and its big files pruned, by which attempt, and what to do."""
    if path.exists():
        return path
    marker = path.parent / PRUNED
    if marker.is_file():
        pruned = read_json(marker)
        raise AttemptPruned(
            f"{path} is gone: attempt {path.parent.name} was superseded by attempt {pruned.get('by')}, "
            f"published at {pruned.get('at')}, which deleted its big files (this attempt had not "
            f"been heard from for {LEASE_STALE}). Run {path.parent.parent.name} again if its "
            "forecasts are still wanted."
        )
    raise AttemptPruned(f"{path} is gone (nothing says who deleted it): run {path.parent.parent.name} again")


class AttemptPruned(DataError):
    """A file a stage needs was pruned with its attempt: retrying reads the same empty folder."""


def feature_table(config: Config) -> Path:
    """Feast's offline source: a folder with one parquet file per feature month."""
    return config.data_dir / "features" / "entity_month"


def feature_file(config: Config, month: pd.Period | str) -> Path:
    """The offline table's file of one feature month (the features as of its end)."""
    return feature_table(config) / f"{month}.parquet"


def plan_table(config: Config) -> Path:
    """Feast's offline source of the plans: a folder with one parquet file per target month."""
    return config.data_dir / "features" / "plans"


def plan_file(config: Config, target_month: pd.Period | str) -> Path:
    """The plans' offline file of one target month (every revision of its plans)."""
    return plan_table(config) / f"{target_month}.parquet"


def models(config: Config) -> Path:
    """The model registry's files: one folder per model version (``model_dir``)."""
    return config.data_dir / "models"


# A trained model's folder: what train writes; evaluate, the gate, predict, publish and the
# monitoring read it.
def model_dir(config: Config, version: str) -> Path:
    return models(config) / version


def booster(model_dir: Path, holdout: bool = False) -> Path:
    """The production model (fitted on every labelled row), or the holdout model (fitted before
    the holdout: what evaluation scores and the backtest compares with)."""
    return model_dir / ("holdout_model.ubj" if holdout else "model.ubj")


def model_metadata(model_dir: Path) -> Path:
    """What train recorded: version, params, features, training window, rows, backtest fits."""
    return model_dir / "metadata.json"


def holdout_rows(model_dir: Path) -> Path:
    """The holdout's rows with their features and the backtest's forecasts."""
    return model_dir / "holdout.parquet"


def sample_rows(model_dir: Path) -> Path:
    """The rows the statistical forecasters were scored on (a sample of entities, or all): each
    row's position in holdout.parquet, entity, horizon, target month, actual and every forecast,
    for the gate's paired comparison on exactly those rows."""
    return model_dir / "sample_rows.parquet"


def holdout_forecasts(model_dir: Path) -> Path:
    """Every single forecaster's forecasts of the holdout rows as production makes them (the
    model's from the backtest's refits where it ran), with each row's entity, origin, horizon and
    actual: what the hierarchy's reconciliation learns its weights and level intervals from."""
    return model_dir / "holdout_forecasts.parquet"


def realised_errors(model_dir: Path) -> Path:
    """The published forecasts' realised errors the run's bands pooled with its holdout's
    (forecasting.monitoring.coverage.realised_errors), for the gate's bands of the champion."""
    return model_dir / "realised_errors.parquet"


def evaluation(model_dir: Path) -> Path:
    """Evaluate's scores and the gate's decision."""
    return model_dir / "evaluation.json"


def feast_dir(config: Config) -> Path:
    """Feast's registry and online store of the embedded profile, and its settings file."""
    return config.data_dir / "feast"


def feast_settings(config: Config) -> Path:
    """The feature_store.yaml the pipeline writes for the feast CLI."""
    return feast_dir(config) / "feature_store.yaml"


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file sits beside the target (same filesystem) and is hidden from readers of
    # the folder (Feast/dask skip names starting with "_" or ".").
    return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)


def write_file_atomically(path: Path, write: Callable[[str], object]) -> None:
    """``write(temp_path)`` writes the file, then it replaces ``path``: readers see the old file
    or the new one, never half of one (rename is atomic), and it is private to the pipeline's
    user (0600, what mkstemp creates), as every file under data_dir is."""
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PRIVATE = 0o600  # every file under data_dir: the pipeline's user reads and writes it, nobody else


def make_private(folder: Path) -> None:
    """Give every file under ``folder`` the mode the pipeline's own writers give theirs
    (PRIVATE): for what a library wrote there with its own (GX's Data Docs, 0644)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(PRIVATE)


def write_parquet_atomically(frame: pd.DataFrame | pa.Table, path: Path) -> None:
    """``write_file_atomically`` of a frame or an Arrow table as parquet."""
    if isinstance(frame, pd.DataFrame):
        write_file_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return
    import pyarrow.parquet as pq

    write_file_atomically(path, lambda tmp: pq.write_table(frame, tmp))


def write_json_atomically(data: Any, path: Path) -> None:
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
