-- Per guard of an account: its newest event of each kind (trip, clear, refusal, control, warning) and counts.
SELECT guard, kind, count() AS n, toUnixTimestamp64Milli(max(ts)) AS last_ts, argMax(reason, ts) AS last_reason,
       argMax(value, ts) AS last_value, argMax(state, ts) AS last_state, argMax(symbol, ts) AS last_symbol
FROM {db}.risk_events FINAL
WHERE account = {account:String}
GROUP BY guard, kind
