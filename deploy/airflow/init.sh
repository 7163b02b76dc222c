#!/usr/bin/env bash
# airflow-init (one-shot, before every other Airflow service): migrate the metadata database
# and set the admin's password. Idempotent: `docker compose up` runs it on every start.
set -euo pipefail

airflow db migrate

# The simple auth manager reads users from AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS and their
# passwords from this file (on the airflow-auth volume, shared with the api-server).
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
user, password = os.environ["AIRFLOW_ADMIN_USER"], os.environ["AIRFLOW_ADMIN_PASSWORD"]
if not password:
    raise SystemExit("AIRFLOW_ADMIN_PASSWORD is empty: set it in .env")
path.parent.mkdir(parents=True, exist_ok=True)
text = path.read_text() if path.exists() else ""
passwords = json.loads(text) if text.strip() else {}
passwords[user] = password
path.write_text(json.dumps(passwords) + "\n")
path.chmod(0o600)
print(f"Airflow admin user: {user}")
PY

# Every worker reads and writes the same forecast files (snapshots, features, models).
mkdir -p "${FORECAST_DATA_DIR}"
# The forecast config (FORECAST_CONFIG), its feature_store section checked against Feast's own
# settings models: a typo or a bad value stops the deployment here, naming the key.
python -m forecasting.orchestration.check_config
