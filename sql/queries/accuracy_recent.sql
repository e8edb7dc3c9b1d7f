-- Directional accuracy over the newest `limit` labeled predictions.
SELECT count() AS n, avg(correct) AS accuracy
FROM (
    SELECT toUInt8((p.prob >= 0.5) = (l.label = 1)) AS correct
    FROM (
        SELECT symbol, interval, horizon, close_time, prob FROM {db}.predictions FINAL
        WHERE ({model_version:String} = '' OR model_version = {model_version:String})
    ) AS p
    INNER JOIN (SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL) AS l
    USING (symbol, interval, horizon, close_time)
    ORDER BY p.close_time DESC
    LIMIT {limit:UInt32}
)
