#!/usr/bin/env bash
# Run monthly_forecast for month M (YYYY-MM; default: the latest complete month) with
# `airflow dags test`, keep its log, and print the run's summary.
set -euo pipefail

month=${1:-$(date -u -d "$(date -u +%Y-%m-01) -1 month" +%Y-%m)}
# The run whose data interval is month M is the one of the 1st of the following month.
logical_date=$(date -u -d "${month}-01 +1 month" +%Y-%m-%d)
log="$AIRFLOW_HOME/logs/monthly_forecast-${month}.log"
mkdir -p "$(dirname "$log")"

echo "Running monthly_forecast for ${month} (logical date ${logical_date}, config ${FORECAST_CONFIG:-config/demo.yaml})"
echo "Full log: ${log}"
if ! airflow dags test monthly_forecast "$logical_date" >"$log" 2>&1 \
    || ! grep -q "DagRun Finished: dag_id=monthly_forecast.*state=success" "$log" \
    || ! grep -q "end task task_id=publish" "$log"; then
    echo "monthly_forecast for ${month} failed. The errors from the log:" >&2
    grep -E "Validation of|ERROR|Error|error" "$log" | grep -v "^\s*$" | tail -30 >&2 || tail -40 "$log" >&2
    exit 1
fi
echo
python -m forecasting.summary "$month"
