-- Each symbol's exposure at the account's latest candle close (open positions only).
SELECT symbol, exposure, unrealized_pnl FROM {db}.equity FINAL
WHERE account = {account:String} AND symbol != '' AND ts = fromUnixTimestamp64Milli({ts:Int64}, 'UTC') AND position_qty != 0
ORDER BY exposure DESC
