-- (prob, label) of one model version's labeled predictions with close_time in (start, end];
-- scope 'overall' or one symbol.
SELECT prob, label
FROM {db}.labeled_predictions
WHERE model_version = {model_version:String}
  AND ({scope:String} = 'overall' OR symbol = {scope:String})
  AND close_time > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
  AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
