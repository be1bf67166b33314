// End-to-end tests of the web console: a real flotta-server, real flotta-agent
// processes (in-memory runtime) as devices, and Debian's Chromium driven by
// playwright-core. The tests run in order and share one signed-in page.
//
// Environment: FLOTTA_BIN_DIR (default $CARGO_TARGET_DIR/debug or ../../../target/debug),
// CHROMIUM (default /usr/bin/chromium), UI_SCREENSHOTS (default <bin dir>/../ui-screenshots).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import https from "node:https";
import { chromium } from "playwright-core";
import { until } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
const binDir = process.env.FLOTTA_BIN_DIR || join(process.env.CARGO_TARGET_DIR || join(repo, "target"), "debug");
const screenshots = process.env.UI_SCREENSHOTS || join(binDir, "..", "ui-screenshots");
const GROUP = "/apis/management.project-flotta.io/v1alpha1";

const work = mkdtempSync(join(tmpdir(), "flotta-console-"));
const children = [];
let server;
let browser;
let page;

// ---------------------------------------------------------------- helpers


function start(name, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  const keep = (chunk) => {
    log.push(chunk.toString());
    if (log.length > 200) log.shift();
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.log = log;
  child.label = name;
  children.push(child);
  return child;
}

function api(method, path, body, contentType = "application/json") {
  return new Promise((resolvePromise, reject) => {
    const url = new URL(path, server.url);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = https.request(
      url,
      {
        method,
        ca: server.ca,
        headers: {
          Authorization: `Bearer ${server.token}`,
          ...(payload ? { "Content-Type": contentType } : {}),
        },
      },
      (response) => {
        let text = "";
        response.on("data", (chunk) => (text += chunk));
        response.on("end", () => {
          const value = text ? JSON.parse(text) : null;
          if (response.statusCode >= 400) reject(new Error(`${method} ${path}: ${response.statusCode} ${text}`));
          else resolvePromise(value);
        });
      },
    );
    request.on("error", reject);
    if (payload) request.write(payload);
    request.end();
  });
}

async function getOrNull(path) {
  try {
    return await api("GET", path);
  } catch (error) {
    if (String(error.message).includes(" 404 ")) return null;
    throw error;
  }
}

function startAgent(device) {
  const dir = join(work, "agents", device);
  mkdirSync(dir, { recursive: true });
  const pki = join(work, "server", "pki");
  const config = join(dir, "agent.toml");
  writeFileSync(
    config,
    [
      `server = ${JSON.stringify(server.edge)}`,
      `ca = ${JSON.stringify(join(pki, "ca.crt"))}`,
      `registration_certificate = ${JSON.stringify(join(pki, "register.crt"))}`,
      `registration_key = ${JSON.stringify(join(pki, "register.key"))}`,
      `state_dir = ${JSON.stringify(join(dir, "state"))}`,
      `device_id = ${JSON.stringify(device)}`,
      `namespace = "default"`,
      `runtime = "memory"`,
      `heartbeat_period_seconds = 5`,
      "",
    ].join("\n"),
  );
  return start(`agent ${device}`, join(binDir, "flotta-agent"), ["--config", config], { RUST_LOG: "warn" });
}

const requestPath = (name) => `${GROUP}/namespaces/default/edgedevicesignedrequests/${name}`;
const devicePath = (name) => `${GROUP}/namespaces/default/edgedevices/${name}`;

async function approveByApi(name) {
  await until(`enrolment request of ${name}`, () => getOrNull(requestPath(name)));
  await api("PATCH", requestPath(name), { spec: { approved: true } }, "application/merge-patch+json");
  await until(`device ${name} registered`, () => getOrNull(devicePath(name)));
}

async function textOf(selector) {
  return (await page.locator(selector).first().textContent({ timeout: 2000 })) ?? "";
}

async function shot(name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

// ---------------------------------------------------------------- setup

before(async () => {
  mkdirSync(screenshots, { recursive: true });
  const dataDir = join(work, "server");
  const process_ = start("flotta-server", join(binDir, "flotta-server"), [
    "--data-dir", dataDir,
    "--api-listen", "127.0.0.1:0",
    "--edge-listen", "127.0.0.1:0",
    "--auto-approve", "false",
  ], { FLOTTA_LOG: "warn" });
  const adminPath = join(dataDir, "admin.yaml");
  const admin = await until("admin.yaml", () => existsSync(adminPath) && readFileSync(adminPath, "utf8"));
  const field = (key) => admin.match(new RegExp(`^${key}: *(\\S+)`, "m"))?.[1];
  server = {
    process: process_,
    url: field("server"),
    edge: field("edgeServer"),
    token: field("token"),
    ca: readFileSync(join(dataDir, "pki", "ca.crt")),
  };
  assert.ok(server.url && server.edge && server.token, `admin.yaml is incomplete:\n${admin}`);
  await until("the management API", () => api("GET", GROUP));

  // Two registered devices with labels, as an operator would have set them up.
  startAgent("dev-a");
  startAgent("dev-b");
  await approveByApi("dev-a");
  await approveByApi("dev-b");
  for (const [name, site] of [["dev-a", "north"], ["dev-b", "south"]]) {
    await api("PATCH", devicePath(name), { metadata: { labels: { app: "web", site } } }, "application/merge-patch+json");
  }

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  // The server's certificate comes from its own fleet CA, which the browser does not know.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 860 } });
  page = await context.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
});

after(async () => {
  if (browser) await browser.close();
  for (const child of children.reverse()) {
    if (child.exitCode === null) child.kill("SIGTERM");
  }
  // Each process gets up to 5 s to end on SIGTERM before SIGKILL.
  await Promise.all(
    children.map(
      (child) =>
        child.exitCode === null &&
        new Promise((resolve) => {
          const timer = setTimeout(resolve, 5000);
          child.once("exit", () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
  for (const child of children) {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
  if (process.env.KEEP_LOGS) {
    for (const child of children) console.log(`--- ${child.label}\n${child.log.join("")}`);
  }
  rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

test("serves the console with a strict content security policy", async () => {
  const response = await page.goto(`${server.url}/ui`);
  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, "/ui/");
  const policy = response.headers()["content-security-policy"];
  assert.match(policy, /script-src 'self'/);
  assert.match(policy, /default-src 'none'/);
  const script = await page.request.get(`${server.url}/ui/app.js`);
  assert.match(script.headers()["content-type"], /^text\/javascript/);
});

test("signs in with a bearer token and signs out", async () => {
  await page.goto(`${server.url}/ui/`);
  await page.getByLabel("API token").fill("flt_not-a-real-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await until("the sign-in error", async () => /not valid/.test(await textOf("#sign-in-error")));
  await shot("sign-in");

  await page.getByLabel("API token").fill(server.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
  await until("live watch streams", async () => (await textOf("#connection")) === "Live");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("flotta.console.token")), server.token);

  // The token survives a reload of the tab, and sign-out forgets it.
  await page.reload();
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API token").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("flotta.console.token")), null);

  await page.getByLabel("API token").fill(server.token);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
  await until("both devices on the overview", async () => /Devices \(2\)/.test(await textOf("#ov-devices")));
  await until("devices online", async () => /online\s*2/.test(await textOf("[aria-label='Devices by connectivity']")));
  await shot("overview");
});

test("filters devices by label and field selector, and shows the server's error", async () => {
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByRole("heading", { name: "Devices", level: 1 }).waitFor();
  const rows = page.locator("#device-results tbody tr");
  await until("two devices listed", async () => (await rows.count()) === 2);

  await page.getByLabel("Label selector").fill("site=north");
  await page.getByRole("button", { name: "Apply filter" }).click();
  await until("dev-a alone", async () => (await rows.count()) === 1 && /dev-a/.test(await rows.first().textContent()));
  assert.match(await textOf("#device-count"), /^1 device matches the filter$/);
  await shot("devices-filtered");

  await page.getByLabel("Label selector").fill("");
  await page.getByLabel("Field selector").fill("metadata.name=dev-b");
  await page.getByRole("button", { name: "Apply filter" }).click();
  await until("dev-b alone", async () => (await rows.count()) === 1 && /dev-b/.test(await rows.first().textContent()));

  await page.getByLabel("Label selector").fill("app in (web");
  await page.getByLabel("Field selector").fill("");
  await page.getByRole("button", { name: "Apply filter" }).click();
  await until("the server's selector error", async () => /invalid labelSelector/.test(await textOf("#filter-error")));
  assert.equal(await page.getByRole("alert").filter({ hasText: "invalid labelSelector" }).count(), 1);
  assert.equal(await rows.count(), 0, "no stale rows under a refused filter");
  await shot("devices-bad-selector");

  await page.getByRole("button", { name: "Clear" }).click();
  await until("both devices again", async () => (await rows.count()) === 2 && (await textOf("#filter-error")) === "");
});

test("approves a pending device and sees it go online; declines another", async () => {
  await page.getByRole("link", { name: /Enrolments/ }).click();
  await page.getByRole("heading", { name: "Enrolments" }).waitFor();
  await page.evaluate(() => { window.notReloaded = true; });

  // Devices enrol while the page is open: their requests appear without a reload.
  startAgent("dev-c");
  startAgent("dev-d");
  const pending = page.locator("#pending-requests");
  await until("dev-c and dev-d pending", async () => {
    const text = await pending.textContent();
    return /dev-c/.test(text) && /dev-d/.test(text);
  });
  assert.match(await textOf("#pending-count"), /2/);
  await shot("enrolments-pending");

  await page.getByRole("button", { name: "Approve dev-c" }).click();
  await page.getByRole("button", { name: "Decline dev-d" }).click();
  const decided = page.locator("#decided-requests");
  await until("dev-c online", async () => /online/.test(await decided.locator("tr[data-request='dev-c']").textContent({ timeout: 1000 })), 60_000);
  assert.match(await decided.locator("tr[data-request='dev-d']").textContent(), /declined/);
  assert.match(await decided.locator("tr[data-request='dev-d']").textContent(), /not registered/);
  assert.equal(await pending.locator("tbody tr").count(), 0);
  assert.equal(await page.evaluate(() => window.notReloaded), true);
  await shot("enrolments-decided");

  // The API agrees: dev-c is a device, dev-d's request is declined and it never registered.
  const request = await api("GET", requestPath("dev-d"));
  assert.equal(request.spec.approved, false);
  // One decision condition, written by the server's approval operation and
  // signed with the console's token.
  const decisions = request.status.conditions.filter((c) => ["approved", "declined", "pending"].includes(c.type));
  assert.equal(decisions.length, 1);
  assert.equal(decisions[0].type, "declined");
  assert.equal(decisions[0].status, "True");
  assert.match(decisions[0].message, /^denied in the console \(by token /);
  assert.equal(await getOrNull(devicePath("dev-d")), null);

  await decided.getByRole("link", { name: "dev-c" }).click();
  await page.getByRole("heading", { name: "Device dev-c" }).waitFor();
  await until("hardware on the detail page", async () => /Host name/.test(await textOf("#main")));
  const summary = await textOf("[aria-label='Summary']");
  assert.match(summary, /online/);
  assert.match(summary, /up/);
  await shot("device-detail");
});

test("creates a workload and sees its rollout progress update live", async () => {
  await page.getByRole("link", { name: "Workloads" }).click();
  await page.getByRole("heading", { name: "Workloads", level: 1 }).waitFor();
  await page.evaluate(() => {
    window.notReloaded = true;
    // Every text the row's device counts show, in order, as the watch delivers them.
    window.seenCounts = [];
    new MutationObserver(() => {
      const cell = document.querySelector("tr[data-workload='web'] .phase-counts");
      const text = cell && cell.textContent;
      if (text && window.seenCounts[window.seenCounts.length - 1] !== text) window.seenCounts.push(text);
    }).observe(document.getElementById("main"), { subtree: true, childList: true, characterData: true });
  });

  await page.getByLabel("Name", { exact: true }).fill("web");
  await page.getByLabel("Container image").fill("quay.io/example/web:1.0");
  await page.getByLabel("Device labels").fill("app=web");
  await page.getByLabel("Rollout batches").fill("1");
  await page.getByRole("button", { name: "Create workload" }).click();
  await until("creation acknowledged", async () => /Created workload web/.test(await textOf("#workload-feedback")));

  const row = page.locator("tr[data-workload='web']");
  await until("the rollout to complete", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 1: 1 of 1 running/.test(text) && /Batch 2: 1 of 1 running/.test(text) && /complete/.test(text);
  }, 60_000);
  assert.match(await row.locator(".phase-counts").textContent(), /2 running, 0 deploying, 0 failed, 0 unknown/);
  // The workload was created on this page and its devices' counts reached it
  // through the watch, without a reload. (How many intermediate counts the row
  // showed depends on how fast the devices report, so only the arrival is checked.)
  const seen = await page.evaluate(() => window.seenCounts);
  assert.ok(seen.length >= 1, `the device counts arrived in place: ${JSON.stringify(seen)}`);
  assert.match(seen[seen.length - 1], /2 running/);
  assert.equal(await page.evaluate(() => window.notReloaded), true);
  await shot("workloads");

  // An update is enforced batch by batch: with manual approval, batch 2 is not
  // released until approved, and the console pauses and resumes the rollout.
  const workloadPath = `${GROUP}/namespaces/default/edgeworkloads/web`;
  await api("PATCH", workloadPath, {
    spec: {
      rolloutPolicy: { batches: [{ limit: 1 }], manualApproval: true },
      pod: { spec: { containers: [{ name: "web", image: "quay.io/example/web:1.1" }] } },
    },
  }, "application/merge-patch+json");
  await until("batch 2 held for approval", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 1: 1 of 1 running/.test(text) && /Batch 2: 0 of 1 running \(needs 1\) \(not released\)/.test(text)
      && /Paused: AwaitingApproval/.test(text);
  }, 60_000);
  await shot("workload-awaiting-approval");
  await row.getByRole("button", { name: "Pause rollout of web" }).click();
  await until("paused by the operator", async () => /Paused: PausedByOperator/.test(await row.textContent({ timeout: 1000 })));
  assert.equal((await api("GET", workloadPath)).metadata.annotations["rollout.flotta.io/paused"], "true");
  await row.getByRole("button", { name: "Resume rollout of web" }).click();
  await until("waiting for approval again", async () => /Paused: AwaitingApproval/.test(await row.textContent({ timeout: 1000 })));
  const rollout = (await api("GET", workloadPath)).status.rollout;
  await api("PATCH", workloadPath, {
    metadata: { annotations: { "rollout.flotta.io/approved": `${rollout.currentRevision}/${rollout.releasedBatches}` } },
  }, "application/merge-patch+json");
  await until("the approved update to complete", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 2: 1 of 1 running/.test(text) && /complete/.test(text);
  }, 60_000);

  // A bad request shows the server's validation message.
  await page.getByLabel("Name", { exact: true }).fill("broken");
  await page.getByLabel("Container image").fill("img");
  await page.getByLabel("Rollout batches").fill("150%");
  await page.getByRole("button", { name: "Create workload" }).click();
  await until("the validation error", async () => /Could not create broken: .*spec\.rolloutPolicy\.batches\[0\]\.limit/.test(await textOf("#workload-feedback")));

  await page.getByRole("link", { name: "Overview" }).click();
  await until("workload state on the overview", async () => /complete\s*1/.test(await textOf("[aria-label='Workloads by rollout state']")));
  await shot("overview-live");
});

test("shows a device set's rollout batch by batch, as the devices run it, and pauses it", async () => {
  // Which configuration each agent applied, read from its own state directory.
  const applied = (device) => readFileSync(join(work, "agents", device, "state", "current.json"), "utf8");
  const hardware = /"include"\s*:\s*true/;
  const setPath = `${GROUP}/namespaces/default/edgedevicesets/edge`;
  const spec = (include) => ({
    selector: { matchLabels: { app: "web" } },
    rolloutPolicy: { batches: [{ limit: 1 }], manualApproval: true },
    heartbeat: { periodSeconds: 5, hardwareProfile: { include } },
  });
  await api("POST", `${GROUP}/namespaces/default/edgedevicesets`, {
    apiVersion: "management.project-flotta.io/v1alpha1",
    kind: "EdgeDeviceSet",
    metadata: { name: "edge", namespace: "default" },
    spec: spec(false),
  });
  await page.getByRole("link", { name: "Device sets" }).click();
  await page.getByRole("heading", { name: "Device sets", level: 1 }).waitFor();
  const row = page.locator("tr[data-set='edge']");
  await until("the set's first revision on both members", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 1: 1 of 1 running/.test(text) && /Batch 2: 1 of 1 running/.test(text) && /complete/.test(text);
  }, 60_000);

  // A change: batch 1 (dev-a) runs it, batch 2 (dev-b) waits for approval; the
  // page says so and the devices' own applied configurations agree.
  await api("PATCH", setPath, { spec: spec(true) }, "application/merge-patch+json");
  await until("batch 2 held for approval", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 1: 1 of 1 running/.test(text) && /Batch 2: 0 of 1 running \(needs 1\) \(not released\)/.test(text)
      && /Paused: AwaitingApproval/.test(text);
  }, 60_000);
  assert.match(applied("dev-a"), hardware, "batch 1 runs the new revision");
  assert.doesNotMatch(applied("dev-b"), hardware, "batch 2 keeps the old one");
  await shot("device-set-awaiting-approval");
  await row.getByRole("button", { name: "Pause rollout of edge" }).click();
  await until("paused by the operator", async () => /Paused: PausedByOperator/.test(await row.textContent({ timeout: 1000 })));
  assert.equal((await api("GET", setPath)).metadata.annotations["rollout.flotta.io/paused"], "true");
  await row.getByRole("button", { name: "Resume rollout of edge" }).click();
  await until("waiting for approval again", async () => /Paused: AwaitingApproval/.test(await row.textContent({ timeout: 1000 })));
  const rollout = (await api("GET", setPath)).status.rollout;
  await api("PATCH", setPath, {
    metadata: { annotations: { "rollout.flotta.io/approved": `${rollout.currentRevision}/${rollout.releasedBatches}` } },
  }, "application/merge-patch+json");
  await until("the approved change on both members", async () => {
    const text = await row.textContent({ timeout: 1000 });
    return /Batch 2: 1 of 1 running/.test(text) && /complete/.test(text);
  }, 60_000);
  assert.match(applied("dev-b"), hardware, "batch 2 runs it once approved");
});

test("is usable from the keyboard", async () => {
  await page.goto(`${server.url}/ui/#/devices`);
  // A fresh load, so focus starts at the top of the document.
  await page.reload();
  await page.getByRole("heading", { name: "Devices", level: 1 }).waitFor();
  await page.keyboard.press("Tab");
  const skip = await page.evaluate(() => document.activeElement.textContent);
  assert.equal(skip, "Skip to content");
  await page.keyboard.press("Enter");
  await page.keyboard.press("Tab");
  // After the skip link, focus lands inside the main content, not the navigation.
  const inMain = await page.evaluate(() => document.getElementById("main").contains(document.activeElement));
  assert.equal(inMain, true);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none");
});
