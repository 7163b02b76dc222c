"""``python -m forecasting.core.config [PATH]``: the deploy-time check of a config."""

from __future__ import annotations

import argparse
import sys

from forecasting.core.config.base import ConfigError
from forecasting.core.config.loading import load_config


def main(argv: list[str] | None = None) -> int:
    """Load the deployment's config (PATH, else ``$FORECAST_CONFIG``, else the demo config) with
    Feast's check of ``feature_store``, as every task would; print OK, or the error and exit with 1."""
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.core.config",
        description="Check a forecast config, including its feature_store section against Feast.",
    )
    parser.add_argument("path", nargs="?", help="the config file (default: $FORECAST_CONFIG, else the demo)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.path, check_feast=True)
    except ConfigError as err:
        print(f"Forecast config refused: {err}", file=sys.stderr)
        return 1
    print(f"Forecast config OK: {config.path}")
    return 0
