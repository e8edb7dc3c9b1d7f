// Paper trading (issue 16): the account's equity curve with its drawdown, open positions with
// unrealized PnL, recent fills with fees and reason, each risk guard's state (with the reset of
// a tripped drawdown guard), the kill switch (halt / resume / flatten, each behind the API's
// 409 plan and the confirmation dialog) and the latest backtest report. Live from
// /stream/trading; the REST views are re-read at most every VITE_INFERENCE_AUTO_LOOP_INTERVAL.
import { applyI18n, t } from "./i18n.js";
import { chart, C } from "./charts.js";
import { clock, dateTime, esc, isNum, num, pct, price, signed, int } from "./fmt.js";
import { confirmDialog, planList, toast } from "./ui.js";

const CURVE_POINTS = 2000;
const S = { app: null, root: null, visible: false, data: {}, timer: null, pending: null, unpoll: null, lastLoad: 0 };
const $ = (sel) => S.root.querySelector(sel);

function layout() {
  S.root.innerHTML = `
  <div class="screen-head">
    <div><h1 data-i18n="pf.title"></h1><p class="sub" data-i18n="pf.sub"></p></div>
    <div class="head-actions">
      <span data-role="mode"></span>
      <button class="btn sm danger-outline" data-cmd="halt" data-i18n="pf.halt"></button>
      <button class="btn sm" data-cmd="resume" data-i18n="pf.resume"></button>
      <button class="btn sm danger-outline" data-cmd="flatten" data-i18n="pf.flatten"></button>
    </div>
  </div>
  <div class="kpis" data-role="kpis"></div>
  <div class="grid">
    <article class="card span-8" data-card="equity">
      <header><h2 data-i18n="pf.equity"></h2><span class="muted small" data-role="as-of"></span></header>
      <div data-chart="equity"></div>
      <div class="chart-gap"></div>
      <header class="sub-head"><h3 data-i18n="pf.drawdown"></h3><span class="muted small" data-role="dd-limit"></span></header>
      <div data-chart="drawdown"></div>
    </article>
    <article class="card span-4" data-card="guards">
      <header><h2 data-i18n="pf.guards"></h2></header>
      <div class="table-wrap"><table class="tbl compact" data-role="guards"></table></div>
    </article>
    <article class="card span-6" data-card="positions">
      <header><h2 data-i18n="pf.positions"></h2><span class="muted small" data-role="pos-count"></span></header>
      <div class="table-wrap"><table class="tbl compact" data-role="positions"></table></div>
    </article>
    <article class="card span-6" data-card="fills">
      <header><h2 data-i18n="pf.fills"></h2></header>
      <div class="table-wrap"><table class="tbl compact" data-role="fills"></table></div>
    </article>
    <article class="card span-12" data-card="backtest">
      <header><h2 data-i18n="pf.backtest"></h2>
        <form class="bt-form" data-role="bt-form">
          <label><span data-i18n="pf.bt.start"></span> <input type="datetime-local" name="start" step="60"></label>
          <label><span data-i18n="pf.bt.end"></span> <input type="datetime-local" name="end" step="60"></label>
          <button type="button" class="btn sm" data-act="run-backtest" data-i18n="pf.bt.run"></button>
        </form></header>
      <div class="bt" data-role="backtest"></div>
      <div data-chart="backtest"></div>
    </article>
  </div>`;
  applyI18n(S.root);
}

// --- data -----------------------------------------------------------------------------------
async function settled(promise) {
  try { return await promise; } catch (err) { return { error: err }; }
}

async function load() {
  const api = S.app.api;
  S.lastLoad = Date.now();
  const [summary, risk, positions, fills, equity, backtest] = await Promise.all([
    settled(api.get("/api/trading/summary")),
    settled(api.get("/api/trading/risk")),
    settled(api.get("/api/trading/positions", { limit: 200 })),
    settled(api.get("/api/trading/fills", { limit: 30 })),
    settled(api.get("/api/trading/equity", { limit: CURVE_POINTS })),
    settled(api.get("/api/trading/backtest")),
  ]);
  let btCurve = null;
  if (!backtest.error && backtest.account) {
    // about CURVE_POINTS / 4 points over the report's span (a 30-day backtest has 43,200 closes)
    const r = backtest.report || {};
    const minutes = isNum(r.start) && isNum(r.end) ? Math.ceil((r.end - r.start) / 60e3 / (CURVE_POINTS / 4)) : 60;
    const step = minutes > 1 ? `${minutes}m` : undefined;
    btCurve = await settled(api.get("/api/trading/equity", { account: backtest.account, limit: CURVE_POINTS, step }));
  }
  S.data = { summary, risk, positions, fills, equity, backtest, btCurve };
  if (S.visible) renderAll();
}

/** Re-read soon (events come in bursts: one read for many), at most every auto-loop interval. */
function reloadSoon() {
  if (S.pending) return;
  const every = S.app.api.config.trading?.auto_loop_interval_ms || 5000;
  const wait = Math.max(300, every - (Date.now() - S.lastLoad));
  S.pending = setTimeout(() => { S.pending = null; if (S.visible) load(); }, wait);
}

function onTrading(data) {
  if (data.kind === "heartbeat") { renderHeartbeat(data); return; }
  if (data.kind === "equity" && S.data.summary && !S.data.summary.error) {
    Object.assign(S.data.summary, { equity: data.equity, cash: data.cash, drawdown: data.drawdown, as_of: data.ts });
    renderKpis();
  }
  if (data.kind === "risk") {
    const text = `${t(`pf.guard.${data.guard}`, {}, data.guard)}: ${data.reason}`;
    if (data.state === "tripped" || data.state === "halted") toast(text, "bad", 8000);
    S.app.log("trading", text, data, data.ts);
  }
  reloadSoon();
}

// --- rendering --------------------------------------------------------------------------------
function renderAll() {
  renderKpis();
  renderMode();
  renderCurves();
  renderGuards();
  renderPositions();
  renderFills();
  renderBacktest();
}

function kpi(label, value, cls = "", role = "") {
  return `<div class="kpi" ${role ? `data-kpi="${role}"` : ""}><span class="kpi-l">${esc(label)}</span><span class="kpi-v ${cls}">${value}</span></div>`;
}

function money(v) { return isNum(v) ? num(v, 2) : "—"; }
function pnlClass(v) { return isNum(v) ? (v >= 0 ? "pos" : "neg") : ""; }

function renderKpis() {
  const s = S.data.summary;
  const el = $("[data-role=kpis]");
  if (!s || s.error) { el.innerHTML = `<p class="muted">${esc(s?.error?.message || t("common.nodata"))}</p>`; return; }
  el.innerHTML = [
    kpi(t("pf.kpi.equity"), money(s.equity), "", "equity"),
    kpi(t("pf.kpi.return"), signed(100 * s.total_return, 2) + " %", pnlClass(s.total_return), "return"),
    kpi(t("pf.kpi.cash"), money(s.cash)),
    kpi(t("pf.kpi.realized"), money(s.realized_pnl), pnlClass(s.realized_pnl)),
    kpi(t("pf.kpi.unrealized"), money(s.unrealized_pnl), pnlClass(s.unrealized_pnl), "unrealized"),
    kpi(t("pf.kpi.fees"), money(s.fees), "", "fees"),
    kpi(t("pf.kpi.drawdown"), pct(s.drawdown, 2), s.drawdown >= 5e-5 ? "neg" : "", "drawdown"),
    kpi(t("pf.kpi.open"), int(s.open_positions), "", "open"),
    kpi(t("pf.kpi.trades"), `${int(s.trades)}${isNum(s.hit_rate) ? ` · ${pct(s.hit_rate, 0)}` : ""}`),
  ].join("");
  $("[data-role=as-of]").textContent = s.as_of ? `${t("pf.asof")} ${clock(s.as_of)}` : "";
  const blocking = s.blocking || [];
  for (const b of S.root.querySelectorAll("[data-cmd]")) b.classList.toggle("active", b.dataset.cmd === "halt" && blocking.includes("kill_switch"));
}

function renderMode() {
  const r = S.data.risk;
  const el = $("[data-role=mode]");
  if (!r || r.error) { el.innerHTML = ""; return; }
  const mode = r.exchange.mode;
  const cls = mode === "paper" ? "ok" : mode === "testnet" ? "warn" : "bad";
  el.innerHTML = `<span class="badge ${cls}" data-mode="${esc(mode)}" title="${esc(r.exchange.why)}">${esc(t(`pf.mode.${mode}`, {}, mode))}</span>`;
}

function renderCurves() {
  const e = S.data.equity;
  const pts = e && !e.error ? e.points : [];
  const start = e && !e.error ? e.starting_equity : null;
  chart($("[data-chart=equity]"), "line", {
    id: "equity", height: 200, empty: t("pf.nocurve"), marginLeft: 72,
    series: [{ label: t("pf.equity"), color: C.accent, area: true, points: pts.map((p) => [p.ts, p.equity]) }],
    y: { format: (v) => num(v, 0) },
    hlines: isNum(start) ? [{ y: start, color: C.muted, dash: "3 4" }] : [],
    fmtTip: (v) => clock(v),
  });
  const limit = S.data.risk && !S.data.risk.error ? S.data.risk.guards.find((g) => g.guard === "drawdown")?.limit : null;
  chart($("[data-chart=drawdown]"), "line", {
    id: "drawdown", height: 110, empty: t("pf.nocurve"), marginLeft: 72,
    series: [{ label: t("pf.drawdown"), color: C.red, area: true, points: pts.map((p) => [p.ts, -(p.drawdown || 0)]) }],
    y: { max: 0, format: (v) => pct(v, 1) },
    hlines: isNum(limit) ? [{ y: -limit, color: C.red, dash: "3 4" }] : [],
    fmtTip: (v) => clock(v),
  });
  $("[data-role=dd-limit]").textContent = isNum(limit) ? `${t("pf.limit")} ${pct(limit, 0)} (RISK_MAX_DRAWDOWN)` : "";
}

function guardState(g) {
  const bad = g.state === "tripped" || g.state === "halted";
  const cls = bad ? "bad" : g.state === "full" ? "warn" : "ok";
  return `<span class="badge ${cls}" data-state="${esc(g.state)}">${esc(t(`pf.state.${g.state}`, {}, g.state))}</span>`;
}

function guardValue(g) {
  const share = ["drawdown", "daily_loss", "symbol_exposure"].includes(g.guard);
  const fmt = (v) => (!isNum(v) ? "—" : share ? pct(v, 2) : g.guard === "slippage" ? `${num(v, 1)} bps` : int(v));
  return g.guard === "kill_switch" ? "" : `${fmt(g.value)} / ${fmt(g.limit)}`;
}

function renderGuards() {
  const r = S.data.risk;
  const el = $("[data-role=guards]");
  if (!r || r.error) { el.innerHTML = `<tbody><tr><td class="muted">${esc(r?.error?.message || t("common.nodata"))}</td></tr></tbody>`; return; }
  const rows = r.guards.map((g) => {
    const last = g.last_trip || g.last_change || g.last_refusal;
    const reason = last && (g.state !== "ok" || g.guard === "slippage" || last.kind === "refusal")
      ? `<div class="muted small" data-role="reason">${esc(clock(last.ts))} · ${esc(last.reason)}</div>` : "";
    const reset = g.guard === "drawdown" && g.state === "tripped"
      ? ` <button class="btn sm danger-outline" data-cmd="reset-drawdown">${esc(t("pf.reset"))}</button>` : "";
    return `<tr data-guard="${esc(g.guard)}"><td>${esc(t(`pf.guard.${g.guard}`, {}, g.guard))}${reason}</td>
      <td>${guardState(g)}${reset}</td><td class="num">${guardValue(g)}</td></tr>`;
  }).join("");
  el.innerHTML = `<thead><tr><th>${esc(t("pf.guard"))}</th><th>${esc(t("pf.state"))}</th><th class="num">${esc(t("pf.valuelimit"))}</th></tr></thead><tbody>${rows}</tbody>`;
}

function renderPositions() {
  const p = S.data.positions;
  const el = $("[data-role=positions]");
  const rows = p && !p.error ? p.positions : [];
  $("[data-role=pos-count]").textContent = p && !p.error ? `${int(rows.length)}` : "";
  if (!rows.length) { el.innerHTML = `<tbody><tr><td class="muted">${esc(p?.error?.message || t("pf.nopositions"))}</td></tr></tbody>`; return; }
  const body = rows.map((r) => `<tr data-symbol="${esc(r.symbol)}" data-opened="${esc(r.opened_at)}"><td>${esc(r.symbol)}</td><td>${esc(t(`pf.side.${r.side}`, {}, r.side))}</td>
    <td class="num">${num(r.qty, 4)}</td><td class="num">${price(r.entry_price)}</td><td class="num">${isNum(r.mark_price) ? price(r.mark_price) : "—"}</td>
    <td class="num ${pnlClass(r.unrealized_pnl)}" data-field="upnl">${isNum(r.unrealized_pnl) ? signed(r.unrealized_pnl, 2) : "—"}</td>
    <td class="num">${isNum(r.stop_price) ? price(r.stop_price) : "—"}</td><td class="num">${isNum(r.target_price) ? price(r.target_price) : "—"}</td>
    <td class="mono">${clock(r.opened_at)}</td></tr>`).join("");
  el.innerHTML = `<thead><tr><th>${esc(t("common.symbol"))}</th><th>${esc(t("pf.side"))}</th><th class="num">${esc(t("pf.qty"))}</th>
    <th class="num">${esc(t("pf.entry"))}</th><th class="num">${esc(t("pf.mark"))}</th><th class="num">${esc(t("pf.upnl"))}</th>
    <th class="num">${esc(t("pf.stop"))}</th><th class="num">${esc(t("pf.target"))}</th><th>${esc(t("pf.opened"))}</th></tr></thead><tbody>${body}</tbody>`;
}

function renderFills() {
  const f = S.data.fills;
  const el = $("[data-role=fills]");
  const rows = f && !f.error ? f.fills : [];
  if (!rows.length) { el.innerHTML = `<tbody><tr><td class="muted">${esc(f?.error?.message || t("pf.nofills"))}</td></tr></tbody>`; return; }
  const body = rows.map((r) => `<tr data-reason="${esc(r.reason)}" data-fill="${esc(`${r.symbol}|${r.fill_time}|${r.intent}`)}"><td class="mono">${clock(r.fill_time)}</td><td>${esc(r.symbol)}</td>
    <td class="${r.side === "buy" ? "pos" : "neg"}">${esc(t(`pf.side.${r.side}`, {}, r.side))}</td>
    <td>${esc(t(`pf.reason.${r.reason}`, {}, r.reason))}</td><td class="num">${num(r.qty, 4)}</td><td class="num">${price(r.price)}</td>
    <td class="num" data-field="fee">${num(r.fee, 4)}</td><td class="num">${isNum(r.slippage_bps) ? num(r.slippage_bps, 1) : "—"}</td>
    <td class="num ${r.intent === "exit" ? pnlClass(r.realized_pnl - r.fee) : ""}">${r.intent === "exit" ? signed(r.realized_pnl, 2) : ""}</td></tr>`).join("");
  el.innerHTML = `<thead><tr><th>${esc(t("common.time"))}</th><th>${esc(t("common.symbol"))}</th><th>${esc(t("pf.side"))}</th>
    <th>${esc(t("pf.reason"))}</th><th class="num">${esc(t("pf.qty"))}</th><th class="num">${esc(t("pf.price"))}</th>
    <th class="num">${esc(t("pf.fee"))}</th><th class="num">${esc(t("pf.slip"))}</th><th class="num">${esc(t("pf.pnl"))}</th></tr></thead><tbody>${body}</tbody>`;
}

function renderBacktest() {
  const b = S.data.backtest;
  const el = $("[data-role=backtest]");
  if (!b || b.error) {
    el.innerHTML = `<p class="muted">${esc(b?.error?.status === 404 ? t("pf.bt.none") : b?.error?.message || t("common.nodata"))}</p>`;
    chart($("[data-chart=backtest]"), "line", { id: "backtest", height: 160, empty: t("pf.nocurve"), series: [] });
    return;
  }
  const r = b.report || {};
  const metric = (key, value) => `<tr data-metric="${esc(key)}"><th>${esc(t(`pf.bt.${key}`))}</th><td class="num">${value}</td></tr>`;
  const ab = b.ablation && !b.ablation.skipped ? b.ablation : null;
  const cmp = b.compared_with;
  const differing = cmp && cmp.tables ? Object.entries(cmp.tables).filter(([, v]) => v.differing > 0) : null;
  const span = b.span ? ` · ${t("pf.bt.span", { start: b.span.start ? dateTime(b.span.start) : t("pf.bt.first"), end: b.span.end ? dateTime(b.span.end) : t("pf.bt.last") })}` : "";
  el.innerHTML = `<p class="muted small">${esc(t("pf.bt.meta", { id: b.report_id, account: b.account, source: b.source, at: dateTime(b.created_at) }) + span)}</p>
    <div class="bt-tables"><div class="table-wrap"><table class="tbl compact" data-role="bt-metrics"><tbody>
    ${metric("total_return", `${signed(100 * (r.total_return ?? 0), 2)} %`)}
    ${metric("sharpe", isNum(r.sharpe) ? num(r.sharpe, 2) : "—")}
    ${metric("max_drawdown", isNum(r.max_drawdown) ? pct(r.max_drawdown, 2) : "—")}
    ${metric("hit_rate", isNum(r.hit_rate) ? pct(r.hit_rate, 1) : "—")}
    ${metric("profit_factor", isNum(r.profit_factor) ? num(r.profit_factor, 2) : "—")}
    ${metric("fees", money(r.fees))}
    ${metric("turnover", isNum(r.turnover) ? `${num(r.turnover, 2)}×` : "—")}
    ${metric("exposure_time", isNum(r.exposure_time) ? pct(r.exposure_time, 1) : "—")}
    ${metric("trades", int(r.trades))}
    ${ab ? metric("ablation", `${signed(100 * ab.with_sentiment.total_return, 2)} % / ${signed(100 * ab.without_sentiment.total_return, 2)} %`) : ""}
    ${differing === null ? "" : metric("parity", differing.length ? t("pf.bt.differs", { tables: differing.map(([k, v]) => `${k} ${int(v.differing)}`).join(", "), account: cmp.account }) : t("pf.bt.identical"))}
    </tbody></table></div>
    <div class="table-wrap"><table class="tbl compact" data-role="bt-symbols"><thead><tr><th>${esc(t("common.symbol"))}</th><th class="num">${esc(t("pf.pnl"))}</th>
    <th class="num">${esc(t("pf.bt.trades"))}</th><th class="num">${esc(t("pf.bt.hit_rate"))}</th></tr></thead><tbody>
    ${Object.entries(r.per_symbol || {}).map(([s, v]) => `<tr><td>${esc(s)}</td><td class="num ${pnlClass(v.net_pnl)}">${signed(v.net_pnl, 2)}</td>
      <td class="num">${int(v.trades)}</td><td class="num">${isNum(v.hit_rate) ? pct(v.hit_rate, 0) : "—"}</td></tr>`).join("")}
    </tbody></table></div></div>`;
  const c = S.data.btCurve;
  chart($("[data-chart=backtest]"), "line", {
    id: "backtest", height: 160, empty: t("pf.nocurve"), marginLeft: 72,
    series: [{ label: t("pf.equity"), color: C.purple, area: true, points: c && !c.error ? c.points.map((p) => [p.ts, p.equity]) : [] }],
    y: { format: (v) => num(v, 0) },
    fmtTip: (v) => dateTime(v),
  });
}

function renderHeartbeat(data) {
  const el = $("[data-role=as-of]");
  if (!el) return;
  const stale = data.stale ? ` · <span class="neg">${esc(t("pf.stale", { s: Math.round(data.feed_age_s) }))}</span>` : "";
  el.innerHTML = `${esc(t("pf.asof"))} ${esc(clock(data.clock))}${stale}`;
}

// --- commands -------------------------------------------------------------------------------
function planBody(plan) {
  const what = plan.code ? t(plan.code, plan.params || {}, plan.description) : plan.description;
  return `<p data-plan-code="${esc(plan.code || "")}">${esc(what)}</p>` + planList([
    [t("pf.plan.account"), plan.account],
    [t("pf.plan.open"), plan.open_positions.join(", ") || "—"],
  ]);
}

/** halt / resume / flatten / reset-drawdown: the API's 409 plan, the dialog, then the confirmed send. */
async function command(cmd) {
  const api = S.app.api;
  const path = `/admin/trading/${cmd}`;
  let plan;
  try {
    await api.post(path, { reason: "dashboard" });
    plan = null;
  } catch (err) {
    if (!(err.status === 409 && err.body.plan)) { toast(err.message, "bad"); return; }
    plan = err.body.plan;
  }
  if (plan) {
    const ok = await confirmDialog({ title: t(`pf.${cmd}.title`), body: planBody(plan), confirmLabel: t(`pf.${cmd}`), danger: cmd !== "resume" });
    if (!ok) return;
    try {
      await api.post(path, { reason: "dashboard", confirm: true });
    } catch (err) { toast(err.message, "bad"); return; }
  }
  toast(t("pf.sent", { cmd: t(`pf.${cmd}`) }), "ok");
  S.app.log("ui", t("pf.sent", { cmd: t(`pf.${cmd}`) }), { kind: "ui" });
  reloadSoon();
}

async function runBacktest() {
  // the span of `tickcast backtest --start/--end`: UTC wall times (the inputs carry no zone)
  const f = $("[data-role=bt-form]");
  const body = { account: "backtest" };
  for (const name of ["start", "end"]) if (f.elements[name].value) body[name] = `${f.elements[name].value}Z`;
  const span = [[t("pf.bt.start"), body.start || t("pf.bt.first")], [t("pf.bt.end"), body.end || t("pf.bt.last")]];
  const ok = await confirmDialog({
    title: t("pf.bt.run"), body: `<p>${esc(t("pf.bt.runbody"))}</p>` + planList(span), confirmLabel: t("pf.bt.run"),
  });
  if (!ok) return;
  try {
    const r = await S.app.api.post("/admin/trading/backtest", body);
    toast(t("pf.bt.started", { id: r.job_id }), "ok");
  } catch (err) { toast(err.message, "bad"); }
}

// --- screen ---------------------------------------------------------------------------------
export const portfolioScreen = {
  init(root, app) {
    S.root = root;
    S.app = app;
    layout();
    root.addEventListener("click", (e) => {
      const b = e.target.closest("[data-cmd]");
      if (b) { command(b.dataset.cmd); return; }
      if (e.target.closest("[data-act=run-backtest]")) runBacktest();
    });
    app.onEvent((entry) => {
      if (entry.data.kind === "job" && entry.data.job_kind === "backtest" && entry.data.status === "succeeded" && S.visible) load();
    });
  },
  async show() {
    S.visible = true;
    S.app.hub.open("portfolio.trading", "trading", {}, { message: onTrading, reconnected: () => load(), resync: () => load() });
    S.unpoll = S.app.hub.addPoller(load);
    await load();
  },
  hide() {
    S.visible = false;
    S.app.hub.close("portfolio.trading");
    if (S.unpoll) S.unpoll();
    clearTimeout(S.pending);
    S.pending = null;
  },
  onLang() {
    if (S.visible) renderAll();
  },
};
