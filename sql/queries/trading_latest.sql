-- The account's latest portfolio row (symbol ''): cash, equity, guards' inputs and flags.
SELECT toUnixTimestamp64Milli(ts) AS ts, cash, equity, exposure, unrealized_pnl, realized_pnl, fees, open_positions,
       peak_equity, drawdown, day_start_equity, day_pnl, halted, drawdown_halted, daily_loss_halted
FROM (
    SELECT * FROM {db}.equity FINAL
    WHERE account = {account:String} AND symbol = ''
    ORDER BY ts DESC
    LIMIT 1
)
