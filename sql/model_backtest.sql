-- Each model's rolling-origin backtest (a model refit at each of the holdout's last origins,
-- forecasting that origin's rows) beside its holdout score: the refit models' WAPE over every
-- origin against the best baseline's on the same rows, and per origin as JSON (origin, rows,
-- wape, baseline_wapes, best_baseline, best_baseline_wape). NULL: a model without a backtest.
SELECT m.model_version,
       m.run_month,
       m.status,
       round(CAST(m.holdout_wape AS NUMERIC), 3) AS holdout_wape,
       m.backtest_rows,
       round(CAST(m.backtest_wape AS NUMERIC), 3) AS backtest_wape,
       m.backtest_best_baseline,
       round(CAST(m.backtest_best_baseline_wape AS NUMERIC), 3) AS backtest_best_baseline_wape,
       m.backtest_origins
FROM forecasts_models AS m
ORDER BY m.run_month DESC, m.created_at DESC, m.model_version;
