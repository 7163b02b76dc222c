-- The current forecast of every store and item: for each month still ahead of the newest
-- run, the forecast made from the most recent data (forecasts_latest keeps, per entity and
-- forecast month, the row of the newest run_month).
SELECT l.store_id,
       l.item_id,
       l.forecast_month,
       l.horizon,
       round(CAST(l.prediction AS NUMERIC), 1) AS forecast_units,
       l.run_month,
       l.model_version
FROM forecasts_latest AS l
WHERE l.forecast_month > (SELECT max(run_month) FROM forecasts_runs)
ORDER BY l.store_id, l.item_id, l.forecast_month;
