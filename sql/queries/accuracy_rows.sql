-- (t, correct) of labeled predictions with close_time in [start, end]; correct = (prob >= 0.5) == label.
SELECT toUnixTimestamp64Milli(p.close_time) AS t, toUInt8((p.prob >= 0.5) = (l.label = 1)) AS correct
FROM (
    SELECT symbol, interval, horizon, close_time, prob FROM {db}.predictions FINAL
    WHERE ({model_version:String} = '' OR model_version = {model_version:String})
      AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
) AS p
INNER JOIN (
    SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL
    WHERE close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
) AS l
USING (symbol, interval, horizon, close_time)
ORDER BY t
