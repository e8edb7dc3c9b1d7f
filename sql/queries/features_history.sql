-- Newest `limit` feature rows of a symbol in [start, end), returned oldest first.
SELECT symbol, interval, toUnixTimestamp64Milli(close_time) AS close_time, close,
       ret_1, ret_5, ret_15, rv_30, atr_14, rsi_14, vol_z_30, hl_range,
       sent_score, sent_cnt, sent_pos_ratio, sent_d1, sent_d5, sent_vol_30,
       sent_ema_5m, sent_ema_15m, sent_ema_60m, sent_composite, join_status
FROM (
    SELECT * FROM {db}.features FINAL
    WHERE symbol = {symbol:String} AND ({interval:String} = '' OR interval = {interval:String})
      AND close_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
      AND close_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY close_time DESC
    LIMIT {limit:UInt32}
)
ORDER BY close_time, interval
