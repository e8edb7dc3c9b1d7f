-- Candles whose label can be computed (candle T+h exists) but is missing (or all, with force),
-- older than min_age. Parameters: h, min_age_ms, limit, force, now_ms.
SELECT
    c.symbol AS symbol,
    c.interval AS interval,
    toUnixTimestamp64Milli(c.close_time) AS close_time,
    c.close AS close_t,
    n.close AS close_th
FROM {db}.candles AS c FINAL
INNER JOIN {db}.candles AS n FINAL
    ON n.symbol = c.symbol
    AND n.interval = c.interval
    AND toUnixTimestamp64Milli(n.close_time)
        = toUnixTimestamp64Milli(c.close_time)
          + {h:UInt16} * (toUnixTimestamp64Milli(c.close_time) - toUnixTimestamp64Milli(c.open_time))
WHERE toUnixTimestamp64Milli(c.close_time) <= {now_ms:Int64} - {min_age_ms:Int64}
  AND ({force:UInt8} = 1 OR (c.symbol, c.interval, c.close_time) NOT IN (
        SELECT symbol, interval, close_time FROM {db}.labels FINAL WHERE horizon = {h:UInt16}))
ORDER BY c.close_time, c.symbol
LIMIT {limit:UInt32}
