// Formatting and freshness: small pure helpers shared by the screens.
import { t, lang } from "./i18n.js";

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export function num(v, digits = 3) {
  return isNum(v) ? v.toFixed(digits) : "—";
}

export function signed(v, digits = 3) {
  return isNum(v) ? (v > 0 ? "+" : "") + v.toFixed(digits) : "—";
}

export function pct(v, digits = 1) {
  return isNum(v) ? `${(v * 100).toFixed(digits)}%` : "—";
}

export function price(v) {
  if (!isNum(v)) return "—";
  const digits = v >= 1000 ? 2 : v >= 1 ? 4 : 6;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function int(v) {
  return isNum(v) ? Math.round(v).toLocaleString("en-US") : "—";
}

const pad = (n) => String(n).padStart(2, "0");

export function clock(ms) {
  if (!isNum(ms)) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function hm(ms) {
  if (!isNum(ms)) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function dateTime(ms) {
  if (!isNum(ms)) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * "2026-04-07T00:00:00+09:00" -> "2026-04-07 00:00": the wall time the server wrote, in the
 * zone it wrote it in (e.g. RETRAIN_TIMEZONE), not converted to the browser's zone.
 */
export function zonedDateTime(iso) {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(String(iso || ""));
  return m ? `${m[1]} ${m[2]}` : "—";
}

export function parseIso(text) {
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : null;
}

/** 3725000 -> "1h 2m", 42000 -> "42s" (localized units). */
export function duration(ms) {
  if (!isNum(ms)) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  const u = lang() === "ko" ? { d: "일", h: "시간", m: "분", s: "초" } : { d: "d", h: "h", m: "m", s: "s" };
  if (s < 60) return `${s}${u.s}`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}${u.m} ${pad(s % 60)}${u.s}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}${u.h} ${pad(m % 60)}${u.m}`;
  return `${Math.floor(h / 24)}${u.d} ${h % 24}${u.h}`;
}

/**
 * Freshness of a value whose last update was `ageMs` ago:
 * fresh < threshold <= lagging < threshold * severeMult <= severe (the seed's VITE_* meaning).
 */
export function freshness(ageMs, thresholdMs, severeMult) {
  if (!isNum(ageMs)) return "unknown";
  if (ageMs < thresholdMs) return "fresh";
  if (ageMs < thresholdMs * severeMult) return "lagging";
  return "severe";
}

export function freshBadge(level, ageMs) {
  const label = t(`fresh.${level}`);
  const age = isNum(ageMs) ? ` · ${duration(ageMs)}` : "";
  return `<span class="badge fresh-${level}" data-fresh="${level}">${esc(label)}${esc(age)}</span>`;
}

export function statusBadge(status) {
  const cls = {
    succeeded: "ok", running: "info", queued: "muted", failed: "bad", interrupted: "warn",
    production: "ok", candidate: "info", archived: "muted", rejected: "bad",
    GOOD: "ok", WARNING: "warn", CRITICAL: "bad", INSUFFICIENT_DATA: "muted",
  }[status] || "muted";
  return `<span class="badge ${cls}" data-status="${esc(status)}">${esc(t(`status.${status}`, {}, status))}</span>`;
}
