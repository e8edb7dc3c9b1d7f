-- Calibration windows of one scope in [start, end), newest `limit`, returned oldest first.
SELECT model_version, scope, toUnixTimestamp64Milli(window_end) AS window_end_ms, window_seconds, n,
       ece, brier, roc_auc, pr_auc, accuracy, ece_prod, delta_ece, abs_streak, rel_streak,
       delta_ece_ema, drift_on, state, recommendation, cooldown_remaining_s, bins
FROM (
    SELECT * FROM {db}.calibration_windows FINAL
    WHERE ({model_version:String} = '' OR model_version = {model_version:String})
      AND scope = {scope:String}
      AND window_end >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND window_end < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY window_end DESC
    LIMIT {limit:UInt32}
)
ORDER BY window_end_ms, model_version
