-- 1 row when the symbol has any stored candle.
SELECT 1 AS known FROM {db}.candles WHERE symbol = {symbol:String} LIMIT 1
