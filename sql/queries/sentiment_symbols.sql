-- Symbols with stored sentiment bars (for "did you mean" hints).
SELECT DISTINCT symbol FROM {db}.sentiment_bars ORDER BY symbol LIMIT {limit:UInt32}
