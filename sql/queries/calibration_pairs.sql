-- (prob, label) of one model version's labeled predictions with close_time in (start, end];
-- scope 'overall' or one symbol.
SELECT p.prob AS prob, l.label AS label
FROM (
    SELECT symbol, interval, horizon, close_time, prob FROM {db}.predictions FINAL
    WHERE model_version = {model_version:String}
      AND ({scope:String} = 'overall' OR symbol = {scope:String})
      AND close_time > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
) AS p
INNER JOIN (
    SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL
    WHERE ({scope:String} = 'overall' OR symbol = {scope:String})
      AND close_time > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
) AS l
USING (symbol, interval, horizon, close_time)
