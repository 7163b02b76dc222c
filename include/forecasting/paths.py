"""Where each stage keeps its files under the config's data_dir, one folder per month M."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from forecasting.config import Config


def run_dir(config: Config, month: pd.Period) -> Path:
    return config.data_dir / "runs" / str(month)


def snapshot(config: Config, month: pd.Period) -> Path:
    return run_dir(config, month) / "raw.parquet"


def data_docs(config: Config, month: pd.Period) -> Path:
    """GX rebuilds a Data Docs site from its latest run only, so each month keeps its own."""
    return config.data_dir / "data_docs" / str(month)


def feature_table(config: Config) -> Path:
    """Feast's offline source: a folder with one parquet file per feature month."""
    return config.data_dir / "features" / "entity_month"


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
