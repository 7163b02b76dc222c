"""``python -m forecasting.orchestration.check_config [PATH]``: the deploy-time check of a config
(deploy/airflow/init.sh runs it)."""

from __future__ import annotations

import argparse
import sys

from forecasting.core.config import ConfigError, load_config
from forecasting.features.feast_config import feast_repo_config


def main(argv: list[str] | None = None) -> int:
    """Load the deployment's config (PATH, else ``$FORECAST_CONFIG``, else the demo config) with
    Feast's check of ``feature_store``, as every task would; print OK, or the error and exit with 1."""
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.orchestration.check_config",
        description="Check a forecast config, including its feature_store section against Feast.",
    )
    parser.add_argument("path", nargs="?", help="the config file (default: $FORECAST_CONFIG, else the demo)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.path)
        feast_repo_config(config)
    except ConfigError as err:
        print(f"Forecast config refused: {err}", file=sys.stderr)
        return 1
    print(f"Forecast config OK: {config.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
