-- (t, correct) of labeled predictions with close_time in [start, end]; correct = (prob >= 0.5) == label.
SELECT toUnixTimestamp64Milli(close_time) AS t, correct
FROM {db}.labeled_predictions
WHERE ({model_version:String} = '' OR model_version = {model_version:String})
  AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
  AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
ORDER BY t
