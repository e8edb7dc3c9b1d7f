-- The trading engine's state, stored with the trading rows after the first candle time of
-- every hour of event time (dataflows/trading/checkpoint.py). A restart without a recovery
-- store rebuilds the live book from the newest checkpoint at or before the account's last
-- portfolio row plus the stored bars after it, instead of from the whole history. `state` is
-- JSON (never pickle: the store is writable by more than the flow); `format` names its shape.
CREATE TABLE IF NOT EXISTS {db}.trading_checkpoints
(
    account LowCardinality(String),
    ts      DateTime64(3, 'UTC'),
    format  UInt16,
    state   String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (account, ts);
