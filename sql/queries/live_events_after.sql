-- Stored live events of one stream after a client's Last-Event-ID, oldest first;
-- symbols [] = every symbol; events without a symbol go to everyone.
SELECT id, symbol, toUnixTimestamp64Milli(ts) AS ts_ms, data
FROM {db}.live_events FINAL
WHERE stream = {stream:String} AND id > {after:UInt64}
  AND (empty({symbols:Array(String)}) OR symbol = '' OR has({symbols:Array(String)}, symbol))
ORDER BY id
LIMIT {limit:UInt32}
