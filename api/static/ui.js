// Page-wide pieces: toasts, the confirmation dialog, the freshness settings.
import { t } from "./i18n.js";
import { esc } from "./fmt.js";

export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.setAttribute("role", kind === "bad" ? "alert" : "status");
  el.textContent = message;
  box.appendChild(el);
  setTimeout(() => el.classList.add("leaving"), ms);
  setTimeout(() => el.remove(), ms + 400);
}

/**
 * Ask before doing something. `body` is HTML (callers escape server text). Resolves to
 * true (confirmed) or false (cancelled / Escape).
 */
export function confirmDialog({ title, body, confirmLabel, danger = false }) {
  const dlg = document.getElementById("confirm-dialog");
  dlg.querySelector(".dlg-title").textContent = title;
  dlg.querySelector(".dlg-body").innerHTML = body;
  const ok = dlg.querySelector("[data-act=confirm]");
  ok.textContent = confirmLabel || t("common.confirm");
  ok.classList.toggle("danger", danger);
  dlg.querySelector("[data-act=cancel]").textContent = t("common.cancel");
  return new Promise((resolve) => {
    const done = (value) => {
      dlg.removeEventListener("close", onClose);
      ok.onclick = null;
      dlg.querySelector("[data-act=cancel]").onclick = null;
      if (dlg.open) dlg.close();
      resolve(value);
    };
    // The "close" event is queued as a task: the previous dialog's close can arrive after the
    // dialog was shown again (a 409 answered faster than that task ran). Only a close that
    // leaves the dialog closed (Escape) is this dialog's.
    const onClose = () => { if (!dlg.open) done(false); };
    dlg.addEventListener("close", onClose);
    ok.onclick = () => done(true);
    dlg.querySelector("[data-act=cancel]").onclick = () => done(false);
    dlg.showModal();
    ok.focus();
  });
}

/** Rows of "what will happen" for a dialog body. */
export function planList(items) {
  return `<dl class="plan">${items.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>`;
}

// --- freshness settings (the seed's VITE_* with the same meaning) -----------------------------
const SETTINGS_KEY = "tickcast.freshness";

export const freshnessSettings = {
  defaults: { risk_fresh_ms: 15000, sig_fresh_ms: 90000, severe_lag_mult: 3 },
  init(config) {
    this.defaults = { ...this.defaults, ...(config.freshness || {}) };
  },
  get() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"); } catch { saved = {}; }
    return { ...this.defaults, ...saved };
  },
  save(values) {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(values));
  },
  reset() {
    localStorage.removeItem(SETTINGS_KEY);
  },
};
