// The sla-planner dashboard: polls the history API and draws SVG line charts in the
// style of the dry-run report. No libraries, no network beyond this server.
"use strict";

const W = 860, H = 260, ML = 64, MR = 170, MT = 28, MB = 40;
const SVGNS = "http://www.w3.org/2000/svg";

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

function fmt(v) {
  if (Math.abs(v) >= 1000 || Number.isInteger(v)) return v.toFixed(0);
  return Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(2);
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// series: [{name, points: [[x, y]], step, dashed}], refs: [{y, label}]
function lineChart(container, title, yLabel, series, refs) {
  const pts = series.flatMap(s => s.points).filter(p => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y1 = Math.max(0, ...pts.map(p => p[1]), ...(refs || []).map(r => r.y));
  if (!Number.isFinite(x0)) { x0 = 0; x1 = 1; }
  if (x1 <= x0) x1 = x0 + 1;
  const yt = niceTicks(0, y1 > 0 ? y1 * 1.08 : 1, 5);
  const yhi = Math.max(yt[yt.length - 1], y1 * 1.08 || 1);
  const pw = W - ML - MR, ph = H - MT - MB;
  const sx = x => ML + (x - x0) / (x1 - x0) * pw;
  const sy = y => MT + ph - y / yhi * ph;
  const svg = el("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title});
  svg.appendChild(el("text", {class: "title", x: ML, y: 16}, title));
  const grid = el("g", {class: "grid"});
  yt.forEach(t => grid.appendChild(el("line", {x1: ML, x2: ML + pw, y1: sy(t), y2: sy(t)})));
  svg.appendChild(grid);
  const axis = el("g", {class: "axis"});
  axis.appendChild(el("line", {x1: ML, x2: ML, y1: MT, y2: MT + ph}));
  axis.appendChild(el("line", {x1: ML, x2: ML + pw, y1: MT + ph, y2: MT + ph}));
  svg.appendChild(axis);
  const ticks = el("g", {class: "tick"});
  yt.forEach(t => ticks.appendChild(el("text", {x: ML - 6, y: sy(t) + 4, "text-anchor": "end"}, fmt(t))));
  niceTicks(x0, x1, 6).forEach(t => ticks.appendChild(el("text", {x: sx(t), y: MT + ph + 16, "text-anchor": "middle"}, new Date(t * 1000).toISOString().substr(11, 8))));
  ticks.appendChild(el("text", {transform: `translate(14,${MT + ph / 2}) rotate(-90)`, "text-anchor": "middle"}, yLabel));
  svg.appendChild(ticks);
  (refs || []).forEach(r => {
    svg.appendChild(el("line", {class: "ref", x1: ML, x2: ML + pw, y1: sy(r.y), y2: sy(r.y)}));
    svg.appendChild(el("text", {class: "ref-label", x: ML + pw - 4, y: sy(r.y) - 4, "text-anchor": "end"}, r.label));
  });
  series.forEach((s, i) => {
    let d = "", up = true;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) { up = true; continue; }
      if (up) { d += `M${sx(x).toFixed(1)},${sy(y).toFixed(1)}`; up = false; }
      else if (s.step) d += `H${sx(x).toFixed(1)}V${sy(y).toFixed(1)}`;
      else d += `L${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
    }
    const n = s.points.filter(p => Number.isFinite(p[1])).length;
    const path = el("path", {class: "series", "data-series": s.name, "data-points": n, stroke: PALETTE[i % PALETTE.length], d: d});
    if (s.dashed) path.setAttribute("stroke-dasharray", "5 3");
    svg.appendChild(path);
  });
  const legend = el("g", {class: "legend"});
  series.forEach((s, i) => {
    const y = MT + 10 + i * 16, x = W - MR + 12;
    const l = el("line", {x1: x, x2: x + 18, y1: y, y2: y, stroke: PALETTE[i % PALETTE.length], "stroke-width": 2});
    if (s.dashed) l.setAttribute("stroke-dasharray", "5 3");
    legend.appendChild(l);
    legend.appendChild(el("text", {x: x + 24, y: y + 4}, s.name));
  });
  svg.appendChild(legend);
  container.replaceChildren(svg);
}

const val = v => (v === null || v === undefined) ? NaN : v;

function render(status, ticks) {
  const state = document.getElementById("state");
  const bad = status.holding || status.paused;
  state.textContent = status.paused ? "paused" : status.holding ? "holding: " + status.holding : (status.leader ? "leader" : "follower") + (status.advisory ? ", advisory" : "");
  state.className = "pill" + (bad ? " bad" : "");
  if (status.sla) document.getElementById("sla").textContent = `SLA: TTFT ≤ ${status.sla.ttft_ms} ms, ITL ≤ ${status.sla.itl_ms} ms`;
  // An aggregated deployment has no prefill role (its maximum is 0): one pool of workers,
  // counted as decode.
  const aggregated = !!status.limits && status.limits.max_prefill === 0;
  if (status.limits) {
    const l = status.limits;
    document.getElementById("limits").textContent = aggregated
      ? `limits: workers ${l.min_decode}-${l.max_decode}, ${l.gpu_budget} GPUs`
      : `limits: prefill ${l.min_prefill}-${l.max_prefill}, decode ${l.min_decode}-${l.max_decode}, ${l.gpu_budget} GPUs`;
  }
  const t = ticks.map(k => k.time_s);
  const xy = f => ticks.map((k, i) => [t[i], val(f(k))]);
  lineChart(document.getElementById("chart-load"), "Request rate: observed and planned for", "requests/s", [
    {name: "observed", points: xy(k => k.requests_per_s)},
    {name: "forecast (planned)", points: xy(k => k.forecast_requests_per_s), dashed: true},
  ]);
  const sla = status.sla || {};
  lineChart(document.getElementById("chart-ttft"), "TTFT against the SLA", "ms", [
    {name: "p50", points: xy(k => k.ttft_ms && k.ttft_ms.p50)},
    {name: "p90", points: xy(k => k.ttft_ms && k.ttft_ms.p90)},
    {name: "p99", points: xy(k => k.ttft_ms && k.ttft_ms.p99)},
    {name: "expected", points: xy(k => k.expected_ttft_ms), dashed: true},
  ], sla.ttft_ms ? [{y: sla.ttft_ms, label: "SLA " + sla.ttft_ms + " ms"}] : []);
  lineChart(document.getElementById("chart-itl"), "ITL against the SLA", "ms", [
    {name: "p50", points: xy(k => k.itl_ms && k.itl_ms.p50)},
    {name: "p90", points: xy(k => k.itl_ms && k.itl_ms.p90)},
    {name: "p99", points: xy(k => k.itl_ms && k.itl_ms.p99)},
    {name: "expected", points: xy(k => k.expected_itl_ms), dashed: true},
  ], sla.itl_ms ? [{y: sla.itl_ms, label: "SLA " + sla.itl_ms + " ms"}] : []);
  document.getElementById("chart-replicas-prefill").hidden = aggregated;
  for (const role of aggregated ? ["decode"] : ["prefill", "decode"]) {
    const title = aggregated ? "Worker replicas" : role[0].toUpperCase() + role.slice(1) + " replicas";
    lineChart(document.getElementById("chart-replicas-" + role), title, "replicas", [
      {name: "target", points: xy(k => k[role].target), step: true},
      {name: "ready", points: xy(k => k[role].ready), step: true},
      {name: "starting", points: xy(k => k[role].starting), step: true, dashed: true},
    ]);
  }
  lineChart(document.getElementById("chart-kv"), "KV cache utilisation", "share", aggregated
    ? [{name: "workers", points: xy(k => k.kv_decode)}]
    : [
      {name: "decode", points: xy(k => k.kv_decode)},
      {name: "prefill", points: xy(k => k.kv_prefill)},
    ]);
  const head = document.querySelector("#decisions thead tr");
  const columns = aggregated ? ["time", "workers", "reasons"] : ["time", "prefill", "decode", "reasons"];
  if (head.children.length !== columns.length) {
    head.replaceChildren(...columns.map(c => { const th = document.createElement("th"); th.textContent = c; return th; }));
  }
  const body = document.querySelector("#decisions tbody");
  body.replaceChildren(...ticks.slice(-50).reverse().map(k => {
    const tr = document.createElement("tr");
    tr.className = "decision";
    const count = r => `${r.target} (${r.ready} ready)`;
    const cells = [new Date(k.time_s * 1000).toISOString().substr(11, 8), ...(aggregated ? [count(k.decode)] : [count(k.prefill), count(k.decode)]), k.reasons.join("; ")];
    cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; if (i > 0 && i < cells.length - 1) td.className = "num"; tr.appendChild(td); });
    return tr;
  }));
}

async function refresh() {
  try {
    const [s, h] = await Promise.all([fetch("api/v1/status"), fetch("api/v1/history")]);
    render(await s.json(), (await h.json()).ticks);
  } catch (e) {
    const state = document.getElementById("state");
    state.textContent = "cannot reach the planner: " + e;
    state.className = "pill bad";
  }
}

refresh();
setInterval(refresh, 2000);
