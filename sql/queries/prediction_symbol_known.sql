-- 1 row when the symbol has any stored prediction (a calibration scope).
SELECT 1 AS known FROM {db}.predictions WHERE symbol = {symbol:String} LIMIT 1
