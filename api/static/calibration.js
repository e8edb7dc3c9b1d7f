// Calibration: live vs production reliability (Wilson intervals, unreliable bins marked),
// probability histogram, ΔECE over time with the abs threshold and hysteresis lines, streaks,
// cooldown, Brier / PR-AUC trend, accuracy health and its trend, and the recommendation log.
import { applyI18n, t } from "./i18n.js";
import { chart, C } from "./charts.js";
import { dateTime, duration, esc, int, isNum, num, pct, signed, statusBadge } from "./fmt.js";

const S = { app: null, root: null, visible: false, scope: "overall", version: "", data: {}, timer: null, pending: null, unpoll: null };
const $ = (sel) => S.root.querySelector(sel);
const HISTORY_MS = 24 * 3600e3;
const LOG_KINDS = new Set(["retrain_recommended", "recalibrate", "calibration_drift_enter", "calibration_drift_exit", "accuracy_critical"]);

function layout() {
  S.root.innerHTML = `
  <div class="screen-head">
    <div><h1 data-i18n="cal.title"></h1><p class="sub" data-i18n="cal.sub"></p></div>
    <div class="controls">
      <label class="field inline"><span data-i18n="cal.model"></span><select data-role="version"></select></label>
      <label class="field inline"><span data-i18n="cal.scope"></span><select data-role="scope"></select></label>
    </div>
  </div>
  <div class="kpis" data-role="kpis"></div>
  <div class="grid">
    <article class="card span-6" data-card="reliability">
      <header><h2 data-i18n="cal.reliability"></h2><div class="legend" data-role="rel-legend"></div></header>
      <p class="note" data-role="rel-note"></p>
      <div data-chart="reliability"></div>
      <details class="bins" open><summary data-i18n="cal.bins"></summary>
        <div class="table-wrap"><table class="tbl compact" data-role="bins"></table></div></details>
    </article>
    <div class="span-6 col">
      <article class="card" data-card="histogram">
        <header><h2 data-i18n="cal.histogram"></h2><div class="legend" data-role="hist-legend"></div></header>
        <div data-chart="histogram"></div>
      </article>
      <article class="card" data-card="delta">
        <header><h2 data-i18n="cal.delta"></h2><div class="legend" data-role="delta-legend"></div></header>
        <div data-chart="delta"></div>
      </article>
      <article class="card" data-card="perf">
        <header><h2 data-i18n="cal.perf"></h2><div class="legend" data-role="perf-legend"></div></header>
        <div data-chart="perf"></div>
      </article>
    </div>
    <article class="card span-4" data-card="accuracy">
      <header><h2 data-i18n="cal.accuracy"></h2><span data-role="health"></span></header>
      <div data-chart="accuracy"></div>
      <h3 class="small muted" data-i18n="cal.versions"></h3>
      <ul class="versions" data-role="versions"></ul>
    </article>
    <article class="card span-8" data-card="log">
      <header><h2 data-i18n="cal.log"></h2><span class="muted small" data-i18n="cal.log.hint"></span></header>
      <div class="table-wrap"><table class="tbl" data-role="log"></table></div>
    </article>
  </div>`;
  applyI18n(S.root);
}

async function load() {
  const api = S.app.api;
  const version = S.version || undefined;
  const [bins, status, events] = await Promise.allSettled([
    api.get("/api/calibration/bins", { model_version: version, scope: S.scope }),
    api.get("/api/calibration/status"),
    api.get("/api/drift/events", { limit: 200 }),
  ]);
  // Accuracy health of the shown version only (its own labeled predictions), plus every version's own.
  const acc = await Promise.allSettled([api.get("/api/accuracy/trend", { model_version: bins.value?.model_version || version })]).then((r) => r[0]);
  const d = S.data;
  d.bins = bins.status === "fulfilled" ? bins.value : null;
  d.binsError = bins.status === "rejected" ? bins.reason.message : null;
  d.status = status.status === "fulfilled" ? status.value : null;
  d.acc = acc.status === "fulfilled" ? acc.value : null;
  d.events = events.status === "fulfilled" ? events.value.events.filter((e) => LOG_KINDS.has(e.kind)) : [];
  const resolved = d.bins?.model_version || version || "";
  // ΔECE and Brier/PR-AUC over the last day of evaluations (event time) of this model and scope
  const last = (d.status?.scopes || []).find((r) => r.model_version === resolved && r.scope === S.scope);
  const end = last ? last.window_end_ms + 1 : undefined;
  try {
    d.windows = (await api.get("/api/calibration/windows", {
      model_version: resolved, scope: S.scope, limit: 500, end, start: end ? end - HISTORY_MS : undefined,
    })).windows;
  } catch { d.windows = []; }
  render();
}

function scheduleLoad(ms = 1500) {
  if (S.pending) return;
  S.pending = setTimeout(() => { S.pending = null; if (S.visible) load(); }, ms);
}

function cfg() { return S.app.api.config.calibration; }

function statusRow() {
  const rows = S.data.status?.scopes || [];
  const v = S.data.bins?.model_version;
  return rows.find((r) => r.model_version === v && r.scope === S.scope) || null;
}

// --- render -----------------------------------------------------------------------------------
function render() {
  renderSelectors();
  renderKpis();
  renderReliability();
  renderHistogram();
  renderDelta();
  renderPerf();
  renderAccuracy();
  renderLog();
}

function renderSelectors() {
  const rows = S.data.status?.scopes || [];
  const versions = [...new Set(rows.map((r) => r.model_version))];
  const current = S.data.bins?.model_version;
  if (current && !versions.includes(current)) versions.unshift(current);
  const vSel = $("[data-role=version]");
  vSel.innerHTML = `<option value="">${esc(t("cal.production"))}</option>` +
    versions.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
  vSel.value = S.version;
  const scopes = ["overall", ...new Set(rows.filter((r) => r.model_version === current && r.scope !== "overall").map((r) => r.scope))];
  const sSel = $("[data-role=scope]");
  sSel.innerHTML = scopes.map((s) => `<option value="${esc(s)}">${esc(s === "overall" ? t("cal.overall") : s)}</option>`).join("");
  sSel.value = S.scope;
}

function kpi(key, value, sub, cls = "") {
  return `<div class="kpi ${cls}" data-kpi="${key}"><span class="kpi-l">${esc(t(`cal.kpi.${key}`))}</span>
    <span class="kpi-v">${value}</span><span class="kpi-s">${sub}</span></div>`;
}

function meter(value, max, cls = "") {
  const w = Math.min(100, (value / Math.max(1, max)) * 100);
  return `<span class="meter ${cls}"><i style="width:${w}%"></i></span>`;
}

function renderKpis() {
  const b = S.data.bins;
  const s = statusRow();
  const c = cfg();
  const live = b?.live;
  const delta = b?.delta_ece ?? s?.delta_ece;
  // Below CALIBRATION_DRIFT_MIN_SAMPLES a ΔECE is noise: shown, but neutral and without a verdict.
  const verdict = b?.verdict ?? s?.verdict;
  const insufficient = verdict === "insufficient_data";
  const deltaCls = insufficient || !isNum(delta) ? "" : delta > c.abs ? "bad" : delta > c.abs / 2 ? "warn" : "ok";
  const deltaSub = insufficient
    ? t("cal.kpi.delta.insufficient", { n: int(b ? b.live.n : s?.n), min: int(b?.min_samples ?? c.min_samples) })
    : t("cal.kpi.delta.sub", { abs: c.abs, ema: num(s?.delta_ece_ema) });
  const drift = s ? (s.drift_on ? `<span class="badge bad">${esc(t("cal.drift.on"))}</span>` : `<span class="badge ok">${esc(t("cal.drift.off"))}</span>`) : "—";
  const absS = s?.abs_streak ?? 0;
  const relS = s?.rel_streak ?? 0;
  const cd = s?.cooldown_remaining_s ?? 0;
  const acc = S.data.acc?.current;
  const cards = [
    kpi("ece", `${num(live?.ece)} <small>/ ${num(b?.production?.ece)}</small>`, esc(t("cal.kpi.ece.sub", { n: int(live?.n) }))),
    kpi("delta", `<span data-field="delta-ece" data-verdict="${esc(verdict || "")}">${signed(delta)}</span>`, esc(deltaSub), deltaCls),
    kpi("drift", drift, esc(s ? t(`cal.state.${s.state}`, {}, s.state) : t("common.nodata"))),
    kpi("streaks", `<span data-field="abs-streak">${absS}</span><small>/${c.abs_streak_trigger}</small> · <span data-field="rel-streak">${relS}</span><small>/${c.rel_streak_trigger}</small>`,
      `${meter(absS, c.abs_streak_trigger, absS >= c.abs_streak_trigger ? "bad" : "")}${meter(relS, c.rel_streak_trigger, relS >= c.rel_streak_trigger ? "bad" : "")}<span>${esc(t("cal.kpi.streaks.sub"))}</span>`),
    kpi("cooldown", `<span data-field="cooldown">${cd > 0 ? esc(duration(cd * 1000)) : esc(t("cal.cooldown.none"))}</span>`,
      `${meter(cd, c.cooldown_s, "info")}<span>${esc(t("cal.kpi.cooldown.sub", { total: duration(c.cooldown_s * 1000) }))}</span>`),
    kpi("health", acc?.health ? statusBadge(acc.health) : "—", esc(healthSub(acc))),
  ];
  $("[data-role=kpis]").innerHTML = cards.join("");
}

function healthSub(acc) {
  if (!acc) return t("common.nodata");
  if (acc.health === "INSUFFICIENT_DATA") return t("cal.health.insufficient", { n: int(acc.n), min: int(acc.min_samples) });
  return isNum(acc.accuracy) ? t("cal.kpi.health.sub", { acc: pct(acc.accuracy), n: int(acc.n) }) : t("common.nodata");
}

function renderReliability() {
  const b = S.data.bins;
  const c = cfg();
  const note = $("[data-role=rel-note]");
  if (!b) {
    note.textContent = S.data.binsError || t("common.nodata");
    chart($("[data-chart=reliability]"), "reliability", { live: [], prod: [], labels: {} });
    $("[data-role=bins]").innerHTML = "";
    return;
  }
  const live = b.live.bins;
  note.innerHTML = esc(t("cal.rel.note", {
    version: b.model_version, n: int(b.live.n), hours: (b.window_seconds / 3600).toFixed(1), min: c.min_bin_samples, z: c.wilson_z,
  })) + (b.enough_samples ? "" : ` <span class="badge warn">${esc(t("cal.rel.few", { min: b.min_samples }))}</span>`);
  chart($("[data-chart=reliability]"), "reliability", {
    live, prod: b.production?.bins || [],
    labels: { live: t("cal.live"), prod: t("cal.prod"), unreliable: t("cal.unreliable"), x: t("cal.rel.x") },
  });
  $("[data-role=rel-legend]").innerHTML = `<span><i style="background:${C.accent}"></i>${esc(t("cal.live"))}</span>
    <span><i style="background:${C.purple}"></i>${esc(t("cal.prod"))}</span>
    <span><i class="hollow" style="border-color:${C.amber}"></i>${esc(t("cal.unreliable"))}</span>`;
  const rows = live.map((bin, i) => `<tr data-bin-row="${i}" class="${bin.reliable ? "" : "unreliable"}">
    <td class="mono">${bin.lo.toFixed(1)}–${bin.hi.toFixed(1)}</td><td class="num">${int(bin.n)}</td>
    <td class="num">${num(bin.mean_prob)}</td><td class="num">${num(bin.pos_rate)}</td>
    <td class="num">${isNum(bin.wilson_lo) ? `${num(bin.wilson_lo)} – ${num(bin.wilson_hi)}` : "—"}</td>
    <td>${bin.n === 0 ? `<span class="muted">${esc(t("cal.empty"))}</span>` : bin.reliable ? `<span class="badge ok">${esc(t("cal.reliable"))}</span>` : `<span class="badge warn">${esc(t("cal.unreliable"))}</span>`}</td></tr>`).join("");
  $("[data-role=bins]").innerHTML = `<thead><tr><th>${esc(t("cal.bin"))}</th><th class="num">n</th><th class="num">${esc(t("cal.meanprob"))}</th>
    <th class="num">${esc(t("cal.posrate"))}</th><th class="num">Wilson CI</th><th></th></tr></thead><tbody>${rows}</tbody>`;
}

function renderHistogram() {
  const b = S.data.bins;
  const live = b?.live.bins || [];
  const prod = b?.production?.bins || [];
  const ln = live.reduce((a, x) => a + x.n, 0) || 1;
  const pn = prod.reduce((a, x) => a + x.n, 0) || 1;
  const groups = live.map((bin, i) => ({
    label: bin.lo.toFixed(1),
    bars: [
      { value: bin.n / ln, color: C.accent, key: `live-${i}`, title: `${t("cal.live")} ${bin.lo.toFixed(1)}–${bin.hi.toFixed(1)}: ${pct(bin.n / ln)} (n=${bin.n})` },
      { value: prod[i] ? prod[i].n / pn : null, color: C.purple, key: `prod-${i}`, title: `${t("cal.prod")}: ${prod[i] ? pct(prod[i].n / pn) : "—"}` },
    ],
  }));
  chart($("[data-chart=histogram]"), "bars", { id: "histogram", height: 170, groups, y: { format: (v) => pct(v, 0) }, empty: t("common.nodata") });
  $("[data-role=hist-legend]").innerHTML = `<span><i style="background:${C.accent}"></i>${esc(t("cal.live"))}</span><span><i style="background:${C.purple}"></i>${esc(t("cal.prod"))}</span>`;
}

function driftBands(windows) {
  const bands = [];
  let start = null;
  windows.forEach((w, i) => {
    if (w.drift_on && start === null) start = w.window_end_ms;
    const last = i === windows.length - 1;
    if (start !== null && (!w.drift_on || last)) { bands.push({ x0: start, x1: w.window_end_ms, color: C.red }); start = null; }
  });
  return bands;
}

function renderDelta() {
  const w = S.data.windows || [];
  const c = cfg();
  chart($("[data-chart=delta]"), "line", {
    id: "delta", height: 180, empty: t("cal.delta.empty"),
    series: [
      { label: "ΔECE", color: C.accent, points: w.map((r) => [r.window_end_ms, r.delta_ece]) },
      { label: "EMA ΔECE", color: C.cyan, dash: "1 0", width: 2.4, points: w.map((r) => [r.window_end_ms, r.delta_ece_ema]) },
    ],
    hlines: [
      { y: c.abs, label: `${t("cal.abs")} ${c.abs}`, color: C.red, key: "abs" },
      { y: c.enter, label: `${t("cal.enter")} ${c.enter}`, color: C.amber, key: "enter" },
      { y: c.exit, label: `${t("cal.exit")} ${c.exit}`, color: C.green, key: "exit" },
      { y: 0, color: C.muted, dash: "2 3", key: "zero" },
    ],
    bands: driftBands(w),
    y: { format: (v) => v.toFixed(2) },
    fmtTip: (v) => dateTime(v),
  });
  $("[data-role=delta-legend]").innerHTML = `<span><i style="background:${C.accent}"></i>ΔECE</span><span><i style="background:${C.cyan}"></i>EMA</span>
    <span><i style="background:${C.red};opacity:.35"></i>${esc(t("cal.drift.on"))}</span>`;
}

function renderPerf() {
  const w = S.data.windows || [];
  const p = S.data.bins?.production;
  chart($("[data-chart=perf]"), "line", {
    id: "perf", height: 170, empty: t("common.nodata"),
    series: [
      { label: "Brier", color: C.cyan, points: w.map((r) => [r.window_end_ms, r.brier]) },
      { label: "PR-AUC", color: C.green, points: w.map((r) => [r.window_end_ms, r.pr_auc]) },
    ],
    hlines: [
      { y: p?.brier, label: `Brier ${t("cal.prod")}`, color: C.cyan },
      { y: p?.pr_auc, label: `PR-AUC ${t("cal.prod")}`, color: C.green },
    ],
    y: { format: (v) => v.toFixed(2) },
    fmtTip: (v) => dateTime(v),
  });
  $("[data-role=perf-legend]").innerHTML = `<span><i style="background:${C.cyan}"></i>Brier</span><span><i style="background:${C.green}"></i>PR-AUC</span><span class="muted">- - ${esc(t("cal.prod"))}</span>`;
}

function renderAccuracy() {
  const a = S.data.acc;
  const th = a?.thresholds || S.app.api.config.accuracy;
  const color = (v) => (v >= th.good ? C.green : v >= th.warning ? C.amber : C.red);
  const groups = (a?.trend || []).filter((d) => d.n > 0).map((d) => ({
    label: d.date.slice(5),
    bars: [{ value: d.accuracy, color: color(d.accuracy), key: d.date, title: `${d.date}: ${pct(d.accuracy)} (n=${d.n})` }],
  }));
  chart($("[data-chart=accuracy]"), "bars", {
    id: "accuracy", height: 190, groups, empty: t("common.nodata"),
    y: { min: 0, max: 1, format: (v) => pct(v, 0) },
    hlines: [{ y: th.good, label: `GOOD ≥ ${pct(th.good, 0)}`, color: C.green }, { y: th.warning, label: `WARNING ≥ ${pct(th.warning, 0)}`, color: C.amber }],
  });
  const cur = a?.current;
  $("[data-role=health]").innerHTML = cur?.health ? `${statusBadge(cur.health)} <span class="muted small">${esc(a.model_version || "")} · ${esc(healthSub(cur))}</span>` : "";
  // each version judged on its own labeled predictions (a new model starts at "insufficient data")
  const versions = a?.versions || [];
  $("[data-role=versions]").innerHTML = versions.length
    ? versions.map((v) => `<li data-version="${esc(v.model_version)}" data-health="${esc(v.health)}"><span class="mono small">${esc(v.model_version)}</span>
        ${statusBadge(v.health)}<span class="muted small">${v.health === "INSUFFICIENT_DATA" ? esc(t("cal.health.insufficient", { n: int(v.n), min: int(th.min_samples) })) : `${pct(v.accuracy)} · n=${int(v.n)}`}</span></li>`).join("")
    : `<li class="muted small">${esc(t("cal.versions.empty"))}</li>`;
}

function renderLog() {
  const events = S.data.events || [];
  const rows = events.slice(0, 30).map((e) => {
    const d = e.details || {};
    const kindCls = e.kind === "retrain_recommended" || e.kind === "accuracy_critical" ? "bad" : e.kind === "recalibrate" ? "warn" : "info";
    return `<tr data-kind="${esc(e.kind)}"><td class="mono">${esc(dateTime(e.ts_ms))}</td>
      <td><span class="badge ${kindCls}">${esc(t(`kind.${e.kind}`, {}, e.kind))}</span></td>
      <td class="mono small hide-md" title="${esc(e.model_version)}">${esc(e.model_version)}</td><td class="num">${signed(e.value)}</td>
      <td class="num">${num(d.delta_ece_ema)}</td><td class="num">${esc(d.abs_streak ?? "—")} / ${esc(d.rel_streak ?? "—")}</td>
      <td class="small wrap">${esc(t(`kind.${e.kind}.what`, {}, ""))}</td></tr>`;
  }).join("");
  $("[data-role=log]").innerHTML = `<thead><tr><th>${esc(t("common.time"))}</th><th>${esc(t("cal.log.kind"))}</th><th class="hide-md">${esc(t("cal.model"))}</th>
    <th class="num">ΔECE</th><th class="num">EMA</th><th class="num">${esc(t("cal.kpi.streaks"))}</th><th>${esc(t("cal.log.action"))}</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="7" class="muted">${esc(t("cal.log.empty"))}</td></tr>`}</tbody>`;
}

export const calibrationScreen = {
  init(root, app) {
    S.root = root;
    S.app = app;
    layout();
    $("[data-role=version]").addEventListener("change", (e) => { S.version = e.target.value; S.scope = "overall"; load(); });
    $("[data-role=scope]").addEventListener("change", (e) => { S.scope = e.target.value; load(); });
    app.onEvent((entry) => {
      if (S.visible && (LOG_KINDS.has(entry.data.kind) || entry.data.kind === "model_switch")) scheduleLoad(500);
    });
  },
  show() {
    S.visible = true;
    S.app.hub.open("calibration", "calibration", {}, {
      message: () => scheduleLoad(), reconnected: () => scheduleLoad(100), resync: () => scheduleLoad(100),
    });
    S.unpoll = S.app.hub.addPoller(load);
    S.timer = setInterval(() => scheduleLoad(0), 30000);
    load();
  },
  hide() {
    S.visible = false;
    S.app.hub.close("calibration");
    if (S.unpoll) S.unpoll();
    clearInterval(S.timer);
  },
  onLang() { if (S.data.bins !== undefined) render(); },
};
