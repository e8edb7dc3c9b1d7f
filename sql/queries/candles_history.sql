-- Newest `limit` candles of a symbol closing in [start, end), returned oldest first.
SELECT symbol, interval, toUnixTimestamp64Milli(open_time) AS open_time, toUnixTimestamp64Milli(close_time) AS close_time,
       open, high, low, close, volume, toUnixTimestamp64Milli(ingest_ts) AS ingest_ts
FROM (
    SELECT * FROM {db}.candles FINAL
    WHERE symbol = {symbol:String} AND ({interval:String} = '' OR interval = {interval:String})
      AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY close_time DESC
    LIMIT {limit:UInt32}
)
ORDER BY close_time, interval
