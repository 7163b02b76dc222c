"""Configs for tests: the demo config with every file under a test's own folder."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers.paths import REPO

END_MONTH = "2024-12"
# Small enough for a quick test run, big enough that the model has something to learn.
SYNTHETIC_SIZE = {"stores": 6, "items": 25, "months": 48}


def demo_config_dict(folder: Path, hierarchy: bool = False) -> dict:
    """The demo config, with every path moved under ``folder``; without its hierarchy section
    unless ``hierarchy`` (the tests of the hierarchy's levels ask for it)."""
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    if not hierarchy:
        raw.pop("hierarchy", None)
    raw["data_dir"] = str(folder / "data")
    raw["source"]["url"] = f"sqlite:///{folder}/source.db"
    raw["feature_store"]["registry"] = str(folder / "feast" / "registry.db")
    raw["feature_store"]["online_store"] = {"type": "sqlite", "path": str(folder / "feast" / "online.db")}
    raw["predictions"]["url"] = f"sqlite:///{folder}/predictions.db"
    raw.setdefault("model", {})["num_boost_round"] = 500
    # Theta alone keeps the statistical baselines in every pipeline test at a fraction of
    # AutoETS's cost (about 20 times cheaper); test_statistical.py covers both.
    raw["evaluation"]["statistical_baselines"] = ["theta"]
    return raw


def write_config(folder: Path, raw: dict) -> Path:
    # The demo's monitoring segment is one of its attributes: a test that reshapes the source
    # without it (other keys, no attributes) drops it, as a user with that source would.
    source, monitoring = raw.get("source", {}), raw.get("monitoring") or {}
    if monitoring.get("segment") not in (
        None,
        *source.get("entity_columns", []),
        *source.get("attributes", []),
    ):
        raw = {**raw, "monitoring": {k: v for k, v in monitoring.items() if k != "segment"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "forecast.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def seeded_deployment(folder: Path, sales, monkeypatch, hierarchy: bool = False):
    """The demo config under ``folder`` (with its hierarchy if ``hierarchy``), its SQLite source
    seeded with ``sales``, selected through FORECAST_CONFIG; returns the loaded config."""
    from forecasting.core.config import load_config
    from forecasting.datasets.synthetic import seed_source_database

    path = write_config(folder, demo_config_dict(folder, hierarchy=hierarchy))
    config = load_config(path)
    seed_source_database(config.source.database.url, sales, table=config.source.table)
    monkeypatch.setenv("FORECAST_CONFIG", str(path))
    return config
