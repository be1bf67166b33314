// The console signing in through a real OIDC provider: Keycloak, started by
// scripts/keycloak.sh (scripts/test.sh does), a realm of this test's own, a
// flotta-server trusting it, and Debian's Chromium typing alice's password into
// Keycloak's own login page.
//
// Environment: FLOTTA_TEST_KEYCLOAK_URL, FLOTTA_TEST_KEYCLOAK_CA and
// FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD (from scripts/keycloak.sh start); without them
// the test says it skipped, except on CI (CI=true), where it fails.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import https from "node:https";
import { randomUUID } from "node:crypto";
import { chromium } from "playwright-core";
import { STEP_TIMEOUT, until } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
const binDir = process.env.FLOTTA_BIN_DIR || join(process.env.CARGO_TARGET_DIR || join(repo, "target"), "debug");
const screenshots = process.env.UI_SCREENSHOTS || join(binDir, "..", "ui-screenshots");
const keycloak = {
  url: process.env.FLOTTA_TEST_KEYCLOAK_URL,
  caFile: process.env.FLOTTA_TEST_KEYCLOAK_CA,
  password: process.env.FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD,
};
const onCi = ["true", "1"].includes((process.env.CI || "").toLowerCase());
const missing = !keycloak.url || !keycloak.caFile || !keycloak.password;
const SKIP = missing && !onCi ? "SKIPPED: no Keycloak (FLOTTA_TEST_KEYCLOAK_URL unset; scripts/keycloak.sh start)" : false;

const work = mkdtempSync(join(tmpdir(), "flotta-console-oidc-"));
let serverProcess;
let server;
let browser;
let realm;


function call(method, url, { ca, token, body, form } = {}) {
  return new Promise((resolvePromise, reject) => {
    const payload = form ? new URLSearchParams(form).toString() : body === undefined ? undefined : JSON.stringify(body);
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (payload) headers["Content-Type"] = form ? "application/x-www-form-urlencoded" : "application/json";
    const request = https.request(new URL(url), { method, ca, headers }, (response) => {
      let text = "";
      response.on("data", (chunk) => (text += chunk));
      response.on("end", () => {
        if (response.statusCode >= 400) reject(new Error(`${method} ${url}: ${response.statusCode} ${text}`));
        else resolvePromise(text ? JSON.parse(text) : null);
      });
    });
    request.on("error", reject);
    if (payload) request.write(payload);
    request.end();
  });
}

before(async () => {
  if (SKIP) return;
  assert.ok(!missing, "CI=true but FLOTTA_TEST_KEYCLOAK_URL, _CA or _ADMIN_PASSWORD is unset: scripts/keycloak.sh start did not run");
  const ca = readFileSync(keycloak.caFile);
  // A realm of this test's own, from the template the Rust tests use.
  realm = `flotta-console-${randomUUID().replace(/-/g, "")}`;
  const template = readFileSync(join(repo, "flotta-testing", "src", "keycloak", "realm.json"), "utf8");
  const admin = await call("POST", `${keycloak.url}/realms/master/protocol/openid-connect/token`, {
    ca,
    form: { grant_type: "password", client_id: "admin-cli", username: "admin", password: keycloak.password },
  });
  await call("POST", `${keycloak.url}/admin/realms`, { ca, token: admin.access_token, body: JSON.parse(template.replaceAll("REALM", realm)) });

  const dataDir = join(work, "server");
  serverProcess = spawn(join(binDir, "flotta-server"), [
    "--data-dir", dataDir,
    "--api-listen", "127.0.0.1:0",
    "--edge-listen", "127.0.0.1:0",
    "--oidc-issuer", `${keycloak.url}/realms/${realm}`,
    "--oidc-client-id", "flotta",
    "--oidc-username-claim", "preferred_username",
    "--oidc-ca-file", keycloak.caFile,
  ], { env: { ...process.env, FLOTTA_LOG: "warn" }, stdio: ["ignore", "inherit", "inherit"] });
  const adminPath = join(dataDir, "admin.yaml");
  const text = await until("admin.yaml", () => existsSync(adminPath) && readFileSync(adminPath, "utf8"));
  const field = (key) => text.match(new RegExp(`^${key}: *(\\S+)`, "m"))?.[1];
  server = { url: field("server"), token: field("token"), ca: readFileSync(join(dataDir, "pki", "ca.crt")) };
  // Team A (alice's group) may view the whole fleet.
  await until("the management API", () =>
    call("POST", `${server.url}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings`, {
      ca: server.ca,
      token: server.token,
      body: {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "team-a-viewers" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "flotta:viewer" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "team-a" }],
      },
    }),
  );

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (serverProcess && serverProcess.exitCode === null) serverProcess.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
});

test("signs in through Keycloak's login page and is the user Keycloak vouched for", { skip: SKIP }, async () => {
  // Both certificates come from test CAs the browser does not know.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 860 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));

  const response = await page.goto(`${server.url}/ui/`);
  // The console's scripts may reach Keycloak (the token endpoint), nothing else.
  const policy = response.headers()["content-security-policy"];
  assert.match(policy, new RegExp(`connect-src 'self' ${new URL(keycloak.url).origin.replace(/[.]/g, "\\.")}(;| )`));

  await page.getByRole("button", { name: /^Sign in with 127\.0\.0\.1/ }).click();
  // Keycloak's own page, on Keycloak's origin.
  await page.waitForURL((url) => url.origin === new URL(keycloak.url).origin, { timeout: STEP_TIMEOUT });
  await page.locator("#username").fill("alice");
  await page.locator("#password").fill("alice-password");
  await page.screenshot({ path: join(screenshots, "oidc-keycloak-login.png"), fullPage: true });
  await page.locator("#kc-login").click();

  // Back at the console, signed in; the code is gone from the address bar.
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor({ timeout: STEP_TIMEOUT });
  assert.equal(new URL(page.url()).search, "");
  await until("live watch streams", async () => (await page.locator("#connection").textContent()) === "Live");
  await page.screenshot({ path: join(screenshots, "oidc-signed-in.png"), fullPage: true });

  // The bearer token is Keycloak's ID token for alice, with her group.
  const token = await page.evaluate(() => sessionStorage.getItem("flotta.console.token"));
  const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
  assert.equal(claims.preferred_username, "alice");
  assert.deepEqual(claims.groups, ["team-a"]);
  assert.equal(claims.iss, `${keycloak.url}/realms/${realm}`);

  // The server agrees: it answers this token as alice, and the viewer binding holds.
  const review = await call("POST", `${server.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`, {
    ca: server.ca,
    token,
    body: {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { verb: "delete", group: "management.project-flotta.io", resource: "edgeworkloads", namespace: "default" } },
    },
  });
  assert.equal(review.status.allowed, false, "a viewer may not delete");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("flotta.console.token")), null);
  await context.close();
});
