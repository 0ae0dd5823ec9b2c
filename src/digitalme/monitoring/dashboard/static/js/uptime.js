// The Uptime and Error budget panels (from /api/uptime, /api/uptime/incidents
// and /api/slo) and the deployment markers of the charts (/api/deployments).
// As elsewhere, every figure is the server's; this only formats them.

import * as fmt from "./format.js";

const $ = (id) => document.getElementById(id);

export const UPTIME_WINDOWS = ["24h", "7d", "30d"];
export const INCIDENTS_WINDOW = "30d";
const RECENT_INCIDENTS = 5;

// An uptime percentage, never rounded up: 99.9996 reads 99.999%, not 100.000%.
export function uptimePercent(value) {
  if (value === null || value === undefined) return fmt.NONE;
  if (value >= 100) return "100%";
  return `${(Math.floor(value * 1000) / 1000).toFixed(3)}%`;
}

// A number with only the decimals it has, up to `most`: 216, 43.2, 99.95.
function exact(value, most) {
  if (value === null || value === undefined) return fmt.NONE;
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: most });
}

export function minutes(value) {
  if (value === null || value === undefined) return fmt.NONE;
  return `${exact(value, 1)} min`;
}

export function burnRate(value) {
  if (value === null || value === undefined) return fmt.NONE;
  return `${fmt.number(value, 2)}×`;
}

// A window's length: "5 min", "1 h", "3 d".
export function span(seconds) {
  if (seconds === null || seconds === undefined) return fmt.NONE;
  if (seconds >= 86400 && seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return fmt.duration(seconds);
}

// ---- the Uptime panel ----------------------------------------------------------

// The uptime API's components, overall first, then by name (as the API sorts them).
function ordered(components) {
  return [...components].sort((a, b) =>
    a.component === "overall" ? -1 : b.component === "overall" ? 1 : a.component < b.component ? -1 : 1,
  );
}

function windowCell(figures) {
  const cell = fmt.element("td", uptimePercent(figures ? figures.uptime_percent : null), { class: "uptime" });
  if (figures) {
    const response = figures.response_ms || {};
    cell.title = [
      `down ${fmt.duration(figures.down_seconds)}`,
      `unknown ${fmt.duration(figures.unknown_seconds)}`,
      `maintenance ${fmt.duration(figures.maintenance_seconds)}`,
      `response avg ${fmt.ms(response.avg)}, max ${fmt.ms(response.max)}`,
    ].join(" · ");
  }
  return cell;
}

function componentRow(entry) {
  const row = fmt.element("tr", null, { "data-component": entry.component });
  const name = fmt.element("td", null, { class: "component" });
  name.append(fmt.element("span", entry.component, { class: "name" }));
  if (entry.in_maintenance) name.append(fmt.element("span", "in maintenance", { class: "tag", "data-kind": "maintenance" }));
  const incident = entry.open_incident;
  if (incident) {
    name.append(
      fmt.element("span", `incident (${incident.cause}) since ${fmt.time(incident.started_at)}, ${fmt.duration(incident.duration_seconds)}`, {
        class: "tag",
        "data-kind": "incident",
        title: incidentDetails(incident),
      }),
    );
  }
  const status = fmt.element("td", entry.status, {
    class: "status",
    "data-status": entry.status,
    title: `last heartbeat ${fmt.time(entry.last_heartbeat_at)}`,
  });
  row.append(name, status, ...UPTIME_WINDOWS.map((w) => windowCell((entry.windows || {})[w])));
  return row;
}

function incidentDetails(incident) {
  const parts = [];
  if (incident.failing && incident.failing.length) parts.push(`failing: ${incident.failing.join(", ")}`);
  if (incident.description) parts.push(incident.description);
  return parts.join(" · ");
}

export function showUptime(body) {
  const components = ordered(body.components || []);
  $("uptime-empty").hidden = components.length > 0;
  $("uptime-rows").replaceChildren(...components.map(componentRow));
}

function incidentRow(incident) {
  const item = fmt.element("li", null, { "data-incident": incident.id });
  const row = fmt.element("div", null, { class: "row" });
  row.append(
    fmt.element("span", incident.open ? "ongoing" : "resolved", { class: "severity", "data-severity": incident.open ? "High" : "Info" }),
    fmt.element("span", incident.component, { class: "title" }),
    fmt.element("span", fmt.duration(incident.duration_seconds), { class: "muted", title: "duration" }),
  );
  const when = `${incident.cause} from ${fmt.time(incident.started_at)}${incident.ended_at ? ` to ${fmt.time(incident.ended_at)}` : ""}`;
  const details = incidentDetails(incident);
  item.append(row, fmt.element("span", details ? `${when} · ${details}` : when, { class: "muted" }));
  return item;
}

export function showIncidents(body) {
  const incidents = body.incidents || [];
  const days = Math.round((body.window_seconds || 0) / 86400);
  $("incidents-summary").textContent = incidents.length
    ? `${fmt.number(body.count)} in ${days} days · MTTR ${fmt.duration(body.mttr_seconds)}`
    : `None in the last ${days} days.`;
  $("incident-list").replaceChildren(...incidents.slice(0, RECENT_INCIDENTS).map(incidentRow));
}

// ---- the Error budget panel ----------------------------------------------------

function tierRow(tier) {
  const row = fmt.element("tr", null, { "data-tier": tier.name, "data-burning": String(Boolean(tier.burning)) });
  row.append(
    fmt.element("td", tier.name),
    fmt.element("td", `${exact(tier.factor, 2)}×`),
    fmt.element("td", `${burnRate(tier.long_burn_rate)} over ${span(tier.long_window_seconds)}`),
    fmt.element("td", `${burnRate(tier.short_burn_rate)} over ${span(tier.short_window_seconds)}`),
    fmt.element("td", tier.burning ? "burning" : "ok", { class: "burning" }),
  );
  return row;
}

export function showBudget(slo) {
  const budget = slo.error_budget || {};
  const remaining = budget.remaining_percent;
  fmt.figures($("budget-figures"), [
    ["SLO target", `${exact(slo.target_percent, 3)}% of ${slo.component} over ${exact(slo.window_days, 2)} days`],
    ["SLI", uptimePercent(slo.sli_percent)],
    ["Budget", minutes(budget.total_minutes)],
    ["Consumed", minutes(budget.consumed_minutes)],
    ["Remaining", `${minutes(budget.remaining_minutes)} (${remaining == null ? fmt.NONE : `${exact(remaining, 2)}%`})`],
    ["Current burn rate", burnRate(slo.current_burn_rate)],
  ]);
  const bar = $("budget-bar");
  const fill = Math.max(0, Math.min(100, remaining || 0));
  bar.setAttribute("aria-valuenow", String(fill));
  bar.dataset.level = fill >= 50 ? "ok" : fill >= 20 ? "low" : "out";
  $("budget-remaining").style.width = `${fill}%`;
  const tiers = slo.tiers || [];
  $("budget").dataset.burning = String(tiers.some((t) => t.burning));
  $("tier-rows").replaceChildren(...tiers.map(tierRow));
}

export function showUptimeOff() {
  $("uptime-empty").hidden = false;
  $("uptime-empty").textContent = "Uptime is not recorded by this service (uptime.enabled is off).";
  $("uptime-rows").replaceChildren();
  $("incidents-summary").textContent = "";
  $("incident-list").replaceChildren();
  fmt.figures($("budget-figures"), [["Error budget", "unavailable: uptime is not recorded"]]);
  $("tier-rows").replaceChildren();
}

// ---- deployment markers --------------------------------------------------------

// The deployments API's markers as the charts' markers.
export function deploymentMarkers(body) {
  return (body.deployments || []).map((d) => ({
    t: Date.parse(d.at) / 1000,
    label: d.version,
    title: `${d.version} deployed by ${d.deployed_by} at ${fmt.time(d.at)}${d.description ? `: ${d.description}` : ""}`,
  }));
}
