-- Latest calibration window per (model version, scope); model_version '' = every version.
SELECT model_version, scope, toUnixTimestamp64Milli(window_end) AS window_end_ms, window_seconds, n,
       ece, brier, roc_auc, pr_auc, accuracy, ece_prod, delta_ece, abs_streak, rel_streak,
       delta_ece_ema, drift_on, state, recommendation, cooldown_remaining_s
FROM {db}.calibration_windows FINAL
WHERE ({model_version:String} = '' OR model_version = {model_version:String})
ORDER BY window_end_ms DESC, model_version, scope
LIMIT 1 BY model_version, scope
LIMIT {limit:UInt32}
