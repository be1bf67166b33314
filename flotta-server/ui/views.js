// The console's pages. Each view builds its static parts (headings, forms) once and
// refreshes only its data regions on `update()`, so typing and focus survive live
// updates.

import { ApiFailure, create, decideEnrolment, listPath, patch, request } from "./api.js";
import {
  badge, connectivity, enrolmentState, fill, h, labelText, rolloutState, timeAgo,
  workloadTarget,
} from "./dom.js";
import { keyOf } from "./store.js";

/** Most events the device page shows. */
const DEVICE_EVENTS_SHOWN = 20;

function deviceLink(device) {
  const { namespace, name } = device.metadata;
  return h("a", { href: `#/devices/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}` }, name);
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows),
  );
}

function countList(label, counts) {
  const entries = Object.entries(counts);
  return h(
    "div",
    { class: "count-group" },
    h("p", { class: "count-title" }, label),
    entries.length
      ? h("dl", { class: "counts", "aria-label": label },
          entries.map(([name, count]) => h("div", { class: "count" }, h("dt", {}, name), h("dd", {}, String(count)))))
      : h("p", { class: "empty" }, "None."),
  );
}

function tally(items, keyOfItem) {
  const counts = {};
  for (const item of items) {
    const key = keyOfItem(item);
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}

function failureText(error) {
  if (!(error instanceof ApiFailure)) return error.message;
  const causes = error.causes.map((c) => `${c.field}: ${c.message}`);
  return causes.length ? `${error.message} (${causes.join("; ")})` : error.message;
}

function loading(store, kind) {
  return !store.loaded[kind];
}

// ---------------------------------------------------------------- overview

export function overview(store) {
  const devices = h("section", { "aria-labelledby": "ov-devices" });
  const workloads = h("section", { "aria-labelledby": "ov-workloads" });
  const enrolments = h("section", { "aria-labelledby": "ov-enrolments" });
  const element = h("div", {}, h("h1", {}, "Fleet overview"), h("div", { class: "grid" }, devices, workloads, enrolments));

  function update() {
    const allDevices = store.list("EdgeDevice");
    const now = Date.now();
    const recent = [...allDevices]
      .sort((a, b) => Date.parse(b.status?.lastSeen || 0) - Date.parse(a.status?.lastSeen || 0))
      .slice(0, 8);
    fill(
      devices,
      h("h2", { id: "ov-devices" }, `Devices (${allDevices.length})`),
      countList("Devices by connectivity", tally(allDevices, (d) => connectivity(d, now))),
      countList("Devices by reported phase", tally(allDevices, (d) => d.status?.phase || "not reported")),
      table(
        "Most recently seen",
        ["Device", "Status", "Phase", "Last seen"],
        recent.map((d) =>
          h("tr", {}, h("td", {}, deviceLink(d)), h("td", {}, badge(connectivity(d, now))), h("td", {}, d.status?.phase || "—"), h("td", {}, timeAgo(d.status?.lastSeen))),
        ),
        loading(store, "EdgeDevice") ? "Loading devices…" : "No devices yet.",
      ),
      h("p", {}, h("a", { href: "#/devices" }, "All devices")),
    );

    const allWorkloads = store.list("EdgeWorkload");
    fill(
      workloads,
      h("h2", { id: "ov-workloads" }, `Workloads (${allWorkloads.length})`),
      countList("Workloads by rollout state", tally(allWorkloads, rolloutState)),
      table(
        "Workloads",
        ["Workload", "Rollout", "Running"],
        allWorkloads.map((w) => {
          const counts = w.status?.phaseCounts;
          const total = counts ? counts.deploying + counts.running + counts.failed + counts.unknown : 0;
          return h("tr", {}, h("td", {}, w.metadata.name), h("td", {}, badge(rolloutState(w))), h("td", {}, counts ? `${counts.running} of ${total}` : "—"));
        }),
        loading(store, "EdgeWorkload") ? "Loading workloads…" : "No workloads yet.",
      ),
      h("p", {}, h("a", { href: "#/workloads" }, "All workloads")),
    );

    const requests = store.list("EdgeDeviceSignedRequest");
    const pending = requests.filter((r) => enrolmentState(r) === "pending");
    fill(
      enrolments,
      h("h2", { id: "ov-enrolments" }, `Pending enrolments (${pending.length})`),
      countList("Enrolment requests by state", tally(requests, enrolmentState)),
      table(
        "Waiting for approval",
        ["Device", "Requested"],
        pending.map((r) => h("tr", {}, h("td", {}, r.metadata.name), h("td", {}, timeAgo(r.metadata.creationTimestamp)))),
        loading(store, "EdgeDeviceSignedRequest") ? "Loading requests…" : "No device is waiting for approval.",
      ),
      h("p", {}, h("a", { href: "#/enrolments" }, "Review enrolments")),
    );
  }
  return { title: "Fleet overview", element, update };
}

// ---------------------------------------------------------------- devices

function deviceRow(device, now) {
  const workloads = device.status?.workloads || [];
  return h(
    "tr",
    {},
    h("td", {}, deviceLink(device)),
    h("td", {}, device.metadata.namespace),
    h("td", {}, badge(connectivity(device, now))),
    h("td", {}, device.status?.phase || "—"),
    h("td", {}, timeAgo(device.status?.lastSeen)),
    h("td", {}, labelText(device.metadata.labels) || h("span", { class: "muted" }, "none")),
    h("td", {}, String(workloads.length)),
  );
}

export function devices(store) {
  const labelInput = h("input", { id: "label-selector", name: "labelSelector", type: "text", placeholder: "site=north,tier in (edge,core)", autocomplete: "off", spellcheck: "false" });
  const fieldInput = h("input", { id: "field-selector", name: "fieldSelector", type: "text", placeholder: "status.phase=up", autocomplete: "off", spellcheck: "false" });
  const error = h("p", { id: "filter-error", class: "error", role: "alert" });
  const summary = h("p", { id: "device-count", "aria-live": "polite" });
  const results = h("div", { id: "device-results" });
  let filter = { labelSelector: "", fieldSelector: "" };
  let filtered = null;
  // A selector the server refused: the list stays empty until the filter changes.
  let refused = false;
  let generation = 0;
  let timer = null;

  async function query() {
    const mine = ++generation;
    refused = false;
    if (!filter.labelSelector && !filter.fieldSelector) {
      filtered = null;
      error.textContent = "";
      render();
      return;
    }
    try {
      const list = await request("GET", listPath("EdgeDevice", filter));
      if (mine !== generation) return;
      filtered = list.items || [];
      error.textContent = "";
    } catch (failure) {
      if (mine !== generation) return;
      filtered = null;
      refused = true;
      error.textContent = `The server refused the filter: ${failureText(failure)}`;
      summary.textContent = "";
      fill(results, h("p", { class: "empty" }, "Correct the filter to list devices."));
      return;
    }
    render();
  }

  const form = h(
    "form",
    {
      role: "search",
      class: "filters",
      "aria-label": "Filter devices",
      onsubmit: (event) => {
        event.preventDefault();
        filter = { labelSelector: labelInput.value.trim(), fieldSelector: fieldInput.value.trim() };
        query();
      },
    },
    h("div", { class: "field" }, h("label", { for: "label-selector" }, "Label selector"), labelInput),
    h("div", { class: "field" }, h("label", { for: "field-selector" }, "Field selector"), fieldInput),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Apply filter"),
      h("button", {
        type: "button",
        class: "secondary",
        onclick: () => {
          labelInput.value = "";
          fieldInput.value = "";
          filter = { labelSelector: "", fieldSelector: "" };
          query();
          labelInput.focus();
        },
      }, "Clear"),
    ),
  );

  function render() {
    const now = Date.now();
    const shown = filtered ?? store.list("EdgeDevice");
    const active = filtered !== null;
    summary.textContent = loading(store, "EdgeDevice")
      ? "Loading devices…"
      : `${shown.length} ${shown.length === 1 ? "device" : "devices"}${active ? ` ${shown.length === 1 ? "matches" : "match"} the filter` : ""}`;
    fill(
      results,
      table(
        active ? "Devices matching the filter" : "All devices",
        ["Device", "Namespace", "Status", "Phase", "Last seen", "Labels", "Workloads"],
        shown.map((d) => deviceRow(d, now)),
        active ? "No device matches the filter." : "No devices yet.",
      ),
    );
  }

  function update(reason) {
    if (refused) return;
    if (filtered === null || reason !== "data") {
      render();
      return;
    }
    // The server applies the selectors; ask again shortly after changes settle.
    clearTimeout(timer);
    timer = setTimeout(query, 300);
  }

  const element = h(
    "div",
    {},
    h("h1", {}, "Devices"),
    h("p", { class: "hint" }, "Selectors use the Kubernetes grammar, for example ", h("code", {}, "site=north,!retired"), " or ", h("code", {}, "status.phase=up"), ". The server evaluates them."),
    form,
    error,
    summary,
    results,
  );
  return { title: "Devices", element, update };
}

// ---------------------------------------------------------------- device detail

function definitions(label, pairs) {
  const present = pairs.filter(([, value]) => value !== undefined && value !== null && value !== "");
  if (!present.length) return h("p", { class: "empty" }, `No ${label.toLowerCase()} reported.`);
  return h("dl", { class: "details", "aria-label": label }, present.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

function hardwareSection(hardware) {
  if (!hardware) return h("p", { class: "empty" }, "The device has not reported its hardware.");
  const memory = hardware.memory?.physicalBytes;
  const interfaces = (hardware.interfaces || []).map((i) => [i.name, ...(i.ipv4Addresses || [])].filter(Boolean).join(" ")).join("; ");
  const disks = (hardware.disks || []).map((d) => `${d.name || d.path || "disk"}${d.sizeBytes ? ` (${Math.round(d.sizeBytes / 1e9)} GB)` : ""}`).join(", ");
  return definitions("Hardware", [
    ["Host name", hardware.hostname],
    ["CPU", [hardware.cpu?.modelName, hardware.cpu?.count ? `${hardware.cpu.count} cores` : "", hardware.cpu?.architecture].filter(Boolean).join(", ")],
    ["Memory", memory ? `${(memory / 2 ** 30).toFixed(1)} GiB` : undefined],
    ["Vendor", [hardware.systemVendor?.manufacturer, hardware.systemVendor?.productName].filter(Boolean).join(" ")],
    ["Interfaces", interfaces],
    ["Disks", disks],
  ]);
}

export function deviceDetail(store, namespace, name) {
  const body = h("div", {});
  const heading = h("h1", {}, `Device ${name}`);
  const element = h("div", {}, h("p", {}, h("a", { href: "#/devices" }, "← All devices")), heading, body);

  function update() {
    const device = store.get("EdgeDevice", namespace, name);
    if (!device) {
      fill(body, h("p", { class: "empty" }, loading(store, "EdgeDevice") ? "Loading…" : `There is no device ${name} in namespace ${namespace}.`));
      return;
    }
    const status = device.status || {};
    const labels = Object.entries(device.metadata.labels || {});
    const conditions = status.conditions || [];
    const changes = store.changes.get(keyOf(device)) || [];
    const events = store.eventsAbout("EdgeDevice", namespace, name).slice(0, DEVICE_EVENTS_SHOWN);
    fill(
      body,
      h("section", { "aria-labelledby": "dd-summary" },
        h("h2", { id: "dd-summary" }, "Summary"),
        definitions("Summary", [
          ["Namespace", namespace],
          ["Status", badge(connectivity(device))],
          ["Phase", status.phase],
          ["Last seen", timeAgo(status.lastSeen)],
          ["Registered", timeAgo(device.metadata.creationTimestamp)],
          ["Configuration acknowledged", status.lastSyncedResourceVersion],
          ["OS commit", status.upgradeInformation?.currentCommitId],
          ["Last upgrade", status.upgradeInformation?.lastUpgradeStatus],
        ]),
      ),
      h("section", { "aria-labelledby": "dd-labels" },
        h("h2", { id: "dd-labels" }, "Labels"),
        labels.length
          ? h("ul", { class: "labels" }, labels.map(([k, v]) => h("li", {}, h("code", {}, `${k}=${v}`))))
          : h("p", { class: "empty" }, "No labels."),
      ),
      h("section", { "aria-labelledby": "dd-hardware" }, h("h2", { id: "dd-hardware" }, "Hardware"), hardwareSection(status.hardware)),
      h("section", { "aria-labelledby": "dd-workloads" },
        h("h2", { id: "dd-workloads" }, "Workloads"),
        table(
          "Workloads reported by the device",
          ["Workload", "Phase", "Revision", "Since"],
          (status.workloads || []).map((w) => h("tr", {}, h("td", {}, w.name), h("td", {}, badge(w.phase || "unknown")), h("td", {}, h("code", { title: w.revision || "" }, (w.revision || "unknown").slice(0, 12))), h("td", {}, timeAgo(w.lastTransitionTime)))),
          "The device reports no workloads.",
        ),
      ),
      h("section", { "aria-labelledby": "dd-conditions" },
        h("h2", { id: "dd-conditions" }, "Conditions"),
        table(
          "Device conditions",
          ["Type", "Status", "Reason", "Message", "Since"],
          conditions.map((c) => h("tr", {}, h("td", {}, c.type), h("td", {}, c.status), h("td", {}, c.reason || ""), h("td", {}, c.message || ""), h("td", {}, timeAgo(c.lastTransitionTime)))),
          "The server records no conditions for this device; its status above (phase, last seen, workload phases) is what the device reports.",
        ),
      ),
      h("section", { "aria-labelledby": "dd-recorded-events" },
        h("h2", { id: "dd-recorded-events" }, "Events"),
        h("p", { class: "hint" }, "What the device reported (failed applies, rollbacks, OS upgrades) and what the server did (registration, renewals), most recent first, live."),
        table(
          "Events about this device",
          ["Last seen", "Type", "Reason", "Count", "From", "Message"],
          events.map((e) => h("tr", {},
            h("td", {}, timeAgo(e.lastTimestamp || e.metadata.creationTimestamp)),
            h("td", {}, badge(e.type || "Normal")),
            h("td", {}, e.reason || ""),
            h("td", {}, String(e.count || 1)),
            h("td", {}, e.source?.component || ""),
            h("td", {}, e.message || ""),
          )),
          "No events about this device are kept (the server keeps them for a limited time).",
        ),
      ),
      h("section", { "aria-labelledby": "dd-events" },
        h("h2", { id: "dd-events" }, "Recent changes"),
        h("p", { class: "hint" }, "Changes to this device received from the watch stream since the console was opened (the API keeps no event history)."),
        changes.length
          ? h("ol", { class: "events", id: "device-events" }, changes.map((c) => h("li", {}, h("time", { datetime: c.at.toISOString() }, c.at.toLocaleTimeString()), ` ${c.text}`)))
          : h("p", { class: "empty", id: "device-events" }, "No changes seen yet."),
      ),
    );
  }
  return { title: `Device ${name}`, element, update };
}

// ---------------------------------------------------------------- enrolments

export function enrolments(store) {
  const feedback = h("p", { id: "enrolment-feedback", role: "status", "aria-live": "polite" });
  const pendingRegion = h("div", { id: "pending-requests" });
  const decidedRegion = h("div", { id: "decided-requests" });
  const busy = new Set();

  async function decide(requestObject, approve) {
    const { namespace, name } = requestObject.metadata;
    busy.add(name);
    update();
    try {
      await decideEnrolment(namespace, name, approve, `${approve ? "approved" : "denied"} in the console`);
      feedback.textContent = approve
        ? `Approved ${name}; it registers at its next attempt.`
        : `Declined ${name}.`;
    } catch (failure) {
      feedback.textContent = `Could not ${approve ? "approve" : "decline"} ${name}: ${failureText(failure)}`;
    } finally {
      busy.delete(name);
      update();
    }
  }

  function hardwareSummary(r) {
    const hw = r.spec?.features?.hardware;
    return [r.spec?.features?.modelName, hw?.hostname, hw?.cpu?.architecture].filter(Boolean).join(", ") || "—";
  }

  function update() {
    const requests = store.list("EdgeDeviceSignedRequest");
    const pending = requests.filter((r) => enrolmentState(r) === "pending");
    const decided = requests.filter((r) => enrolmentState(r) !== "pending");
    fill(
      pendingRegion,
      table(
        "Requests waiting for a decision",
        ["Device", "Target namespace", "Requested", "Reported", "Decision"],
        pending.map((r) => {
          const name = r.metadata.name;
          const disabled = busy.has(name);
          return h(
            "tr",
            { "data-request": name },
            h("td", {}, name),
            h("td", {}, r.spec?.targetNamespace || "default"),
            h("td", {}, timeAgo(r.metadata.creationTimestamp)),
            h("td", {}, hardwareSummary(r)),
            h("td", { class: "row-actions" },
              h("button", { type: "button", disabled, "aria-label": `Approve ${name}`, onclick: () => decide(r, true) }, "Approve"),
              h("button", { type: "button", class: "danger", disabled, "aria-label": `Decline ${name}`, onclick: () => decide(r, false) }, "Decline"),
            ),
          );
        }),
        loading(store, "EdgeDeviceSignedRequest") ? "Loading requests…" : "No device is waiting for approval.",
      ),
    );
    fill(
      decidedRegion,
      table(
        "Decided requests",
        ["Device", "Target namespace", "Decision", "Device status"],
        decided.map((r) => {
          const device = store.get("EdgeDevice", r.spec?.targetNamespace || "default", r.metadata.name);
          return h(
            "tr",
            { "data-request": r.metadata.name },
            h("td", {}, device ? deviceLink(device) : r.metadata.name),
            h("td", {}, r.spec?.targetNamespace || "default"),
            h("td", {}, badge(enrolmentState(r))),
            h("td", {}, device ? badge(connectivity(device)) : h("span", { class: "muted" }, "not registered")),
          );
        }),
        "No decided requests.",
      ),
    );
  }

  const element = h(
    "div",
    {},
    h("h1", {}, "Enrolments"),
    h("p", { class: "hint" }, "Devices enrol with the fleet's registration certificate and wait here until approved. Approving lets the device register and receive its own certificate; declining keeps it out."),
    feedback,
    h("section", { "aria-labelledby": "en-pending" }, h("h2", { id: "en-pending" }, "Pending"), pendingRegion),
    h("section", { "aria-labelledby": "en-decided" }, h("h2", { id: "en-decided" }, "Decided"), decidedRegion),
  );
  return { title: "Enrolments", element, update };
}

// ---------------------------------------------------------------- workloads

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [key, ...rest] = part.split("=");
    labels[key.trim()] = rest.join("=").trim();
  }
  return labels;
}

function batchList(object, kind = "EdgeWorkload", state = rolloutState) {
  // status.rollout is what the server enforces: released batches, who was given the
  // current revision and who runs it.
  const rollout = object.status?.rollout;
  const batches = rollout?.batches || [];
  if (!batches.length) return h("span", { class: "muted" }, object.status ? "no targets" : "no status yet");
  const current = rollout.currentBatch;
  const items = batches.map((b, index) => {
    const released = b.released ? "" : " (not released)";
    const label = `Batch ${index + 1}: ${b.succeeded} of ${b.targeted} running${b.failed ? `, ${b.failed} failed` : ""} (needs ${b.required})${released}`;
    return h(
      "li",
      { class: index === current && state(object) === "progressing" ? "current" : "" },
      h("span", { class: "batch-label" }, label),
      h("progress", { max: String(Math.max(b.targeted, 1)), value: String(b.succeeded), "aria-label": label }),
    );
  });
  const why = rollout.paused ? h("p", { class: "paused" }, `Paused: ${rollout.reason}${rollout.message ? ` — ${rollout.message}` : ""}`) : null;
  return h("div", {}, h("ol", { class: "batches" }, items), why, rolloutControl(object, kind));
}

/** A device set's rollout state, from its `status.rollout` alone (sets have no
 * Progressing condition). */
function setRolloutState(set) {
  const rollout = set.status?.rollout;
  if (!rollout) return "no status yet";
  if (rollout.complete) return "complete";
  return rollout.paused ? "paused" : "progressing";
}

const PAUSED_ANNOTATION = "rollout.flotta.io/paused";

/** Pause or resume a rollout in progress: the annotation the server's rollout step
 * reads (the same `flotta rollout pause|resume` writes). */
function rolloutControl(object, kind) {
  const rollout = object.status?.rollout;
  if (!rollout || rollout.complete) return null;
  const paused = object.metadata.annotations?.[PAUSED_ANNOTATION] === "true";
  const name = object.metadata.name;
  return h(
    "button",
    {
      type: "button",
      class: "rollout-control",
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await patch(kind, object.metadata.namespace, name, {
            metadata: { annotations: { [PAUSED_ANNOTATION]: paused ? null : "true" } },
          });
        } catch (error) {
          event.target.textContent = `Failed: ${error.message}`;
        }
      },
    },
    paused ? `Resume rollout of ${name}` : `Pause rollout of ${name}`,
  );
}

export function workloads(store) {
  const feedback = h("p", { id: "workload-feedback", role: "status", "aria-live": "polite" });
  const list = h("div", { id: "workload-list" });
  const field = (id, label, attributes, hint) =>
    h("div", { class: "field" },
      h("label", { for: id }, label),
      h("input", { id, name: id, type: "text", autocomplete: "off", spellcheck: "false", ...attributes }),
      hint ? h("small", { id: `${id}-hint` }, hint) : null);

  const form = h(
    "form",
    {
      class: "create",
      "aria-labelledby": "wl-create",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const name = String(data.get("wl-name")).trim();
        const namespace = String(data.get("wl-namespace")).trim() || "default";
        const batches = String(data.get("wl-batches")).split(",").map((s) => s.trim()).filter(Boolean)
          .map((limit) => ({ limit: /^\d+$/.test(limit) ? Number(limit) : limit }));
        const threshold = String(data.get("wl-threshold")).trim();
        const spec = {
          type: "pod",
          deviceSelector: { matchLabels: parseLabels(String(data.get("wl-selector"))) },
          pod: { spec: { containers: [{ name: name || "main", image: String(data.get("wl-image")).trim() }] } },
        };
        if (batches.length || threshold) {
          spec.rolloutPolicy = {};
          if (batches.length) spec.rolloutPolicy.batches = batches;
          if (threshold) spec.rolloutPolicy.successThreshold = threshold;
        }
        feedback.textContent = `Creating ${name}…`;
        try {
          await create("EdgeWorkload", namespace, { metadata: { name, namespace }, spec });
          feedback.textContent = `Created workload ${name}; its rollout shows below as devices report.`;
          form.reset();
        } catch (failure) {
          feedback.textContent = `Could not create ${name}: ${failureText(failure)}`;
        }
      },
    },
    h("h2", { id: "wl-create" }, "New workload"),
    h("div", { class: "form-grid" },
      field("wl-name", "Name", { required: true, pattern: "[a-z0-9]([a-z0-9.-]*[a-z0-9])?" }),
      field("wl-namespace", "Namespace", { value: "default" }),
      field("wl-image", "Container image", { required: true, placeholder: "quay.io/example/app:1.0" }),
      field("wl-selector", "Device labels", { placeholder: "app=web, site=north", "aria-describedby": "wl-selector-hint" }, "Devices carrying all these labels run the workload."),
      field("wl-batches", "Rollout batches", { placeholder: "1, 50%", "aria-describedby": "wl-batches-hint" }, "Batch sizes in order (count or percentage); the rest follow last. Empty: all at once."),
      field("wl-threshold", "Success threshold", { placeholder: "100%", "aria-describedby": "wl-threshold-hint" }, "Share of a batch that must run before the next starts."),
    ),
    h("button", { type: "submit" }, "Create workload"),
  );

  function update() {
    const items = store.list("EdgeWorkload");
    fill(
      list,
      table(
        "Workloads and their rollout",
        ["Workload", "Namespace", "Targets", "Rollout", "Devices", "Revisions", "Batches"],
        items.map((w) => {
          const c = w.status?.phaseCounts;
          const r = w.status?.devices;
          const reasons = Object.entries(r?.failureReasons || {}).map(([reason, n]) => `${reason}: ${n}`).join(", ");
          return h(
            "tr",
            { "data-workload": w.metadata.name },
            h("td", {}, w.metadata.name),
            h("td", {}, w.metadata.namespace),
            h("td", {}, workloadTarget(w)),
            h("td", {}, badge(rolloutState(w))),
            h("td", { class: "phase-counts" }, c ? `${c.running} running, ${c.deploying} deploying, ${c.failed} failed, ${c.unknown} unknown` : "—"),
            h("td", { class: "revision-counts", title: w.status?.revision || "" },
              r ? `${r.current} of ${r.targeted} on the current revision, ${r.older} older${r.failed ? `, ${r.failed} failed (${reasons})` : ""}` : "—"),
            h("td", {}, batchList(w)),
          );
        }),
        loading(store, "EdgeWorkload") ? "Loading workloads…" : "No workloads yet.",
      ),
    );
  }

  const element = h(
    "div",
    {},
    h("h1", {}, "Workloads"),
    feedback,
    h("section", { "aria-label": "Workload list" }, list),
    h("section", {}, form),
  );
  return { title: "Workloads", element, update };
}


// ---------------------------------------------------------------- device sets

export function deviceSets(store) {
  const list = h("div", { id: "set-list" });

  function update() {
    const items = store.list("EdgeDeviceSet");
    fill(
      list,
      table(
        "Device sets and their rollout",
        ["Set", "Namespace", "Members", "Updated", "Rollout", "Revision", "Batches"],
        items.map((s) => {
          const revision = s.status?.rollout?.currentRevision;
          return h(
            "tr",
            { "data-set": s.metadata.name },
            h("td", {}, s.metadata.name),
            h("td", {}, s.metadata.namespace),
            h("td", {}, String(s.status?.deviceCount ?? "—")),
            h("td", {}, String(s.status?.updatedDevices ?? "—")),
            h("td", {}, badge(setRolloutState(s))),
            h("td", { title: revision || "" }, revision ? revision.slice(0, 12) : "—"),
            h("td", {}, batchList(s, "EdgeDeviceSet", setRolloutState)),
          );
        }),
        loading(store, "EdgeDeviceSet") ? "Loading device sets…" : "No device sets yet.",
      ),
    );
  }

  const element = h(
    "div",
    {},
    h("h1", {}, "Device sets"),
    h("p", { class: "hint" }, "A set's sections and template reach its members in the batches of its rolloutPolicy; a member runs a revision once it reports the configuration holding it."),
    h("section", { "aria-label": "Device set list" }, list),
  );
  return { title: "Device sets", element, update };
}
