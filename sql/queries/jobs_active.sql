-- Jobs whose latest state is still queued or running (left behind by a stopped process).
SELECT job_id, kind, status, progress, message, params, result, error, trigger,
       toUnixTimestamp64Milli(created_at)  AS created_ms,
       toUnixTimestamp64Milli(started_at)  AS started_ms,
       toUnixTimestamp64Milli(finished_at) AS finished_ms,
       toUnixTimestamp64Milli(updated_at)  AS updated_ms
FROM {db}.jobs FINAL
WHERE status IN ('queued', 'running')
