SELECT DISTINCT symbol FROM {db}.candles ORDER BY symbol LIMIT {limit:UInt32}
