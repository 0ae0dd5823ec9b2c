// The dashboard page: sign-in, then figures from the admin APIs and live
// updates from the hub. Every number shown comes from the server; nothing is
// computed here but formatting.

import { Api } from "./api.js";
import { TimeChart } from "./charts.js";
import * as fmt from "./format.js";
import { Hub } from "./hub.js";
import * as session from "./session.js";
import * as uptime from "./uptime.js";

const config = document.body.dataset;
const $ = (id) => document.getElementById(id);

const REQUESTS = "http.server.duration";
const HEALTH_METRIC = "System.Health.Check.Available";
const SECTIONS_EVERY_MS = 30000; // dashboard sections (performance, security, ...)
const HEALTH_HISTORY_EVERY_MS = 60000;
const UPTIME_EVERY_MS = SECTIONS_EVERY_MS; // uptime, error budget, deployment markers
const MIN_CHART_EVERY_MS = 15000; // charts refresh every step, at most this often
const MAX_SECURITY_ROWS = 50;

let api = null;
let hub = null;
let charts = null;
let signOutTimer = null;
const state = { window: "1h", chartStepMs: MIN_CHART_EVERY_MS, lastCharts: 0, lastSections: 0, lastHistory: 0, lastUptime: 0, uptimeOff: false, checks: [], securityRows: [], history: null, wasOffline: false, connection: "connecting", instance: null, shared: true };

// ---- sign-in ---------------------------------------------------------------

function showSignIn(message) {
  stopLive();
  $("app").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("email").focus();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("sign-in-button");
  button.disabled = true;
  try {
    const started = await session.signIn(config.signIn, $("email").value.trim(), $("password").value);
    $("password").value = "";
    start(started);
  } catch (error) {
    showSignIn(error.message);
  } finally {
    button.disabled = false;
  }
});

$("sign-out").addEventListener("click", () => {
  session.clear();
  showSignIn("");
});

function refused(status) {
  session.clear();
  showSignIn(
    status === 403
      ? "This account is not an administrator: the dashboard is for Admin and SuperAdmin accounts."
      : "Your session has ended: sign in again.",
  );
}

// ---- the live page ---------------------------------------------------------

function start(current) {
  api = new Api(current.token, refused);
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").textContent = `${current.user.name} (${current.user.role})`;
  clearTimeout(signOutTimer);
  signOutTimer = setTimeout(() => refused(401), current.expiresAt - Date.now());
  if (!charts) {
    charts = {
      rate: new TimeChart($("chart-rate"), [{ label: "requests", unit: "/s" }]),
      latency: new TimeChart($("chart-latency"), [
        { label: "p50", unit: "ms" }, { label: "p95", unit: "ms" }, { label: "p99", unit: "ms" },
      ]),
      errors: new TimeChart($("chart-errors"), [{ label: "5xx", unit: "/s" }, { label: "4xx", unit: "/s" }]),
    };
  }
  hub = new Hub(config.hub, current.token, {
    onMessage: received,
    onState: showConnection,
    onRefused: refused,
  });
  hub.start();
  refreshAll();
}

function stopLive() {
  clearTimeout(signOutTimer);
  if (hub) hub.stop();
  hub = null;
  api = null;
}

function showConnection(connection) {
  state.connection = connection;
  const badge = $("connection");
  badge.dataset.state = connection;
  const live = state.shared ? "live" : "live (this instance only)";
  badge.textContent = { live, connecting: "connecting…", offline: "reconnecting…" }[connection];
  badge.title = state.shared ? "" : "the other instances' events are not shown until Redis is back";
  if (connection === "offline") state.wasOffline = true;
  if (connection === "live" && state.wasOffline) {
    state.wasOffline = false;
    refreshAll(); // catch up on what happened while away
  }
}

function banner(message) {
  $("banner").hidden = !message;
  $("banner").textContent = message || "";
}

// Run a refresh; a failure shows in the banner instead of stopping the page.
async function guarded(work) {
  try {
    await work();
    banner("");
  } catch (error) {
    if (error.status === 401 || error.status === 403) return;
    banner(`Could not load figures: ${error.message}`);
  }
}

function refreshAll() {
  state.lastCharts = state.lastSections = state.lastHistory = state.lastUptime = 0;
  refreshDue();
}

function refreshDue() {
  if (!api) return;
  const now = Date.now();
  if (now - state.lastSections >= SECTIONS_EVERY_MS) {
    state.lastSections = now;
    guarded(loadSections);
  }
  if (now - state.lastCharts >= state.chartStepMs) {
    state.lastCharts = now;
    guarded(loadCharts);
  }
  if (now - state.lastUptime >= UPTIME_EVERY_MS && !state.uptimeOff) {
    state.lastUptime = now;
    guarded(loadUptime);
    guarded(loadDeployments);
  }
  if (now - state.lastHistory >= HEALTH_HISTORY_EVERY_MS && state.checks.length) {
    state.lastHistory = now;
    guarded(loadHealthHistory);
  }
}

$("window").addEventListener("change", (event) => {
  state.window = event.target.value;
  refreshAll();
});

// ---- hub messages ------------------------------------------------------------

function received(message) {
  switch (message.type) {
    case "Welcome":
      // This instance; a Backplane message follows at once if the others cannot be heard.
      state.instance = message.instance || null;
      state.shared = true;
      showConnection(state.connection);
      break;
    case "Backplane":
      state.shared = message.connected;
      showConnection(state.connection);
      break;
    case "MetricsSnapshot":
      showSnapshot(message);
      refreshDue();
      break;
    case "HealthUpdate":
      showHealthUpdate(message);
      break;
    case "AlertFired":
    case "AlertResolved":
      guarded(loadAlerts);
      break;
    case "SecurityEvent":
      addSecurityRows([message]);
      break;
    default:
      break; // Heartbeat, Pong, Dropped: nothing to show
  }
}

function showSnapshot(s) {
  $("tile-rps").textContent = fmt.rate(s.requests_per_second);
  $("tile-rps-1m").textContent = fmt.rate(s.requests_per_second_1m);
  $("tile-requests").textContent = fmt.number(s.requests_total);
  $("tile-p95").textContent = fmt.ms(s.p95_ms_1m);
  $("tile-errors").textContent = fmt.percent(s.error_rate_1m);
  $("tile-alerts").textContent = fmt.number(s.active_alerts);
  $("updated").textContent = fmt.time(s.at);
}

function showOverall(status) {
  const badge = $("overall");
  badge.dataset.status = status || "";
  badge.textContent = status ? `health: ${status}` : "health …";
}

function showHealthUpdate(update) {
  // The health table and badge are this instance's: another instance's checks do not overwrite them.
  if (update.instance && state.instance && update.instance !== state.instance) return;
  if (update.subject === "overall") {
    showOverall(update.status);
    return;
  }
  const row = document.querySelector(`tr[data-check="${CSS.escape(update.subject)}"] .status`);
  if (row) {
    row.dataset.status = update.status;
    row.textContent = update.status;
  }
}

// ---- sections ----------------------------------------------------------------

async function loadSections() {
  const body = await api.get("/api/metrics/dashboard", { window: state.window });
  showSystem(body.system);
  showPerformance(body.performance);
  showSecurity(body.security);
  showBusiness(body.business);
  showHealth(body.health);
  showAlerts(body.active_alerts || []);
}

function failed(section) {
  return !section || section.error;
}

function showSystem(system) {
  if (failed(system)) return fmt.figures($("system-figures"), [["System", "unavailable"]]);
  $("tile-uptime").textContent = fmt.duration(system.uptime_seconds);
  const gc = (system.memory.gc || []).map((g) => g.collections).join(" / ");
  fmt.figures($("system-figures"), [
    ["Uptime", fmt.duration(system.uptime_seconds)],
    ["Memory (RSS)", fmt.bytes(system.memory.rss_bytes)],
    ["GC collections (gen 0/1/2)", gc || fmt.NONE],
    ["CPU", system.cpu.percent === null ? fmt.NONE : `${fmt.number(system.cpu.percent, 1)}%`],
    ["Threads", fmt.number(system.threads)],
    ["Open files", fmt.number(system.open_fds)],
    ["Python", `${system.python.implementation} ${system.python.version}`],
  ]);
}

function showPerformance(p) {
  if (failed(p)) return fmt.figures($("performance-figures"), [["Performance", "unavailable"]]);
  const rpm = p.requests_per_minute;
  const rt = p.response_times;
  const db = p.database_queries;
  const gen = p.personality_generation;
  const pool = db.pool ? `${fmt.number(db.pool.in_use)} in use, ${fmt.number(db.pool.idle)} idle, size ${fmt.number(db.pool.size)}` : fmt.NONE;
  fmt.figures($("performance-figures"), [
    ["Requests", `${fmt.number(p.requests)} (${fmt.number(p.errors)} errors, ${fmt.percent(p.error_rate, 2)})`],
    ["Requests / min", `now ${fmt.number(rpm.current)}, avg ${fmt.number(rpm.average, 1)}, peak ${fmt.number(rpm.peak)}`],
    ["Response time", `avg ${fmt.ms(rt.average)}, p50 ${fmt.ms(rt.p50)}, p95 ${fmt.ms(rt.p95)}, p99 ${fmt.ms(rt.p99)}`],
    ["Apdex", p.apdex.score === null ? fmt.NONE : `${fmt.number(p.apdex.score, 2)} (T = ${fmt.ms(p.apdex.threshold_ms)})`],
    ["Personality generation", `${fmt.number(gen.count)} runs, avg ${fmt.ms(gen.average_ms)}, success ${fmt.percent(gen.success_rate)}`],
    ["Database queries", `${fmt.number(db.count)}, avg ${fmt.ms(db.average_ms)}, ${fmt.number(db.slow)} slow`],
    ["Connection pool", pool],
  ]);
}

function showBusiness(b) {
  if (!b) return fmt.figures($("business-figures"), [["Business", "no figures recorded yet"]]);
  if (b.error) return fmt.figures($("business-figures"), [["Business", "unavailable"]]);
  const users = b.active_users;
  const profiles = b.personality_profiles;
  const talks = b.conversations;
  const pairs = [
    ["Active users", `now ${fmt.number(users.current)}, peak ${fmt.number(users.peak)}, total ${fmt.number(users.total)}`],
    ["Profiles", `${fmt.number(profiles.created)} created, ${fmt.number(profiles.updated)} updated, ${fmt.number(profiles.queried)} queried`],
    ["Conversations started", fmt.number(talks.started)],
  ];
  if (talks.completed !== null) pairs.push(["Conversations completed", fmt.number(talks.completed)]);
  if (talks.average_length !== null) pairs.push(["Average length", `${fmt.number(talks.average_length, 1)} messages`]);
  fmt.figures($("business-figures"), pairs);
}

function showSecurity(s) {
  if (failed(s)) return fmt.figures($("security-figures"), [["Security", "unavailable"]]);
  const threats = s.threat_detections;
  const auth = s.authentication_events;
  const keys = s.api_key_usage;
  const kinds = Object.entries(threats).filter(([k, v]) => k !== "total" && v > 0).map(([k, v]) => `${k} ${v}`);
  const rate = s.rate_limit_violations;
  const top = (s.top_offending_ips || []).slice(0, 3).map((t) => `${t.ip} (${t.events})`).join(", ");
  fmt.figures($("security-figures"), [
    ["Threats", `${fmt.number(threats.total)}${kinds.length ? ` (${kinds.join(", ")})` : ""}`],
    ["Rate-limit violations", `${fmt.number(rate.count)}${rate.unique_ips === null ? "" : ` from ${fmt.number(rate.unique_ips)} IPs`}`],
    ["Logins", `${fmt.number(auth.successful_logins)} ok, ${fmt.number(auth.failed_logins)} failed, ${fmt.number(auth.account_lockouts)} lockouts`],
    ["Unauthorized", fmt.number(auth.unauthorized.total)],
    ["API keys", `${fmt.number(keys.active_keys)} active, ${fmt.number(keys.requests_via_api_key)} requests, ${fmt.number(keys.invalid_key_attempts)} invalid`],
    ["Top offenders", top || fmt.NONE],
  ]);
  if (s.recent_events) {
    state.securityRows = [];
    addSecurityRows(s.recent_events);
  }
}

function addSecurityRows(events) {
  const rows = [...events, ...state.securityRows];
  rows.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  state.securityRows = rows.slice(0, MAX_SECURITY_ROWS);
  $("security-empty").hidden = state.securityRows.length > 0;
  $("security-list").replaceChildren(...state.securityRows.map(securityRow));
}

function securityRow(event) {
  const item = fmt.element("li");
  const row = fmt.element("div", null, { class: "row" });
  row.append(
    fmt.element("span", event.severity, { class: "severity", "data-severity": event.severity }),
    fmt.element("span", event.event_type, { class: "title" }),
    fmt.element("span", fmt.time(event.at), { class: "muted" }),
  );
  item.append(row, fmt.element("span", `${event.client_ip || "unknown address"}: ${event.details}`, { class: "muted" }));
  return item;
}

// ---- alerts ------------------------------------------------------------------

async function loadAlerts() {
  const body = await api.get("/api/alerts");
  showAlerts(body.alerts);
}

function showAlerts(alerts) {
  const active = alerts.filter((a) => a.state !== "resolved");
  $("alerts-empty").hidden = active.length > 0;
  $("alert-list").replaceChildren(...active.map(alertRow));
}

function alertRow(alert) {
  const item = fmt.element("li", null, { "data-alert": alert.id });
  const row = fmt.element("div", null, { class: "row" });
  const resolve = fmt.element("button", "Resolve", { type: "button", class: "primary" });
  resolve.addEventListener("click", () => resolveAlert(alert, resolve));
  row.append(
    fmt.element("span", alert.severity, { class: "severity", "data-severity": alert.severity }),
    fmt.element("span", alert.title, { class: "title" }),
    fmt.element("span", alert.state, { class: "muted" }),
    resolve,
  );
  const since = alert.starts_at || alert.pending_since || alert.created_at;
  const value = alert.value === null ? "" : ` · value ${fmt.number(alert.value, 2)}`;
  item.append(row, fmt.element("span", `${alert.description}${value} · since ${fmt.time(since)}`, { class: "muted" }));
  return item;
}

async function resolveAlert(alert, button) {
  button.disabled = true;
  try {
    await api.post(`/api/alerts/${encodeURIComponent(alert.id)}/resolve`);
  } catch (error) {
    if (error.status !== 409) banner(`Could not resolve "${alert.title}": ${error.message}`);
  }
  await guarded(loadAlerts);
}

// ---- health ------------------------------------------------------------------

function showHealth(report) {
  if (failed(report)) return;
  showOverall(report.status);
  const names = report.results.map((r) => r.name);
  const changed = names.join() !== state.checks.join();
  state.checks = names;
  $("health-rows").replaceChildren(
    ...report.results.map((r) => {
      const row = fmt.element("tr", null, { "data-check": r.name });
      const history = fmt.element("td");
      history.append(fmt.element("div", null, { class: "history", "aria-label": `${r.name} history` }));
      row.append(
        fmt.element("td", r.name),
        fmt.element("td", r.status, { class: "status", "data-status": r.status }),
        fmt.element("td", fmt.ms(r.duration)),
        history,
      );
      return row;
    }),
  );
  if (changed) state.lastHistory = 0;
  if (state.history) drawHistory(state.history);
  refreshDue();
}

const STATUS_OF = (v) => (v === null ? "" : v >= 1 ? "Healthy" : v >= 0.5 ? "Degraded" : "Unhealthy");

async function loadHealthHistory() {
  const results = await Promise.all(
    state.checks.map((check) =>
      api.get("/api/metrics/series", { name: HEALTH_METRIC, agg: "min", start: state.window, dims: `check=${check}` }),
    ),
  );
  state.history = Object.fromEntries(state.checks.map((check, i) => [check, results[i].points]));
  drawHistory(state.history);
}

function drawHistory(history) {
  for (const [check, points] of Object.entries(history)) {
    const strip = document.querySelector(`tr[data-check="${CSS.escape(check)}"] .history`);
    if (!strip) continue;
    strip.replaceChildren(
      ...points.map((p) => fmt.element("span", null, { "data-status": STATUS_OF(p.value), title: `${fmt.time(p.t)}: ${STATUS_OF(p.value) || "no probe"}` })),
    );
  }
}

// ---- charts ------------------------------------------------------------------

async function loadCharts() {
  const series = (agg, dims) => api.get("/api/metrics/series", { name: REQUESTS, agg, start: state.window, dims });
  const [rate, p50, p95, p99, e5, e4] = await Promise.all([
    series("rate_per_second"), series("p50"), series("p95"), series("p99"),
    series("rate_per_second", "status_code=5*"), series("rate_per_second", "status_code=4*"),
  ]);
  state.chartStepMs = Math.max(MIN_CHART_EVERY_MS, rate.step * 1000);
  // Each call ends at its own "now": line every series up on the rate's steps.
  const x = rate.points.map((p) => Date.parse(p.t) / 1000);
  // the x axis runs to the call's "now", so that a deployment just made is on it
  const range = [Date.parse(rate.start) / 1000, Date.parse(rate.end) / 1000];
  const column = (body) => {
    const byTime = new Map(body.points.map((p) => [Date.parse(p.t) / 1000, p.value]));
    return x.map((t) => (byTime.has(t) ? byTime.get(t) : null));
  };
  charts.rate.setData(x, [column(rate)], range);
  charts.latency.setData(x, [column(p50), column(p95), column(p99)], range);
  charts.errors.setData(x, [column(e5), column(e4)], range);
}

// ---- uptime, error budget and deployments --------------------------------------

// Without uptime (`uptime.enabled: false`) its routes answer 404: say so, and stop asking.
async function ifUptime(work) {
  try {
    await work();
  } catch (error) {
    if (error.status !== 404) throw error;
    state.uptimeOff = true;
    uptime.showUptimeOff();
  }
}

async function loadUptime() {
  await ifUptime(async () => {
    const [components, incidents, slo] = await Promise.all([
      api.get("/api/uptime", { window: "24h" }),
      api.get("/api/uptime/incidents", { window: uptime.INCIDENTS_WINDOW }),
      api.get("/api/slo"),
    ]);
    uptime.showUptime(components);
    uptime.showIncidents(incidents);
    uptime.showBudget(slo);
  });
}

async function loadDeployments() {
  await ifUptime(async () => {
    const body = await api.get("/api/deployments", { window: state.window });
    const markers = uptime.deploymentMarkers(body);
    for (const chart of Object.values(charts)) chart.setMarkers(markers);
  });
}

// ---- boot ----------------------------------------------------------------------

const saved = session.load();
if (saved) start(saved);
else showSignIn("");
