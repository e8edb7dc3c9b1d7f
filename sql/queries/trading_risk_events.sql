-- Newest `limit` risk events of an account in [start, end), newest first.
SELECT toUnixTimestamp64Milli(ts) AS ts, guard, kind, symbol, value, threshold, state, reason, details, event_id
FROM (
    SELECT * FROM {db}.risk_events FINAL
    WHERE account = {account:String} AND ({guard:String} = '' OR guard = {guard:String})
      AND ts >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY ts DESC, guard
    LIMIT {limit:UInt32}
)
ORDER BY ts DESC, guard
