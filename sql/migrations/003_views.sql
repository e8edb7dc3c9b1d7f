-- Views for the common questions (issue 20), so a SQL user needs neither FINAL nor the
-- predictions ⋈ labels join. Each view reads its ReplacingMergeTree tables with FINAL
-- inside, so a replay or a crash-restart never shows twice through a view: query a view as
-- it is (the engine accepts `FROM view FINAL`, but it adds nothing).
-- Daily PnL and open positions come with the trading tables (orders, fills, positions,
-- equity), as views in the migration that adds them.

-- Every prediction that has its label: one row per (symbol, interval, horizon, close_time,
-- model_version). `correct` = the predicted direction (prob >= 0.5) was the realised one.
CREATE VIEW IF NOT EXISTS {db}.labeled_predictions AS
SELECT
    symbol,
    interval,
    horizon,
    close_time,
    p.model_version AS model_version,
    p.prob AS prob,
    l.label AS label,
    toUInt8((p.prob >= 0.5) = (l.label = 1)) AS correct,
    p.fallback_reason AS fallback_reason,
    p.latency_ms AS latency_ms,
    l.close_t AS close_t,
    l.close_th AS close_th
FROM (
    SELECT symbol, interval, horizon, close_time, model_version, prob, fallback_reason, latency_ms
    FROM {db}.predictions FINAL
) AS p
INNER JOIN (
    SELECT symbol, interval, horizon, close_time, label, close_t, close_th
    FROM {db}.labels FINAL
) AS l
USING (symbol, interval, horizon, close_time);

-- The newest prediction of each symbol (per interval and horizon). When several model
-- versions predicted that candle (a backfill served by another model), a model's row comes
-- before the baseline's, and the newest version name (m<UTC time>-…) first.
CREATE VIEW IF NOT EXISTS {db}.latest_predictions AS
SELECT symbol, interval, horizon, close_time, model_version, prob, fallback_reason, latency_ms
FROM {db}.predictions FINAL
ORDER BY symbol, interval, horizon, close_time DESC, model_version = 'baseline', model_version DESC
LIMIT 1 BY symbol, interval, horizon;

-- The calibration monitor's overall windows (not the per-symbol ones), every model version.
CREATE VIEW IF NOT EXISTS {db}.calibration_timeline AS
SELECT
    window_end,
    model_version,
    window_seconds,
    n,
    ece,
    ece_prod,
    delta_ece,
    delta_ece_ema,
    brier,
    roc_auc,
    pr_auc,
    accuracy,
    abs_streak,
    rel_streak,
    drift_on,
    state,
    recommendation,
    cooldown_remaining_s
FROM {db}.calibration_windows FINAL
WHERE scope = 'overall';

-- Directional accuracy per UTC day (of the candle's close) and model version, with the mean
-- predicted probability, the realised up-rate and the Brier score of the day.
CREATE VIEW IF NOT EXISTS {db}.daily_accuracy AS
SELECT
    toDate(close_time) AS day,
    model_version,
    count() AS n,
    avg(correct) AS accuracy,
    avg(prob) AS mean_prob,
    avg(label) AS up_rate,
    avg((prob - label) * (prob - label)) AS brier
FROM {db}.labeled_predictions
GROUP BY day, model_version;
