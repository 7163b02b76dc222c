"""Where each stage keeps its files under the config's data_dir: one folder per month M and run."""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forecasting.config import Config


def run_key(run_id: str) -> str:
    """A folder name for a run id: Airflow's ``manual__2026-11-01T00:00:00+00:00`` becomes
    ``manual__2026-11-01T00-00-00-00-00``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.") or "run"


def new_attempt(run_id: str) -> str:
    """A fresh folder name for one attempt of a run: Airflow keeps a run's id when it is cleared
    and run again, and a failed attempt must not overwrite what the published one left."""
    return f"{run_key(run_id)}__{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def month_dir(config: Config, month: pd.Period) -> Path:
    """Every attempt of every run of month M, one folder each."""
    return config.data_dir / "runs" / str(month)


def run_dir(config: Config, month: pd.Period, attempt: str) -> Path:
    """One attempt's own files (see ``new_attempt``)."""
    if run_key(attempt) != attempt:
        raise ValueError(f"not an attempt folder name: {attempt!r}")
    return month_dir(config, month) / attempt


def snapshot(config: Config, month: pd.Period, attempt: str) -> Path:
    return run_dir(config, month, attempt) / "raw.parquet"


def plans(config: Config, month: pd.Period, attempt: str) -> Path:
    """The plans as they stood at the end of M (every revision known then), beside the snapshot."""
    return run_dir(config, month, attempt) / "plans.parquet"


def forecasts(config: Config, month: pd.Period, attempt: str) -> Path:
    return run_dir(config, month, attempt) / "forecasts.parquet"


def stage_result(config: Config, month: pd.Period, attempt: str, stage: str) -> Path:
    """What a stage returned (``<stage>.json``)."""
    return run_dir(config, month, attempt) / f"{stage}.json"


def stage_failure(config: Config, month: pd.Period, attempt: str, stage: str) -> Path:
    """Why a stage failed (``<stage>.failed.json``)."""
    return run_dir(config, month, attempt) / f"{stage}.failed.json"


def data_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """GX rebuilds a Data Docs site from its latest run only, so each attempt keeps its own."""
    return run_dir(config, month, attempt) / "data_docs"


def forecast_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the forecasts' checks (forecasting.output_checks), beside the snapshot's."""
    return run_dir(config, month, attempt) / "forecast_docs"


def plan_docs(config: Config, month: pd.Period, attempt: str) -> Path:
    """The Data Docs of the plans' checks (validate.validate_plans), beside the snapshot's."""
    return run_dir(config, month, attempt) / "plan_docs"


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
        if (r / "publish.json").is_file()
        and (run_id is None or read_json(r / "publish.json").get("run_id") == run_id)
    ]
    return published[-1] if published else None


# Big files of a run: once another run of the month is published they only take space. Its
# stage results, failures and Data Docs stay, so what happened to every attempt can be read.
SUPERSEDED_FILES = ("raw.parquet", "plans.parquet", "forecasts.parquet")


def prune_superseded_runs(config: Config, month: pd.Period, keep: str) -> None:
    """Delete the big files of M's other attempts, after attempt ``keep`` was published."""
    kept = run_dir(config, month, keep)
    for folder in runs_of(config, month):
        if folder != kept:
            for name in SUPERSEDED_FILES:
                (folder / name).unlink(missing_ok=True)


def feature_table(config: Config) -> Path:
    """Feast's offline source: a folder with one parquet file per feature month."""
    return config.data_dir / "features" / "entity_month"


def plan_table(config: Config) -> Path:
    """Feast's offline source of the plans: a folder with one parquet file per target month."""
    return config.data_dir / "features" / "plans"


def models(config: Config) -> Path:
    return config.data_dir / "models"


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file sits beside the target (same filesystem) and is hidden from readers of
    # the folder (Feast/dask skip names starting with "_" or ".").
    return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Readers see the old file or the new one, never half of one (rename is atomic)."""
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
