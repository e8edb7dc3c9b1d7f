-- Directional accuracy of each model version over its own newest `limit` labeled
-- predictions (accuracy health per version, as the flow keeps it), newest version first.
SELECT model_version, count() AS n, avg(correct) AS accuracy, toUnixTimestamp64Milli(max(close_time)) AS last_ms
FROM (
    SELECT p.model_version AS model_version, p.close_time AS close_time,
           toUInt8((p.prob >= 0.5) = (l.label = 1)) AS correct
    FROM (
        SELECT symbol, interval, horizon, close_time, model_version, prob FROM {db}.predictions FINAL
    ) AS p
    INNER JOIN (SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL) AS l
    USING (symbol, interval, horizon, close_time)
    ORDER BY p.close_time DESC
    LIMIT {limit:UInt32} BY p.model_version
)
GROUP BY model_version
ORDER BY last_ms DESC
LIMIT 20
