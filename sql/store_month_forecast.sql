-- One store's forecast for one month, item by item, from the newest run that forecast it.
-- Set the store and the month in `params`; by default store 1 and the first month after the
-- newest run. Write another month as date('2025-01-01') (January 2025): PostgreSQL and SQLite
-- both read that as the date.
WITH params AS (
    SELECT 1 AS store_id,
           (SELECT min(f.forecast_month) FROM forecasts AS f
            WHERE f.forecast_month > (SELECT max(r.run_month) FROM forecasts_runs AS r)) AS forecast_month
)
SELECT l.item_id,
       round(CAST(l.prediction AS NUMERIC), 1) AS forecast_units,
       l.horizon,
       l.run_month,
       l.model_version,
       sum(round(CAST(l.prediction AS NUMERIC), 1)) OVER () AS store_total
FROM forecasts_latest AS l
JOIN params AS p ON l.store_id = p.store_id AND l.forecast_month = p.forecast_month
ORDER BY forecast_units DESC, l.item_id;
