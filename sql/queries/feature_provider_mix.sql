-- Provider mix behind a symbol's sentiment features: ticks, trust weight and mean score per
-- provider over the `minutes` before the symbol's newest tick (event time, so a fast
-- simulator or a replay shows the same mix as real time).
WITH (SELECT max(ts) FROM {db}.sentiment_ticks WHERE symbol = {symbol:String}) AS newest
SELECT provider,
       count() AS ticks,
       sum(weight) AS weight,
       avg(score) AS mean_score,
       countIf(polarity = 1) AS positive,
       toUnixTimestamp64Milli(newest) AS end_ms
FROM {db}.sentiment_ticks FINAL
WHERE symbol = {symbol:String}
  AND ts > newest - toIntervalMinute({minutes:UInt32})
GROUP BY provider
ORDER BY ticks DESC, provider
