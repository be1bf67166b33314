// Small DOM and formatting helpers shared by the views.

/** Creates an element: h("a", { href: "#/" }, "text", child, ...). */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** "12 s ago", "3 min ago", "2 h ago", "4 d ago", or "never". */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A <time> element showing `ago`, with the exact time as its title. */
export function timeAgo(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso));
}

const DEFAULT_HEARTBEAT_SECONDS = 60;
// As the server: a device silent for three heartbeat periods is unknown.
const SILENT_PERIODS = 3;

/**
 * "online", "offline" or "never seen": the server's Online condition (aged by the
 * server's sweep), else computed from status.lastSeen and the period.
 */
export function connectivity(device, now = Date.now()) {
  const online = (device.status?.conditions || []).find((c) => c.type === "Online");
  if (online) return online.status === "True" ? "online" : online.status === "False" ? "offline" : "never seen";
  const lastSeen = device.status?.lastSeen;
  if (!lastSeen) return "never seen";
  const period = device.spec?.heartbeat?.periodSeconds || DEFAULT_HEARTBEAT_SECONDS;
  return now - Date.parse(lastSeen) <= SILENT_PERIODS * period * 1000 ? "online" : "offline";
}

/** "pending", "approved" or "declined". */
export function enrolmentState(request) {
  const declined = (request.status?.conditions || []).some(
    (c) => c.type === "declined" && c.status === "True",
  );
  if (request.spec?.approved === true) return "approved";
  return declined ? "declined" : "pending";
}

function condition(workload, type) {
  return (workload.status?.conditions || []).find((c) => c.type === type);
}

/** Rollout state of a workload: from its Progressing condition. */
export function rolloutState(workload) {
  const progressing = condition(workload, "Progressing");
  if (!workload.status || !progressing) return "no status yet";
  if (progressing.reason === "RolloutPaused") return "paused";
  if (progressing.status === "True") return "progressing";
  return condition(workload, "Available")?.status === "True" ? "complete" : "idle";
}

/** "app=web, tier=edge" for a label map. */
export function labelText(labels) {
  const entries = Object.entries(labels || {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "";
}

/** A badge for a state word; the class picks its colour. */
export function badge(text) {
  const tone = {
    online: "good", up: "good", approved: "good", complete: "good", running: "good", Running: "good",
    offline: "bad", declined: "bad", failed: "bad", Failed: "bad", paused: "bad", degraded: "warn",
    pending: "warn", progressing: "warn", Deploying: "warn", deploying: "warn",
  }[text] || "neutral";
  return h("span", { class: `badge badge-${tone}` }, text);
}

/** Text of the workload's target: its device or its selector. */
export function workloadTarget(workload) {
  if (workload.spec?.device) return `device ${workload.spec.device}`;
  const selector = workload.spec?.deviceSelector;
  if (!selector) return "no devices";
  const parts = Object.entries(selector.matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions || []) {
    parts.push(`${e.key} ${e.operator}${e.values ? ` (${e.values.join(", ")})` : ""}`);
  }
  return parts.length ? parts.join(", ") : "every device";
}
