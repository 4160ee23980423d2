/// The dashboard served at `GET /`: one self-contained page (no CDN, no fetched scripts or styles,
/// so it works air-gapped) whose small script reads the collector's own API and draws SVG charts.
///
/// Filters (`tenant_id`, and `range` or `since`/`until`) live in the URL, so a view can be shared.
/// When the collector requires API keys, the page asks for one (or takes it from the URL's
/// fragment, `#key=…`, which is never sent to the server), keeps it for the browser tab only
/// (sessionStorage) and sends it as `Authorization: Bearer` with every call; a `read` key shows its
/// own tenant only.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xumi telemetry</title>
<style>
  :root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --card:#fff;
          --c0:#3b6fd8; --c1:#e0803b; --c2:#3ba776; --c3:#c2455e; --c4:#8a5cd1; --c5:#2aa3b8; --c6:#b8962a; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; flex-wrap:wrap; gap:16px; align-items:center; padding:12px 20px; background:var(--card); border-bottom:1px solid var(--line); position:sticky; top:0; z-index:1; }
  header h1 { font-size:17px; margin:0 12px 0 0; }
  header form { display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
  header input, header select, header button { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:6px; background:#fff; }
  main { padding:16px 20px; display:grid; gap:16px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
  section h2 { font-size:15px; margin:0 0 8px; }
  .grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(340px, 1fr)); gap:12px; }
  .chart svg { max-width: 480px; display: block; }
  .chart h3 { font-size:13px; font-weight:600; margin:4px 0; color:var(--muted); }
  .empty { color:var(--muted); font-style:italic; padding:16px 0; }
  .stat { font-size:24px; font-weight:600; }
  .stat small { font-size:12px; color:var(--muted); font-weight:400; display:block; }
  table { border-collapse:collapse; width:100%; font-size:12px; }
  td, th { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--muted); font-weight:600; }
  code { font-size:12px; }
  #tail { font:12px/1.35 ui-monospace, monospace; max-height:220px; overflow:auto; white-space:pre-wrap; word-break:break-all; }
  svg text { font-size:11px; fill:var(--fg); }
  svg .axis { stroke:var(--line); }
  svg .muted { fill:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>xumi telemetry</h1>
  <form id="filters">
    <label>Tenant <input name="tenant_id" placeholder="all tenants" size="38"></label>
    <label>Range <select name="range">
      <option value="15m">15 minutes</option><option value="1h">1 hour</option><option value="6h">6 hours</option>
      <option value="24h">24 hours</option><option value="7d">7 days</option><option value="30d">30 days</option>
    </select></label>
    <button type="submit">Apply</button>
  </form>
  <form id="keyform" hidden>
    <label>API key <input name="key" type="password" placeholder="xtk_…" size="30" autocomplete="off"></label>
    <button type="submit">Use key</button>
    <span id="keynote" class="muted"></span>
  </form>
  <span id="span" class="muted"></span>
</header>
<main>
  <section data-section="overview"><h2>Overview</h2><div class="grid" id="overview"></div></section>
  <section data-section="generation"><h2>Generation</h2><div class="grid" id="generation"></div></section>
  <section data-section="loads"><h2>Model loads</h2><div class="grid" id="loads"></div></section>
  <section data-section="pods"><h2>GPU pods</h2><div class="grid" id="pods"></div></section>
  <section data-section="pbac"><h2>PBAC</h2><div class="grid" id="pbac"></div></section>
  <section data-section="assets"><h2>Assets</h2><div class="grid" id="assets"></div></section>
  <section data-section="operations"><h2>Operations and rejections</h2><div class="grid" id="operations"></div></section>
  <section data-section="tail"><h2>Live tail</h2><div id="tail" class="empty">Waiting for events…</div></section>
</main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const form = document.getElementById("filters");
form.tenant_id.value = params.get("tenant_id") || "";
form.range.value = params.get("range") || "1h";
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const next = new URLSearchParams();
  if (form.tenant_id.value.trim()) next.set("tenant_id", form.tenant_id.value.trim());
  next.set("range", form.range.value);
  location.search = next.toString();
});
const seconds = { s: 1, m: 60, h: 3600, d: 86400 };
function parseRange(text) { const m = /^(\d+)([smhd])$/.exec(text || ""); return m ? Number(m[1]) * seconds[m[2]] : 3600; }
const until = params.get("until") ? new Date(params.get("until")) : new Date();
const since = params.get("since") ? new Date(params.get("since")) : new Date(until.getTime() - parseRange(form.range.value) * 1000);
const spanSeconds = Math.max(60, (until - since) / 1000);
const interval = [[60, "10s"], [900, "30s"], [3600, "1m"], [21600, "5m"], [86400, "30m"], [604800, "6h"]].find(([s]) => spanSeconds <= s)?.[1] || "1d";
document.getElementById("span").textContent = since.toISOString().slice(0, 16) + " → " + until.toISOString().slice(0, 16) + " UTC, buckets of " + interval;

// The API key: from the URL's fragment (#key=…, then removed from the address bar), else what
// this tab stored. Never put in the query string, so it stays out of the collector's logs.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) {
  sessionStorage.setItem("telemetry-key", fragment.get("key"));
  history.replaceState(null, "", location.pathname + location.search);
}
const keyForm = document.getElementById("keyform");
keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("telemetry-key", keyForm.key.value.trim());
  location.reload();
});
function authHeaders() {
  const key = sessionStorage.getItem("telemetry-key");
  return key ? { Authorization: "Bearer " + key } : {};
}
function askForKey(status) {
  keyForm.hidden = false;
  document.getElementById("keynote").textContent = status === 401
    ? "This collector requires an API key with the read scope."
    : "This key may not read that (it reads its own tenant only).";
}

async function api(path, query = {}, timed = true) {
  const q = new URLSearchParams(query);
  const tenant = params.get("tenant_id");
  if (tenant) q.set("tenant_id", tenant);
  if (timed) { q.set("since", since.toISOString()); q.set("until", until.toISOString()); }
  const response = await fetch(path + "?" + q.toString(), { headers: authHeaders() });
  if (response.status === 401 || response.status === 403) {
    askForKey(response.status);
    throw new Error(path + ": HTTP " + response.status + (response.status === 401 ? " (an API key is needed: enter one above)" : " (not allowed for this key)"));
  }
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}
const stats = (query, timed = true) => api("/v1/stats", query, timed).then((r) => r.groups);

const svgNS = "http://www.w3.org/2000/svg";
function el(tag, attrs = {}, text) {
  const node = tag === "svg" || ["g", "rect", "line", "text", "polyline", "circle", "title"].includes(tag)
    ? document.createElementNS(svgNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function card(sectionId, title) {
  const box = el("div", { class: "chart" });
  box.appendChild(el("h3", {}, title));
  document.getElementById(sectionId).appendChild(box);
  return box;
}
function empty(box, text) { box.appendChild(el("div", { class: "empty" }, text)); }
function format(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (unit === "%") return (value * 100).toFixed(1) + "%";
  if (unit === "B") { const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; while (Math.abs(value) >= 1000 && i < 4) { value /= 1000; i++; } return value.toFixed(i ? 1 : 0) + " " + u[i]; }
  if (unit === "B/s") return format(value, "B") + "/s";
  if (unit === "ms" && value >= 10000) return (value / 1000).toFixed(1) + " s";
  if (Number.isInteger(value)) return value + (unit ? " " + unit : "");
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 1 : 3;
  return value.toFixed(digits) + (unit ? " " + unit : "");
}
const colors = ["var(--c0)", "var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)", "var(--c5)", "var(--c6)"];

// Horizontal bars: one per row, labelled, with the value and its unit.
function bars(box, name, rows, unit, emptyText) {
  if (!rows.length) return empty(box, emptyText);
  const max = Math.max(...rows.map((r) => r.value || 0), 1e-12);
  const height = rows.length * 24 + 24, width = 360, left = 150;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", "data-chart": name, role: "img" });
  svg.appendChild(el("title", {}, name + " (" + (unit || "count") + ")"));
  rows.forEach((r, i) => {
    const y = i * 24 + 4, w = Math.max(1, ((r.value || 0) / max) * (width - left - 70));
    svg.appendChild(el("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, r.label.length > 24 ? r.label.slice(0, 23) + "…" : r.label));
    svg.appendChild(el("rect", { x: left, y, width: w, height: 16, rx: 3, fill: r.color || colors[i % colors.length] }));
    svg.appendChild(el("text", { x: left + w + 6, y: y + 13 }, format(r.value, unit)));
  });
  svg.appendChild(el("line", { class: "axis", x1: left, x2: left, y1: 0, y2: height - 20 }));
  svg.appendChild(el("text", { x: left, y: height - 4, class: "muted" }, "0"));
  svg.appendChild(el("text", { x: width - 70, y: height - 4, class: "muted", "text-anchor": "end" }, format(max, unit)));
  box.appendChild(svg);
}

// Lines over time: one series per group, with time and value axes and a legend.
function lines(box, name, series, unit, emptyText) {
  const points = series.flatMap((s) => s.points);
  if (!points.length) return empty(box, emptyText);
  const width = 360, height = 170, left = 48, bottom = 150, top = 10, right = width - 8;
  const t0 = Math.min(...points.map((p) => p.t)), t1 = Math.max(...points.map((p) => p.t), t0 + 1);
  const max = Math.max(...points.map((p) => p.v || 0), 1e-12);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (right - left), y = (v) => bottom - ((v || 0) / max) * (bottom - top);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height + 18 * Math.ceil(series.length / 3)}`, width: "100%", "data-chart": name, role: "img" });
  svg.appendChild(el("title", {}, name + " (" + (unit || "count") + ")"));
  svg.appendChild(el("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom }));
  svg.appendChild(el("line", { class: "axis", x1: left, x2: left, y1: top, y2: bottom }));
  svg.appendChild(el("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "muted" }, format(max, unit)));
  svg.appendChild(el("text", { x: left - 4, y: bottom, "text-anchor": "end", class: "muted" }, "0"));
  const time = (t) => new Date(t).toISOString().slice(11, 16);
  svg.appendChild(el("text", { x: left, y: bottom + 14, class: "muted" }, time(t0)));
  svg.appendChild(el("text", { x: right, y: bottom + 14, "text-anchor": "end", class: "muted" }, time(t1) + " UTC"));
  series.forEach((s, i) => {
    const color = colors[i % colors.length];
    const sorted = [...s.points].sort((a, b) => a.t - b.t);
    svg.appendChild(el("polyline", { fill: "none", stroke: color, "stroke-width": 2, points: sorted.map((p) => x(p.t) + "," + y(p.v)).join(" ") }));
    if (sorted.length === 1) svg.appendChild(el("circle", { cx: x(sorted[0].t), cy: y(sorted[0].v), r: 3, fill: color }));
    const lx = left + (i % 3) * 105, ly = height + 12 + Math.floor(i / 3) * 18;
    svg.appendChild(el("rect", { x: lx, y: ly - 9, width: 10, height: 10, fill: color }));
    svg.appendChild(el("text", { x: lx + 14, y: ly }, String(s.name).slice(0, 15)));
  });
  box.appendChild(svg);
}
function table(box, headers, rows, emptyText) {
  if (!rows.length) return empty(box, emptyText);
  const t = el("table");
  const head = el("tr");
  headers.forEach((h) => head.appendChild(el("th", {}, h)));
  t.appendChild(head);
  rows.forEach((r) => {
    const tr = el("tr");
    r.forEach((cell) => { const td = el("td"); if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? ""; tr.appendChild(td); });
    t.appendChild(tr);
  });
  box.appendChild(t);
}
function stat(box, value, caption) {
  const d = el("div", { class: "stat" }, value);
  d.appendChild(el("small", {}, caption));
  box.appendChild(d);
}
const key = (g, name) => { const v = g.key[name]; return v === null || v === undefined ? "(none)" : String(v); };
const series = (groups, by, field) => {
  const map = new Map();
  for (const g of groups) {
    const name = by ? key(g, by) : field;
    if (!map.has(name)) map.set(name, []);
    map.get(name).push({ t: Date.parse(g.bucket), v: g[field] });
  }
  return [...map].map(([name, points]) => ({ name, points }));
};
const eventLink = (id) => { if (!id) return ""; const a = el("a", { href: "/v1/events/" + id, title: id }, "…" + id.slice(-12)); return a; };
const NO_DATA = "No data in this range yet: run `telemetry demo`, or send events with the SDK or `telemetry send`.";

// Each section asks for everything it needs at once and draws as the answers come, in order:
// the browser's six connections stay busy instead of each section waiting on its own requests one
// after another (a one-day view of 10 million events: ~0.55 s for every request, against ~0.7 s).
// `early` marks a promise as handled, so one failing while an earlier draw fails is not an
// unhandled rejection on the console; awaiting it still throws.
const early = (promise) => { promise.catch(() => {}); return promise; };

async function overview() {
  const byTopicP = early(stats({ group_by: "topic", interval }));
  const rejectedP = early(api("/v1/rejected", { limit: 200 }, false));
  const accessP = early(api("/v1/access", {}, false));
  const byTopic = await byTopicP;
  const perSecond = byTopic.map((g) => ({ ...g, rate: g.count / parseRange(interval) }));
  lines(card("overview", "Events per second by topic"), "events-by-topic", series(perSecond, "topic", "rate"), "/s", NO_DATA);
  const rejected = (await rejectedP).rejected;
  const access = await accessP;
  if (access.all_tenants) {
    // The collector's own counters (every tenant): only for who may see every tenant.
    const metrics = await fetch("/metrics").then((r) => r.text());
    const outcomes = { accepted: 0, duplicate: 0, rejected: 0 };
    for (const line of metrics.split("\n")) {
      const m = /^telemetry_ingest_events_total\{.*outcome="(\w+)"\} ([0-9.e+]+)/.exec(line);
      if (m) outcomes[m[1]] += Number(m[2]);
    }
    bars(card("overview", "Received since the collector started"), "ingest-outcomes",
      Object.entries(outcomes).map(([label, value]) => ({ label, value })), "", NO_DATA);
  } else {
    const stored = (await stats({ agg: "count" })).reduce((n, g) => n + g.count, 0);
    bars(card("overview", "Tenant " + access.tenant_id + " in this range"), "ingest-outcomes",
      [{ label: "stored", value: stored }, { label: "rejected (latest 200)", value: rejected.length }], "", NO_DATA);
  }
  const reasons = new Map();
  for (const r of rejected) for (const e of r.errors) reasons.set(e.code + " " + e.field, (reasons.get(e.code + " " + e.field) || 0) + 1);
  bars(card("overview", "Top rejection reasons (last 200 rejected)"), "rejection-reasons",
    [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([label, value]) => ({ label, value })), "", "Nothing rejected: every event received was valid.");
}

async function generation() {
  const latencyP = early(stats({ operation: "generation", agg: "p50,p95,p99", interval }));
  const successP = early(stats({ operation: "generation", field: "success", agg: "rate", group_by: "model" }));
  const byModelP = early(stats({ operation: "generation", agg: "p50,p99", group_by: "model" }));
  const failedP = early(api("/v1/operations", { kind: "generation", status: "failed", limit: 8 }));
  const latency = await latencyP;
  lines(card("generation", "Generation latency (p50, p95, p99)"), "generation-latency",
    ["p50", "p95", "p99"].map((p) => ({ name: p, points: latency.map((g) => ({ t: Date.parse(g.bucket), v: g[p] })).filter((x) => x.v !== null) })), "ms", NO_DATA);
  const success = await successP;
  bars(card("generation", "Success rate by model"), "generation-success", success.map((g) => ({ label: key(g, "model"), value: g.rate })), "%", NO_DATA);
  const byModel = await byModelP;
  bars(card("generation", "p99 latency by model"), "generation-p99-by-model", byModel.map((g) => ({ label: key(g, "model"), value: g.p99 })), "ms", NO_DATA);
  const failed = (await failedP).operations;
  table(card("generation", "Recent failures"), ["started", "model", "detail", "start"],
    failed.map((o) => [o.started_at?.slice(11, 19) ?? "", o.attributes.model, o.attributes.detail, eventLink(o.start_event_id)]), "No failed generations in this range.");
}

async function loads() {
  const durationP = early(stats({ operation: "weights_load", agg: "p50,p95", group_by: "storage_type" }));
  const speedP = early(stats({ operation: "weights_load", field: "speed", agg: "avg", group_by: "storage_type,vm_type" }));
  const duration = await durationP;
  bars(card("loads", "Load time p50 by storage type"), "load-duration-by-storage", duration.map((g) => ({ label: key(g, "storage_type"), value: g.p50 })), "ms", NO_DATA);
  const speed = await speedP;
  bars(card("loads", "Load speed by storage and VM type"), "load-speed",
    speed.map((g) => ({ label: key(g, "storage_type") + " · " + key(g, "vm_type"), value: g.avg })), "B/s", NO_DATA);
}

async function pods() {
  const deployP = early(stats({ operation: "pod_deploy", agg: "p50,p95", group_by: "hardware" }));
  const liveP = early(api("/v1/operations", { kind: "pod_lifetime", status: "running", limit: 1000 }, false));
  const hoursP = early(stats({ operation: "pod_lifetime", field: "duration_h", agg: "sum", group_by: "tenant_id" }));
  const deploy = await deployP;
  bars(card("pods", "Deploy time p50 by hardware"), "deploy-by-hardware", deploy.map((g) => ({ label: key(g, "hardware"), value: g.p50 })), "ms", NO_DATA);
  const live = (await liveP).operations;
  stat(card("pods", "Live pods"), String(live.length), "pods deployed and not yet freed");
  const hours = await hoursP;
  bars(card("pods", "GPU hours by tenant (completed lifetimes)"), "gpu-hours-by-tenant",
    hours.map((g) => ({ label: key(g, "tenant_id").slice(0, 8), value: g.sum })), "h", NO_DATA);
}

async function pbac() {
  const type = "pbac.agent.politics.check";
  const decisionsP = early(stats({ event_type: type, group_by: "result", interval }));
  const denialsP = early(stats({ event_type: type, group_by: "denial_source", result: "false" }));
  const totalP = early(stats({ event_type: type }));
  const evalMsP = early(stats({ event_type: type, field: "eval_ms", agg: "p50,p95,p99" }));
  const cacheP = early(stats({ event_type: type, field: "cache_hit", agg: "rate" }));
  const reloadsP = early(stats({ event_type: "pbac.agent.politics.load" }));
  const changesP = early(stats({ event_type: "pbac.agent.politics.update" }));
  const decisions = await decisionsP;
  lines(card("pbac", "Decisions over time (allowed = true)"), "pbac-decisions", series(decisions, "result", "count"), "", NO_DATA);
  const denials = await denialsP;
  const total = (await totalP).reduce((n, g) => n + g.count, 0);
  bars(card("pbac", "Deny rate by denial source"), "pbac-deny-rate", denials.map((g) => ({ label: key(g, "denial_source"), value: total ? g.count / total : 0 })), "%", NO_DATA);
  const evalMs = await evalMsP;
  bars(card("pbac", "eval_ms percentiles"), "pbac-eval-ms", evalMs.length ? ["p50", "p95", "p99"].map((p) => ({ label: p, value: evalMs[0][p] })) : [], "ms", NO_DATA);
  const cache = await cacheP;
  const reloads = (await reloadsP).reduce((n, g) => n + g.count, 0);
  const changes = (await changesP).reduce((n, g) => n + g.count, 0);
  bars(card("pbac", "Cache hit ratio, policy reloads and rule changes"), "pbac-cache",
    cache.length ? [{ label: "cache hit ratio", value: cache[0].rate }] : [], "%", NO_DATA);
  stat(card("pbac", "Policy reloads · rule changes"), reloads + " · " + changes, "in this range");
}

async function assets() {
  const downP = early(stats({ event_type: "assets.access.download", field: "object_size", agg: "sum" }));
  const upP = early(stats({ event_type: "assets.access.upload", field: "object_size", agg: "sum" }));
  const speedsP = [["download", "assets.access.download"], ["upload", "assets.access.upload"]]
    .map(([label, type]) => [label, early(stats({ event_type: type, field: "avg_speed", agg: "p50" }))]);
  const usedP = early(stats({ event_type: "assets.access.upload", field: "user_space_size", agg: "last", group_by: "user_id" }));
  const totalP = early(stats({ event_type: "assets.access.upload", field: "total_space_size", agg: "last", group_by: "user_id" }));
  const down = await downP;
  const up = await upP;
  const bytes = [{ label: "downloaded", value: down[0]?.sum }, { label: "uploaded", value: up[0]?.sum }].filter((r) => r.value != null);
  bars(card("assets", "Bytes transferred"), "asset-bytes", bytes, "B", NO_DATA);
  const speeds = [];
  for (const [label, promise] of speedsP) {
    const g = await promise;
    if (g.length && g[0].p50 != null) speeds.push({ label: label + " p50", value: g[0].p50 });
  }
  bars(card("assets", "Transfer speed"), "asset-speed", speeds, "B/s", NO_DATA);
  const used = await usedP;
  const total = await totalP;
  const totals = new Map(total.map((g) => [key(g, "user_id"), g.last]));
  bars(card("assets", "Space used per user, of their total"), "asset-space",
    used.slice(0, 12).map((g) => ({ label: key(g, "user_id").slice(0, 8) + " of " + format(totals.get(key(g, "user_id")), "B"), value: g.last })), "B", NO_DATA);
}

async function operations() {
  const stuckP = early(api("/v1/operations", { status: "stuck", limit: 10 }, false));
  const runningP = early(api("/v1/operations", { status: "running", limit: 10 }, false));
  const rejectedP = early(api("/v1/rejected", { limit: 10 }, false));
  const stuck = (await stuckP).operations;
  table(card("operations", "Stuck operations"), ["kind", "started", "key", "start"],
    stuck.map((o) => [o.kind, o.started_at?.slice(0, 19) ?? "", (o.key || "").slice(0, 8), eventLink(o.start_event_id)]), "Nothing is stuck.");
  const running = (await runningP).operations;
  table(card("operations", "Running operations"), ["kind", "started", "key", "start"],
    running.map((o) => [o.kind, o.started_at?.slice(11, 19) ?? "", (o.key || "").slice(0, 8), eventLink(o.start_event_id)]), "Nothing is running.");
  const rejected = (await rejectedP).rejected;
  table(card("operations", "Rejected events"), ["received", "event type", "reasons"],
    rejected.map((r) => [r.received_at.slice(11, 19), r.event_type ?? "(unreadable)", r.errors.map((e) => e.field + ": " + e.code).join("; ")]), "Nothing rejected.");
}

// The live tail reads the server-sent events with fetch (EventSource cannot send the API key),
// reconnecting after the last event id it saw.
async function tail() {
  const box = document.getElementById("tail");
  const query = new URLSearchParams();
  if (params.get("tenant_id")) query.set("tenant_id", params.get("tenant_id"));
  let lines = [];
  let lastID = null;
  for (;;) {
    try {
      const headers = authHeaders();
      if (lastID) headers["Last-Event-ID"] = lastID;
      const response = await fetch("/v1/stream?" + query.toString(), { headers });
      if (response.status === 401 || response.status === 403) { askForKey(response.status); box.textContent = "The live tail needs an API key with the read scope."; return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let end;
        while ((end = pending.indexOf("\n\n")) >= 0) {
          const message = pending.slice(0, end);
          pending = pending.slice(end + 2);
          let data = null;
          for (const line of message.split("\n")) {
            if (line.startsWith("id: ")) lastID = line.slice(4);
            if (line.startsWith("data: ")) data = line.slice(6);
          }
          if (!data) continue;
          const event = JSON.parse(data);
          lines.unshift(event.timestamp + "  " + event.event_type + "  " + event.event_id);
          lines = lines.slice(0, 50);
          box.classList.remove("empty");
          box.textContent = lines.join("\n");
        }
      }
    } catch (error) { /* the collector went away: try again shortly */ }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

(async () => {
  // Sections load side by side (the store serves concurrent reads); each draws its own cards in order.
  await Promise.all([["overview", overview], ["generation", generation], ["loads", loads], ["pods", pods],
                     ["pbac", pbac], ["assets", assets], ["operations", operations]].map(async ([name, draw]) => {
    try { await draw(); } catch (error) { empty(card(name, "Could not load this section"), String(error.message || error)); }
  }));
  document.body.setAttribute("data-ready", "true");
  // Milliseconds from navigation to every section drawn: what the dashboard's speed is measured by.
  document.body.setAttribute("data-drawn-ms", String(Math.round(performance.now())));
  // tail=off: a page without the stream, for headless snapshots (an open stream never lets a
  // headless browser consider the page loaded).
  if (params.get("tail") !== "off") tail(); else document.getElementById("tail").textContent = "Live tail off (tail=off in the URL).";
})();
</script>
</body>
</html>
"""#
}
