// The dashboard shell: settings from the API, language, tabs (hash routes), the live hub,
// the connection indicator and the settings / API-key dialogs. Screens live in screens/.
import { api } from "./api.js";
import { LiveHub } from "./live.js";
import { applyI18n, lang, onLang, setLang, t } from "./i18n.js";
import { duration } from "./fmt.js";
import { freshnessSettings, toast } from "./ui.js";
import { tradingScreen } from "./trading.js";
import { portfolioScreen } from "./portfolio.js";
import { calibrationScreen } from "./calibration.js";
import { driftScreen } from "./drift.js";
import { adminScreen } from "./admin.js";

const SCREENS = { trading: tradingScreen, portfolio: portfolioScreen, calibration: calibrationScreen, drift: driftScreen, admin: adminScreen };
const app = { api, hub: null, current: null, started: new Set(), events: [] };
window.tickcast = app; // for operators' console and the browser tests

function showConn({ state, retryInMs, transport }) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  const text = state === "reconnecting" && retryInMs > 0
    ? t("conn.retry", { s: duration(retryInMs) })
    : t(`conn.${state}`);
  el.querySelector(".conn-text").textContent = text;
  el.title = `${t("conn.title")}: ${t(`settings.transport.${transport}`)}`;
  document.body.dataset.conn = state;
}

function route() {
  const name = (location.hash || "#trading").slice(1).split("?")[0];
  const id = SCREENS[name] ? name : "trading";
  if (app.current === id) return;
  if (app.current) {
    SCREENS[app.current].hide();
    document.getElementById(`screen-${app.current}`).hidden = true;
  }
  app.current = id;
  const root = document.getElementById(`screen-${id}`);
  root.hidden = false;
  if (!app.started.has(id)) {
    SCREENS[id].init(root, app);
    app.started.add(id);
  }
  SCREENS[id].show();
  for (const b of document.querySelectorAll("[data-tab]")) {
    const on = b.dataset.tab === id;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", String(on));
    if (on) b.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
}

function setupTabs() {
  for (const b of document.querySelectorAll("[data-tab]")) {
    b.addEventListener("click", () => { location.hash = b.dataset.tab; });
  }
}

function setupLang() {
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => setLang(b.dataset.lang));
  }
  onLang(() => {
    document.documentElement.lang = lang();
    for (const b of document.querySelectorAll("[data-lang]")) b.classList.toggle("active", b.dataset.lang === lang());
    applyI18n(document);
    for (const id of app.started) SCREENS[id].onLang && SCREENS[id].onLang();
    app.hub && app.hub.changed();
  });
}

function setupSettings() {
  const dlg = document.getElementById("settings-dialog");
  const form = dlg.querySelector("form");
  const fill = (values) => {
    for (const k of ["risk_fresh_ms", "sig_fresh_ms", "severe_lag_mult"]) form.elements[k].value = values[k];
  };
  document.getElementById("open-settings").addEventListener("click", () => {
    fill(freshnessSettings.get());
    form.elements.transport.value = app.hub.transport;
    form.elements.api_key.value = localStorage.getItem("tickcast.apiKey") || "";
    form.elements.api_key.placeholder = api.config.api_key ? t("settings.key.auto") : "";
    dlg.showModal();
  });
  dlg.querySelector("[data-act=cancel]").addEventListener("click", () => dlg.close());
  dlg.querySelector("[data-act=reset]").addEventListener("click", () => fill(freshnessSettings.defaults));
  dlg.querySelector("[data-act=save]").addEventListener("click", () => {
    if (!form.reportValidity()) return;
    const values = {
      risk_fresh_ms: Number(form.elements.risk_fresh_ms.value),
      sig_fresh_ms: Number(form.elements.sig_fresh_ms.value),
      severe_lag_mult: Number(form.elements.severe_lag_mult.value),
    };
    const d = freshnessSettings.defaults;
    if (values.risk_fresh_ms === d.risk_fresh_ms && values.sig_fresh_ms === d.sig_fresh_ms
        && values.severe_lag_mult === d.severe_lag_mult) freshnessSettings.reset();
    else freshnessSettings.save(values);
    const key = form.elements.api_key.value.trim();
    const keyChanged = key !== (localStorage.getItem("tickcast.apiKey") || "");
    api.setKey(key);
    if (form.elements.transport.value !== app.hub.transport || keyChanged) app.hub.setTransport(form.elements.transport.value);
    dlg.close();
    toast(t("settings.saved"), "ok", 2500);
  });
}

// The events stream is page-wide (job progress, drift, model switches): screens subscribe with
// app.onEvent(fn); the Admin log shows app.events. On load it replays the last 15 minutes
// (event ids are wall-clock ms << 12, see tickcast/bus.py).
const EVENT_LOG_MAX = 300;
app.listeners = new Set();
app.onEvent = (fn) => { app.listeners.add(fn); return () => app.listeners.delete(fn); };
app.log = (kind, text, data = {}, at = Date.now()) => {
  const entry = { at, kind, text, data };
  app.events.unshift(entry);
  app.events.length = Math.min(app.events.length, EVENT_LOG_MAX);
  for (const fn of app.listeners) fn(entry);
};

function openEvents() {
  const since = (BigInt(Date.now() - 15 * 60e3) << 12n).toString();
  const stream = app.hub.open("events", "events", {}, {
    // An event id is its wall-clock ms << 12: replayed events keep their own time.
    message: (data, id) => app.log(data.kind || "event", "", data, id ? Number(BigInt(id) >> 12n) : Date.now()),
    reconnected: () => app.log("ui", t("log.reconnected"), { kind: "ui" }),
    resync: () => app.log("ui", t("log.resync"), { kind: "ui" }),
  }, { lastId: since });
  app.hub.addPoller(pollJobs);
  return stream;
}

// Polling fallback for the page-wide events: job states become log entries when they change.
const jobSeen = new Map();
async function pollJobs() {
  if (!api.key() && api.config.auth_required) return;
  const { jobs } = await api.get("/admin/jobs", { limit: 20 });
  for (const j of jobs.reverse()) {
    const sig = `${j.status}|${j.progress}`;
    if (jobSeen.get(j.job_id) === sig) continue;
    jobSeen.set(j.job_id, sig);
    app.log("job", "", { kind: "job", job_id: j.job_id, status: j.status, progress: j.progress, message: j.message,
                         trigger: j.trigger, job_kind: j.kind, error: j.error, polled: true });
  }
}

let keyDialogOpen = false;
function askForKey(message) {
  const dlg = document.getElementById("key-dialog");
  if (keyDialogOpen || dlg.open) return;
  keyDialogOpen = true;
  const form = dlg.querySelector("form");
  dlg.querySelector(".key-msg").textContent = message || t("key.body");
  form.elements.api_key.value = "";
  const close = () => { keyDialogOpen = false; dlg.close(); };
  dlg.querySelector("[data-act=cancel]").onclick = close;
  dlg.querySelector("[data-act=save]").onclick = () => {
    const key = form.elements.api_key.value.trim();
    if (!key) return;
    api.setKey(key);
    close();
    app.hub.setTransport(app.hub.transport); // reopen streams with the key
    toast(t("settings.saved"), "ok", 2500);
  };
  dlg.showModal();
}

async function boot() {
  setupLang();
  setLang(lang());
  setupTabs();
  let config;
  for (let attempt = 0; ; attempt += 1) {
    try {
      config = await api.loadConfig();
      break;
    } catch (err) {
      document.querySelector("#boot p").textContent = `${t("common.unreachable")} (${err.message})`;
      await new Promise((r) => setTimeout(r, Math.min(10000, 1000 * 2 ** attempt)));
    }
  }
  if (config.use_mocks) {
    // VITE_USE_MOCKS=1: mock REST answers and SSE streams generated in the browser (api/static/mocks.js)
    const { installMocks } = await import("./mocks.js");
    installMocks(api, config);
    applyI18n(document);
  }
  freshnessSettings.init(config);
  api.onAuthProblem = (message) => askForKey(message);
  app.hub = new LiveHub(api, showConn);
  setupSettings();
  openEvents();
  document.getElementById("boot").remove();
  window.addEventListener("hashchange", route); // screens start once the settings are known
  route();
  if (api.needsKey()) askForKey();
}

boot();
