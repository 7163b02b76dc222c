"""``python -m forecasting.core.config [PATH]`` (deploy/airflow/init.sh runs it)."""

import sys

from forecasting.core.config.cli import main

sys.exit(main())
