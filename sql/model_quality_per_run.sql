-- Which model made each month's forecasts, and how it scored on its holdout against the
-- best naive baseline (lower WAPE is better; improvement > 0 means the model beat it).
SELECT r.run_month,
       r.model_version,
       r.run_id,
       r.created_at,
       r.forecasts,
       round(CAST(r.holdout_wape AS NUMERIC), 3) AS holdout_wape,
       r.best_baseline,
       round(CAST(r.best_baseline_wape AS NUMERIC), 3) AS best_baseline_wape,
       round(CAST(1 - r.holdout_wape / nullif(r.best_baseline_wape, 0) AS NUMERIC), 3) AS improvement,
       r.holdout_wape < r.best_baseline_wape AS beats_baseline
FROM forecasts_runs AS r
ORDER BY r.run_month DESC;
