-- Drift events newest first; kind '' = every kind.
SELECT event_id, kind, toUnixTimestamp64Milli(ts) AS ts_ms, model_version, scope, feature, value, threshold, details
FROM (
    SELECT * FROM {db}.drift_events FINAL
    WHERE ({kind:String} = '' OR kind = {kind:String})
      AND ts >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND ts < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY ts DESC
    LIMIT {limit:UInt32}
)
ORDER BY ts_ms DESC, event_id
