"""The environment of an Airflow of a test's own: its processes started with it see nothing of
the caller's Airflow settings, only this repository's DAGs and plugins."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this venv's: `airflow standalone` starts its parts by name


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on now (an Airflow may already run on the defaults)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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


def api_server_settings(port: int) -> dict[str, str]:
    """An api-server on 127.0.0.1:``port`` whose Execution API the tasks call, with keys of its
    own, and the log and health servers on free ports (never another Airflow's)."""
    worker_logs, trigger_logs, health = free_ports(3)
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health),
    }
