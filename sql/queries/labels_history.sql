-- Newest `limit` labels of a symbol in [start, end), returned oldest first.
SELECT symbol, interval, toUnixTimestamp64Milli(close_time) AS close_time, horizon, label, close_t, close_th
FROM (
    SELECT * FROM {db}.labels FINAL
    WHERE symbol = {symbol:String} AND ({interval:String} = '' OR interval = {interval:String})
      AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY close_time DESC
    LIMIT {limit:UInt32}
)
ORDER BY close_time, horizon
