-- Trading (docs/design.md §11): the paper-trading stage's records. Every table is a
-- ReplacingMergeTree on its natural key, so a replay or a crash-restart gives the same rows in
-- FINAL; `account` leads every key (the live flow writes TRADING_ACCOUNT, "paper" by default;
-- `tickcast backtest` writes under its own account). Orders and positions change status:
-- their version column is the event time of the change, so the latest status wins.

CREATE TABLE IF NOT EXISTS {db}.orders
(
    account         LowCardinality(String),
    symbol          LowCardinality(String),
    decision_time   DateTime64(3, 'UTC'),
    intent          LowCardinality(String),
    side            LowCardinality(String),
    order_type      LowCardinality(String),
    reason          LowCardinality(String),
    status          LowCardinality(String),
    cause           String,
    notional        Float64,
    qty             Float64,
    reference_price Float64,
    model_version   LowCardinality(String),
    prob            Float64,
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(decision_time)
ORDER BY (account, symbol, decision_time, intent);

CREATE TABLE IF NOT EXISTS {db}.fills
(
    account         LowCardinality(String),
    symbol          LowCardinality(String),
    fill_time       DateTime64(3, 'UTC'),
    intent          LowCardinality(String),
    side            LowCardinality(String),
    qty             Float64,
    price           Float64,
    reference_price Float64,
    notional        Float64,
    fee             Float64,
    fee_rate        Float64,
    liquidity       LowCardinality(String),
    slippage_bps    Float64,
    reason          LowCardinality(String),
    decision_time   DateTime64(3, 'UTC'),
    model_version   LowCardinality(String),
    prob            Float64,
    position_id     Int64,
    realized_pnl    Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(fill_time)
ORDER BY (account, symbol, fill_time, intent);

CREATE TABLE IF NOT EXISTS {db}.positions
(
    account             LowCardinality(String),
    symbol              LowCardinality(String),
    opened_at           DateTime64(3, 'UTC'),
    status              LowCardinality(String),
    side                LowCardinality(String),
    qty                 Float64,
    entry_price         Float64,
    entry_decision_time DateTime64(3, 'UTC'),
    stop_price          Nullable(Float64),
    target_price        Nullable(Float64),
    model_version       LowCardinality(String),
    prob                Float64,
    closed_at           DateTime64(3, 'UTC'),
    exit_price          Nullable(Float64),
    exit_reason         LowCardinality(String),
    realized_pnl        Float64,
    fees                Float64,
    updated_at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (account, symbol, opened_at);

CREATE TABLE IF NOT EXISTS {db}.equity
(
    account           LowCardinality(String),
    symbol            LowCardinality(String),
    ts                DateTime64(3, 'UTC'),
    cash              Float64,
    equity            Float64,
    position_qty      Float64,
    mark_price        Nullable(Float64),
    exposure          Float64,
    unrealized_pnl    Float64,
    realized_pnl      Float64,
    fees              Float64,
    open_positions    UInt32,
    peak_equity       Float64,
    drawdown          Float64,
    day_start_equity  Float64,
    day_pnl           Float64,
    halted            UInt8,
    drawdown_halted   UInt8,
    daily_loss_halted UInt8
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (account, symbol, ts);

CREATE TABLE IF NOT EXISTS {db}.risk_events
(
    account   LowCardinality(String),
    ts        DateTime64(3, 'UTC'),
    guard     LowCardinality(String),
    kind      LowCardinality(String),
    symbol    LowCardinality(String),
    value     Nullable(Float64),
    threshold Nullable(Float64),
    state     LowCardinality(String),
    reason    String,
    details   String,
    event_id  String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (account, ts, guard, event_id);

CREATE TABLE IF NOT EXISTS {db}.backtest_reports
(
    report_id   String,
    account     LowCardinality(String),
    created_at  DateTime64(3, 'UTC'),
    source      LowCardinality(String),
    start_ts    DateTime64(3, 'UTC'),
    end_ts      DateTime64(3, 'UTC'),
    report      String
)
ENGINE = ReplacingMergeTree
ORDER BY (report_id);
