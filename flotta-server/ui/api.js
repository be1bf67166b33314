// The management API as the console uses it: bearer-token requests, Kubernetes
// Status errors, and list-then-watch streams that reconnect with backoff.

import { KINDS } from "./kinds.js";

// Plurals and path prefixes come from core's kind table, which the server serves
// as kinds.js: flotta's kinds under /apis/management.project-flotta.io/v1alpha1,
// Kubernetes' core kinds (events) under /api/v1, as kubectl expects.
export const API_PREFIX = KINDS.EdgeDevice.prefix;
const TOKEN_KEY = "flotta.console.token";

export const PLURALS = Object.fromEntries(Object.entries(KINDS).map(([kind, row]) => [kind, row.plural]));

function prefixOf(kind) {
  return KINDS[kind].prefix;
}

/** A failed API call, carrying the server's Status message and causes. */
export class ApiFailure extends Error {
  constructor(code, message, reason, causes) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.causes = causes || [];
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function failureOf(response) {
  let status = null;
  try {
    status = await response.json();
  } catch {
    // Not a Status object; the HTTP status line says enough.
  }
  if (status && status.kind === "Status") {
    const causes = (status.details && status.details.causes) || [];
    return new ApiFailure(response.status, status.message, status.reason, causes);
  }
  return new ApiFailure(response.status, `${response.status} ${response.statusText}`, "", []);
}

/** One request; resolves to the parsed JSON body, or rejects with ApiFailure. */
export async function request(method, path, body, contentType, signal) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiFailure(0, `the server cannot be reached (${error.message})`, "Unreachable", []);
  }
  if (!response.ok) throw await failureOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export function listPath(kind, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return `${prefixOf(kind)}/${PLURALS[kind]}${text ? `?${text}` : ""}`;
}

export function objectPath(kind, namespace, name, subresource) {
  const base = `${prefixOf(kind)}/namespaces/${encodeURIComponent(namespace)}/${PLURALS[kind]}/${encodeURIComponent(name)}`;
  return subresource ? `${base}/${subresource}` : base;
}

export function patch(kind, namespace, name, body, subresource) {
  return request(
    "PATCH",
    objectPath(kind, namespace, name, subresource),
    body,
    "application/merge-patch+json",
  );
}

/** Approves (true) or denies (false) an enrolment request: the server writes
 * spec.approved and the approved/declined condition, signed with our token. */
export function decideEnrolment(namespace, name, approved, message) {
  return request(
    "POST",
    objectPath("EdgeDeviceSignedRequest", namespace, name, "approval"),
    message ? { approved, message } : { approved },
  );
}

export function create(kind, namespace, body) {
  return request("POST", `${prefixOf(kind)}/namespaces/${encodeURIComponent(namespace)}/${PLURALS[kind]}`, body);
}

const BACKOFF_START_MS = 1000;
const BACKOFF_CAP_MS = 30000;

/**
 * Keeps `handlers` up to date with every object of `kind`: a list (handlers.reset),
 * then a watch from the list's resource version (handlers.event). When the stream
 * ends or fails it lists and watches again, waiting 1 s, 2 s, 4 s ... up to 30 s
 * between failed attempts. handlers.connection(state, detail) reports
 * "live" | "reconnecting" | "signed-out". Returns a function that stops it.
 */
export function follow(kind, handlers) {
  const controller = new AbortController();
  let delay = BACKOFF_START_MS;
  let stopped = false;

  const sleep = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      controller.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });

  async function once() {
    const list = await request("GET", listPath(kind), undefined, undefined, controller.signal);
    handlers.reset(list.items || []);
    const path = listPath(kind, { watch: "true", resourceVersion: list.metadata.resourceVersion });
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token()}` },
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await failureOf(response);
    handlers.connection("live");
    delay = BACKOFF_START_MS;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        if (event.type === "ERROR") {
          // Usually 410 Expired: the change log moved on; list again.
          throw new ApiFailure(event.object.code, event.object.message, event.object.reason, []);
        }
        handlers.event(event.type, event.object);
      }
    }
  }

  (async () => {
    while (!stopped) {
      let detail = "the watch stream ended";
      try {
        await once();
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        if (error instanceof ApiFailure && error.code === 401) {
          handlers.connection("signed-out", error.message);
          return;
        }
        detail = error.message;
      }
      if (stopped) return;
      handlers.connection("reconnecting", detail);
      await sleep(delay);
      delay = Math.min(delay * 2, BACKOFF_CAP_MS);
    }
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
