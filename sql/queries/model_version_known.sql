-- 1 row when some prediction was made by this model version (the baseline included).
SELECT 1 AS known FROM {db}.predictions WHERE model_version = {model_version:String} LIMIT 1
