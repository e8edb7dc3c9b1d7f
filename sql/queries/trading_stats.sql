-- Closed-position statistics of an account.
SELECT count() AS closed, countIf(realized_pnl - fees > 0) AS wins, sum(realized_pnl - fees) AS net_pnl, sum(fees) AS fees_paid
FROM {db}.positions FINAL
WHERE account = {account:String} AND status = 'closed'
