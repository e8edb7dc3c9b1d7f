-- Newest close_time (ms) among one model version's labeled predictions, and how many there are.
SELECT count() AS n, toUnixTimestamp64Milli(max(close_time)) AS end_ms
FROM {db}.labeled_predictions
WHERE model_version = {model_version:String}
  AND ({scope:String} = 'overall' OR symbol = {scope:String})
