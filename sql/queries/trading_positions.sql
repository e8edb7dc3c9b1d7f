-- Positions of an account (open, closed or all), newest first; open ones with their latest mark.
SELECT p.symbol AS symbol, toUnixTimestamp64Milli(p.opened_at) AS opened_at, p.status AS status, p.side AS side,
       p.qty AS qty, p.entry_price AS entry_price, toUnixTimestamp64Milli(p.entry_decision_time) AS entry_decision_time,
       p.stop_price AS stop_price, p.target_price AS target_price, p.model_version AS model_version, p.prob AS prob,
       if(p.status = 'closed', toUnixTimestamp64Milli(p.closed_at), NULL) AS closed_at, p.exit_price AS exit_price,
       p.exit_reason AS exit_reason, p.realized_pnl AS realized_pnl, p.fees AS fees,
       if(p.status = 'open', m.mark_price, p.exit_price) AS mark_price,
       if(p.status = 'open', m.unrealized_pnl, 0) AS unrealized_pnl,
       if(p.status = 'open', toUnixTimestamp64Milli(m.mark_ts), NULL) AS marked_at
FROM (
    SELECT * FROM {db}.positions FINAL
    WHERE account = {account:String} AND ({symbol:String} = '' OR symbol = {symbol:String})
      AND ({status:String} = 'all' OR status = {status:String})
    ORDER BY opened_at DESC
    LIMIT {limit:UInt32}
) AS p
LEFT JOIN (
    SELECT symbol, argMax(mark_price, ts) AS mark_price, argMax(unrealized_pnl, ts) AS unrealized_pnl, max(ts) AS mark_ts
    FROM {db}.equity FINAL
    WHERE account = {account:String} AND symbol != '' AND position_qty != 0
    GROUP BY symbol
) AS m ON m.symbol = p.symbol
ORDER BY opened_at DESC
