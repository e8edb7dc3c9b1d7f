-- Sentiment providers the store has seen: in accepted ticks, or named by rejected ones
-- (a provider the flow disabled after repeated failures may have no accepted tick at all).
SELECT provider FROM (
    SELECT DISTINCT provider FROM {db}.sentiment_ticks
    UNION DISTINCT
    SELECT DISTINCT provider FROM {db}.rejected_records WHERE provider != ''
)
ORDER BY provider
LIMIT {limit:UInt32}
