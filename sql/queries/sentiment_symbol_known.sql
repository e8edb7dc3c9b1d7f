-- 1 row when the symbol has any stored tick or bar.
SELECT 1 AS known FROM (
    (SELECT 1 FROM {db}.sentiment_bars WHERE symbol = {symbol:String} LIMIT 1)
    UNION ALL
    (SELECT 1 FROM {db}.sentiment_ticks WHERE symbol = {symbol:String} LIMIT 1)
)
LIMIT 1
