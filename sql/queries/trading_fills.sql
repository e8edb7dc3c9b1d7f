-- Newest `limit` fills of an account in [start, end) of fill time, newest first.
SELECT symbol, toUnixTimestamp64Milli(fill_time) AS fill_time, intent, side, qty, price, reference_price, notional,
       fee, fee_rate, liquidity, slippage_bps, reason, toUnixTimestamp64Milli(decision_time) AS decision_time,
       model_version, prob, position_id, realized_pnl
FROM (
    SELECT * FROM {db}.fills FINAL
    WHERE account = {account:String} AND ({symbol:String} = '' OR symbol = {symbol:String})
      AND fill_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND fill_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY fill_time DESC, symbol
    LIMIT {limit:UInt32}
)
ORDER BY fill_time DESC, symbol
