-- What a what-if scenario changes (forecasts_scenarios, written by the forecast_scenarios DAG):
-- per entity and forecast month, the forecast under one scenario beside the one under another
-- ('base': the plans as they stood when the month was forecast) and the uplift between them, in
-- units and as a share of the other, with the plan each one read. From the newest month whose
-- scenarios were published. Put the two scenarios to compare in `chosen`. Only the rows either
-- scenario plans are listed: every other forecast is the same under both. Largest uplift first.
WITH chosen AS (
    SELECT 'promo_beverages' AS scenario,
           'base' AS compared_with,
           (SELECT max(run_month) FROM forecasts_scenarios) AS run_month
)
SELECT s.store_id,
       s.item_id,
       s.forecast_month,
       s.horizon,
       round(CAST(b.prediction AS NUMERIC), 1) AS compared_units,
       round(CAST(s.prediction AS NUMERIC), 1) AS scenario_units,
       round(CAST(s.prediction - b.prediction AS NUMERIC), 1) AS uplift_units,
       round(CAST((s.prediction - b.prediction) / nullif(b.prediction, 0) AS NUMERIC), 3) AS uplift_share,
       b.plan_promo AS compared_promo,
       s.plan_promo AS scenario_promo,
       b.plan_price AS compared_price,
       s.plan_price AS scenario_price,
       s.run_month,
       s.model_version
FROM chosen AS c
JOIN forecasts_scenarios AS s
  ON s.scenario = c.scenario AND s.run_month = c.run_month
JOIN forecasts_scenarios AS b
  ON b.scenario = c.compared_with AND b.run_month = s.run_month
 AND b.store_id = s.store_id AND b.item_id = s.item_id AND b.horizon = s.horizon
WHERE s.overridden OR b.overridden
ORDER BY uplift_units DESC, s.store_id, s.item_id, s.forecast_month;
