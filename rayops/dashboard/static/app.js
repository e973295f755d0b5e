// The rayops dashboard page: polls the API server's token-checked routes and renders them.
// The cluster token travels only as Ray's HttpOnly `ray-authentication-token` cookie, set by
// the login form (POST /api/dashboard/login) or a `/?token=` link; this script never sees it.
import { sparkline, usageChart } from "./charts.js";

const REFRESH_MS = 2000;
const TASKS_REFRESH_MS = 5000;
const ROW_H = 24; // the actors table's row height (px), as in style.css
const LOG_MAX_CHARS = 1 << 20; // keep at most this much of a job's log in the page

const $ = (id) => document.getElementById(id);

function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

const fmtNum = (v) => (Math.round(v * 100) / 100).toString();
function fmtBytes(b) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${i ? b.toFixed(1) : b} ${units[i]}`;
}
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
const short = (id) => (id || "").slice(0, 12);

class Unauthorized extends Error {}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401 || r.status === 403) throw new Unauthorized(url);
  if (!r.ok) { const e = new Error(`${url}: HTTP ${r.status}`); e.status = r.status; throw e; }
  return r.json();
}

// ---------------------------------------------------------------- login / logout
function showLogin(message) {
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  // No cluster data may stay on a page that lost its token.
  for (const id of ["nodes-body", "jobs-body", "pgs-body", "totals", "charts", "store-bars",
                    "tasks-summary", "actors-states", "nodes-count", "actors-count",
                    "jobs-count", "pgs-count", "job-logs-text"]) $(id).replaceChildren();
  actors.rows = []; actors.shown = [];
  renderActorRows(true);
  closeLogs();
  $("status").textContent = "token needed";
  if (message) { $("login-error").textContent = message; $("login-error").hidden = false; }
}

function showDashboard() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/dashboard/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("login-token").value.trim() }),
  });
  $("login-token").value = "";
  if (!r.ok) { showLogin("That is not this cluster's token."); return; }
  $("login-error").hidden = true;
  refresh(true);
});

$("logout").addEventListener("click", async () => {
  await fetch("/api/dashboard/logout", { method: "POST", credentials: "same-origin" });
  showLogin();
});

// ---------------------------------------------------------------- cluster and nodes
function resCell(node, name, fmt = fmtNum) {
  const total = node.resources_total[name];
  if (!total) return h("td", { class: "muted" }, "–");
  return h("td", {}, `${fmt(node.resources_used[name] || 0)} / ${fmt(total)}`);
}

function bar(used, total) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  const b = h("div", { class: "bar", title: `${pct.toFixed(1)}%` }, h("span"));
  b.firstChild.style.width = `${pct}%`;
  return b;
}

function renderNodes(data, usage) {
  $("nodes-count").textContent = data.synced
    ? `${data.alive} node${data.alive === 1 ? "" : "s"} alive${data.dead ? `, ${data.dead} dead` : ""}`
    : "(loading)";
  $("nodes-count").dataset.alive = data.alive;
  const c = data.cluster;
  const tot = (k, fmt = fmtNum) => `${fmt(c.resources_used[k] || 0)} / ${fmt(c.resources_total[k] || 0)}`;
  $("totals").replaceChildren(
    h("div", {}, h("b", { id: "total-cpu" }, tot("CPU")), "CPU used / total"),
    h("div", {}, h("b", {}, tot("GPU")), "GPU"),
    h("div", {}, h("b", {}, tot("memory", fmtBytes)), "memory (reserved)"),
    h("div", {}, h("b", {}, `${fmtBytes(c.object_store.used_bytes)} / ${fmtBytes(c.object_store.capacity_bytes)}`),
      "object store"),
  );
  const series = usage.series || {};
  const rows = data.nodes.map((n) => {
    const cpu = series[n.node_id]?.CPU;
    return h("tr", { dataset: { nodeId: n.node_id, state: n.state } },
      h("td", { class: `state ${n.state}` }, n.state),
      h("td", { class: "mono", title: n.node_id }, short(n.node_id) + (n.is_head_node ? " (head)" : "")),
      h("td", { class: "mono" }, n.node_ip),
      resCell(n, "CPU"), resCell(n, "GPU"), resCell(n, "memory", fmtBytes),
      h("td", {}, `${fmtBytes(n.object_store.used_bytes)} / ${fmtBytes(n.object_store.capacity_bytes)}`),
      h("td", {}, cpu ? sparkline(cpu.used, Math.max(...cpu.total, 1e-9)) : ""));
  });
  $("nodes-body").replaceChildren(...rows);
  $("store-bars").replaceChildren(...data.nodes.filter((n) => n.state === "ALIVE").map((n) =>
    h("div", { class: "storerow", dataset: { nodeId: n.node_id } },
      h("span", { class: "mono" }, `${short(n.node_id)} ${n.node_ip}`),
      bar(n.object_store.used_bytes, n.object_store.capacity_bytes),
      h("span", {}, `${fmtBytes(n.object_store.used_bytes)} of ${fmtBytes(n.object_store.capacity_bytes)}` +
        (n.object_store.spilled_bytes ? `, ${fmtBytes(n.object_store.spilled_bytes)} spilled` : "")))));
}

const CHARTS = [
  ["CPU", "CPU", fmtNum], ["GPU", "GPU", fmtNum],
  ["memory", "memory (reserved)", fmtBytes], ["object_store", "object store", fmtBytes],
];

function renderCharts(usage) {
  const cluster = usage.series?.cluster;
  // Draw at the width the chart box had last time, so the SVG fills it (1 unit = 1 px).
  const prev = $("charts").firstElementChild;
  const width = prev ? Math.max(120, prev.clientWidth - 16) : 260;
  $("charts").replaceChildren(...CHARTS.map(([key, title, fmt]) => {
    const s = cluster?.[key] || { used: [], total: [] };
    return h("div", { class: "chart", dataset: { metric: key } },
      h("div", { class: "title" }, title),
      usageChart(usage.times || [], s.used, s.total, fmt, width));
  }));
}

// ---------------------------------------------------------------- jobs and their logs
let selectedJob = null;
let logSocket = null;
let logPoll = null;

function renderJobs(jobs) {
  jobs.sort((a, b) => (b.start_time || 0) - (a.start_time || 0));
  $("jobs-count").textContent = `${jobs.length}`;
  $("jobs-body").replaceChildren(...jobs.map((j) => {
    const tr = h("tr", { class: j.submission_id === selectedJob ? "selected" : "",
                         dataset: { submissionId: j.submission_id, status: j.status } },
      h("td", { class: "mono" }, j.submission_id),
      h("td", { class: `state ${j.status}` }, j.status),
      h("td", { class: "mono wrap" }, j.entrypoint),
      h("td", {}, fmtTime(j.start_time)),
      h("td", { class: "wrap" }, (j.message || "").slice(0, 200)));
    tr.addEventListener("click", () => openLogs(j.submission_id));
    if (j.submission_id === selectedJob) $("job-logs-state").textContent = j.status;
    return tr;
  }));
}

function appendLog(text) {
  const pre = $("job-logs-text");
  let all = pre.textContent + text;
  if (all.length > LOG_MAX_CHARS) all = all.slice(all.length - LOG_MAX_CHARS);
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = all;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function closeLogs() {
  if (logSocket) { logSocket.onclose = null; logSocket.close(); logSocket = null; }
  if (logPoll) { clearInterval(logPoll); logPoll = null; }
  selectedJob = null;
  $("job-logs").hidden = true;
  $("job-logs").dataset.ended = "";
}

// Follow a job's log live over the Jobs API's websocket; fall back to polling the whole log.
function openLogs(id) {
  closeLogs();
  selectedJob = id;
  $("job-logs").hidden = false;
  $("job-logs-id").textContent = id;
  $("job-logs-text").textContent = "";
  for (const tr of $("jobs-body").children) tr.classList.toggle("selected", tr.dataset.submissionId === id);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/jobs/${encodeURIComponent(id)}/logs/tail`);
  logSocket = ws;
  let received = false;
  ws.onmessage = (ev) => { received = true; appendLog(ev.data); };
  ws.onclose = () => {
    if (logSocket !== ws) return;
    logSocket = null;
    if (!received) { pollLogs(id); return; }
    $("job-logs").dataset.ended = "true";
    appendLog("\n[log ended]\n");
  };
}

function pollLogs(id) {
  const once = async () => {
    try {
      const { logs } = await getJSON(`/api/jobs/${encodeURIComponent(id)}/logs`);
      if (selectedJob === id) $("job-logs-text").textContent = logs.slice(-LOG_MAX_CHARS);
    } catch (e) { if (e instanceof Unauthorized) showLogin(); }
  };
  once();
  logPoll = setInterval(once, REFRESH_MS);
}

$("job-logs-close").addEventListener("click", closeLogs);

// ---------------------------------------------------------------- actors (virtualised)
const actors = { rows: [], shown: [], filter: "", firstRendered: false };

function actorMatches(a, f) {
  return !f || [a.state, a.class_name, a.name, a.node_id, String(a.pid), a.actor_id]
    .some((v) => (v || "").toLowerCase().includes(f));
}

function applyActorFilter() {
  const f = actors.filter;
  actors.shown = actors.rows.filter((a) => actorMatches(a, f));
  $("actors-spacer").style.height = `${actors.shown.length * ROW_H}px`;
  renderActorRows(true);
}

let drawnRange = "";
// Draw only the rows in view (plus a margin): 1,000 or 100,000 actors cost the same.
function renderActorRows(force = false) {
  const box = $("actors-scroll");
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 10);
  const last = Math.min(actors.shown.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW_H) + 10);
  const key = `${first}:${last}`;
  if (!force && key === drawnRange) return;
  drawnRange = key;
  const rows = [];
  for (let i = first; i < last; i++) {
    const a = actors.shown[i];
    const row = h("div", { class: "vrow", dataset: { actorId: a.actor_id, state: a.state } },
      h("span", { class: `state ${a.state}` }, a.state),
      h("span", {}, a.class_name), h("span", {}, a.name),
      h("span", { class: "mono", title: a.node_id }, short(a.node_id)),
      h("span", {}, a.pid || ""), h("span", { class: "mono" }, a.actor_id));
    row.style.top = `${i * ROW_H}px`;
    rows.push(row);
  }
  $("actors-spacer").replaceChildren(...rows);
}

function renderActors(data) {
  const order = { ALIVE: 0, RESTARTING: 1, PENDING_CREATION: 2, DEPENDENCIES_UNREADY: 3, DEAD: 4 };
  data.actors.sort((a, b) => (order[a.state] ?? 5) - (order[b.state] ?? 5)
    || a.class_name.localeCompare(b.class_name) || a.actor_id.localeCompare(b.actor_id));
  actors.rows = data.actors;
  $("actors-count").textContent = data.synced ? `${data.total}` : "(loading)";
  $("actors-count").dataset.total = data.total;
  $("actors-states").replaceChildren(...Object.entries(data.by_state).map(([s, n]) =>
    h("span", { dataset: { state: s, count: n } }, h("b", { class: `state ${s}` }, s), ` ${n}`)));
  applyActorFilter();
  if (data.synced && !actors.firstRendered) {
    actors.firstRendered = true;
    // Navigation start to the actors panel drawn, for the browser test and the bench.
    document.body.dataset.actorsRenderedMs = performance.now().toFixed(1);
  }
}

$("actors-scroll").addEventListener("scroll", () => requestAnimationFrame(() => renderActorRows()));
$("actors-filter").addEventListener("input", (ev) => {
  actors.filter = ev.target.value.trim().toLowerCase();
  $("actors-scroll").scrollTop = 0;
  applyActorFilter();
});

// ---------------------------------------------------------------- placement groups
function renderGroups(data) {
  $("pgs-count").textContent = `${data.total}`;
  $("pgs-count").dataset.total = data.total;
  $("pgs-body").replaceChildren(...data.groups.map((g) =>
    h("tr", { dataset: { pgId: g.placement_group_id, state: g.state } },
      h("td", { class: "mono" }, short(g.placement_group_id)),
      h("td", {}, g.name),
      h("td", { class: `state ${g.state}` }, g.state),
      h("td", {}, g.strategy),
      h("td", { class: "wrap" }, g.bundles.map((b) =>
        `${Object.entries(b.unit_resources).map(([k, v]) => `${k}:${fmtNum(v)}`).join(" ")}` +
        (b.node_id ? ` @${short(b.node_id)}` : "")).join(", ")))));
}

// ---------------------------------------------------------------- tasks summary
// Ray's `GET /api/v0/tasks/summarize` answer: {result, msg, data: {result: {..., result:
// {node_id_to_summary: {cluster: {summary: {name: {func_or_class_name, type, state_counts}},
// total_tasks, total_actor_tasks, total_actor_scheduled, summary_by}}}}}}.
function findSummary(body) {
  let o = body?.data?.result;
  for (let i = 0; i < 3 && o && !o.node_id_to_summary; i++) o = o.result;
  return o?.node_id_to_summary?.cluster;
}

async function refreshTasks() {
  const box = $("tasks-summary");
  let body;
  try {
    body = await getJSON("/api/v0/tasks/summarize");
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    box.dataset.state = "unavailable";
    box.replaceChildren(h("p", { class: "muted" },
      e.status === 404 ? "task summary unavailable" : `task summary unavailable (${e.message})`));
    return;
  }
  const s = findSummary(body);
  if (!s) {
    box.dataset.state = "unavailable";
    box.replaceChildren(h("p", { class: "muted" }, "task summary unavailable (unexpected answer)"));
    return;
  }
  box.dataset.state = "ok";
  const entries = Object.values(s.summary || {});
  box.replaceChildren(
    h("div", { class: "totals" },
      h("div", {}, h("b", { id: "tasks-total" }, s.total_tasks ?? 0), "tasks"),
      h("div", {}, h("b", {}, s.total_actor_tasks ?? 0), "actor tasks"),
      h("div", {}, h("b", {}, s.total_actor_scheduled ?? 0), "actors scheduled")),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "function or class"), h("th", {}, "type"), h("th", {}, "states"))),
      h("tbody", {}, ...entries.map((e) => h("tr", { dataset: { name: e.func_or_class_name } },
        h("td", { class: "mono" }, e.func_or_class_name), h("td", {}, e.type),
        h("td", {}, Object.entries(e.state_counts || {}).map(([k, v]) => `${k}: ${v}`).join(", ")))))));
}

// ---------------------------------------------------------------- refresh loop
let busy = false;
let lastTasks = 0;
// One line: what the autoscaler is launching and its latest failure (cause, retry).
function renderAutoscaler(st) {
  const el = $("autoscaler");
  el.hidden = !st;
  if (!st) return;
  let text = `Autoscaler (${st.provider}): ${st.running} worker(s) running, ` +
    `${st.pending.length} launch(es) pending, ${st.failed_create_nodes} failed so far`;
  const f = st.failures[0];
  if (f) text += `; last failure: ${f.address || f.instance_id}: ${f.cause}`;
  el.textContent = text;
}

async function refresh(force = false) {
  if (busy || (!force && document.hidden)) return;
  busy = true;
  try {
    const [nodes, usage, actorData, groups, jobs, scaler] = await Promise.all([
      getJSON("/api/dashboard/nodes"), getJSON("/api/dashboard/usage"),
      getJSON("/api/dashboard/actors"), getJSON("/api/dashboard/placement_groups"),
      getJSON("/api/jobs/"), getJSON("/api/dashboard/autoscaler"),
    ]);
    renderAutoscaler(scaler.status);
    showDashboard();
    renderNodes(nodes, usage);
    renderCharts(usage);
    renderActors(actorData);
    renderGroups(groups);
    renderJobs(jobs);
    if (force || Date.now() - lastTasks > TASKS_REFRESH_MS) {
      lastTasks = Date.now();
      await refreshTasks();
    }
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("status").dataset.loaded = "true";
  } catch (e) {
    if (e instanceof Unauthorized) showLogin();
    else $("status").textContent = `could not reach the API server (${e.message})`;
  } finally {
    busy = false;
  }
}

if (new URLSearchParams(location.search).get("login") === "failed") {
  history.replaceState(null, "", "/");
  showLogin("The token in that link is not this cluster's.");
}
refresh(true);
setInterval(refresh, REFRESH_MS);
