-- Realised accuracy over time: for each month whose actuals are in, how the published forecasts
-- did at each horizon, against the best naive baseline made as of the same origin (lower WAPE
-- is better; fva, the forecast value added, > 0 means the forecasts beat every naive one).
-- Filled by the forecast_monitoring DAG (forecasting.monitoring.accuracy) after each publish.
SELECT a.forecast_month,
       a.horizon,
       a.run_month,
       a.model_version,
       a.forecasts,
       round(CAST(a.actual_sum AS NUMERIC), 0) AS actual_units,
       round(CAST(a.wape AS NUMERIC), 3) AS wape,
       round(CAST(a.bias_pct AS NUMERIC), 3) AS bias,
       a.best_naive,
       round(CAST(a.best_naive_wape AS NUMERIC), 3) AS best_naive_wape,
       round(CAST(a.fva AS NUMERIC), 3) AS fva
FROM forecasts_accuracy AS a
WHERE a.segment_column = '(all)'
ORDER BY a.forecast_month DESC, a.horizon;
