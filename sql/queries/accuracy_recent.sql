-- Directional accuracy over the newest `limit` labeled predictions.
SELECT count() AS n, avg(correct) AS accuracy
FROM (
    SELECT correct FROM {db}.labeled_predictions
    WHERE ({model_version:String} = '' OR model_version = {model_version:String})
    ORDER BY close_time DESC
    LIMIT {limit:UInt32}
)
