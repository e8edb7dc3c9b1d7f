-- The equity curve of an account (symbol '' = the portfolio) in [start, end): the last row of
-- every `step_ms` bucket (0 = every row), oldest first, at most `limit` points (the newest).
SELECT * EXCEPT (last_ms), last_ms AS ts FROM (
    SELECT toUnixTimestamp64Milli(max(ts)) AS last_ms, argMax(equity, ts) AS equity, argMax(cash, ts) AS cash,
           argMax(drawdown, ts) AS drawdown, argMax(peak_equity, ts) AS peak_equity,
           argMax(exposure, ts) AS exposure, argMax(unrealized_pnl, ts) AS unrealized_pnl,
           argMax(realized_pnl, ts) AS realized_pnl, argMax(fees, ts) AS fees,
           argMax(open_positions, ts) AS open_positions, argMax(day_pnl, ts) AS day_pnl,
           argMax(position_qty, ts) AS position_qty, argMax(mark_price, ts) AS mark_price
    FROM {db}.equity FINAL
    WHERE account = {account:String} AND symbol = {symbol:String}
      AND ts >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    GROUP BY if({step_ms:Int64} > 0, intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64}), toUnixTimestamp64Milli(ts))
    ORDER BY last_ms DESC
    LIMIT {limit:UInt32}
)
ORDER BY last_ms
