-- Bias by segment (the config's monitoring.segment column, e.g. category, and the age bucket of
-- new items, segment_column history_months: 1-2, 3-5, 6-23 months of history or established) over every month
-- scored so far, per horizon: > 0 means the segment is over-forecast. WAPE and bias are
-- re-aggregated from the monthly rows (weighted by units sold), not averaged.
SELECT a.segment_column,
       a.segment,
       a.horizon,
       count(*) AS months,
       sum(a.forecasts) AS forecasts,
       round(CAST(sum(a.actual_sum) AS NUMERIC), 0) AS actual_units,
       round(CAST(sum(a.prediction_sum) AS NUMERIC), 0) AS forecast_units,
       round(CAST((sum(a.prediction_sum) - sum(a.actual_sum)) / nullif(sum(a.actual_sum), 0) AS NUMERIC), 3)
           AS bias,
       round(CAST(sum(a.wape * a.actual_sum) / nullif(sum(a.actual_sum), 0) AS NUMERIC), 3) AS wape
FROM forecasts_accuracy AS a
WHERE a.segment_column <> '(all)'
GROUP BY a.segment_column, a.segment, a.horizon
ORDER BY a.segment_column, bias DESC, a.segment, a.horizon;
