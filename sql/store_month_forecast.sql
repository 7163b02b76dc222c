-- One store's forecast for one month, item by item, from the newest run that forecast it.
-- Set the store and the month in `params`; by default store 1 and the first month after the
-- newest run (e.g. DATE '2025-01-01' for January 2025).
WITH params AS (
    SELECT 1 AS store_id,
           (SELECT (max(run_month) + INTERVAL '1 month')::date FROM forecasts_runs) AS forecast_month
)
SELECT l.item_id,
       round(l.prediction::numeric, 1) AS forecast_units,
       l.horizon,
       l.run_month,
       l.model_version,
       sum(round(l.prediction::numeric, 1)) OVER () AS store_total
FROM forecasts_latest AS l
JOIN params AS p ON l.store_id = p.store_id AND l.forecast_month = p.forecast_month
ORDER BY forecast_units DESC, l.item_id;
