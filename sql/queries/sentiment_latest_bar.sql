-- Newest stored bar of one symbol at the default step.
SELECT symbol, step, toUnixTimestamp64Milli(bar_end) AS bar_end_ms,
       sent_score, sent_cnt, sent_pos_ratio, sent_d1, sent_d5, sent_vol_30,
       sent_ema_5m, sent_ema_15m, sent_ema_60m, sent_composite, imputed
FROM {db}.sentiment_bars FINAL
WHERE symbol = {symbol:String} AND step = {step:String}
ORDER BY bar_end DESC
LIMIT 1
