// Trading: per symbol, live sentiment (EMA windows, current bar, provider mix), the latest
// calibrated probability and its model (or baseline + reason), price / prediction / sentiment
// history, and freshness badges (VITE_RISK_FRESH_MS for sentiment, VITE_SIG_FRESH_MS for signals).
import { applyI18n, t } from "./i18n.js";
import { chart, C } from "./charts.js";
import { clock, esc, freshBadge, freshness, hm, isNum, num, pct, price, signed, duration, int } from "./fmt.js";
import { freshnessSettings } from "./ui.js";

const HISTORY = 240; // candles / predictions / 1m sentiment bars on the charts (4 h at 1m)
const SYMBOL_KEY = "tickcast.symbol";

const S = {
  app: null, root: null, visible: false, symbol: null, symbols: [],
  chips: {}, sent: null, sentSeenAt: null, pred: null, predSeenAt: null,
  candles: [], preds: [], sentHist: [], labels: new Map(), providers: null, interval: null,
  timers: [], pending: {}, unpoll: null, loading: 0,
};

const $ = (sel) => S.root.querySelector(sel);

function layout() {
  S.root.innerHTML = `
  <div class="screen-head">
    <div><h1 data-i18n="trading.title"></h1><p class="sub" data-i18n="trading.sub"></p></div>
    <label class="field inline"><span data-i18n="common.symbol"></span><select data-role="symbol"></select></label>
  </div>
  <div class="chips" data-role="chips" role="list"></div>
  <div class="grid">
    <article class="card span-3 prob-card" data-card="prob">
      <header><h2 data-i18n="trading.prob"></h2><span data-role="prob-fresh"></span></header>
      <div class="big" data-field="prob">—</div>
      <div class="prob-bar"><i data-role="prob-bar"></i><b></b></div>
      <div class="kv">
        <span data-i18n="trading.model"></span><span data-field="model">—</span>
        <span data-i18n="trading.candle"></span><span data-field="pred-time">—</span>
        <span data-i18n="trading.latency"></span><span data-field="latency">—</span>
      </div>
    </article>
    <article class="card span-5" data-card="sentiment">
      <header><h2 data-i18n="trading.sentiment"></h2><span data-role="sent-fresh"></span></header>
      <div class="emas" data-role="emas"></div>
      <div class="kv two">
        <span data-i18n="trading.curbar"></span><span data-field="curbar">—</span>
        <span data-i18n="trading.lastbar"></span><span data-field="lastbar">—</span>
      </div>
    </article>
    <article class="card span-4" data-card="market">
      <header><h2 data-i18n="trading.market"></h2><span class="muted small" data-field="interval"></span></header>
      <div class="big price" data-field="price">—</div>
      <div class="kv">
        <span data-i18n="trading.change"></span><span data-field="change">—</span>
        <span data-i18n="trading.range"></span><span data-field="range">—</span>
        <span data-i18n="trading.lag"></span><span data-field="lag">—</span>
      </div>
    </article>
    <article class="card span-8" data-card="charts">
      <header><h2 data-i18n="trading.pricechart"></h2><div class="legend" data-role="price-legend"></div></header>
      <div data-chart="price"></div>
      <div class="chart-gap"></div>
      <header class="sub-head"><h3 data-i18n="trading.probchart"></h3><div class="legend" data-role="prob-legend"></div></header>
      <div data-chart="probs"></div>
    </article>
    <article class="card span-4" data-card="providers">
      <header><h2 data-i18n="trading.providers"></h2><span class="muted small" data-i18n="trading.providers.window"></span></header>
      <div data-role="providers"></div>
      <h3 class="mt" data-i18n="trading.recent"></h3>
      <div class="table-wrap"><table class="tbl compact" data-role="recent"></table></div>
    </article>
    <article class="card span-12" data-card="sent-chart">
      <header><h2 data-i18n="trading.senthist"></h2><div class="legend" data-role="sent-legend"></div></header>
      <div data-chart="sentiment"></div>
    </article>
  </div>`;
  applyI18n(S.root);
}

// --- data -----------------------------------------------------------------------------------
async function loadSymbols() {
  let symbols = S.app.api.config.symbols || [];
  if (!symbols.length) {
    const cfg = await S.app.api.loadConfig().catch(() => null);
    symbols = (cfg && cfg.symbols) || [];
  }
  S.symbols = symbols;
  const saved = localStorage.getItem(SYMBOL_KEY);
  if (!S.symbol) S.symbol = symbols.includes(saved) ? saved : symbols.includes("XRPUSDT") ? "XRPUSDT" : symbols[0] || null;
  const sel = $("[data-role=symbol]");
  sel.innerHTML = symbols.map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join("");
  if (S.symbol) sel.value = S.symbol;
}

function setSentiment(data, seenAt) {
  const ema = {};
  for (const w of S.app.api.config.ema_windows) ema[w] = data.ema ? data.ema[w] : data[`sent_ema_${w}`];
  const state = data.state || data;
  S.sent = { ...(S.sent || {}), ema, as_of: data.as_of ?? state.as_of ?? state.bar_end ?? state.bar_end_ms,
    open_bar_end: state.open_bar_end, open_cnt: state.open_cnt, open_score: state.open_score,
    last_bar_end: state.last_bar_end ?? state.bar_end_ms ?? S.sent?.last_bar_end };
  if (data.kind === "bar" || isNum(state.sent_cnt)) {
    S.sent.lastBar = { end: state.bar_end ?? state.bar_end_ms, score: state.sent_score, cnt: state.sent_cnt,
      pos: state.sent_pos_ratio };
  }
  S.sentSeenAt = seenAt;
}

async function load() {
  if (!S.symbol) return;
  const api = S.app.api;
  const symbol = S.symbol;
  S.loading += 1;
  try {
    const [latest, preds, candles, providers, labels] = await Promise.allSettled([
      api.get("/api/sentiment/latest", { symbol }),
      api.get("/api/predictions", { symbol, limit: HISTORY * 2 }),
      api.get("/api/candles", { symbol, limit: HISTORY }),
      api.get("/api/sentiment/providers", { symbol, minutes: 60 }),
      api.get("/api/labels", { symbol, limit: HISTORY }),
    ]);
    if (symbol !== S.symbol) return;
    if (latest.status === "fulfilled") {
      setSentiment(latest.value, Math.min(Date.now(), latest.value.as_of ?? 0));
    } else S.sent = null;
    S.candles = candles.status === "fulfilled" ? candles.value.rows : [];
    S.interval = S.candles.length ? S.candles[S.candles.length - 1].interval : null;
    if (S.interval) S.candles = S.candles.filter((c) => c.interval === S.interval);
    S.preds = preds.status === "fulfilled" ? dedupePreds(preds.value.rows) : [];
    const last = S.preds[S.preds.length - 1];
    if (last) { S.pred = last; S.predSeenAt = Math.min(Date.now(), last.close_time); S.chips[symbol] = { ...last, seenAt: S.predSeenAt }; }
    S.providers = providers.status === "fulfilled" ? providers.value : null;
    S.labels = new Map((labels.status === "fulfilled" ? labels.value.rows : []).map((r) => [r.close_time, r.label]));
    await loadSentHistory();
    renderAll();
  } finally {
    S.loading -= 1;
  }
}

function dedupePreds(rows) {
  // One candle may carry a baseline and a model prediction (a promotion mid-window): keep the model's.
  const byT = new Map();
  for (const r of rows) {
    if (S.interval && r.interval !== S.interval) continue;
    const prev = byT.get(r.close_time);
    if (!prev || prev.model_version === "baseline") byT.set(r.close_time, r);
  }
  return [...byT.values()].sort((a, b) => a.close_time - b.close_time).slice(-HISTORY);
}

async function loadSentHistory() {
  const now = Math.max(Date.now(), S.sent?.as_of || 0);
  const end = Math.ceil(now / 60e3) * 60e3 + 60e3;
  try {
    const h = await S.app.api.get("/api/sentiment/history", { symbol: S.symbol, start: end - HISTORY * 60e3, end, step: "1m" });
    S.sentHist = h.points;
  } catch {
    S.sentHist = [];
  }
}

async function loadChips() {
  const api = S.app.api;
  await Promise.all(S.symbols.map(async (symbol) => {
    try {
      const r = await api.get("/api/predictions", { symbol, limit: 1 });
      const row = r.rows[r.rows.length - 1];
      if (row && (!S.chips[symbol] || S.chips[symbol].close_time !== row.close_time)) {
        S.chips[symbol] = { ...row, seenAt: S.chips[symbol] ? Date.now() : Math.min(Date.now(), row.close_time) };
      }
    } catch { /* an unknown symbol keeps its old chip */ }
  }));
  renderChips();
}

// New candles/labels after a prediction arrived (at most once a second).
function refreshMarket() {
  if (S.pending.market) return;
  S.pending.market = setTimeout(async () => {
    S.pending.market = null;
    const api = S.app.api;
    const symbol = S.symbol;
    const lastClose = S.candles.length ? S.candles[S.candles.length - 1].close_time : undefined;
    try {
      const [c, l] = await Promise.all([
        api.get("/api/candles", { symbol, start: lastClose !== undefined ? lastClose + 1 : undefined, limit: HISTORY }),
        api.get("/api/labels", { symbol, limit: 30 }),
      ]);
      if (symbol !== S.symbol) return;
      const fresh = c.rows.filter((r) => !S.interval || r.interval === S.interval);
      S.candles = [...S.candles, ...fresh].slice(-HISTORY);
      for (const r of l.rows) S.labels.set(r.close_time, r.label);
      renderMarket();
      renderPriceCharts();
      renderRecent();
    } catch { /* the next prediction retries */ }
  }, 1000);
}

function refreshProviders() {
  if (S.pending.providers) return;
  S.pending.providers = setTimeout(async () => {
    S.pending.providers = null;
    try {
      S.providers = await S.app.api.get("/api/sentiment/providers", { symbol: S.symbol, minutes: 60 });
      renderProviders();
    } catch { /* keep the last mix */ }
  }, 5000);
}

// --- live -----------------------------------------------------------------------------------
function onSentiment(data) {
  if (data.symbol && data.symbol !== S.symbol) return;
  setSentiment(data, Date.now());
  if (data.kind === "bar") {
    const t0 = data.bar_end;
    S.sentHist = S.sentHist.filter((p) => p.t !== t0);
    S.sentHist.push({ t: t0, sent_score: data.sent_score, sent_ema_5m: data.sent_ema_5m, sent_ema_15m: data.sent_ema_15m,
      sent_ema_60m: data.sent_ema_60m, ticks: data.sent_cnt });
    S.sentHist.sort((a, b) => a.t - b.t);
    S.sentHist = S.sentHist.slice(-HISTORY);
    renderSentChart();
    refreshProviders();
  }
  renderSentiment();
}

function onPrediction(data) {
  S.chips[data.symbol] = { ...data, seenAt: Date.now() };
  renderChips();
  if (data.symbol !== S.symbol) return;
  S.pred = data;
  S.predSeenAt = Date.now();
  S.preds = dedupePreds([...S.preds, data]);
  renderProb();
  refreshMarket();
}

function openStreams() {
  const hub = S.app.hub;
  hub.open("trading.sentiment", "sentiment", { symbol: S.symbol }, {
    message: onSentiment, reconnected: () => load(), resync: () => load(),
  });
  hub.open("trading.predictions", "predictions", {}, {
    message: onPrediction, reconnected: () => { load(); loadChips(); }, resync: () => load(),
  });
}

function closeStreams() {
  S.app.hub.close("trading.sentiment");
  S.app.hub.close("trading.predictions");
}

async function poll() {
  // Polling fallback: the same views from the REST endpoints.
  const api = S.app.api;
  const latest = await api.get("/api/sentiment/latest", { symbol: S.symbol });
  if (latest.as_of !== S.sent?.as_of) setSentiment(latest, Date.now());
  const p = await api.get("/api/predictions", { symbol: S.symbol, limit: 5 });
  const last = p.rows[p.rows.length - 1];
  if (last && (!S.pred || last.close_time !== S.pred.close_time)) {
    S.pred = last;
    S.predSeenAt = Date.now();
    S.preds = dedupePreds([...S.preds, ...p.rows]);
    refreshMarket();
  }
  renderSentiment();
  renderProb();
  await loadChips();
}

// --- rendering --------------------------------------------------------------------------------
function renderAll() {
  renderChips();
  renderProb();
  renderSentiment();
  renderMarket();
  renderProviders();
  renderPriceCharts();
  renderSentChart();
  renderRecent();
}

function probClass(p) {
  if (!isNum(p)) return "";
  return p >= 0.55 ? "up" : p <= 0.45 ? "down" : "flat";
}

function renderChips() {
  const f = freshnessSettings.get();
  $("[data-role=chips]").innerHTML = S.symbols.map((s) => {
    const c = S.chips[s];
    const level = c ? freshness(Date.now() - c.seenAt, f.sig_fresh_ms, f.severe_lag_mult) : "unknown";
    return `<button role="listitem" class="chip ${s === S.symbol ? "active" : ""}" data-symbol="${esc(s)}">
      <span class="chip-sym">${esc(s)}</span>
      <span class="chip-p ${probClass(c?.prob)}">${c ? pct(c.prob) : "—"}</span>
      <i class="dot fresh-${level}" title="${esc(t(`fresh.${level}`))}"></i></button>`;
  }).join("");
}

function modelBadge(p) {
  if (!p) return "—";
  if (p.model_version === "baseline") {
    const reason = p.fallback_reason ? t(`reason.${p.fallback_reason}`, {}, p.fallback_reason) : "";
    return `<span class="badge warn" data-version="baseline">baseline</span> <span class="muted small" data-field="reason">${esc(reason)}</span>`;
  }
  return `<span class="badge ok mono" data-version="${esc(p.model_version)}" title="${esc(p.model_version)}">${esc(p.model_version)}</span>`;
}

function renderProb() {
  const p = S.pred;
  const el = $("[data-field=prob]");
  el.textContent = p ? pct(p.prob) : "—";
  el.className = `big ${probClass(p?.prob)}`;
  $("[data-role=prob-bar]").style.width = p ? `${(p.prob * 100).toFixed(1)}%` : "0";
  $("[data-field=model]").innerHTML = modelBadge(p);
  $("[data-field=pred-time]").textContent = p ? `${clock(p.close_time)} · ${p.interval} · h=${p.horizon}` : "—";
  $("[data-field=latency]").textContent = p && isNum(p.latency_ms) ? `${p.latency_ms.toFixed(2)} ms` : "—";
  renderFreshness();
}

function emaBar(v) {
  if (!isNum(v)) return '<div class="ema-bar"><i></i></div>';
  const w = Math.min(50, Math.abs(v) * 50);
  const side = v >= 0 ? `left:50%;width:${w}%` : `left:${50 - w}%;width:${w}%`;
  return `<div class="ema-bar"><i class="${v >= 0 ? "pos" : "neg"}" style="${side}"></i><b></b></div>`;
}

function renderSentiment() {
  const s = S.sent;
  const windows = S.app.api.config.ema_windows;
  $("[data-role=emas]").innerHTML = windows.map((w) => {
    const v = s?.ema?.[w];
    return `<div class="ema"><span class="ema-w">EMA ${esc(w)}</span>
      <span class="ema-v ${isNum(v) ? (v >= 0 ? "pos" : "neg") : ""}" data-ema="${esc(w)}">${signed(v, 3)}</span>${emaBar(v)}</div>`;
  }).join("");
  $("[data-field=curbar]").textContent = s && isNum(s.open_bar_end)
    ? `${t("trading.until")} ${hm(s.open_bar_end)} · ${int(s.open_cnt)} ${t("trading.ticks")} · ${signed(s.open_score, 3)}`
    : "—";
  const lb = s?.lastBar;
  $("[data-field=lastbar]").textContent = lb
    ? `${hm(lb.end)} · ${int(lb.cnt)} ${t("trading.ticks")} · ${signed(lb.score, 3)}${isNum(lb.pos) ? ` · ${t("trading.pos")} ${pct(lb.pos, 0)}` : ""}`
    : s && isNum(s.last_bar_end) ? hm(s.last_bar_end) : "—";
  renderFreshness();
}

function renderMarket() {
  const c = S.candles;
  const last = c[c.length - 1];
  $("[data-field=price]").textContent = last ? price(last.close) : "—";
  $("[data-field=interval]").textContent = last ? `${S.symbol} · ${last.interval}` : "";
  if (c.length > 1) {
    const first = c[0];
    const ch = last.close / first.open - 1;
    const span = duration(last.close_time - first.open_time);
    $("[data-field=change]").innerHTML = `<span class="${ch >= 0 ? "pos" : "neg"}">${ch >= 0 ? "▲" : "▼"} ${pct(Math.abs(ch), 2)}</span> <span class="muted small">${esc(span)}</span>`;
    const hi = Math.max(...c.map((x) => x.high));
    const lo = Math.min(...c.map((x) => x.low));
    $("[data-field=range]").textContent = `${price(lo)} – ${price(hi)}`;
  }
  $("[data-field=lag]").textContent = last && isNum(last.ingest_ts)
    ? `${duration(Math.max(0, last.ingest_ts - last.close_time))} (${t("trading.lag.ingest")})` : "—";
}

function renderFreshness() {
  const f = freshnessSettings.get();
  const now = Date.now();
  const sAge = S.sentSeenAt ? now - S.sentSeenAt : null;
  const pAge = S.predSeenAt ? now - S.predSeenAt : null;
  $("[data-role=sent-fresh]").innerHTML = S.sent ? freshBadge(freshness(sAge, f.risk_fresh_ms, f.severe_lag_mult), sAge) : "";
  $("[data-role=prob-fresh]").innerHTML = S.pred ? freshBadge(freshness(pAge, f.sig_fresh_ms, f.severe_lag_mult), pAge) : "";
  for (const dot of S.root.querySelectorAll(".chip .dot")) {
    const c = S.chips[dot.parentElement.dataset.symbol];
    if (!c) continue;
    const level = freshness(now - c.seenAt, f.sig_fresh_ms, f.severe_lag_mult);
    dot.className = `dot fresh-${level}`;
    dot.title = t(`fresh.${level}`);
  }
}

function legend(items) {
  return items.map(([label, color, dash]) => `<span><i style="background:${color}${dash ? ";opacity:.6" : ""}"></i>${esc(label)}</span>`).join("");
}

function renderPriceCharts() {
  const c = S.candles;
  const x0 = c.length ? c[0].close_time : undefined;
  const x1 = c.length ? c[c.length - 1].close_time : undefined;
  chart($("[data-chart=price]"), "line", {
    id: "price", height: 200, empty: t("common.nodata"), marginLeft: 64,
    series: [
      { label: t("trading.close"), color: C.accent, area: true, points: c.map((r) => [r.close_time, r.close]) },
    ],
    y: { format: (v) => price(v) },
    fmtTip: (v) => clock(v),
  });
  $("[data-role=price-legend]").innerHTML = legend([[t("trading.close"), C.accent]]);
  const preds = S.preds.filter((p) => x0 === undefined || p.close_time >= x0);
  const model = preds.map((p) => [p.close_time, p.model_version === "baseline" ? null : p.prob]);
  const base = preds.map((p) => [p.close_time, p.model_version === "baseline" ? p.prob : null]);
  chart($("[data-chart=probs]"), "line", {
    id: "probs", height: 150, empty: t("common.nodata"), marginLeft: 64,
    x: { min: x0, max: x1 !== undefined ? Math.max(x1, preds.length ? preds[preds.length - 1].close_time : x1) : undefined },
    series: [
      { label: t("trading.model"), color: C.green, points: model },
      { label: "baseline", color: C.amber, points: base },
    ],
    y: { min: 0, max: 1, fixed: true, format: (v) => pct(v, 0) },
    hlines: [{ y: 0.5, color: C.muted, dash: "3 4" }],
    fmtTip: (v) => clock(v),
  });
  $("[data-role=prob-legend]").innerHTML = legend([[t("trading.model"), C.green], ["baseline", C.amber]]);
}

function renderSentChart() {
  const h = S.sentHist;
  const colors = { "5m": C.cyan, "15m": C.accent, "60m": C.purple };
  const series = [
    { label: t("trading.barscore"), color: C.muted, points: h.map((p) => [p.t, p.sent_score]), dots: true, dotR: 1.6, width: 0.01 },
    ...["5m", "15m", "60m"].map((w) => ({ label: `EMA ${w}`, color: colors[w], points: h.map((p) => [p.t, p[`sent_ema_${w}`]]) })),
  ];
  chart($("[data-chart=sentiment]"), "line", {
    id: "sentiment", height: 200, empty: t("common.nodata"), series,
    y: { min: -1, max: 1, fixed: true, format: (v) => v.toFixed(1) },
    hlines: [{ y: 0, color: C.muted, dash: "2 3" }],
    fmtTip: (v) => clock(v),
  });
  $("[data-role=sent-legend]").innerHTML = legend(series.map((s) => [s.label, s.color]));
}

function renderProviders() {
  const p = S.providers;
  const el = $("[data-role=providers]");
  if (!p || !p.providers.length) { el.innerHTML = `<p class="muted">${esc(t("common.nodata"))}</p>`; return; }
  const palette = [C.accent, C.cyan, C.purple, C.pink, C.amber, C.green];
  const bar = p.providers.map((r, i) => `<i style="width:${(r.share * 100).toFixed(2)}%;background:${palette[i % palette.length]}" title="${esc(r.provider)}"></i>`).join("");
  const rows = p.providers.map((r, i) => `<tr data-provider="${esc(r.provider)}"><td><i class="sw" style="background:${palette[i % palette.length]}"></i>${esc(r.provider)}</td>
    <td class="num">${pct(r.share, 0)}</td><td class="num">${int(r.ticks)}</td><td class="num">${num(r.weight / Math.max(1, r.ticks), 2)}</td>
    <td class="num ${r.mean_score >= 0 ? "pos" : "neg"}">${signed(r.mean_score, 2)}</td></tr>`).join("");
  el.innerHTML = `<div class="stack">${bar}</div>
    <table class="tbl compact"><thead><tr><th>${esc(t("trading.provider"))}</th><th class="num">${esc(t("trading.share"))}</th>
    <th class="num">${esc(t("trading.ticks"))}</th><th class="num">${esc(t("trading.trust"))}</th><th class="num">${esc(t("trading.meanscore"))}</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

function renderRecent() {
  const rows = S.preds.slice(-6).reverse().map((p) => {
    const label = S.labels.get(p.close_time);
    const outcome = label === undefined ? '<span class="muted">…</span>' : label ? '<span class="pos">▲</span>' : '<span class="neg">▼</span>';
    const hit = label === undefined ? "" : (p.prob >= 0.5) === Boolean(label) ? '<span class="pos">✓</span>' : '<span class="neg">✗</span>';
    return `<tr><td class="mono">${clock(p.close_time)}</td><td class="num ${probClass(p.prob)}">${pct(p.prob)}</td>
      <td>${p.model_version === "baseline" ? '<span class="badge warn">baseline</span>' : '<span class="badge ok">model</span>'}</td>
      <td class="c">${outcome}</td><td class="c">${hit}</td></tr>`;
  }).join("");
  $("[data-role=recent]").innerHTML = `<thead><tr><th>${esc(t("trading.time"))}</th><th class="num">P(▲)</th><th>${esc(t("trading.source"))}</th>
    <th class="c">${esc(t("trading.actual"))}</th><th class="c">${esc(t("trading.hit"))}</th></tr></thead><tbody>${rows}</tbody>`;
}

// --- screen ---------------------------------------------------------------------------------
function select(symbol) {
  if (!symbol || symbol === S.symbol) return;
  S.symbol = symbol;
  localStorage.setItem(SYMBOL_KEY, symbol);
  $("[data-role=symbol]").value = symbol;
  S.sent = null; S.pred = null; S.preds = []; S.candles = []; S.sentHist = []; S.providers = null;
  S.sentSeenAt = null; S.predSeenAt = null;
  renderAll();
  if (S.visible) {
    S.app.hub.open("trading.sentiment", "sentiment", { symbol }, { message: onSentiment, reconnected: () => load(), resync: () => load() });
  }
  load();
}

export const tradingScreen = {
  init(root, app) {
    S.root = root;
    S.app = app;
    layout();
    $("[data-role=symbol]").addEventListener("change", (e) => select(e.target.value));
    $("[data-role=chips]").addEventListener("click", (e) => {
      const chip = e.target.closest("[data-symbol]");
      if (chip) select(chip.dataset.symbol);
    });
    app.onEvent((entry) => {
      if (entry.data.kind === "model_switch" && S.visible) load();
    });
  },
  async show() {
    S.visible = true;
    await loadSymbols();
    if (!S.visible) return; // left the screen while the symbols loaded
    openStreams();
    S.unpoll = S.app.hub.addPoller(poll);
    S.timers.push(setInterval(renderFreshness, 1000));
    await load();
    loadChips();
  },
  hide() {
    S.visible = false;
    closeStreams();
    if (S.unpoll) S.unpoll();
    S.timers.forEach(clearInterval);
    S.timers = [];
  },
  onLang() {
    renderAll();
  },
};
