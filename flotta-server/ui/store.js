// What the console knows about the fleet: every device, workload, device set, signed request
// and event, kept current by watch streams, plus the changes seen per device.

import { follow, listPath, request } from "./api.js";

const KINDS = ["EdgeDevice", "EdgeWorkload", "EdgeDeviceSet", "EdgeDeviceSignedRequest", "Event"];
const CHANGES_KEPT = 20;
// Heartbeats move status.lastSeen without a change event; list devices again this
// often so "last seen" stays true.
const DEVICE_RELIST_MS = 15000;

export function keyOf(object) {
  return `${object.metadata.namespace}/${object.metadata.name}`;
}

/** Short summary of what changed between two versions of a device. */
function deviceChange(before, after) {
  if (!before) return "added";
  const parts = [];
  const phaseBefore = before.status?.phase;
  const phaseAfter = after.status?.phase;
  if (phaseBefore !== phaseAfter) parts.push(`phase ${phaseBefore ?? "none"} → ${phaseAfter ?? "none"}`);
  const phases = (device) =>
    new Map((device.status?.workloads || []).map((w) => [w.name, w.phase ?? "unknown"]));
  const old = phases(before);
  const now = phases(after);
  for (const [name, phase] of now) {
    if (old.get(name) !== phase) parts.push(`workload ${name}: ${old.get(name) ?? "none"} → ${phase}`);
  }
  for (const name of old.keys()) {
    if (!now.has(name)) parts.push(`workload ${name} removed`);
  }
  if (JSON.stringify(before.metadata.labels || {}) !== JSON.stringify(after.metadata.labels || {})) {
    parts.push("labels changed");
  }
  if (JSON.stringify(before.status?.hardware) !== JSON.stringify(after.status?.hardware)) {
    parts.push("hardware reported");
  }
  return parts.length ? parts.join("; ") : "updated";
}

export class FleetStore {
  constructor() {
    this.objects = Object.fromEntries(KINDS.map((kind) => [kind, new Map()]));
    this.loaded = Object.fromEntries(KINDS.map((kind) => [kind, false]));
    this.changes = new Map();
    this.connections = Object.fromEntries(KINDS.map((kind) => [kind, { state: "connecting" }]));
    this.listeners = new Set();
    this.stops = [];
    this.scheduled = false;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Many events arrive in bursts; listeners run once per animation frame.
  notify() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }

  list(kind) {
    return [...this.objects[kind].values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  }

  get(kind, namespace, name) {
    return this.objects[kind].get(`${namespace}/${name}`);
  }

  /** The events about one object, most recent first. */
  eventsAbout(kind, namespace, name) {
    const time = (e) => e.lastTimestamp || e.metadata.creationTimestamp || "";
    return [...this.objects.Event.values()]
      .filter((e) => {
        const about = e.involvedObject || {};
        return about.kind === kind && about.name === name && about.namespace === namespace;
      })
      .sort((a, b) => time(b).localeCompare(time(a)));
  }

  recordChange(kind, type, before, after) {
    if (kind !== "EdgeDevice") return;
    const key = keyOf(after);
    const text = type === "DELETED" ? "deleted" : deviceChange(before, after);
    const log = this.changes.get(key) || [];
    log.unshift({ at: new Date(), type, text });
    log.length = Math.min(log.length, CHANGES_KEPT);
    this.changes.set(key, log);
  }

  start(onSignedOut) {
    for (const kind of KINDS) {
      const stop = follow(kind, {
        reset: (items) => {
          const map = this.objects[kind];
          const fresh = new Map(items.map((item) => [keyOf(item), item]));
          if (this.loaded[kind]) {
            for (const [key, item] of fresh) {
              const before = map.get(key);
              if (before && before.metadata.resourceVersion !== item.metadata.resourceVersion) {
                this.recordChange(kind, "MODIFIED", before, item);
              }
            }
          }
          this.objects[kind] = fresh;
          this.loaded[kind] = true;
          this.notify();
        },
        event: (type, object) => {
          const map = this.objects[kind];
          const key = keyOf(object);
          const before = map.get(key);
          if (type === "DELETED") map.delete(key);
          else map.set(key, object);
          this.recordChange(kind, type, before, object);
          this.notify();
        },
        connection: (state, detail) => {
          this.connections[kind] = { state, detail };
          if (state === "signed-out") onSignedOut(detail);
          this.notify();
        },
      });
      this.stops.push(stop);
    }
    const timer = setInterval(() => this.relistDevices(), DEVICE_RELIST_MS);
    this.stops.push(() => clearInterval(timer));
  }

  async relistDevices() {
    try {
      const list = await request("GET", listPath("EdgeDevice"));
      const map = this.objects.EdgeDevice;
      for (const item of list.items || []) {
        const before = map.get(keyOf(item));
        // Only lastSeen moves without an event; a newer version comes by the watch.
        if (before && before.metadata.resourceVersion === item.metadata.resourceVersion) {
          map.set(keyOf(item), item);
        }
      }
      this.notify();
    } catch {
      // The watch reports connection trouble; nothing to add here.
    }
  }

  stop() {
    for (const stop of this.stops) stop();
    this.stops = [];
  }
}
