-- Job kinds that have run against this store (any process).
SELECT DISTINCT kind FROM {db}.jobs ORDER BY kind LIMIT 100
