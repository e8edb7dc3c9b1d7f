-- Sentiment history, agg=last. A bucket of width `step` ms is labelled by its end t and
-- holds the bars [bar_end - bar_step, bar_end) with bar_end in (t - step, t].
SELECT intDiv(toUnixTimestamp64Milli(bar_end) + {step:Int64} - 1, {step:Int64}) * {step:Int64} AS t,
       argMaxIf(sent_score, bar_end, sent_score IS NOT NULL) AS sent_score,
       argMaxIf(sent_ema_5m, bar_end, sent_ema_5m IS NOT NULL) AS sent_ema_5m,
       argMaxIf(sent_ema_15m, bar_end, sent_ema_15m IS NOT NULL) AS sent_ema_15m,
       argMaxIf(sent_ema_60m, bar_end, sent_ema_60m IS NOT NULL) AS sent_ema_60m,
       argMaxIf(sent_composite, bar_end, sent_composite IS NOT NULL) AS sent_composite,
       sum(sent_cnt) AS ticks,
       count() AS bars
FROM {db}.sentiment_bars FINAL
WHERE symbol = {symbol:String} AND step = {bar_step:String}
  AND bar_end > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
  AND bar_end <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
GROUP BY t
ORDER BY t
