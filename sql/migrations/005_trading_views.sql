-- Views for the trading questions (issue 20, after the trading tables of 004_trading.sql):
-- daily PnL per account and the open positions with their latest mark. Like 003_views.sql,
-- each reads its ReplacingMergeTree tables with FINAL inside, so a replay or a crash-restart
-- never counts a row twice; query them as they are. `account` is the live flow's
-- TRADING_ACCOUNT ('paper' by default) or a backtest's ('backtest').

-- PnL per account and UTC day (of the candle close), from the portfolio's equity marked at
-- every close (rows with symbol ''). The day's PnL is its last equity minus the previous
-- day's last equity; on an account's first day, minus the equity the engine started that
-- day with (`day_start_equity`: RISK_STARTING_EQUITY on a fresh account). Realized PnL
-- (before fees) and fees are the day's changes of the running totals; `fills` counts the
-- day's fills, `closed_trades` the positions closed that day, `max_drawdown` the deepest
-- drawdown from the running peak seen at a close of the day.
CREATE VIEW IF NOT EXISTS {db}.daily_pnl AS
SELECT
    d.account AS account,
    d.day AS day,
    d.start_equity AS start_equity,
    d.end_equity AS end_equity,
    d.end_equity - d.start_equity AS pnl,
    (d.end_equity - d.start_equity) / d.start_equity AS return,
    d.realized_end - d.realized_start AS realized_pnl,
    d.fees_end - d.fees_start AS fees,
    ifNull(f.fills, 0) AS fills,
    ifNull(c.closed_trades, 0) AS closed_trades,
    d.max_drawdown AS max_drawdown,
    d.closes AS closes
FROM (
    SELECT
        account,
        day,
        end_equity,
        if(n = 1, first_day_start, lagInFrame(end_equity) OVER w) AS start_equity,
        realized_end,
        if(n = 1, 0, lagInFrame(realized_end) OVER w) AS realized_start,
        fees_end,
        if(n = 1, 0, lagInFrame(fees_end) OVER w) AS fees_start,
        max_drawdown,
        closes
    FROM (
        SELECT
            account,
            toDate(ts) AS day,
            argMax(equity, ts) AS end_equity,
            argMin(day_start_equity, ts) AS first_day_start,
            argMax(realized_pnl, ts) AS realized_end,
            argMax(fees, ts) AS fees_end,
            max(drawdown) AS max_drawdown,
            count() AS closes,
            row_number() OVER (PARTITION BY account ORDER BY day) AS n
        FROM {db}.equity FINAL
        WHERE symbol = ''
        GROUP BY account, day
    )
    WINDOW w AS (PARTITION BY account ORDER BY day ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
) AS d
LEFT JOIN (
    SELECT account, toDate(fill_time) AS day, count() AS fills
    FROM {db}.fills FINAL
    GROUP BY account, day
) AS f ON f.account = d.account AND f.day = d.day
LEFT JOIN (
    SELECT account, toDate(closed_at) AS day, count() AS closed_trades
    FROM {db}.positions FINAL
    WHERE status = 'closed'
    GROUP BY account, day
) AS c ON c.account = d.account AND c.day = d.day;

-- The open positions of every account, each with its newest mark since it opened: the mark
-- price and unrealized PnL of the last candle close at which the engine marked the symbol
-- (`marked_at`), and the exposure at that mark (qty x mark).
CREATE VIEW IF NOT EXISTS {db}.open_positions AS
SELECT
    p.account AS account,
    p.symbol AS symbol,
    p.opened_at AS opened_at,
    p.side AS side,
    p.qty AS qty,
    p.entry_price AS entry_price,
    p.stop_price AS stop_price,
    p.target_price AS target_price,
    p.model_version AS model_version,
    p.prob AS prob,
    p.fees AS entry_fees,
    argMaxIf(e.mark_price, e.ts, e.ts >= p.opened_at) AS mark_price,
    maxIf(e.ts, e.ts >= p.opened_at) AS marked_at,
    argMaxIf(e.unrealized_pnl, e.ts, e.ts >= p.opened_at) AS unrealized_pnl,
    argMaxIf(e.exposure, e.ts, e.ts >= p.opened_at) AS exposure
FROM (
    SELECT account, symbol, opened_at, side, qty, entry_price, stop_price, target_price, model_version, prob, fees
    FROM {db}.positions FINAL
    WHERE status = 'open'
) AS p
LEFT JOIN (
    SELECT account, symbol, ts, mark_price, unrealized_pnl, exposure
    FROM {db}.equity FINAL
    WHERE symbol != '' AND position_qty != 0
) AS e ON e.account = p.account AND e.symbol = p.symbol
GROUP BY account, symbol, opened_at, side, qty, entry_price, stop_price, target_price, model_version, prob, entry_fees;
