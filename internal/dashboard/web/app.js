// The FFC dashboard: polls dashboard/api/series for the points after the
// last it has, keeps the server's window of them and draws each chart as
// SVG. No library, nothing fetched but from this server.
'use strict';

const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];
const W = 600, H = 210, ML = 58, MR = 10, MT = 10, MB = 24;
const SVGNS = 'http://www.w3.org/2000/svg';

const state = { since: 0, intervalMs: 1000, windowMs: 600000, polls: 0, error: '', charts: new Map() };

function el(name, attrs, parent, ns) {
  const e = ns ? document.createElementNS(SVGNS, name) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + 'k';
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, '');
  return v.toPrecision(2);
}

// niceStep is a round step (1, 2 or 5 × 10^k) near span/n.
function niceStep(span, n) {
  const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// shortNames drops the prefix every line name shares up to a '.' (the
// run's topic prefix, "demo-<run>."), so that the legend stays short.
function shortNames(names) {
  const dotted = names.filter((n) => n.includes('.'));
  if (dotted.length < 2) return (n) => n;
  let p = dotted[0];
  for (const n of dotted) while (!n.startsWith(p)) p = p.slice(0, -1);
  p = p.slice(0, p.lastIndexOf('.') + 1);
  return (n) => (p && n.startsWith(p) && n.length > p.length ? n.slice(p.length) : n);
}

function clock(ms) {
  return new Date(ms).toTimeString().slice(0, 8);
}

// chartFor returns the chart's state, creating its section the first time.
function chartFor(def) {
  let c = state.charts.get(def.id);
  if (c) return c;
  const sec = el('section', { class: 'chart', id: 'chart-' + def.id, 'data-chart': def.id, 'data-points': '0', 'data-lines': '0', 'data-longest': '0' }, document.getElementById('charts'));
  const h = el('h2', {}, sec);
  h.textContent = def.title;
  const last = el('span', { class: 'last' }, h);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': def.title }, sec, true);
  const legend = el('div', { class: 'legend' }, sec);
  const help = el('div', { class: 'help' }, sec);
  help.textContent = def.help;
  c = { def, sec, last, svg, legend, lines: new Map() };
  state.charts.set(def.id, c);
  return c;
}

// merge appends the new points and drops those older than the window.
function merge(s) {
  state.intervalMs = Math.max(200, s.interval_seconds * 1000);
  state.windowMs = s.window_seconds * 1000;
  const oldest = s.now - state.windowMs;
  for (const def of s.charts) {
    const c = chartFor(def);
    for (const line of def.lines) {
      let pts = c.lines.get(line.name);
      if (!pts) {
        pts = [];
        c.lines.set(line.name, pts);
      }
      pts.push(...line.points);
    }
    for (const [name, pts] of c.lines) {
      let i = 0;
      while (i < pts.length && pts[i][0] < oldest) i++;
      if (i) pts.splice(0, i);
      if (!pts.length) c.lines.delete(name);
    }
  }
  state.since = s.now;
}

// xRange is the time span of every chart's points: the charts share it.
function xRange() {
  let x0 = Infinity;
  for (const c of state.charts.values()) for (const pts of c.lines.values()) if (pts.length) x0 = Math.min(x0, pts[0][0]);
  return [x0, state.since];
}

function render(c, [x0, x1]) {
  const svg = c.svg;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  let n = 0, longest = 0, y0 = 0, y1 = -Infinity;
  for (const pts of c.lines.values()) {
    longest = Math.max(longest, pts.length);
    for (const [, v] of pts) {
      n++;
      y0 = Math.min(y0, v); y1 = Math.max(y1, v);
    }
  }
  c.sec.dataset.points = String(n);
  c.sec.dataset.lines = String(c.lines.size);
  c.sec.dataset.longest = String(longest);
  c.legend.textContent = '';
  el('line', { class: 'axis', x1: ML, y1: H - MB, x2: W - MR, y2: H - MB }, svg, true);
  el('line', { class: 'axis', x1: ML, y1: MT, x2: ML, y2: H - MB }, svg, true);
  if (!n) {
    const t = el('text', { class: 'empty', x: (W + ML) / 2, y: H / 2, 'text-anchor': 'middle' }, svg, true);
    t.textContent = 'no data yet';
    c.last.textContent = '';
    return;
  }
  if (y1 <= y0) y1 = y0 + 1;
  const step = niceStep(y1 - y0, 4);
  y0 = Math.floor(y0 / step) * step;
  y1 = Math.ceil(y1 / step) * step;
  if (x1 <= x0) { x0 -= state.intervalMs; x1 += state.intervalMs; }
  const sx = (t) => ML + (t - x0) / (x1 - x0) * (W - ML - MR);
  const sy = (v) => H - MB - (v - y0) / (y1 - y0) * (H - MT - MB);
  for (let k = 0; y0 + k * step <= y1 + step / 2; k++) {
    const v = y0 + k * step, y = sy(v);
    if (k) el('line', { class: 'grid', x1: ML, y1: y, x2: W - MR, y2: y }, svg, true);
    el('text', { x: ML - 6, y: y + 4, 'text-anchor': 'end' }, svg, true).textContent = fmt(v);
  }
  el('text', { x: ML, y: H - 6 }, svg, true).textContent = clock(x0);
  el('text', { x: W - MR, y: H - 6, 'text-anchor': 'end' }, svg, true).textContent = clock(x1);
  let i = 0, first = null;
  const short = shortNames([...c.lines.keys()]);
  for (const [name, pts] of c.lines) {
    const color = COLORS[i++ % COLORS.length];
    const coords = pts.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ');
    el('polyline', { points: coords, stroke: color, 'data-line': name }, svg, true);
    const [lt, lv] = pts[pts.length - 1];
    if (pts.length === 1) el('circle', { cx: sx(lt), cy: sy(lv), r: 3, fill: color }, svg, true);
    const item = el('span', {}, c.legend);
    el('i', { style: 'background:' + color }, item);
    item.appendChild(document.createTextNode(`${short(name)} ${fmt(lv)}`));
    if (first === null) first = lv;
  }
  c.last.textContent = `${fmt(first)} ${c.def.unit}`.trim();
}

function writeStatus() {
  const counts = {};
  for (const [id, c] of state.charts) counts[id] = Number(c.sec.dataset.points);
  document.getElementById('status').textContent = JSON.stringify({ polls: state.polls, error: state.error, charts: counts });
  const s = document.getElementById('state');
  s.className = state.error ? 'state error' : 'state';
  s.textContent = state.error ? 'error: ' + state.error : 'live, updated ' + clock(Date.now());
}

async function poll() {
  try {
    const r = await fetch('dashboard/api/series?since=' + state.since, { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    merge(await r.json());
    const xr = xRange();
    for (const c of state.charts.values()) render(c, xr);
    state.error = '';
  } catch (e) {
    state.error = String(e && e.message || e);
  }
  state.polls++;
  writeStatus();
  setTimeout(poll, state.intervalMs);
}

poll();
