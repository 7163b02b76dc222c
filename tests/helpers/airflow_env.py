"""The environment of an Airflow of a test's own: its processes started with it see nothing of
the caller's Airflow settings, only this repository's DAGs and plugins (an api-server's own
settings: ``forecasting.orchestration.localrun.api_server_settings``, as make run's local Airflow uses them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.helpers.paths import REPO

BIN = Path(sys.executable).parent  # this venv's: `airflow standalone` starts its parts by name


def airflow_env(home: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without any AIRFLOW* variable, this venv's bin first on PATH,
    AIRFLOW_HOME ``home``, this repository's DAGs and plugins, no examples, parallelism 2 (a
    2-core machine), GX's analytics off; then ``settings`` (AIRFLOW__... names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "GX_ANALYTICS_ENABLED": "false",
            **settings,
        }
    )
    return env
