-- The flow's feature-drift state per feature for one model version: its newest transition
-- event (feature_drift = entered drift, feature_drift_exit = left it) at or before `end`.
SELECT feature,
       argMax(kind, ts) AS last_kind,
       toUnixTimestamp64Milli(max(ts)) AS last_ms,
       argMax(value, ts) AS last_z
FROM {db}.drift_events FINAL
WHERE kind IN ('feature_drift', 'feature_drift_exit')
  AND model_version = {model_version:String}
  AND ts <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
GROUP BY feature
