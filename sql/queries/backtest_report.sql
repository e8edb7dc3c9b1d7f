-- The newest backtest report (or the one with `report_id`).
SELECT report_id, account, toUnixTimestamp64Milli(created_at) AS created_at, source, report
FROM {db}.backtest_reports FINAL
WHERE {report_id:String} = '' OR report_id = {report_id:String}
ORDER BY created_at DESC
LIMIT 1
