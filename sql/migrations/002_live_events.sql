-- Live events published to SSE clients, kept so a client can resume after Last-Event-ID.
-- Ids are process-monotonic (wall-clock ms << 12 | counter); TTL bounds the table.

CREATE TABLE IF NOT EXISTS {db}.live_events
(
    stream  LowCardinality(String),
    id      UInt64,
    symbol  LowCardinality(String),
    ts      DateTime64(3, 'UTC'),
    data    String,
    created DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(created)
ORDER BY (stream, id)
TTL created + INTERVAL 7 DAY;
