// Drift: per-feature rolling z of the serving model's inputs against its training mean/std.
// Window and |z| default to the backend's values (DRIFT_WINDOW / DRIFT_Z_THRESHOLD, or the
// VITE_DRIFT_*_DEFAULT hints) with a "reset to recommended" button (seed 000 §2, step 5).
// The z values come from the flow's own rule on the same rows (models/feature_drift.py); the
// status column is the flow's decision (its drift events). Other window/|z| values are a
// what-if, said so on the page.
import { applyI18n, t } from "./i18n.js";
import { chart, C, sparkline } from "./charts.js";
import { dateTime, esc, int, isNum, num, signed } from "./fmt.js";

const S = { app: null, root: null, visible: false, window: null, z: null, symbol: "", selected: null, data: null, events: [], timer: null, pending: null, unpoll: null, seq: 0 };
const $ = (sel) => S.root.querySelector(sel);

function recommended() {
  const d = S.app.api.config.drift;
  return { window: d.window, z: d.z };
}

function layout() {
  S.root.innerHTML = `
  <div class="screen-head">
    <div><h1 data-i18n="drift.title"></h1><p class="sub" data-i18n="drift.sub"></p></div>
  </div>
  <div class="card controls-card">
    <form class="drift-controls" data-role="controls" onsubmit="return false">
      <label class="field"><span data-i18n="drift.window"></span>
        <input type="number" name="window" min="2" max="100000" step="1" required data-control="window"></label>
      <label class="field"><span data-i18n="drift.z"></span>
        <input type="number" name="z" min="0.1" max="100" step="0.1" required data-control="z"></label>
      <label class="field"><span data-i18n="common.symbol"></span>
        <select name="symbol" data-control="symbol"></select></label>
      <button type="button" class="btn" data-act="reset-drift" data-i18n="drift.reset"></button>
      <p class="hint" data-role="recommended"></p>
    </form>
  </div>
  <div class="kpis" data-role="kpis"></div>
  <div class="grid">
    <article class="card span-7" data-card="features">
      <header><h2 data-i18n="drift.features"></h2><span class="muted small" data-role="ref"></span></header>
      <p class="note drift-note" data-role="rule"></p>
      <p class="note" data-role="reason" hidden></p>
      <div class="table-wrap"><table class="tbl drift-table" data-role="table"></table></div>
    </article>
    <div class="span-5 col">
      <article class="card" data-card="series">
        <header><h2 data-role="series-title"></h2></header>
        <div data-chart="zseries"></div>
      </article>
      <article class="card" data-card="events">
        <header><h2 data-i18n="drift.events"></h2></header>
        <div class="table-wrap"><table class="tbl compact" data-role="events"></table></div>
      </article>
    </div>
  </div>`;
  applyI18n(S.root);
}

function controls() {
  const f = $("[data-role=controls]");
  return { window: f.elements.window, z: f.elements.z, symbol: f.elements.symbol };
}

function setControls(values) {
  const c = controls();
  c.window.value = String(values.window);
  c.z.value = Number(values.z).toFixed(1);
  S.window = values.window;
  S.z = Number(values.z);
}

async function load() {
  const seq = ++S.seq;
  const api = S.app.api;
  const [report, entered, cleared] = await Promise.allSettled([
    api.get("/api/drift/features", { window: S.window, z: S.z, symbol: S.symbol || undefined, history: Math.max(600, S.window * 3), points: 120 }),
    api.get("/api/drift/events", { kind: "feature_drift", limit: 20 }),
    api.get("/api/drift/events", { kind: "feature_drift_exit", limit: 20 }),
  ]);
  if (seq !== S.seq) return; // a newer request (the controls changed) wins
  S.data = report.status === "fulfilled" ? report.value : { features: [], times: [], reason: report.reason.message };
  S.events = [entered, cleared].flatMap((r) => (r.status === "fulfilled" ? r.value.events : [])).sort((a, b) => b.ts_ms - a.ts_ms);
  render();
}

function scheduleLoad(ms = 350) {
  clearTimeout(S.pending);
  S.pending = setTimeout(() => { if (S.visible) load(); }, ms);
}

function render() {
  const d = S.data;
  if (!d) return;
  const rec = recommended();
  $("[data-role=recommended]").innerHTML = esc(t("drift.recommended", { window: rec.window, z: rec.z.toFixed(1) }));
  $("[data-role=ref]").textContent = d.model_version ? t("drift.ref", { version: d.model_version, rows: int(d.rows) }) : "";
  const reason = $("[data-role=reason]");
  reason.hidden = !d.reason;
  reason.textContent = d.reason || "";
  const feats = [...(d.features || [])].sort((a, b) => Math.abs(b.z ?? 0) - Math.abs(a.z ?? 0));
  const flow = d.flow || {};
  const same = d.same_as_flow !== false;
  const rule = $("[data-role=rule]");
  rule.classList.toggle("whatif", !same);
  rule.textContent = d.model_version ? (same
    ? t("drift.same", { window: int(d.window), z: Number(d.z_threshold).toFixed(1), rearm: Number(flow.rearm_below ?? 0).toFixed(1) })
    : t("drift.whatif", { window: int(d.window), z: Number(d.z_threshold).toFixed(1), fwindow: int(flow.window), fz: Number(flow.z ?? 0).toFixed(1) })) : "";
  // "Drifting" is the flow's decision (with its hysteresis); a what-if only adds its own |z| flag
  const drifting = feats.filter((f) => f.flow_drifting);
  const top = feats[0];
  $("[data-role=kpis]").innerHTML = [
    kpi("monitored", int(feats.length), t("drift.kpi.monitored.sub")),
    kpi("breaching", `<span data-field="breaching">${int(drifting.length)}</span>`, t("drift.kpi.breaching.flow"), drifting.length ? "bad" : "ok"),
    kpi("max", top ? `${signed(top.z, 2)}` : "—", top ? top.name : "", top && top.breach ? "bad" : ""),
    kpi("window", `${int(d.window)} · |z| ≥ ${Number(d.z_threshold).toFixed(1)}`, t("drift.kpi.window.sub")),
  ].join("");
  if (!S.selected || !feats.some((f) => f.name === S.selected)) S.selected = top ? top.name : null;
  const maxAbs = Math.max(d.z_threshold * 1.5, ...feats.map((f) => Math.abs(f.z ?? 0)));
  const rows = feats.map((f) => {
    const w = isNum(f.z) ? Math.min(100, (Math.abs(f.z) / maxAbs) * 100) : 0;
    const thr = Math.min(100, (d.z_threshold / maxAbs) * 100);
    return `<tr data-feature="${esc(f.name)}" data-flow-drifting="${f.flow_drifting ? "1" : "0"}" class="${f.name === S.selected ? "selected" : ""} ${f.flow_drifting ? "breach" : ""}" tabindex="0">
      <td class="mono">${esc(f.name)}</td>
      <td class="num hide-sm">${num(f.train_mean, 4)}</td><td class="num hide-sm">${num(f.mean, 4)}</td>
      <td class="num z" data-z="${f.z ?? ""}">${signed(f.z, 2)}</td>
      <td class="zbar-cell"><span class="zbar"><i class="${f.breach ? "bad" : "ok"}" style="width:${w}%"></i><b style="left:${thr}%"></b></span></td>
      <td class="hide-sm">${sparkline(f.series, { threshold: d.z_threshold, color: f.breach ? C.red : C.accent, width: 120, height: 26 })}</td>
      <td>${statusCell(f, same, d, flow)}</td></tr>`;
  }).join("");
  $("[data-role=table]").innerHTML = `<thead><tr><th>${esc(t("drift.feature"))}</th><th class="num hide-sm nt">μ train</th><th class="num hide-sm">${esc(t("drift.mean"))}</th>
    <th class="num">z</th><th>|z|</th><th class="hide-sm">${esc(t("drift.trend"))}</th><th></th></tr></thead>
    <tbody>${rows || `<tr><td colspan="7" class="muted">${esc(t("common.nodata"))}</td></tr>`}</tbody>`;
  renderSeries();
  renderEvents();
}

function statusCell(f, same, d, flow) {
  if (f.z === null && !f.flow_drifting) return '<span class="muted">—</span>';
  let html = f.flow_drifting
    ? `<span class="badge bad" data-field="flow-state" title="${esc(f.flow_since ? t("drift.flow.since", { time: dateTime(f.flow_since) }) : "")}">${esc(t("drift.flow.drifting"))}</span>`
    : `<span class="badge ok" data-field="flow-state">${esc(t("drift.flow.ok"))}</span>`;
  if (same && f.flow_drifting && isNum(f.z) && Math.abs(f.z) < d.z_threshold) {
    html += ` <span class="muted small">${esc(t("drift.flow.hysteresis", { rearm: Number(flow.rearm_below).toFixed(1) }))}</span>`;
  }
  if (!same && f.breach) html += ` <span class="badge warn" data-field="whatif">${esc(t("drift.whatif.breach", { z: Number(d.z_threshold).toFixed(1) }))}</span>`;
  return html;
}

function kpi(key, value, sub, cls = "") {
  return `<div class="kpi ${cls}" data-kpi="${key}"><span class="kpi-l">${esc(t(`drift.kpi.${key}`))}</span>
    <span class="kpi-v">${value}</span><span class="kpi-s">${esc(sub)}</span></div>`;
}

function renderSeries() {
  const d = S.data;
  const f = (d.features || []).find((x) => x.name === S.selected);
  $("[data-role=series-title]").textContent = f ? t("drift.series", { name: f.name }) : t("drift.series.none");
  chart($("[data-chart=zseries]"), "line", {
    id: "zseries", height: 210, empty: d.reason || t("common.nodata"),
    series: f ? [{ label: "z", color: f.breach ? C.red : C.accent, points: d.times.map((x, i) => [x, f.series[i]]) }] : [],
    hlines: [
      { y: d.z_threshold, label: `+${Number(d.z_threshold).toFixed(1)}`, color: C.red, key: "z+" },
      { y: -d.z_threshold, label: `−${Number(d.z_threshold).toFixed(1)}`, color: C.red, key: "z-" },
      { y: 0, color: C.muted, dash: "2 3" },
    ],
    y: { format: (v) => v.toFixed(1) },
    fmtTip: (v) => dateTime(v),
  });
}

function renderEvents() {
  const rows = S.events.slice(0, 12).map((e) => `<tr data-kind="${esc(e.kind)}"><td class="mono">${esc(dateTime(e.ts_ms))}</td><td class="mono">${esc(e.feature)} <span class="muted small">${esc(t(`kind.${e.kind}`, {}, e.kind))}</span></td>
    <td class="num">${signed(e.value, 2)}</td><td class="num">${num(e.threshold, 1)}</td><td class="num">${esc(e.details?.window ?? "—")}</td></tr>`).join("");
  $("[data-role=events]").innerHTML = `<thead><tr><th>${esc(t("common.time"))}</th><th>${esc(t("drift.feature"))}</th><th class="num">z</th>
    <th class="num">|z|≥</th><th class="num">${esc(t("drift.window.short"))}</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="5" class="muted">${esc(t("drift.events.empty"))}</td></tr>`}</tbody>`;
}

function readControls() {
  const c = controls();
  const w = Number(c.window.value);
  const z = Number(c.z.value);
  if (!Number.isInteger(w) || w < 2 || !(z > 0)) return false;
  S.window = w;
  S.z = z;
  S.symbol = c.symbol.value;
  return true;
}

export const driftScreen = {
  init(root, app) {
    S.root = root;
    S.app = app;
    layout();
    setControls(recommended());
    const c = controls();
    c.symbol.innerHTML = `<option value="">${esc(t("drift.allsymbols"))}</option>` +
      (app.api.config.symbols || []).map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join("");
    for (const el of [c.window, c.z, c.symbol]) {
      el.addEventListener("input", () => { if (readControls()) scheduleLoad(); });
      el.addEventListener("change", () => { if (readControls()) scheduleLoad(0); });
    }
    $("[data-act=reset-drift]").addEventListener("click", () => {
      setControls(recommended());
      scheduleLoad(0);
    });
    $("[data-role=table]").addEventListener("click", (e) => {
      const row = e.target.closest("[data-feature]");
      if (!row) return;
      S.selected = row.dataset.feature;
      for (const r of S.root.querySelectorAll("[data-feature]")) r.classList.toggle("selected", r === row);
      renderSeries();
    });
    app.onEvent((entry) => { if (S.visible && (entry.data.kind === "feature_drift" || entry.data.kind === "feature_drift_exit")) scheduleLoad(200); });
  },
  show() {
    S.visible = true;
    S.unpoll = S.app.hub.addPoller(load);
    S.timer = setInterval(() => scheduleLoad(0), 10000);
    load();
  },
  hide() {
    S.visible = false;
    clearInterval(S.timer);
    if (S.unpoll) S.unpoll();
  },
  onLang() {
    const sel = controls().symbol;
    sel.options[0].textContent = t("drift.allsymbols");
    render();
  },
};
