// Admin / Job Center (seed 000 "Job Center" steps 1–5): backfill jobs with a live toggle,
// training jobs with auto refresh and progress, labeler run-once, promotion status and the
// retrain schedule, the model registry (promote / rollback / restore behind a confirmation that
// says what will happen) and the live events log.
import { applyI18n, t } from "./i18n.js";
import { clock, dateTime, duration, esc, int, isNum, num, parseIso, statusBadge, zonedDateTime } from "./fmt.js";
import { confirmDialog, planList, toast } from "./ui.js";

const S = {
  app: null, root: null, visible: false, jobs: [], models: null, promo: null, sched: null,
  auto: true, live: true, paused: false, filter: "all", timers: [], pending: null, highlight: null, unpoll: null,
};
const $ = (sel) => S.root.querySelector(sel);
const TRAIN_KINDS = new Set(["train", "recalibrate"]);

// The server sends job sentences with a code and parameters (tickcast/job_messages.py): say
// them in the page's language, keeping the English text for sentences without a code.
function jobText(code, params, text) {
  return code ? t(`jobmsg.${code}`, params || {}, text) : text || "";
}

function layout() {
  const lab = S.app.api.config.labeler;
  S.root.innerHTML = `
  <div class="screen-head">
    <div><h1 data-i18n="admin.title"></h1><p class="sub" data-i18n="admin.sub"></p></div>
  </div>
  <div class="grid">
    <article class="card span-6" data-card="backfill">
      <header><h2><span class="step">1</span><span data-i18n="admin.backfill"></span></h2>
        <div class="tools"><label class="switch"><input type="checkbox" data-toggle="live" checked><i></i><span data-i18n="admin.live"></span></label>
        <button class="btn sm" data-act="refresh-backfill" data-i18n="common.refresh"></button></div></header>
      <form class="inline-form" data-role="backfill-form" onsubmit="return false">
        <input type="text" name="inputs" data-i18n-placeholder="admin.backfill.placeholder" spellcheck="false">
        <button class="btn" data-act="start-backfill" data-i18n="admin.backfill.start"></button>
      </form>
      <ul class="jobs" data-role="backfill-jobs"></ul>
    </article>
    <article class="card span-6" data-card="training">
      <header><h2><span class="step">2</span><span data-i18n="admin.training"></span></h2>
        <div class="tools"><label class="switch"><input type="checkbox" data-toggle="auto" checked><i></i><span data-i18n="admin.auto"></span></label>
        <button class="btn sm" data-act="refresh-training" data-i18n="common.refresh"></button></div></header>
      <div class="btn-row">
        <button class="btn primary" data-act="retrain" data-i18n="admin.retrain"></button>
        <button class="btn danger-outline" data-act="emergency" data-i18n="admin.emergency"></button>
      </div>
      <ul class="jobs" data-role="train-jobs"></ul>
    </article>
    <article class="card span-5" data-card="labeler">
      <header><h2><span class="step">3</span><span data-i18n="admin.labeler"></span></h2></header>
      <form class="labeler-form" data-role="labeler-form" onsubmit="return false">
        <label class="field"><span>min_age (s)</span><input type="number" name="min_age" min="0" value="${lab.min_age}"></label>
        <label class="field"><span>limit</span><input type="number" name="limit" min="1" value="${lab.limit}"></label>
        <label class="check"><input type="checkbox" name="force" ${lab.force ? "checked" : ""}><span>force</span></label>
        <button class="btn primary" data-act="run-labeler" data-i18n="admin.labeler.run"></button>
      </form>
      <ul class="jobs" data-role="labeler-jobs"></ul>
    </article>
    <article class="card span-7" data-card="promotion">
      <header><h2><span class="step">4</span><span data-i18n="admin.promotion"></span></h2>
        <button class="btn sm" data-act="refresh-models" data-i18n="common.refresh"></button></header>
      <div class="kv wide" data-role="promotion"></div>
    </article>
    <article class="card span-12" data-card="registry">
      <header><h2 data-i18n="admin.registry"></h2>
        <div class="tools"><button class="btn sm danger-outline" data-act="rollback" data-i18n="admin.rollback"></button></div></header>
      <div class="table-wrap"><table class="tbl" data-role="registry"></table></div>
    </article>
    <article class="card span-12" data-card="events">
      <header><h2><span class="step">5</span><span data-i18n="admin.events"></span></h2>
        <div class="tools">
          <select data-role="filter" class="sm">
            <option value="all" data-i18n="admin.filter.all"></option><option value="job" data-i18n="admin.filter.job"></option>
            <option value="drift" data-i18n="admin.filter.drift"></option><option value="model" data-i18n="admin.filter.model"></option>
          </select>
          <label class="switch"><input type="checkbox" data-toggle="pause"><i></i><span data-i18n="admin.pause"></span></label>
        </div></header>
      <ol class="log" data-role="log"></ol>
    </article>
  </div>`;
  applyI18n(S.root);
}

// --- data -----------------------------------------------------------------------------------
async function loadJobs({ all = false } = {}) {
  const r = await S.app.api.get("/admin/jobs", { limit: 100 });
  S.jobs = r.jobs;
  renderJobs(all || S.live);
}

async function loadModels() {
  const api = S.app.api;
  const [models, promo, sched] = await Promise.allSettled([
    api.get("/api/models"), api.get("/api/models/promotion-status"), api.get("/admin/scheduler-status"),
  ]);
  if (models.status === "fulfilled") S.models = models.value;
  if (promo.status === "fulfilled") S.promo = promo.value;
  if (sched.status === "fulfilled") S.sched = sched.value;
  renderRegistry();
  renderPromotion();
}

function loadAll() {
  return Promise.all([loadJobs().catch((e) => toastOnce(e)), loadModels()]);
}

let lastToast = "";
function toastOnce(err) {
  if (err.message !== lastToast) toast(err.message, "bad");
  lastToast = err.message;
}

function scheduleJobs(ms = 400) {
  if (S.pending) return;
  S.pending = setTimeout(() => { S.pending = null; if (S.visible) loadJobs().catch(() => {}); }, ms);
}

function onEvent(entry) {
  const d = entry.data;
  if (S.visible) appendLog(entry);
  if (d.kind === "job") {
    const job = S.jobs.find((j) => j.job_id === d.job_id);
    const isBackfill = d.job_kind === "backfill";
    if (isBackfill && !S.live) return;
    if (!job) { scheduleJobs(); return; }
    Object.assign(job, {
      status: d.status, progress: d.progress, message: d.message, message_code: d.message_code, message_params: d.message_params,
      error: d.error || job.error, error_code: d.error_code || job.error_code, error_params: d.error_params || job.error_params,
    });
    if (S.visible) updateJobEl(job);
    if (d.status === "succeeded" || d.status === "failed") { scheduleJobs(300); loadModels(); }
  } else if (d.kind === "model_switch" && S.visible) {
    loadModels();
  }
}

// --- jobs -----------------------------------------------------------------------------------
function jobHtml(j) {
  const p = Math.round((j.progress || 0) * 100);
  return `<li class="job ${j.job_id === S.highlight ? "hl" : ""}" data-job-id="${esc(j.job_id)}" data-kind="${esc(j.kind)}" data-status="${esc(j.status)}">
    <div class="job-top">${statusBadge(j.status)}<b>${esc(t(`job.${j.kind}`, {}, j.kind))}</b>
      <span class="muted small">${esc(t(`trigger.${j.trigger}`, {}, j.trigger))}</span>
      <span class="mono muted small" title="${esc(j.job_id)}">#${esc(j.job_id.slice(0, 8))}</span><span class="grow"></span>
      <time class="muted small">${esc(dateTime(j.created_at))}</time></div>
    <div class="progress ${j.status}" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${p}"><i style="width:${p}%"></i><span>${p}%</span></div>
    <div class="job-msg">${esc(jobText(j.message_code, j.message_params, j.message))}${jobDuration(j)}</div>
    ${jobResult(j)}</li>`;
}

function jobDuration(j) {
  if (!j.started_at) return "";
  const end = j.finished_at || Date.now();
  return ` <span class="muted small">· ${esc(duration(end - j.started_at))}</span>`;
}

function jobResult(j) {
  if (j.error) return `<div class="job-err">${esc(jobText(j.error_code, j.error_params, j.error))}</div>`;
  const r = j.result;
  if (!r) return "";
  if (j.kind === "train" || j.kind === "recalibrate") {
    const gate = r.passed ? `<span class="pos">${esc(t("admin.gates.pass"))}</span>` : `<span class="neg">${esc(t("admin.gates.fail"))}: ${esc((r.gate_failures || []).join("; "))}</span>`;
    return `<div class="job-res"><span class="mono">${esc(r.version || "")}</span> · ${gate}${isNum(r.roc_auc) ? ` · AUC ${num(r.roc_auc)}` : ""}${isNum(r.ece) ? ` · ECE ${num(r.ece)}` : ""}${r.promoted ? ` · <span class="badge ok">${esc(t("admin.promoted"))}</span>` : ""}</div>`;
  }
  if (j.kind === "labeler") return `<div class="job-res">${esc(Object.entries(r).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k}=${v}`).join(" · "))}</div>`;
  if (j.kind === "backfill" && r.summary) {
    const text = typeof r.summary === "string" ? r.summary
      : Object.entries(r.summary).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k}=${v}`).join(" · ");
    return `<div class="job-res">${esc(text)}</div>`;
  }
  return "";
}

function renderList(role, jobs, emptyKey) {
  $(`[data-role=${role}]`).innerHTML = jobs.length ? jobs.map(jobHtml).join("") : `<li class="empty muted">${esc(t(emptyKey))}</li>`;
}

function renderJobs(withBackfill = true) {
  renderList("train-jobs", S.jobs.filter((j) => TRAIN_KINDS.has(j.kind)).slice(0, 6), "admin.nojobs");
  // Backfill "live" off: the list stays as it was until Refresh (seed step 2).
  if (withBackfill) renderList("backfill-jobs", S.jobs.filter((j) => j.kind === "backfill").slice(0, 5), "admin.nojobs");
  renderList("labeler-jobs", S.jobs.filter((j) => j.kind === "labeler").slice(0, 3), "admin.nojobs");
}

function updateJobEl(job) {
  const el = S.root.querySelector(`[data-job-id="${CSS.escape(job.job_id)}"]`);
  if (!el) return;
  el.outerHTML = jobHtml(job);
}

// --- promotion, registry --------------------------------------------------------------------
function renderPromotion() {
  const p = S.promo;
  const s = S.sched;
  if (!p) return;
  const next = p.next_allowed_at ? p.next_allowed_at * 1000 : null;
  const left = next ? next - Date.now() : 0;
  const items = [
    [t("admin.production"), p.production ? `<span class="mono" data-field="production">${esc(p.production)}</span>` : `<span class="badge warn" data-field="production">baseline</span>`],
    [t("admin.lastpromoted"), p.last_promoted_at ? esc(dateTime(p.last_promoted_at * 1000)) : "—"],
    [t("admin.cooldown"), esc(duration((p.cooldown_s || 0) * 1000))],
    [t("admin.nextallowed"), next ? `${esc(dateTime(next))} ${left > 0 ? `<span class="badge warn" data-field="in-cooldown">${esc(t("admin.incooldown", { left: duration(left) }))}</span>` : `<span class="badge ok">${esc(t("admin.allowed"))}</span>`}` : `<span class="badge ok">${esc(t("admin.allowed"))}</span>`],
    [t("admin.schedule"), s ? `<span class="mono">${esc(s.schedule)}</span> (${esc(s.timezone)})${s.enabled ? "" : ` <span class="badge muted">${esc(t("admin.disabled"))}</span>`}` : "—"],
    // in RETRAIN_TIMEZONE, as the server wrote it (not the browser's zone)
    [t("admin.nextrun"), s && s.next_run ? `<span data-field="next-run">${esc(t("admin.nextrun.zone", { time: zonedDateTime(s.next_run), zone: s.timezone }))}</span>` : "—"],
    [t("admin.autopromote"), S.app.api.config.models.auto_promote ? `<span class="badge ok">ON</span>` : `<span class="badge muted">OFF</span>`],
  ];
  $("[data-role=promotion]").innerHTML = items.map(([k, v]) => `<span>${esc(k)}</span><span>${v}</span>`).join("");
}

function renderRegistry() {
  const m = S.models;
  if (!m) return;
  const models = [...m.models].reverse();
  const rows = models.map((x) => {
    const g = x.gates || {};
    const gates = g.passed ? `<span class="pos">✓</span>` : `<span class="neg" title="${esc((g.failures || []).join("; "))}">✗ ${esc((g.failures || [])[0] || "")}</span>`;
    const canPromote = x.status !== "production" && x.status !== "rejected";
    return `<tr data-version="${esc(x.version)}" data-model-status="${esc(x.status)}">
      <td class="mono">${esc(x.version)}</td><td>${statusBadge(x.status)}</td><td class="hide-sm">${esc(dateTime(parseIso(x.created_at)))}</td>
      <td class="hide-sm">${esc(t(`job.${x.kind}`, {}, x.kind || ""))}</td>
      <td class="num">${num(x.roc_auc)}</td><td class="num">${num(x.ece_prod)}</td><td class="num hide-sm">${num(x.brier_prod)}</td><td class="num hide-sm">${num(x.pr_auc_prod)}</td>
      <td class="gates">${gates}</td>
      <td class="actions">${canPromote ? `<button class="btn sm" data-act="promote" data-version="${esc(x.version)}">${esc(t("admin.promote"))}</button>` : ""}
        ${x.has_backup ? `<button class="btn sm ghost" data-act="restore" data-version="${esc(x.version)}">${esc(t("admin.restore"))}</button>` : ""}</td></tr>`;
  }).join("");
  $("[data-role=registry]").innerHTML = `<thead><tr><th>${esc(t("admin.version"))}</th><th>${esc(t("admin.status"))}</th><th class="hide-sm">${esc(t("admin.created"))}</th>
    <th class="hide-sm">${esc(t("admin.kind"))}</th><th class="num">ROC-AUC</th><th class="num">ECE</th><th class="num hide-sm">Brier</th><th class="num hide-sm">PR-AUC</th>
    <th>${esc(t("admin.gates"))}</th><th></th></tr></thead>
    <tbody>${rows || `<tr><td colspan="10" class="muted">${esc(t("admin.nomodels"))}</td></tr>`}</tbody>`;
}

// --- actions --------------------------------------------------------------------------------
async function retrain(emergency) {
  const cfg = S.app.api.config.models;
  const production = S.promo?.production || "baseline";
  const body = `<p>${esc(t(emergency ? "admin.emergency.what" : "admin.retrain.what"))}</p>` + planList([
    [t("admin.plan.job"), `train · ${emergency ? "emergency" : "manual"}`],
    [t("admin.plan.data"), t("admin.plan.data.v")],
    [t("admin.plan.gates"), `ROC-AUC ≥ ${cfg.min_auc} · ECE ≤ ${cfg.max_ece}${isNum(cfg.min_prauc) ? ` · PR-AUC ≥ ${cfg.min_prauc}` : ""}`],
    [t("admin.plan.after"), cfg.auto_promote ? t("admin.plan.after.auto") : t("admin.plan.after.manual", { production })],
  ]);
  const ok = await confirmDialog({
    title: t(emergency ? "admin.emergency.title" : "admin.retrain.title"), body,
    confirmLabel: t("admin.retrain.go"), danger: emergency,
  });
  if (!ok) return;
  try {
    const r = await S.app.api.post(emergency ? "/admin/emergency-retrain" : "/admin/manual-retrain", { reason: "dashboard" });
    S.highlight = r.job_id;
    toast(r.already_running ? t("admin.retrain.already", { id: r.job_id.slice(0, 8) }) : t("admin.retrain.started", { id: r.job_id.slice(0, 8) }), "ok");
    S.app.log("ui", t("log.retrain", { id: r.job_id.slice(0, 8) }), { kind: "ui" });
    await loadJobs();
  } catch (err) {
    if (err.status === 409 && err.body.code === "retrain.busy") {
      // nothing was started: point at the job that runs (its own trigger), in the reader's language
      const p = err.body.params || {};
      S.highlight = p.job_id;
      toast(t("retrain.busy", { job: (p.job_id || "").slice(0, 8), trigger: t(`trigger.${p.trigger}`, {}, p.trigger), status: t(`status.${p.status}`, {}, p.status) }), "warn", 9000);
      await loadJobs().catch(() => {});
      return;
    }
    toast(err.message, "bad");
  }
}

function planBody(plan) {
  const what = plan.code ? t(plan.code, plan.params || {}, plan.description) : plan.description;
  return `<p data-plan-code="${esc(plan.code || "")}">${esc(what)}</p>` + planList([
    [t("admin.plan.action"), t(`admin.${plan.action}`, {}, plan.action)],
    [t("admin.plan.current"), plan.current_production || "baseline"],
    [t("admin.plan.new"), plan.new_production || "baseline"],
    [t("admin.plan.version"), plan.version],
    [t("admin.plan.status"), plan.candidate_status],
  ]) + `<p class="muted small">${esc(t("admin.plan.note"))}</p>`;
}

/** Promote / rollback / restore: ask the API for its plan (409), show it, then confirm. */
async function dangerous(action, path, body) {
  const api = S.app.api;
  let plan;
  try {
    await api.post(path, body);
    toast(t("admin.done"), "ok"); // an API without the confirmation step
    return loadModels();
  } catch (err) {
    if (!(err.status === 409 && err.body.plan)) { toast(err.message, "bad"); return; }
    plan = err.body.plan;
  }
  const ok = await confirmDialog({ title: t(`admin.${action}.title`), body: planBody(plan), confirmLabel: t(`admin.${action}`), danger: true });
  if (!ok) return;
  try {
    await api.post(path, { ...body, confirm: true });
  } catch (err) {
    if (!(err.status === 409 && err.body.reason === "cooldown")) { toast(err.message, "bad"); return; }
    const next = err.body.next_allowed_at ? dateTime(err.body.next_allowed_at * 1000) : "—";
    const force = await confirmDialog({
      title: t("admin.cooldown.title"), danger: true, confirmLabel: t("admin.force"),
      body: `<p>${esc(t("promotion.cooldown", { next }, err.message))}</p>`,
    });
    if (!force) return;
    try { await api.post(path, { ...body, confirm: true, force: true }); } catch (e2) { toast(e2.message, "bad"); return; }
  }
  toast(t(`admin.${action}.done`, { version: body.version || plan.new_production || "" }), "ok");
  S.app.log("ui", t(`admin.${action}.done`, { version: body.version || plan.new_production || "" }), { kind: "ui" });
  loadModels();
}

async function runLabeler() {
  const f = $("[data-role=labeler-form]");
  const body = { min_age: Number(f.elements.min_age.value), limit: Number(f.elements.limit.value), force: f.elements.force.checked };
  try {
    const r = await S.app.api.post("/admin/labeler/run", body);
    S.highlight = r.job_id;
    toast(t("admin.labeler.started", { id: r.job_id.slice(0, 8) }), "ok");
    await loadJobs();
  } catch (err) { toast(err.message, "bad"); }
}

async function startBackfill() {
  const f = $("[data-role=backfill-form]");
  const inputs = f.elements.inputs.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  if (!inputs.length) { f.elements.inputs.focus(); return; }
  const ok = await confirmDialog({
    title: t("admin.backfill.title"),
    body: `<p>${esc(t("admin.backfill.what"))}</p>` + planList(inputs.map((p, i) => [`#${i + 1}`, p])),
    confirmLabel: t("admin.backfill.start"),
  });
  if (!ok) return;
  try {
    const r = await S.app.api.post("/admin/jobs/backfill", { inputs });
    S.highlight = r.job_id;
    toast(t("admin.backfill.started", { id: r.job_id.slice(0, 8) }), "ok");
    await loadJobs();
  } catch (err) { toast(err.message, "bad"); }
}

// --- live events log ------------------------------------------------------------------------
function logCategory(d) {
  if (d.kind === "job") return "job";
  if (d.kind === "model_switch") return "model";
  if (d.kind === "ui") return "ui";
  return "drift";
}

function logLine(entry) {
  const d = entry.data;
  const cat = logCategory(d);
  let text = entry.text;
  if (!text) {
    if (d.kind === "job") {
      const err = d.error ? ` — ${jobText(d.error_code, d.error_params, d.error)}` : "";
      text = `${t(`job.${d.job_kind}`, {}, d.job_kind)} #${(d.job_id || "").slice(0, 8)} ${t(`status.${d.status}`, {}, d.status)} ${Math.round((d.progress || 0) * 100)}% ${jobText(d.message_code, d.message_params, d.message)}${err}`;
    }
    else if (d.kind === "model_switch") text = `${d.from || "—"} → ${d.to}${d.reason ? ` (${d.reason})` : ""}`;
    else text = `${d.feature || ""} ${d.model_version || ""} value=${num(d.value)} threshold=${num(d.threshold)}`;
  }
  return `<li data-cat="${cat}" data-kind="${esc(d.kind || entry.kind)}"><time>${clock(entry.at)}</time><span class="lk lk-${cat}">${esc(t(`kind.${d.kind}`, {}, d.kind || entry.kind))}</span><span class="lt">${esc(text)}</span></li>`;
}

function renderLog() {
  const items = S.app.events.filter((e) => S.filter === "all" || logCategory(e.data) === S.filter || logCategory(e.data) === "ui");
  $("[data-role=log]").innerHTML = items.slice(0, 150).map(logLine).join("") || `<li class="muted">${esc(t("admin.log.empty"))}</li>`;
}

function appendLog(entry) {
  if (S.paused) return;
  if (S.filter !== "all" && logCategory(entry.data) !== S.filter) return;
  const ol = $("[data-role=log]");
  const empty = ol.querySelector("li.muted");
  if (empty) empty.remove();
  ol.insertAdjacentHTML("afterbegin", logLine(entry));
  while (ol.children.length > 150) ol.lastElementChild.remove();
}

// --- screen ---------------------------------------------------------------------------------
export const adminScreen = {
  init(root, app) {
    S.root = root;
    S.app = app;
    layout();
    root.addEventListener("click", (e) => {
      const btn = e.target.closest("[data-act]");
      if (!btn) return;
      const act = btn.dataset.act;
      if (act === "retrain") retrain(false);
      else if (act === "emergency") retrain(true);
      else if (act === "refresh-training" || act === "refresh-backfill") loadJobs({ all: true }).catch((err) => toast(err.message, "bad"));
      else if (act === "refresh-models") loadModels();
      else if (act === "run-labeler") runLabeler();
      else if (act === "start-backfill") startBackfill();
      else if (act === "promote") dangerous("promote", "/admin/models/promote", { version: btn.dataset.version });
      else if (act === "restore") dangerous("restore", "/admin/models/restore", { version: btn.dataset.version });
      else if (act === "rollback") dangerous("rollback", "/admin/models/rollback", {});
    });
    root.querySelector("[data-toggle=auto]").addEventListener("change", (e) => { S.auto = e.target.checked; });
    root.querySelector("[data-toggle=live]").addEventListener("change", (e) => { S.live = e.target.checked; if (S.live) loadJobs().catch(() => {}); });
    root.querySelector("[data-toggle=pause]").addEventListener("change", (e) => { S.paused = e.target.checked; if (!S.paused) renderLog(); });
    root.querySelector("[data-role=filter]").addEventListener("change", (e) => { S.filter = e.target.value; renderLog(); });
    app.onEvent(onEvent);
  },
  show() {
    S.visible = true;
    renderLog();
    loadAll();
    S.unpoll = S.app.hub.addPoller(loadAll);
    // Training "auto": poll the job list (seed step 3); running jobs also tick their durations.
    S.timers.push(setInterval(() => { if (S.auto) loadJobs().catch(() => {}); }, 3000));
    S.timers.push(setInterval(() => renderPromotion(), 1000));
  },
  hide() {
    S.visible = false;
    S.timers.forEach(clearInterval);
    S.timers = [];
    if (S.unpoll) S.unpoll();
  },
  onLang() {
    renderJobs(true);
    renderRegistry();
    renderPromotion();
    renderLog();
  },
};
