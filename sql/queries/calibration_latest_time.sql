-- Newest close_time (ms) among one model version's labeled predictions, and how many there are.
SELECT count() AS n, toUnixTimestamp64Milli(max(p.close_time)) AS end_ms
FROM (
    SELECT symbol, interval, horizon, close_time FROM {db}.predictions FINAL
    WHERE model_version = {model_version:String}
      AND ({scope:String} = 'overall' OR symbol = {scope:String})
) AS p
INNER JOIN (
    SELECT symbol, interval, horizon, close_time FROM {db}.labels FINAL
    WHERE ({scope:String} = 'overall' OR symbol = {scope:String})
) AS l
USING (symbol, interval, horizon, close_time)
