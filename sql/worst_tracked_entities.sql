-- The entities forecast with a persistent bias: the tracking signal (cumulative error / mean
-- absolute error over an entity's last 12 scored months) of next month's forecasts (horizon 1),
-- largest first in either direction. > 0: over-forecast month after month, < 0: under; beyond
-- about +-4 over several months the bias is rarely chance.
SELECT t.store_id,
       t.item_id,
       t.months,
       t.last_month,
       round(CAST(t.cumulative_error AS NUMERIC), 1) AS cumulative_error,
       round(CAST(t.mean_absolute_error AS NUMERIC), 1) AS mean_absolute_error,
       round(CAST(t.tracking_signal AS NUMERIC), 2) AS tracking_signal
FROM forecasts_tracking_signal AS t
WHERE t.horizon = 1 AND t.tracking_signal IS NOT NULL
ORDER BY abs(t.tracking_signal) DESC, t.months DESC, t.store_id, t.item_id
LIMIT 20;
