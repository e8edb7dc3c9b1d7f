// VITE_USE_MOCKS=1 (seed 000 §4): the dashboard on mock data, for UI work with no backend
// state. GET /api/ui-config says `use_mocks: true`; app.js then installs this module, which
// answers the page's REST calls from a small market simulated in the browser (same shapes as
// the API) and replaces EventSource with streams that deliver live-looking events (sentiment
// ticks every second, a candle close with predictions every minute, job progress).
// Nothing here reaches the backend except the page's own files and /api/ui-config.
import { ApiError } from "./api.js";

const MIN = 60_000;
const HISTORY_MIN = 360;
const SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "ADAUSDT"];
const START_PRICE = { BTCUSDT: 64000, ETHUSDT: 3100, XRPUSDT: 0.52, SOLUSDT: 145, ADAUSDT: 0.41 };
const PROVIDERS = [["newsapi", 1.0], ["reddit", 0.6], ["twitter", 0.8]];
const FEATURES = ["ret_1", "ret_5", "ret_15", "rv_30", "atr_14", "rsi_14", "vol_z_30", "hl_range", "sent_score", "sent_ema_15m"];
const MODEL = "m-mock-0001";

// a seeded PRNG: the same mock market on every load
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(20251121);
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

// --- the simulated market -------------------------------------------------------------------------
const M = { symbols: {}, lastClose: 0, events: [], jobs: [], nextId: 1 };

function emaStep(prev, value, alpha) { return prev === null ? value : alpha * value + (1 - alpha) * prev; }

function addMinute(symbol, closeTime) {
  const s = M.symbols[symbol];
  const sent = clamp(0.8 * s.sentLevel + 0.35 * gauss() * 0.5, -1, 1);
  s.sentLevel = sent;
  const ret = 0.0004 * sent + 0.0015 * gauss();
  const open = s.price;
  const close = open * Math.exp(ret);
  const high = Math.max(open, close) * (1 + Math.abs(gauss()) * 0.0008);
  const low = Math.min(open, close) * (1 - Math.abs(gauss()) * 0.0008);
  s.price = close;
  const cnt = Math.floor(2 + rand() * 8);
  s.ema = { "5m": emaStep(s.ema["5m"], sent, 0.18), "15m": emaStep(s.ema["15m"], sent, 0.064), "60m": emaStep(s.ema["60m"], sent, 0.017) };
  const prev = s.candles[s.candles.length - 1];
  if (prev) s.labels.push({ symbol, interval: "1m", close_time: prev.close_time, horizon: 1, label: close > prev.close ? 1 : 0, close_t: prev.close, close_th: close });
  s.candles.push({ symbol, interval: "1m", open_time: closeTime - MIN, close_time: closeTime, open, high, low, close, volume: 50 + rand() * 200, ingest_ts: closeTime });
  s.bars.push({ t: closeTime, sent_score: sent, sent_ema_5m: s.ema["5m"], sent_ema_15m: s.ema["15m"], sent_ema_60m: s.ema["60m"], sent_composite: null, ticks: cnt, bars: 1, pos: rand() });
  const prob = clamp(1 / (1 + Math.exp(-(2.2 * s.ema["15m"] + 0.3 * gauss()))), 0.02, 0.98);
  const pred = { symbol, interval: "1m", close_time: closeTime, horizon: 1, model_version: MODEL, prob, fallback_reason: "", latency_ms: 2 + rand() * 6 };
  s.preds.push(pred);
  for (const key of ["candles", "bars", "preds", "labels"]) if (s[key].length > HISTORY_MIN + 5) s[key].shift();
  return pred;
}

function init() {
  const now = Math.floor(Date.now() / MIN) * MIN;
  for (const symbol of SYMBOLS) {
    M.symbols[symbol] = { price: START_PRICE[symbol], sentLevel: 0, ema: { "5m": null, "15m": null, "60m": null }, candles: [], bars: [], preds: [], labels: [] };
    for (let i = HISTORY_MIN; i >= 1; i -= 1) addMinute(symbol, now - i * MIN + MIN);
  }
  M.lastClose = now;
  const t0 = now - 50 * MIN;
  M.events = [
    { event_id: "e1", kind: "feature_drift", ts_ms: t0, model_version: MODEL, scope: "overall", feature: "atr_14", value: 3.4, threshold: 3, details: { window: 200 } },
    { event_id: "e2", kind: "recalibrate", ts_ms: t0 + 20 * MIN, model_version: MODEL, scope: "overall", feature: "ece", value: 0.12, threshold: 0.1, details: { delta_ece_ema: 0.13, abs_streak: 5, rel_streak: 5 } },
  ];
  M.jobs = [mockJob("train", "schedule", "succeeded", 1, now - 90 * MIN, { version: MODEL, passed: true, roc_auc: 0.71, ece: 0.03, promoted: true }),
    mockJob("labeler", "api", "succeeded", 1, now - 30 * MIN, { labeled: 1000 })];
}

function mockJob(kind, trigger, status, progress, at, result = null) {
  return {
    job_id: `mock${String(M.nextId++).padStart(12, "0")}`, kind, trigger, status, progress, params: {}, result, error: "",
    message: status === "succeeded" ? "done" : "fit estimator", message_code: status === "succeeded" ? "stage.done" : "stage.fit_estimator",
    message_params: {}, error_code: null, error_params: null, created_at: at, started_at: at, finished_at: status === "succeeded" ? at + 42_000 : null, updated_at: at,
  };
}

// --- paper trading: the strategy of dataflows/trading run over the mock market ---------------------
const BOOK = { start: 10_000, size: 100, fee: 0.001, entry: 0.55, exit: 0.5, max: 5 };

function paperBook() {
  const times = M.symbols[SYMBOLS[0]].candles.map((c) => c.close_time);
  let cash = BOOK.start;
  let peak = BOOK.start;
  let realized = 0;
  let fees = 0;
  const open = {};
  const fills = [];
  const positions = [];
  const curve = [];
  const fill = (symbol, t, side, intent, reason, qty, px, decision, prob, pnl) => {
    const fee = qty * px * BOOK.fee;
    fees += fee;
    fills.push({ symbol, fill_time: t, intent, side, qty, price: px, reference_price: px, notional: qty * px, fee, fee_rate: BOOK.fee, liquidity: "taker", slippage_bps: 0, reason, decision_time: decision, model_version: MODEL, prob, position_id: 0, realized_pnl: pnl });
    return fee;
  };
  for (let i = 0; i < times.length - 1; i += 1) {
    for (const symbol of SYMBOLS) {
      const s = M.symbols[symbol];
      const pred = s.preds[i];
      const next = s.candles[i + 1];
      if (!pred || !next) continue;
      const pos = open[symbol];
      if (!pos && pred.prob >= BOOK.entry && Object.keys(open).length < BOOK.max) {
        const qty = BOOK.size / next.open;
        cash -= BOOK.size + fill(symbol, next.open_time, "buy", "entry", "entry", qty, next.open, pred.close_time, pred.prob, 0);
        open[symbol] = { symbol, opened_at: next.open_time, status: "open", side: "long", qty, entry_price: next.open, entry_decision_time: pred.close_time, stop_price: null, target_price: null, model_version: MODEL, prob: pred.prob, closed_at: null, exit_price: null, exit_reason: "", realized_pnl: 0, fees: 0 };
      } else if (pos && pred.prob <= BOOK.exit) {
        const pnl = pos.qty * (next.open - pos.entry_price);
        cash += pos.qty * next.open - fill(symbol, next.open_time, "sell", "exit", "exit", pos.qty, next.open, pred.close_time, pred.prob, pnl);
        realized += pnl;
        positions.push({ ...pos, status: "closed", closed_at: next.open_time, exit_price: next.open, exit_reason: "exit", realized_pnl: pnl });
        delete open[symbol];
      }
    }
    const marks = Object.values(open).map((p) => [p, M.symbols[p.symbol].candles[i + 1].close]);
    const exposure = marks.reduce((a, [p, c]) => a + p.qty * c, 0);
    const unrealized = marks.reduce((a, [p, c]) => a + p.qty * (c - p.entry_price), 0);
    const equity = cash + exposure;
    peak = Math.max(peak, equity);
    curve.push({ ts: times[i + 1], equity, cash, drawdown: 1 - equity / peak, peak_equity: peak, exposure, unrealized_pnl: unrealized, realized_pnl: realized, fees, day_pnl: equity - BOOK.start, position_qty: 0, mark_price: null, open_positions: marks.length });
  }
  const last = times.length - 1;
  const openRows = Object.values(open).map((p) => {
    const mark = M.symbols[p.symbol].candles[last].close;
    return { ...p, mark_price: mark, unrealized_pnl: p.qty * (mark - p.entry_price), marked_at: times[last] };
  });
  return { fills: fills.reverse(), open: openRows, closed: positions.reverse(), curve, cash, realized, fees };
}

function tradingGet(path, q) {
  const b = paperBook();
  const now = b.curve.at(-1) || { ts: M.lastClose, equity: BOOK.start, cash: BOOK.start, drawdown: 0, peak_equity: BOOK.start, exposure: 0, unrealized_pnl: 0, day_pnl: 0, open_positions: 0 };
  const account = q.account || "paper";
  switch (path) {
    case "/api/trading/summary": {
      const wins = b.closed.filter((p) => p.realized_pnl > 0).length;
      return { account, as_of: now.ts, starting_equity: BOOK.start, equity: now.equity, total_return: now.equity / BOOK.start - 1, cash: now.cash, realized_pnl: b.realized, unrealized_pnl: now.unrealized_pnl, fees: b.fees, exposure: now.exposure, open_positions: b.open.length, drawdown: now.drawdown, peak_equity: now.peak_equity, day_pnl: now.day_pnl, trades: b.closed.length, hit_rate: b.closed.length ? wins / b.closed.length : null, net_pnl_closed: b.realized, blocking: [], thresholds: { entry: BOOK.entry, exit: BOOK.exit, interval: "1m", base_size: BOOK.size, sizing: "fixed" } };
    }
    case "/api/trading/risk": {
      const g = (guard, limit, value, extra = {}) => ({ guard, limit, value, state: "ok", events: {}, ...extra });
      return { account, exchange: { mode: "paper", account_type: "spot", why: "mock mode" }, as_of: now.ts, guards: [
        g("kill_switch", null, 0, { blocks_entries: false, last_change: null }),
        g("drawdown", 0.1, now.drawdown, { blocks_entries: false, reset: "POST /admin/trading/reset-drawdown", flatten_on_trip: false, last_trip: null }),
        g("daily_loss", 0.03, Math.max(0, -now.day_pnl / BOOK.start), { blocks_entries: false, day_boundary: "00:00 UTC (RISK_DAILY_LOSS_TIMEZONE)", last_trip: null }),
        g("symbol_exposure", 0.25, b.open.length ? BOOK.size / now.equity : 0, { symbol: b.open[0]?.symbol ?? null, last_refusal: null }),
        g("concurrency", BOOK.max, b.open.length, { state: b.open.length >= BOOK.max ? "full" : "ok", last_refusal: null }),
        g("slippage", 50, 0, { last_refusal: null }),
      ] };
    }
    case "/api/trading/positions": {
      const rows = q.status === "closed" ? b.closed : q.status === "all" ? [...b.open, ...b.closed] : b.open;
      return { account, status: q.status || "open", count: rows.length, positions: rows.slice(0, Number(q.limit || 500)) };
    }
    case "/api/trading/fills": return { account, count: Math.min(b.fills.length, Number(q.limit || 500)), fills: b.fills.slice(0, Number(q.limit || 500)) };
    case "/api/trading/equity": return { account, symbol: null, step_ms: 0, starting_equity: BOOK.start, count: b.curve.length, points: b.curve };
    case "/api/trading/backtest": {
      const net = b.closed.map((p) => p.realized_pnl);
      const report = { total_return: now.equity / BOOK.start - 1, sharpe: 1.2, max_drawdown: Math.max(0, ...b.curve.map((p) => p.drawdown)), hit_rate: net.length ? net.filter((x) => x > 0).length / net.length : null, profit_factor: 1.1, fees: b.fees, turnover: (b.fills.length * BOOK.size) / BOOK.start, exposure_time: 0.6, trades: net.length, per_symbol: Object.fromEntries(SYMBOLS.map((s) => { const mine = b.closed.filter((p) => p.symbol === s); return [s, { net_pnl: mine.reduce((a, p) => a + p.realized_pnl, 0), trades: mine.length, hit_rate: mine.length ? mine.filter((p) => p.realized_pnl > 0).length / mine.length : 0, fees: 0 }]; })) };
      return { report_id: "mock0001", created_at: M.lastClose, account: "paper", source: "store", report, ablation: { with_sentiment: { total_return: 0.004 }, without_sentiment: { total_return: -0.002 } } };
    }
    default: throw new ApiError(404, `mock mode (VITE_USE_MOCKS=1): no mock answer for GET ${path}`);
  }
}

// --- REST answers (the API's shapes) -------------------------------------------------------------
function range(rows, q, key = "close_time") {
  const start = q.start !== undefined ? Number(q.start) : -Infinity;
  const end = q.end !== undefined ? Number(q.end) : Infinity;
  const limit = q.limit !== undefined ? Number(q.limit) : 500;
  const sel = rows.filter((r) => r[key] >= start && r[key] < end);
  return sel.slice(-limit);
}

function rowsOf(symbol, key, q) {
  const s = M.symbols[symbol];
  if (!s) throw new ApiError(404, `mock mode: no symbol ${symbol}; mock symbols are ${SYMBOLS.join(", ")}`);
  const rows = range(s[key], q);
  return { count: rows.length, rows, query_ms: 0.1 };
}

function latest(symbol) {
  const s = M.symbols[symbol];
  if (!s) throw new ApiError(404, `mock mode: no symbol ${symbol}`);
  const bar = s.bars[s.bars.length - 1];
  const now = Date.now();
  // live EMAs: the closed bars' EMAs moved toward the open bar's sentiment (they change every tick)
  const ema = { "5m": emaStep(s.ema["5m"], s.sentLevel, 0.18), "15m": emaStep(s.ema["15m"], s.sentLevel, 0.064), "60m": emaStep(s.ema["60m"], s.sentLevel, 0.017) };
  return {
    symbol, source: "mock", as_of: now, event_id: null, ema, composite: null,
    state: { as_of: now, open_bar_end: M.lastClose + MIN, open_cnt: Math.floor(rand() * 5), open_score: s.sentLevel, last_bar_end: bar.t, bar_end: bar.t, sent_score: bar.sent_score, sent_cnt: bar.ticks, sent_pos_ratio: bar.pos },
  };
}

function bins(probs, labels) {
  const out = [];
  for (let b = 0; b < 10; b += 1) {
    const idx = probs.map((p, i) => [p, i]).filter(([p]) => p >= b / 10 && (p < (b + 1) / 10 || b === 9)).map(([, i]) => i);
    const n = idx.length;
    const mean = n ? idx.reduce((a, i) => a + probs[i], 0) / n : null;
    const rate = n ? idx.reduce((a, i) => a + labels[i], 0) / n : null;
    const half = n ? 1.96 * Math.sqrt((rate * (1 - rate)) / n + 1e-9) : null;
    out.push({ lo: b / 10, hi: (b + 1) / 10, n, mean_prob: mean, pos_rate: rate, wilson_lo: n ? clamp(rate - half, 0, 1) : null, wilson_hi: n ? clamp(rate + half, 0, 1) : null, reliable: n >= 30 });
  }
  return out;
}

function calibration() {
  const probs = [];
  const labels = [];
  for (const s of Object.values(M.symbols)) {
    const lab = new Map(s.labels.map((l) => [l.close_time, l.label]));
    for (const p of s.preds) if (lab.has(p.close_time)) { probs.push(p.prob); labels.push(lab.get(p.close_time)); }
  }
  const b = bins(probs, labels);
  const n = probs.length;
  const ece = b.reduce((a, x) => a + (x.n ? (x.n / n) * Math.abs(x.pos_rate - x.mean_prob) : 0), 0);
  const brier = probs.reduce((a, p, i) => a + (p - labels[i]) ** 2, 0) / Math.max(1, n);
  return { n, ece, brier, roc_auc: 0.64, pr_auc: 0.61, bins: b };
}

function accuracy() {
  let right = 0;
  let n = 0;
  for (const s of Object.values(M.symbols)) {
    const lab = new Map(s.labels.map((l) => [l.close_time, l.label]));
    for (const p of s.preds.slice(-100)) if (lab.has(p.close_time)) { n += 1; right += (p.prob >= 0.5) === (lab.get(p.close_time) === 1) ? 1 : 0; }
  }
  return { accuracy: right / Math.max(1, n), n };
}

function driftFeatures(q, cfg) {
  const window = Number(q.window || cfg.drift.window);
  const z = Number(q.z || cfg.drift.z);
  const times = Array.from({ length: 60 }, (_, i) => M.lastClose - (59 - i) * MIN);
  const features = FEATURES.map((name, k) => {
    const base = name === "atr_14" ? 3.6 : (k % 3) - 1 + gauss() * 0.3;
    const series = times.map((_, i) => base + Math.sin(i / 9 + k) * 0.8);
    const last = series[series.length - 1];
    return { name, train_mean: 0, train_std: 1, n: window, mean: last / Math.sqrt(window), z: last, breach: Math.abs(last) >= z, flow_drifting: name === "atr_14", flow_since: name === "atr_14" ? M.events[0].ts_ms : null, series };
  });
  const same = window === cfg.drift.backend_window && z === cfg.drift.backend_z;
  return { window, z_threshold: z, symbol: null, interval: null, defaults: { window: cfg.drift.window, z: cfg.drift.z }, flow: { window: cfg.drift.backend_window, z: cfg.drift.backend_z, rearm_below: 0.8 * cfg.drift.backend_z }, same_as_flow: same, model_version: MODEL, rows: 1200, times, features, reason: null };
}

function get(path, q, cfg) {
  const sym = q.symbol;
  if (path.startsWith("/api/trading/")) return tradingGet(path, q);
  switch (path) {
    case "/api/sentiment/latest": return latest(sym);
    case "/api/predictions": return rowsOf(sym, "preds", q);
    case "/api/candles": return rowsOf(sym, "candles", q);
    case "/api/labels": return rowsOf(sym, "labels", q);
    case "/api/sentiment/history": {
      const s = M.symbols[sym];
      const points = range(s ? s.bars : [], { ...q, limit: 10000 }, "t").map(({ pos, ...p }) => p);
      return { symbol: sym, start: Number(q.start), end: Number(q.end), step_ms: MIN, agg: "mean", columns: ["t", "sent_score", "sent_ema_5m", "sent_ema_15m", "sent_ema_60m", "sent_composite", "ticks", "bars"], points };
    }
    case "/api/sentiment/providers": {
      const total = PROVIDERS.length * 40;
      return { symbol: sym, minutes: Number(q.minutes || 60), end_ms: Date.now(), providers: PROVIDERS.map(([provider, weight], i) => ({ provider, ticks: 40 + i * 7, share: (40 + i * 7) / (total + 21), weight, mean_score: M.symbols[sym] ? M.symbols[sym].sentLevel * (1 - i * 0.2) : 0, positive: 20 + i })) };
    }
    case "/api/calibration/bins": {
      const live = calibration();
      const production = { version: MODEL, status: "production", ece: 0.03, brier: 0.24, pr_auc: 0.6, roc_auc: 0.66, n: 2000, bins: bins(live.bins.map((b) => (b.lo + b.hi) / 2), live.bins.map((b) => (b.lo + b.hi) / 2)).map((b, i) => ({ ...b, n: 200 - Math.abs(4.5 - i) * 30, mean_prob: (i + 0.5) / 10, pos_rate: (i + 0.5) / 10 })) };
      const delta = live.ece - production.ece;
      return { model_version: MODEL, scope: q.scope || "overall", window_seconds: cfg.calibration.window_seconds, window_end: M.lastClose, enough_samples: live.n >= cfg.calibration.min_samples, min_samples: cfg.calibration.min_samples, live, production, delta_ece: delta, verdict: live.n < cfg.calibration.min_samples ? "insufficient_data" : delta > cfg.calibration.abs ? "breach" : "ok" };
    }
    case "/api/calibration/status": {
      const row = { model_version: MODEL, scope: "overall", window_end_ms: M.lastClose, window_seconds: 21600, n: calibration().n, ece: 0.05, brier: 0.24, roc_auc: 0.64, pr_auc: 0.61, accuracy: accuracy().accuracy, ece_prod: 0.03, delta_ece: 0.02, abs_streak: 0, rel_streak: 1, delta_ece_ema: 0.03, drift_on: false, state: "ok", recommendation: "", cooldown_remaining_s: 5400, verdict: "ok" };
      return { scopes: [row], overall: row, settings: {} };
    }
    case "/api/calibration/windows": {
      const windows = Array.from({ length: 48 }, (_, i) => ({ window_end_ms: M.lastClose - (47 - i) * 5 * MIN, delta_ece: 0.04 + 0.05 * Math.sin(i / 6), delta_ece_ema: 0.04 + 0.04 * Math.sin((i - 2) / 6), drift_on: i > 30 && i < 38, brier: 0.24 + 0.01 * Math.sin(i / 5), pr_auc: 0.6 + 0.02 * Math.cos(i / 7), n: 300 }));
      return { scope: q.scope || "overall", count: windows.length, windows };
    }
    case "/api/accuracy/trend": {
      const a = accuracy();
      const day = (d) => new Date(Date.now() - d * 86_400_000).toISOString().slice(0, 10);
      const trend = Array.from({ length: 14 }, (_, i) => ({ date: day(13 - i), accuracy: 0.55 + 0.08 * Math.sin(i / 2), n: 1400 }));
      return { days: 28, model_version: MODEL, trend, current: { ...a, health: a.accuracy >= 0.7 ? "GOOD" : a.accuracy >= 0.5 ? "WARNING" : "CRITICAL", window: 500, min_samples: 100 }, versions: [{ model_version: MODEL, ...a, health: "WARNING", last_ms: M.lastClose }, { model_version: "baseline", accuracy: 0.51, n: 500, health: "WARNING", last_ms: M.lastClose - 400 * MIN }], thresholds: { good: 0.7, warning: 0.5, min_samples: 100 } };
    }
    case "/api/drift/events": {
      const events = M.events.filter((e) => !q.kind || e.kind === q.kind).slice(-Number(q.limit || 100)).reverse();
      return { count: events.length, events };
    }
    case "/api/drift/features": return driftFeatures(q, cfg);
    case "/api/models": return { production: MODEL, models: [
      { version: "m-mock-0000", status: "archived", created_at: new Date(Date.now() - 8 * 86_400_000).toISOString(), kind: "train", roc_auc: 0.68, ece_prod: 0.04, brier_prod: 0.24, pr_auc_prod: 0.59, gates: { passed: true, failures: [] }, has_backup: true },
      { version: MODEL, status: "production", created_at: new Date(Date.now() - 86_400_000).toISOString(), kind: "train", roc_auc: 0.71, ece_prod: 0.03, brier_prod: 0.23, pr_auc_prod: 0.62, gates: { passed: true, failures: [] }, has_backup: false },
    ] };
    case "/api/models/promotion-status": return { production: MODEL, last_promoted_at: Date.now() / 1000 - 86_400, cooldown_s: 3600, next_allowed_at: Date.now() / 1000 - 82_800, in_cooldown: false };
    case "/admin/scheduler-status": return { enabled: true, schedule: "0 0 * * tue", timezone: "Asia/Seoul", next_run: "2026-01-06T00:00:00+09:00", last_run: null };
    case "/admin/jobs": return { count: M.jobs.length, jobs: [...M.jobs].reverse().slice(0, Number(q.limit || 50)), kinds: ["backfill", "labeler", "recalibrate", "train"] };
    default: throw new ApiError(404, `mock mode (VITE_USE_MOCKS=1): no mock answer for GET ${path}`);
  }
}

function post(path, body) {
  if (path.startsWith("/admin/trading/") && !path.endsWith("/backtest")) {
    const action = path.split("/").pop();
    const open = paperBook().open.map((p) => p.symbol);
    const plan = { action, account: "paper", open_positions: open, description: `${action} (mock)`, code: `plan.trading.${action.replace("-", "_")}`, params: { open: open.length, symbols: open.join(", ") || "-", equity: BOOK.start, drawdown: 0 } };
    if (!body.confirm) throw new ApiError(409, `${action} not performed (mock)`, { plan });
    return { sent: action, id: "mock", at: Date.now(), account: "paper", applies: "mock", plan };
  }
  if (path.startsWith("/admin/models/")) {
    if (!body.confirm) {
      const action = path.split("/").pop();
      throw new ApiError(409, `${action} not performed (mock)`, { plan: { action, code: `plan.${action === "restore" ? "restore" : action}`, params: { current: MODEL, new: body.version || "m-mock-0000", version: body.version }, description: `${action} (mock)`, current_production: MODEL, new_production: body.version || "m-mock-0000" } });
    }
    return { ok: true, mock: true };
  }
  const kind = path.includes("trading/backtest") ? "backtest" : path.includes("labeler") ? "labeler" : path.includes("backfill") ? "backfill" : path.includes("recalibrate") ? "recalibrate" : "train";
  const job = mockJob(kind, path.includes("emergency") ? "emergency" : "manual", "running", 0.1, Date.now());
  M.jobs.push(job);
  return { job_id: job.job_id, kind, trigger: job.trigger, already_running: false, status_url: `/admin/jobs/${job.job_id}` };
}

// --- streams -------------------------------------------------------------------------------------
const streams = new Set();

class MockEventSource {
  constructor(url) {
    const u = new URL(url, window.location.origin);
    this.name = u.pathname.split("/").pop();
    this.symbol = u.searchParams.get("symbol");
    this.listeners = new Map();
    this.onopen = null;
    this.onerror = null;
    this.readyState = 0;
    streams.add(this);
    setTimeout(() => { if (this.readyState === 0) { this.readyState = 1; this.onopen && this.onopen(); } }, 50);
  }
  addEventListener(type, fn) { this.listeners.set(type, [...(this.listeners.get(type) || []), fn]); }
  close() { this.readyState = 2; streams.delete(this); }
  deliver(data, symbol) {
    if (this.readyState !== 1 || (this.symbol && symbol && this.symbol !== symbol)) return;
    const ev = { data: JSON.stringify(data), lastEventId: String(BigInt(Date.now()) << 12n | BigInt(M.nextId++ % 4096)) };
    for (const fn of this.listeners.get(this.name) || []) fn(ev);
  }
}

function broadcast(name, data, symbol = null) {
  for (const s of streams) if (s.name === name) s.deliver(data, symbol);
}

function tick() {
  for (const symbol of SYMBOLS) {
    const s = M.symbols[symbol];
    s.sentLevel = clamp(s.sentLevel + gauss() * 0.05, -1, 1);
    const view = latest(symbol);
    broadcast("sentiment", { kind: "tick", symbol, ...view.state, ...Object.fromEntries(Object.entries(view.ema).map(([w, v]) => [`sent_ema_${w}`, v])) }, symbol);
  }
  for (const job of M.jobs) {
    if (job.status !== "running") continue;
    job.progress = Math.min(1, job.progress + 0.15);
    if (job.progress >= 1) Object.assign(job, { status: "succeeded", finished_at: Date.now(), message: "done", message_code: "stage.done", result: { version: "m-mock-0002", passed: true, promoted: false } });
    broadcast("events", { kind: "job", job_id: job.job_id, status: job.status, progress: job.progress, message: job.message, message_code: job.message_code, message_params: {}, trigger: job.trigger, job_kind: job.kind, error: "" });
  }
}

function minute() {
  M.lastClose += MIN;
  for (const symbol of SYMBOLS) {
    const pred = addMinute(symbol, M.lastClose);
    const bar = M.symbols[symbol].bars.at(-1);
    broadcast("sentiment", { kind: "bar", symbol, step: "1m", bar_end: bar.t, sent_score: bar.sent_score, sent_cnt: bar.ticks, sent_pos_ratio: bar.pos, sent_ema_5m: bar.sent_ema_5m, sent_ema_15m: bar.sent_ema_15m, sent_ema_60m: bar.sent_ema_60m }, symbol);
    broadcast("predictions", pred, symbol);
  }
  const last = paperBook().curve.at(-1);
  if (last) broadcast("trading", { kind: "equity", account: "paper", symbol: "", ...last });
}

/** Answer the page's calls from the mock market; replace EventSource with mock streams. */
export function installMocks(api, config) {
  init();
  Object.assign(config, { symbols: SYMBOLS, auth_required: false, api_key: "mock" });
  api.request = async (method, path, { params, body } = {}) => {
    await new Promise((r) => setTimeout(r, 20)); // a little latency, like a real answer
    const q = Object.fromEntries(Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [k, String(v)]));
    return method === "GET" ? get(path, q, config) : post(path, body || {});
  };
  window.EventSource = MockEventSource;
  setInterval(tick, 1000);
  setTimeout(() => { minute(); setInterval(minute, MIN); }, M.lastClose + MIN - Date.now());
  const banner = document.createElement("div");
  banner.className = "mock-banner";
  banner.dataset.role = "mock-banner";
  banner.dataset.i18n = "mock.banner";
  document.body.prepend(banner);
  window.tickcastMocks = { market: M, streams };
}
