-- Newest `limit` feature rows at or before `end` (every symbol, or one), oldest first: the
-- stream the flow's feature-drift monitor sees, in its (close_time, symbol) order
-- (models/feature_drift.py), for rolling z per feature.
SELECT toUnixTimestamp64Milli(close_time) AS t, symbol,
       ret_1, ret_5, ret_15, rv_30, atr_14, rsi_14, vol_z_30, hl_range,
       sent_score, sent_cnt, sent_pos_ratio, sent_d1, sent_d5, sent_vol_30,
       sent_ema_5m, sent_ema_15m, sent_ema_60m, sent_composite
FROM (
    SELECT * FROM {db}.features FINAL
    WHERE ({symbol:String} = '' OR symbol = {symbol:String})
      AND ({interval:String} = '' OR interval = {interval:String})
      AND close_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
    ORDER BY close_time DESC, symbol DESC
    LIMIT {limit:UInt32}
)
ORDER BY t, symbol
