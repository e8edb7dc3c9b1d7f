// Hand-written SVG charts (no library): line/area charts with thresholds and a hover
// crosshair, the reliability diagram, grouped bars and sparklines. Each chart is a spec
// rendered to the width of its container and re-rendered when the container resizes.
import { esc, isNum } from "./fmt.js";

export const C = {
  accent: "#5b8cff", green: "#22c55e", amber: "#f5a524", red: "#f05252", purple: "#a78bfa",
  cyan: "#22d3ee", pink: "#f472b6", grid: "#222c42", axis: "#7f8ba3", text: "#c9d2e3", muted: "#56627a",
};

const observer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const el = e.target;
    const w = Math.round(e.contentRect.width);
    if (el._chart && w > 0 && w !== el._chartWidth) draw(el);
  }
});

/** Render `spec` with `kind` ("line" | "reliability" | "bars") into `el`, now and on resize. */
export function chart(el, kind, spec) {
  el._chart = { kind, spec };
  if (!el._observed) {
    observer.observe(el);
    el._observed = true;
    el.classList.add("chart");
  }
  draw(el);
}

function draw(el) {
  const { kind, spec } = el._chart;
  const width = Math.max(200, Math.round(el.clientWidth || 600));
  el._chartWidth = width;
  const render = { line: lineSvg, reliability: reliabilitySvg, bars: barsSvg }[kind];
  const { svg, hover } = render(spec, width);
  el.innerHTML = `${svg}<div class="chart-tip" hidden></div>`;
  if (hover) attachHover(el, hover);
}

// --- scales and ticks ---------------------------------------------------------------------
const scale = (d0, d1, r0, r1) => (v) => (d1 === d0 ? (r0 + r1) / 2 : r0 + ((v - d0) / (d1 - d0)) * (r1 - r0));

export function niceTicks(min, max, count = 5) {
  if (!isNum(min) || !isNum(max)) return [];
  if (min === max) { min -= 1; max += 1; }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const steps = [0.5, 1, 2, 2.5, 5, 10].map((m) => m * mag);
  let i = steps.findIndex((s) => raw <= s);
  if (i < 0) i = steps.length - 1;
  for (; i >= 0; i -= 1) { // the nice step that still gives at least 3 ticks
    const step = steps[i];
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
    if (ticks.length >= 3 || i === 0) return ticks;
  }
  return [];
}

const TIME_STEPS = [60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3,
  2 * 86400e3, 7 * 86400e3];

function timeTicks(min, max, maxCount) {
  const step = TIME_STEPS.find((s) => (max - min) / s <= maxCount) || TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date().getTimezoneOffset() * 60e3; // align to local wall-clock boundaries
  const ticks = [];
  for (let v = Math.ceil((min - offset) / step) * step + offset; v <= max; v += step) ticks.push(v);
  return { ticks, step };
}

const pad = (n) => String(n).padStart(2, "0");
// Rough label width at 10.5-11 px: CJK glyphs are about twice as wide as Latin ones.
const textWidth = (text) => [...String(text)].reduce((w, ch) => w + (/[\u1100-\uffdc]/.test(ch) ? 11 : 6.2), 0);
const anchorAt = (x, lo, hi) => (x < lo + 16 ? "start" : x > hi - 16 ? "end" : "middle");
function timeLabel(v, step) {
  const d = new Date(v);
  if (step >= 86400e3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function extent(values, fallback = [0, 1]) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (isNum(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return lo === Infinity ? fallback : [lo, hi];
}

// --- line chart ---------------------------------------------------------------------------
/**
 * spec: {height, series: [{label, color, points: [[x, y|null]], dash, area, width, dots}],
 *        x: {time: true, min, max}, y: {min, max, format, pad}, hlines: [{y, label, color, dash}],
 *        bands: [{x0, x1, color}], empty: "text", fmtX(x), id}
 */
function lineSvg(spec, width) {
  const height = spec.height || 220;
  const m = { l: 48, r: 14, t: 12, b: 24 };
  const series = (spec.series || []).filter((s) => s.points && s.points.length);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  if (!xs.length) {
    return { svg: emptySvg(width, height, spec.empty) };
  }
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const hl = (spec.hlines || []).map((h) => h.y);
  let [x0, x1] = extent(xs);
  if (isNum(spec.x?.min)) x0 = spec.x.min;
  if (isNum(spec.x?.max)) x1 = spec.x.max;
  let [y0, y1] = extent([...ys, ...(spec.y?.includeLines === false ? [] : hl)]);
  if (isNum(spec.y?.min)) y0 = Math.min(y0, spec.y.min);
  if (isNum(spec.y?.max)) y1 = Math.max(y1, spec.y.max);
  if (spec.y?.fixed) [y0, y1] = [spec.y.min, spec.y.max];
  const padY = (y1 - y0 || Math.abs(y1) || 1) * (spec.y?.pad ?? 0.08);
  if (!spec.y?.fixed) { y0 -= padY; y1 += padY; }
  const yt = niceTicks(y0, y1, Math.max(2, Math.floor((height - 40) / 40)));
  if (!spec.y?.fixed && yt.length) { y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]); }
  const fy = spec.y?.format || ((v) => +v.toPrecision(4));
  m.l = spec.marginLeft || Math.max(36, 8 + 6.2 * Math.max(...yt.map((v) => String(fy(v)).length), 3));
  const X = scale(x0, x1, m.l, width - m.r);
  const Y = scale(y0, y1, height - m.b, m.t);
  const parts = [];
  for (const b of spec.bands || []) {
    const a = Math.max(m.l, X(b.x0));
    const z = Math.min(width - m.r, X(b.x1));
    if (z > a) parts.push(`<rect x="${a}" y="${m.t}" width="${z - a}" height="${height - m.t - m.b}" fill="${b.color}" opacity="${b.opacity ?? 0.12}"/>`);
  }
  for (const v of yt) {
    parts.push(`<line x1="${m.l}" x2="${width - m.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="${C.grid}"/>`);
    parts.push(`<text x="${m.l - 6}" y="${Y(v) + 4}" text-anchor="end" class="ax">${esc(fy(v))}</text>`);
  }
  const fx = spec.fmtX;
  if (spec.x?.time !== false) {
    const { ticks, step } = timeTicks(x0, x1, Math.max(2, Math.floor((width - m.l - m.r) / 80)));
    for (const v of ticks) {
      parts.push(`<line x1="${X(v)}" x2="${X(v)}" y1="${m.t}" y2="${height - m.b}" stroke="${C.grid}" opacity=".5"/>`);
      parts.push(`<text x="${X(v)}" y="${height - 6}" text-anchor="${anchorAt(X(v), m.l, width - m.r)}" class="ax">${esc(fx ? fx(v) : timeLabel(v, step))}</text>`);
    }
  } else {
    for (const v of niceTicks(x0, x1, Math.max(2, Math.floor((width - m.l) / 80)))) {
      parts.push(`<text x="${X(v)}" y="${height - 6}" text-anchor="middle" class="ax">${esc(fx ? fx(v) : v)}</text>`);
    }
  }
  const placed = []; // label boxes, so close threshold lines get their labels side by side
  for (const h of spec.hlines || []) {
    if (!isNum(h.y) || h.y < y0 || h.y > y1) continue;
    parts.push(`<line x1="${m.l}" x2="${width - m.r}" y1="${Y(h.y)}" y2="${Y(h.y)}" stroke="${h.color || C.axis}" stroke-dasharray="${h.dash || "5 4"}" stroke-width="1.2" data-hline="${esc(h.key || h.label || "")}"/>`);
    if (!h.label) continue;
    const w = textWidth(h.label) + 8;
    let right = width - m.r - 4;
    for (let hit = true; hit;) {
      const clash = placed.find((p) => Math.abs(p.y - Y(h.y)) < 12 && right - w < p.x && right > p.x - p.w);
      hit = Boolean(clash);
      if (clash) right = clash.x - clash.w - 6;
    }
    placed.push({ x: right, y: Y(h.y), w });
    parts.push(`<text x="${right}" y="${Y(h.y) - 4}" text-anchor="end" class="hl" fill="${h.color || C.axis}">${esc(h.label)}</text>`);
  }
  for (const s of series) {
    const segs = [];
    let cur = [];
    for (const [x, y] of s.points) {
      if (isNum(y)) cur.push(`${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
      else if (cur.length) { segs.push(cur); cur = []; }
    }
    if (cur.length) segs.push(cur);
    for (const seg of segs) {
      if (s.area && seg.length > 1) {
        const first = seg[0].split(",")[0];
        const last = seg[seg.length - 1].split(",")[0];
        parts.push(`<path d="M${first},${height - m.b} L${seg.join(" L")} L${last},${height - m.b} Z" fill="${s.color}" opacity=".12"/>`);
      }
      if (seg.length === 1) parts.push(`<circle cx="${seg[0].split(",")[0]}" cy="${seg[0].split(",")[1]}" r="2" fill="${s.color}"/>`);
      else parts.push(`<polyline points="${seg.join(" ")}" fill="none" stroke="${s.color}" stroke-width="${s.width || 1.8}" stroke-linejoin="round" stroke-linecap="round" ${s.dash ? `stroke-dasharray="${s.dash}"` : ""}/>`);
    }
    if (s.dots) {
      for (const [x, y] of s.points) if (isNum(y)) parts.push(`<circle cx="${X(x)}" cy="${Y(y)}" r="${s.dotR || 2.2}" fill="${s.color}" opacity=".8"/>`);
    }
  }
  const svg = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" data-chart="${esc(spec.id || "line")}">${parts.join("")}<line class="xhair" x1="0" x2="0" y1="${m.t}" y2="${height - m.b}" stroke="${C.axis}" visibility="hidden"/><rect class="hover" x="${m.l}" y="${m.t}" width="${width - m.l - m.r}" height="${height - m.t - m.b}" fill="transparent"/></svg>`;
  const hover = spec.tooltip === false ? null : { series, X, x0, x1, m, width, fmtY: fy, fmtX: spec.fmtTip || ((v) => new Date(v).toLocaleTimeString()) };
  return { svg, hover };
}

function emptySvg(width, height, text) {
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}"><rect x="0.5" y="0.5" width="${width - 1}" height="${height - 1}" rx="8" fill="none" stroke="${C.grid}" stroke-dasharray="4 4"/><text x="${width / 2}" y="${height / 2}" text-anchor="middle" class="empty">${esc(text || "—")}</text></svg>`;
}

function nearest(points, x) {
  let lo = 0;
  let hi = points.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < x) lo = mid; else hi = mid;
  }
  return Math.abs(points[lo][0] - x) <= Math.abs(points[hi][0] - x) ? points[lo] : points[hi];
}

function attachHover(el, h) {
  const svg = el.querySelector("svg");
  const rect = svg.querySelector("rect.hover");
  const line = svg.querySelector("line.xhair");
  const tip = el.querySelector(".chart-tip");
  if (!rect) return;
  const invert = (px) => h.x0 + ((px - h.m.l) / (h.width - h.m.l - h.m.r)) * (h.x1 - h.x0);
  rect.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * h.width;
    const x = invert(px);
    const ref = nearest(h.series[0].points, x);
    const rows = h.series.map((s) => {
      const p = s.points.length ? nearest(s.points, ref[0]) : null;
      return p && isNum(p[1]) ? `<div><i style="background:${s.color}"></i>${esc(s.label || "")} <b>${esc(h.fmtY(p[1]))}</b></div>` : "";
    }).join("");
    line.setAttribute("x1", h.X(ref[0]));
    line.setAttribute("x2", h.X(ref[0]));
    line.setAttribute("visibility", "visible");
    tip.innerHTML = `<div class="tip-x">${esc(h.fmtX(ref[0]))}</div>${rows}`;
    tip.hidden = false;
    const left = (h.X(ref[0]) / h.width) * box.width;
    tip.style.left = `${Math.min(box.width - tip.offsetWidth - 4, Math.max(4, left + 12))}px`;
  });
  rect.addEventListener("mouseleave", () => { tip.hidden = true; line.setAttribute("visibility", "hidden"); });
}

// --- reliability diagram ------------------------------------------------------------------
/**
 * spec: {live: bins, prod: bins, labels: {live, prod, unreliable, perfect}}; each bin as the API
 * returns it: {lo, hi, n, mean_prob, pos_rate, wilson_lo, wilson_hi, reliable}.
 */
function reliabilitySvg(spec, width) {
  const size = Math.min(width, 420);
  const height = Math.round(size * 0.86);
  const m = { l: 42, r: 12, t: 12, b: 34 };
  const plotW = Math.min(width - m.l - m.r, height - m.t - m.b + 60);
  m.l += Math.max(0, (width - m.l - m.r - plotW) / 2); // centred in its card
  const X = scale(0, 1, m.l, m.l + plotW);
  const Y = scale(0, 1, height - m.b, m.t);
  const parts = [];
  for (const v of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    parts.push(`<line x1="${X(0)}" x2="${X(1)}" y1="${Y(v)}" y2="${Y(v)}" stroke="${C.grid}"/>`);
    parts.push(`<line x1="${X(v)}" x2="${X(v)}" y1="${Y(0)}" y2="${Y(1)}" stroke="${C.grid}" opacity=".6"/>`);
    parts.push(`<text x="${X(0) - 6}" y="${Y(v) + 4}" text-anchor="end" class="ax">${v.toFixed(1)}</text>`);
    parts.push(`<text x="${X(v)}" y="${Y(0) + 15}" text-anchor="middle" class="ax">${v.toFixed(1)}</text>`);
  }
  const L = spec.labels || {};
  parts.push(`<text x="${X(0.5)}" y="${height - 2}" text-anchor="middle" class="ax">${esc(L.x || "")}</text>`);
  parts.push(`<line x1="${X(0)}" y1="${Y(0)}" x2="${X(1)}" y2="${Y(1)}" stroke="${C.muted}" stroke-dasharray="4 4"/>`);
  const point = (b) => [X(isNum(b.mean_prob) ? b.mean_prob : (b.lo + b.hi) / 2), Y(b.pos_rate)];
  const curve = (bins, color, dash) => {
    const pts = (bins || []).filter((b) => b.n > 0 && isNum(b.pos_rate)).map(point);
    if (pts.length > 1) parts.push(`<polyline points="${pts.map((p) => p.join(",")).join(" ")}" fill="none" stroke="${color}" stroke-width="1.6" ${dash ? `stroke-dasharray="${dash}"` : ""} opacity=".85"/>`);
  };
  curve(spec.prod, C.purple, "5 4");
  for (const [i, b] of (spec.prod || []).entries()) {
    if (!(b.n > 0) || !isNum(b.pos_rate)) continue;
    const [x, y] = point(b);
    parts.push(`<rect x="${x - 4}" y="${y - 4}" width="8" height="8" transform="rotate(45 ${x} ${y})" fill="#0f1524" stroke="${C.purple}" stroke-width="1.5" data-prod-bin="${i}" data-n="${b.n}"><title>${esc(L.prod)} ${b.lo.toFixed(1)}–${b.hi.toFixed(1)} · n=${b.n}</title></rect>`);
  }
  curve(spec.live, C.accent);
  for (const [i, b] of (spec.live || []).entries()) {
    if (!(b.n > 0) || !isNum(b.pos_rate)) continue;
    const [x, y] = point(b);
    const ok = Boolean(b.reliable);
    const color = ok ? C.accent : C.amber;
    if (isNum(b.wilson_lo) && isNum(b.wilson_hi)) {
      parts.push(`<line x1="${x}" x2="${x}" y1="${Y(b.wilson_lo)}" y2="${Y(b.wilson_hi)}" stroke="${color}" stroke-width="1.4" ${ok ? "" : 'stroke-dasharray="3 3"'} data-ci="${i}"/>`);
      for (const w of [b.wilson_lo, b.wilson_hi]) parts.push(`<line x1="${x - 4}" x2="${x + 4}" y1="${Y(w)}" y2="${Y(w)}" stroke="${color}" stroke-width="1.4"/>`);
    }
    const r = 3 + Math.min(4, Math.sqrt(b.n) / 6);
    parts.push(`<circle cx="${x}" cy="${y}" r="${r.toFixed(1)}" fill="${ok ? C.accent : "#0f1524"}" stroke="${color}" stroke-width="1.8" class="rel-pt${ok ? "" : " unreliable"}" data-bin="${i}" data-n="${b.n}" data-rate="${b.pos_rate}" data-mean="${b.mean_prob ?? ""}" data-lo="${b.wilson_lo ?? ""}" data-hi="${b.wilson_hi ?? ""}" data-reliable="${ok}"><title>${esc(L.live)} ${b.lo.toFixed(1)}–${b.hi.toFixed(1)} · n=${b.n} · ${(b.pos_rate * 100).toFixed(1)}%${ok ? "" : ` · ${esc(L.unreliable)}`}</title></circle>`);
  }
  const svg = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" data-chart="reliability">${parts.join("")}</svg>`;
  return { svg };
}

// --- grouped bars -------------------------------------------------------------------------
/** spec: {height, groups: [{label, bars: [{value, color, key, title}]}], y: {min, max, format}, hlines} */
function barsSvg(spec, width) {
  const height = spec.height || 200;
  const m = { l: 40, r: 10, t: 10, b: 24 };
  const groups = spec.groups || [];
  if (!groups.length) return { svg: emptySvg(width, height, spec.empty) };
  const values = groups.flatMap((g) => g.bars.map((b) => b.value));
  let [, y1] = extent([...values, ...(spec.hlines || []).map((h) => h.y)], [0, 1]);
  const y0 = spec.y?.min ?? 0;
  if (isNum(spec.y?.max)) y1 = spec.y.max;
  if (y1 <= y0) y1 = y0 + 1;
  const fy = spec.y?.format || ((v) => +v.toPrecision(3));
  const Y = scale(y0, y1, height - m.b, m.t);
  const gw = (width - m.l - m.r) / groups.length;
  const parts = [];
  for (const v of niceTicks(y0, y1, 4)) {
    if (v > y1) continue;
    parts.push(`<line x1="${m.l}" x2="${width - m.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="${C.grid}"/>`);
    parts.push(`<text x="${m.l - 6}" y="${Y(v) + 4}" text-anchor="end" class="ax">${esc(fy(v))}</text>`);
  }
  const every = Math.max(1, Math.ceil(groups.length / Math.max(1, Math.floor((width - m.l) / 46))));
  groups.forEach((g, gi) => {
    const inner = gw * 0.78;
    const bw = inner / Math.max(1, g.bars.length);
    g.bars.forEach((b, bi) => {
      if (!isNum(b.value)) return;
      const x = m.l + gi * gw + (gw - inner) / 2 + bi * bw;
      const y = Y(Math.max(y0, b.value));
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, bw - 1.5).toFixed(1)}" height="${Math.max(0, Y(y0) - y).toFixed(1)}" rx="2" fill="${b.color}" ${b.key ? `data-bar="${esc(b.key)}"` : ""}><title>${esc(b.title || `${g.label}: ${fy(b.value)}`)}</title></rect>`);
    });
    if (gi % every === 0) parts.push(`<text x="${m.l + gi * gw + gw / 2}" y="${height - 7}" text-anchor="middle" class="ax">${esc(g.label)}</text>`);
  });
  for (const h of spec.hlines || []) {
    if (!isNum(h.y) || h.y > y1) continue;
    parts.push(`<line x1="${m.l}" x2="${width - m.r}" y1="${Y(h.y)}" y2="${Y(h.y)}" stroke="${h.color}" stroke-dasharray="5 4"/>`);
    if (h.label) parts.push(`<text x="${width - m.r - 4}" y="${Y(h.y) - 4}" text-anchor="end" class="hl" fill="${h.color}">${esc(h.label)}</text>`);
  }
  return { svg: `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" data-chart="${esc(spec.id || "bars")}">${parts.join("")}</svg>` };
}

// --- sparkline ----------------------------------------------------------------------------
/** Inline SVG of a z-like series with a ±threshold band. */
export function sparkline(values, { width = 140, height = 30, threshold = null, color = C.accent } = {}) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => isNum(v));
  if (pts.length < 2) return `<svg width="${width}" height="${height}" class="spark"></svg>`;
  let [lo, hi] = extent(pts.map((p) => p[1]));
  if (isNum(threshold)) { lo = Math.min(lo, -threshold); hi = Math.max(hi, threshold); }
  const X = scale(0, values.length - 1, 1, width - 1);
  const Y = scale(lo, hi, height - 2, 2);
  const band = isNum(threshold) ? `<rect x="0" y="${Y(threshold)}" width="${width}" height="${Y(-threshold) - Y(threshold)}" fill="${C.green}" opacity=".08"/><line x1="0" x2="${width}" y1="${Y(0)}" y2="${Y(0)}" stroke="${C.grid}"/>` : "";
  return `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" class="spark">${band}<polyline points="${pts.map(([i, v]) => `${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join(" ")}" fill="none" stroke="${color}" stroke-width="1.5"/></svg>`;
}
