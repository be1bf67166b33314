// Entry point: sign-in, navigation between pages, and live refresh.

import { API_PREFIX, ApiFailure, request, setToken, token } from "./api.js";
import { enrolmentState, fill, h } from "./dom.js";
import * as oidc from "./oidc.js";
import { FleetStore } from "./store.js";
import { deviceDetail, deviceSets, devices, enrolments, overview, workloads } from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
const connection = document.getElementById("connection");
const pendingCount = document.getElementById("pending-count");
// Relative times ("12 s ago") are redrawn this often.
const TICK_MS = 5000;

let store = null;
let view = null;
let ticker = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case "devices":
      return parts.length === 3
        ? { page: "devices", make: () => deviceDetail(store, parts[1], parts[2]) }
        : { page: "devices", make: () => devices(store) };
    case "enrolments":
      return { page: "enrolments", make: () => enrolments(store) };
    case "workloads":
      return { page: "workloads", make: () => workloads(store) };
    case "sets":
      return { page: "sets", make: () => deviceSets(store) };
    default:
      return { page: "overview", make: () => overview(store) };
  }
}

// Live updates redraw parts of the page; the focused control is found again by its
// id or label so keyboard users keep their place.
function focusKey(element) {
  if (!element || !main.contains(element) || element === main) return null;
  if (element.id) return `#${CSS.escape(element.id)}`;
  const label = element.getAttribute("aria-label");
  if (label) return `[aria-label="${CSS.escape(label)}"]`;
  return null;
}

function refresh(reason) {
  if (!view) return;
  const key = focusKey(document.activeElement);
  view.update(reason);
  if (key && !main.contains(document.activeElement)) {
    const again = main.querySelector(key);
    if (again) again.focus();
  }
}

function showStatus() {
  const states = Object.values(store.connections);
  const trouble = states.find((s) => s.state === "reconnecting");
  if (trouble) {
    connection.textContent = `Reconnecting… (${trouble.detail})`;
    connection.className = "conn conn-bad";
  } else if (states.every((s) => s.state === "live")) {
    connection.textContent = "Live";
    connection.className = "conn conn-good";
  } else {
    connection.textContent = "Connecting…";
    connection.className = "conn";
  }
  const pending = store.list("EdgeDeviceSignedRequest").filter((r) => enrolmentState(r) === "pending").length;
  pendingCount.textContent = pending ? String(pending) : "";
  pendingCount.setAttribute("aria-label", `${pending} pending`);
}

function navigate(first) {
  const { page, make } = route();
  view = make();
  fill(main, view.element);
  view.update("navigate");
  document.title = `${view.title} · flotta console`;
  for (const link of nav.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!first) main.focus();
}

function signOut(message) {
  if (store) store.stop();
  store = null;
  view = null;
  clearInterval(ticker);
  setToken(null);
  oidc.forget();
  nav.hidden = true;
  signOutButton.hidden = true;
  connection.textContent = "";
  showSignIn(message);
}

function start() {
  // A token from an OIDC issuer is renewed before it expires; the live streams
  // pick the new one up on their next request.
  oidc.keepFresh(token(), setToken, (reason) => signOut(`Signed out: the session could not be renewed (${reason})`));
  store = new FleetStore();
  store.subscribe(() => {
    showStatus();
    refresh("data");
  });
  store.start((detail) => signOut(`Signed out: ${detail}`));
  nav.hidden = false;
  signOutButton.hidden = false;
  ticker = setInterval(() => refresh("tick"), TICK_MS);
  if (!location.hash || location.hash === "#/sign-in") location.hash = "#/overview";
  navigate(true);
  showStatus();
}

function showSignIn(message) {
  document.title = "Sign in · flotta console";
  const error = h("p", { id: "sign-in-error", class: "error", role: "alert" }, message || "");
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-hint" });
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: async (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        error.textContent = "";
        try {
          await request("GET", API_PREFIX);
          start();
        } catch (failure) {
          setToken(null);
          error.textContent = failure instanceof ApiFailure ? `Sign-in failed: ${failure.message}` : String(failure);
          input.focus();
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { id: "token-hint", class: "hint" }, "Paste a bearer token of the management API: the admin token from ", h("code", {}, "admin.yaml"), " or one from ", h("code", {}, "flotta-server token create"), ". It is kept in this browser tab only."),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input),
    error,
    h("button", { type: "submit" }, "Sign in"),
  );
  fill(main, form);
  input.focus();
  // The issuers the server trusts, as buttons above the token form.
  oidc.providers().then((providers) => {
    if (!providers.length || !form.isConnected) return;
    const buttons = providers.map((provider) =>
      h("button", { type: "button", class: "oidc", onclick: () => oidc.signInWith(provider) }, `Sign in with ${new URL(provider.issuer).host}${new URL(provider.issuer).pathname.replace(/\/$/, "")}`),
    );
    form.insertBefore(h("div", { class: "oidc-providers" }, ...buttons, h("p", { class: "hint" }, "or paste an API token:")), form.children[1]);
  });
}

signOutButton.addEventListener("click", () => signOut("You have signed out."));
// The pages live in the URL fragment, so the skip link moves focus itself.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", () => {
  if (store) navigate(false);
});

oidc
  .completeSignIn()
  .then(async (idToken) => {
    if (idToken) {
      setToken(idToken);
      try {
        await request("GET", API_PREFIX);
      } catch (failure) {
        setToken(null);
        oidc.forget();
        showSignIn(`Sign-in failed: ${failure.message}`);
        return;
      }
    }
    if (token()) start();
    else showSignIn();
  })
  .catch((error) => showSignIn(`Sign-in failed: ${error.message}`));
