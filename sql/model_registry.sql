-- The model registry: every model the pipeline trained, newest first. Its holdout WAPE beside
-- the WAPE, on the same rows, of the champion it was compared with, of the best baseline and of
-- its blend with that baseline (the mean of the two forecasts); its status (champion, challenger,
-- rejected, retired), whose forecasts its run published (a model version, baseline:<name> or
-- blend:<version>+<baseline>), and who decided why (the gate, or a person's name).
SELECT m.model_version,
       m.run_month,
       m.status,
       round(CAST(m.holdout_wape AS NUMERIC), 3) AS holdout_wape,
       m.champion_version,
       round(CAST(m.champion_wape AS NUMERIC), 3) AS champion_wape,
       m.best_baseline,
       round(CAST(m.best_baseline_wape AS NUMERIC), 3) AS best_baseline_wape,
       round(CAST(m.blend_wape AS NUMERIC), 3) AS blend_wape,
       m.published,
       m.decision,
       m.decided_by,
       m.reason
FROM forecasts_models AS m
ORDER BY m.run_month DESC, m.created_at DESC, m.model_version;
