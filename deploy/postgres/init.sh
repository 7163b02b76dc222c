#!/usr/bin/env bash
# Creates the predictions and Feast registry databases and the forecast and analyst roles
# (init.sql). The postgres image runs this once, when its data volume is first initialised
# (mounted into /docker-entrypoint-initdb.d); run it by hand against an existing server with
# PGHOST/PGPORT set and the superuser to log in as in POSTGRES_USER (default postgres: it is
# passed as --username, so PGUSER is not read), e.g.
#   POSTGRES_USER=postgres POSTGRES_DB=postgres FORECAST_DB_PASSWORD=... bash deploy/postgres/init.sh
# It also takes CONNECT on the server's other databases from PUBLIC, so that only their owners
# and superusers may connect there: PRIVATE_DBS, comma-separated, default
# "$POSTGRES_DB,postgres,template1" (Airflow's metadata DB and the maintenance DBs of the compose
# server). On a server shared with others set it to what you mean, or to "" to close nothing.
set -euo pipefail

: "${FORECAST_DB_PASSWORD:?set FORECAST_DB_PASSWORD (see .env.example)}"
sql="${FORECAST_INIT_SQL:-$(dirname "${BASH_SOURCE[0]}")/init.sql}"

psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set predictions_db="${PREDICTIONS_DB:-predictions}" \
  --set registry_db="${FEAST_REGISTRY_DB:-feast_registry}" \
  --set forecast_user="${FORECAST_DB_USER:-forecast}" \
  --set forecast_password="${FORECAST_DB_PASSWORD}" \
  --set analyst_role="${ANALYST_ROLE:-analyst}" \
  --set analyst_password="${ANALYST_PASSWORD:-}" \
  --set private_dbs="${PRIVATE_DBS-${POSTGRES_DB:-postgres},postgres,template1}" \
  --file "$sql"
