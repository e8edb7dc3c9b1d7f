-- Sentiment history: every aggregate (mean, min, max, last, count) of every column, so one
-- query serves each `agg`; the handler returns the columns of the requested one as
-- sent_score, sent_ema_*, sent_composite. A bucket of width `step` ms is labelled by its end t
-- and holds the bars [bar_end - bar_step, bar_end) with bar_end in (t - step, t].
SELECT intDiv(toUnixTimestamp64Milli(bar_end) + {step:Int64} - 1, {step:Int64}) * {step:Int64} AS t,
       avg(sent_score) AS mean__sent_score,
       avg(sent_ema_5m) AS mean__sent_ema_5m,
       avg(sent_ema_15m) AS mean__sent_ema_15m,
       avg(sent_ema_60m) AS mean__sent_ema_60m,
       avg(sent_composite) AS mean__sent_composite,
       min(sent_score) AS min__sent_score,
       min(sent_ema_5m) AS min__sent_ema_5m,
       min(sent_ema_15m) AS min__sent_ema_15m,
       min(sent_ema_60m) AS min__sent_ema_60m,
       min(sent_composite) AS min__sent_composite,
       max(sent_score) AS max__sent_score,
       max(sent_ema_5m) AS max__sent_ema_5m,
       max(sent_ema_15m) AS max__sent_ema_15m,
       max(sent_ema_60m) AS max__sent_ema_60m,
       max(sent_composite) AS max__sent_composite,
       argMaxIf(sent_score, bar_end, sent_score IS NOT NULL) AS last__sent_score,
       argMaxIf(sent_ema_5m, bar_end, sent_ema_5m IS NOT NULL) AS last__sent_ema_5m,
       argMaxIf(sent_ema_15m, bar_end, sent_ema_15m IS NOT NULL) AS last__sent_ema_15m,
       argMaxIf(sent_ema_60m, bar_end, sent_ema_60m IS NOT NULL) AS last__sent_ema_60m,
       argMaxIf(sent_composite, bar_end, sent_composite IS NOT NULL) AS last__sent_composite,
       count(sent_score) AS count__sent_score,
       count(sent_ema_5m) AS count__sent_ema_5m,
       count(sent_ema_15m) AS count__sent_ema_15m,
       count(sent_ema_60m) AS count__sent_ema_60m,
       count(sent_composite) AS count__sent_composite,
       sum(sent_cnt) AS ticks,
       count() AS bars
FROM {db}.sentiment_bars FINAL
WHERE symbol = {symbol:String} AND step = {bar_step:String}
  AND bar_end > fromUnixTimestamp64Milli({start:Int64}, 'UTC')
  AND bar_end <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')
GROUP BY t
ORDER BY t
