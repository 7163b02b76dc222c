-- Forecasts against what was sold, once the forecast month is over: per run and horizon,
-- WAPE (sum of absolute errors / sum of units) and bias (sum of errors / sum of units; > 0
-- means over-forecasting). Actuals come from the source's `sales` table (store_id, item_id,
-- month, units): this runs where that table is reachable from the predictions database
-- (the same database, a copy, or a postgres_fdw foreign table named sales).
-- An entity forecast but not listed in a month counts as 0 units sold.
SELECT f.run_month,
       f.horizon,
       f.model_version,
       count(*) AS forecasts,
       count(s.units) AS with_sales_row,
       round(CAST(sum(coalesce(s.units, 0)) AS NUMERIC), 0) AS actual_units,
       round(CAST(sum(f.prediction) AS NUMERIC), 0) AS forecast_units,
       round(CAST(sum(abs(f.prediction - coalesce(s.units, 0)))
                  / nullif(sum(coalesce(s.units, 0)), 0) AS NUMERIC), 3) AS wape,
       round(CAST(sum(f.prediction - coalesce(s.units, 0))
                  / nullif(sum(coalesce(s.units, 0)), 0) AS NUMERIC), 3) AS bias
FROM forecasts AS f
LEFT JOIN sales AS s
       ON s.store_id = f.store_id AND s.item_id = f.item_id AND s.month = f.forecast_month
WHERE f.forecast_month <= (SELECT max(month) FROM sales)
GROUP BY f.run_month, f.horizon, f.model_version
ORDER BY f.run_month, f.horizon;
