-- Newest `limit` orders of an account in [start, end) of decision time, newest first.
SELECT symbol, toUnixTimestamp64Milli(decision_time) AS decision_time, intent, side, order_type, reason, status, cause,
       notional, qty, reference_price, model_version, prob, toUnixTimestamp64Milli(updated_at) AS updated_at
FROM (
    SELECT * FROM {db}.orders FINAL
    WHERE account = {account:String} AND ({symbol:String} = '' OR symbol = {symbol:String})
      AND ({status:String} = '' OR status = {status:String})
      AND decision_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND decision_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY decision_time DESC, symbol
    LIMIT {limit:UInt32}
)
ORDER BY decision_time DESC, symbol
