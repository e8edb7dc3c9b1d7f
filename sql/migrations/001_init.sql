-- tickcast schema v1 (DESIGN §8). Every table is a ReplacingMergeTree keyed by its
-- natural key, so a replay or a crash-restart never duplicates a row in FINAL queries.
-- `{db}` is replaced by the database name (an identifier checked by the store).

CREATE TABLE IF NOT EXISTS {db}.sentiment_ticks
(
    id          String,
    symbol      LowCardinality(String),
    ts          DateTime64(3, 'UTC'),
    score       Float64,
    polarity    Int8,
    provider    LowCardinality(String),
    weight      Float64,
    meta        String,
    ingest_ts   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (symbol, ts, id);

CREATE TABLE IF NOT EXISTS {db}.sentiment_bars
(
    symbol          LowCardinality(String),
    step            LowCardinality(String),
    bar_end         DateTime64(3, 'UTC'),
    sent_score      Nullable(Float64),
    sent_cnt        UInt32,
    sent_pos_ratio  Nullable(Float64),
    sent_d1         Nullable(Float64),
    sent_d5         Nullable(Float64),
    sent_vol_30     Nullable(Float64),
    sent_ema_5m     Nullable(Float64),
    sent_ema_15m    Nullable(Float64),
    sent_ema_60m    Nullable(Float64),
    sent_composite  Nullable(Float64),
    imputed         UInt8
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(bar_end)
ORDER BY (symbol, step, bar_end);

CREATE TABLE IF NOT EXISTS {db}.candles
(
    symbol      LowCardinality(String),
    interval    LowCardinality(String),
    open_time   DateTime64(3, 'UTC'),
    close_time  DateTime64(3, 'UTC'),
    open        Float64,
    high        Float64,
    low         Float64,
    close       Float64,
    volume      Float64,
    ingest_ts   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(open_time)
ORDER BY (symbol, interval, open_time);

CREATE TABLE IF NOT EXISTS {db}.features
(
    symbol          LowCardinality(String),
    interval        LowCardinality(String),
    close_time      DateTime64(3, 'UTC'),
    close           Float64,
    ret_1           Nullable(Float64),
    ret_5           Nullable(Float64),
    ret_15          Nullable(Float64),
    rv_30           Nullable(Float64),
    atr_14          Nullable(Float64),
    rsi_14          Nullable(Float64),
    vol_z_30        Nullable(Float64),
    hl_range        Nullable(Float64),
    sent_score      Nullable(Float64),
    sent_cnt        Nullable(Float64),
    sent_pos_ratio  Nullable(Float64),
    sent_d1         Nullable(Float64),
    sent_d5         Nullable(Float64),
    sent_vol_30     Nullable(Float64),
    sent_ema_5m     Nullable(Float64),
    sent_ema_15m    Nullable(Float64),
    sent_ema_60m    Nullable(Float64),
    sent_composite  Nullable(Float64),
    join_status     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(close_time)
ORDER BY (symbol, interval, close_time);

CREATE TABLE IF NOT EXISTS {db}.predictions
(
    symbol          LowCardinality(String),
    interval        LowCardinality(String),
    close_time      DateTime64(3, 'UTC'),
    horizon         UInt16,
    model_version   LowCardinality(String),
    prob            Float64,
    fallback_reason LowCardinality(String),
    latency_ms      Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(close_time)
ORDER BY (symbol, interval, horizon, close_time, model_version);

CREATE TABLE IF NOT EXISTS {db}.labels
(
    symbol      LowCardinality(String),
    interval    LowCardinality(String),
    close_time  DateTime64(3, 'UTC'),
    horizon     UInt16,
    label       UInt8,
    close_t     Float64,
    close_th    Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(close_time)
ORDER BY (symbol, interval, horizon, close_time);

CREATE TABLE IF NOT EXISTS {db}.calibration_windows
(
    model_version   LowCardinality(String),
    scope           LowCardinality(String),
    window_end      DateTime64(3, 'UTC'),
    window_seconds  UInt32,
    n               UInt32,
    ece             Nullable(Float64),
    brier           Nullable(Float64),
    roc_auc         Nullable(Float64),
    pr_auc          Nullable(Float64),
    accuracy        Nullable(Float64),
    ece_prod        Nullable(Float64),
    delta_ece       Nullable(Float64),
    abs_streak      UInt32,
    rel_streak      UInt32,
    delta_ece_ema   Nullable(Float64),
    drift_on        UInt8,
    state           LowCardinality(String),
    recommendation  LowCardinality(String),
    cooldown_remaining_s Float64,
    bins            String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_end)
ORDER BY (model_version, scope, window_end);

CREATE TABLE IF NOT EXISTS {db}.drift_events
(
    event_id        String,
    kind            LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    model_version   LowCardinality(String),
    scope           LowCardinality(String),
    feature         LowCardinality(String),
    value           Nullable(Float64),
    threshold       Nullable(Float64),
    details         String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (kind, ts, event_id);

CREATE TABLE IF NOT EXISTS {db}.model_registry
(
    version     String,
    status      LowCardinality(String),
    created_at  DateTime64(3, 'UTC'),
    sha256      String,
    metrics     String,
    metadata    String,
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY version;

CREATE TABLE IF NOT EXISTS {db}.jobs
(
    job_id      String,
    kind        LowCardinality(String),
    status      LowCardinality(String),
    progress    Float64,
    message     String,
    params      String,
    result      String,
    error       String,
    trigger     LowCardinality(String),
    created_at  DateTime64(3, 'UTC'),
    started_at  Nullable(DateTime64(3, 'UTC')),
    finished_at Nullable(DateTime64(3, 'UTC')),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY job_id;

CREATE TABLE IF NOT EXISTS {db}.rejected_records
(
    id          String,
    source      LowCardinality(String),
    reason      String,
    provider    LowCardinality(String),
    payload     String,
    received_ts DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_ts)
ORDER BY (source, id);
