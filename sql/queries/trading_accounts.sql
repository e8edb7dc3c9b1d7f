-- Accounts with trading rows (the live one, backtests), for "unknown account" answers.
SELECT account FROM (
    SELECT DISTINCT account FROM {db}.equity
    UNION DISTINCT
    SELECT DISTINCT account FROM {db}.risk_events
)
ORDER BY account
LIMIT 100
