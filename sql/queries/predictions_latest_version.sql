-- The model version of the newest prediction (when no production model is registered).
SELECT model_version FROM {db}.predictions FINAL ORDER BY close_time DESC LIMIT 1
