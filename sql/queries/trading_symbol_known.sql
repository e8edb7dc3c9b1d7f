-- Does any account have trading rows of the symbol (a symbol can be traded before its candles are kept)?
SELECT 1 AS known FROM {db}.equity WHERE symbol = {symbol:String} LIMIT 1
UNION ALL
SELECT 1 AS known FROM {db}.risk_events WHERE symbol = {symbol:String} LIMIT 1
