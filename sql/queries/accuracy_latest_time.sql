-- Newest close_time (ms) among labeled predictions; model_version '' = every version.
SELECT count() AS n, toUnixTimestamp64Milli(max(close_time)) AS end_ms
FROM {db}.labeled_predictions
WHERE ({model_version:String} = '' OR model_version = {model_version:String})
