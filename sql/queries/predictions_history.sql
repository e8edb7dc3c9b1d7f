-- Newest `limit` predictions of a symbol in [start, end), returned oldest first.
SELECT symbol, interval, toUnixTimestamp64Milli(close_time) AS close_time, horizon, model_version,
       prob, fallback_reason, latency_ms
FROM (
    SELECT * FROM {db}.predictions FINAL
    WHERE symbol = {symbol:String} AND ({interval:String} = '' OR interval = {interval:String})
      AND ({model_version:String} = '' OR model_version = {model_version:String})
      AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY close_time DESC
    LIMIT {limit:UInt32}
)
ORDER BY close_time, model_version
