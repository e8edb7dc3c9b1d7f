-- Model versions that made predictions (for "known versions" hints in 404s).
SELECT DISTINCT model_version FROM {db}.predictions ORDER BY model_version LIMIT {limit:UInt32}
