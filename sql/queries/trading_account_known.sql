-- Does the account have any trading row?
SELECT 1 AS known FROM {db}.equity WHERE account = {account:String} LIMIT 1
UNION ALL
SELECT 1 AS known FROM {db}.risk_events WHERE account = {account:String} LIMIT 1
