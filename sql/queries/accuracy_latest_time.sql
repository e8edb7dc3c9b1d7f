-- Newest close_time (ms) among labeled predictions; model_version '' = every version.
SELECT count() AS n, toUnixTimestamp64Milli(max(p.close_time)) AS end_ms
FROM (
    SELECT symbol, interval, horizon, close_time FROM {db}.predictions FINAL
    WHERE ({model_version:String} = '' OR model_version = {model_version:String})
) AS p
INNER JOIN (SELECT symbol, interval, horizon, close_time FROM {db}.labels FINAL) AS l
USING (symbol, interval, horizon, close_time)
