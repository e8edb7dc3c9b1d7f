// Korean and English labels. Korean by default when the browser prefers it; the choice
// persists in localStorage. Markup uses data-i18n / data-i18n-title / data-i18n-placeholder.
import { en } from "./i18n_en.js";
import { ko } from "./i18n_ko.js";

const DICTS = { ko, en };
const STORE = "tickcast.lang";
const listeners = new Set();
let current = localStorage.getItem(STORE)
  || ((navigator.language || "").toLowerCase().startsWith("ko") ? "ko" : "en");

export const lang = () => current;

export function setLang(value) {
  current = DICTS[value] ? value : "en";
  localStorage.setItem(STORE, current);
  for (const fn of listeners) fn(current);
}

export function onLang(fn) {
  listeners.add(fn);
}

/** t("cal.kpi.delta.sub", {abs: 0.1}) -> text with {abs} filled; `fallback` when the key is unknown. */
export function t(key, vars = {}, fallback) {
  let text = DICTS[current][key] ?? DICTS.en[key];
  if (text === undefined) return fallback !== undefined ? fallback : key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
