-- Sentiment history, agg=count. A bucket of width `step` ms is labelled by its end t and
-- holds the bars [bar_end - bar_step, bar_end) with bar_end in (t - step, t].
SELECT intDiv(toUnixTimestamp64Milli(bar_end) + {step:Int64} - 1, {step:Int64}) * {step:Int64} AS t,
       count(sent_score) AS sent_score,
       count(sent_ema_5m) AS sent_ema_5m,
       count(sent_ema_15m) AS sent_ema_15m,
       count(sent_ema_60m) AS sent_ema_60m,
       count(sent_composite) AS sent_composite,
       sum(sent_cnt) AS ticks,
       count() AS bars
FROM {db}.sentiment_bars FINAL
WHERE symbol = {symbol:String} AND step = {bar_step:String}
  AND bar_end > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
  AND bar_end <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
GROUP BY t
ORDER BY t
