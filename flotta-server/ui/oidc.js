// Signing in with the OIDC issuers the server trusts: the authorization-code flow
// with PKCE (S256), back to this page, then the ID token as the bearer token and
// renewals with the refresh token shortly before it expires. The server lists its
// issuers, their public client ids and endpoints at /auth/config.

const FLOW_KEY = "flotta.console.oidc.flow";
const SESSION_KEY = "flotta.console.oidc.session";
// Renew this long before the token expires.
const RENEW_BEFORE_MS = 60_000;

/** The issuers the server trusts (an empty list when it trusts none). */
export async function providers() {
  try {
    const response = await fetch("/auth/config", { cache: "no-store" });
    if (!response.ok) return [];
    const config = await response.json();
    return (config.providers || []).filter((p) => p.authorizationEndpoint && p.tokenEndpoint);
  } catch {
    return [];
  }
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(length) {
  return base64url(crypto.getRandomValues(new Uint8Array(length)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** This page's address without query or fragment: where the issuer sends us back. */
function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

/** Sends the browser to `provider`'s sign-in page. */
export async function signInWith(provider) {
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ verifier, state, provider }));
  const url = new URL(provider.authorizationEndpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: provider.clientId,
    redirect_uri: redirectUri(),
    scope: provider.scopes.join(" "),
    state,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

async function tokenRequest(provider, form) {
  const response = await fetch(provider.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form).toString(),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error_description || body.error || `${response.status} ${response.statusText}`);
  }
  if (!body.id_token) throw new Error("the issuer returned no ID token");
  return body;
}

/** Seconds since the epoch at which a JWT expires, or null. */
function expiryOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp || null;
  } catch {
    return null;
  }
}

/**
 * Finishes a sign-in when the issuer just sent the browser back with a code:
 * resolves to the ID token, to null when this load is not a return from the
 * issuer; rejects with what went wrong.
 */
export async function completeSignIn() {
  const query = new URLSearchParams(location.search);
  if (!query.has("state") || !(query.has("code") || query.has("error"))) return null;
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
  sessionStorage.removeItem(FLOW_KEY);
  // The code is single-use and must not stay in the address bar or history.
  history.replaceState(null, "", `${location.pathname}${location.hash}`);
  if (query.has("error")) {
    throw new Error(`the issuer refused: ${query.get("error_description") || query.get("error")}`);
  }
  if (!flow || flow.state !== query.get("state")) {
    throw new Error("this sign-in was not started here (its state does not match); try again");
  }
  const tokens = await tokenRequest(flow.provider, {
    grant_type: "authorization_code",
    code: query.get("code"),
    redirect_uri: redirectUri(),
    client_id: flow.provider.clientId,
    code_verifier: flow.verifier,
  });
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ provider: flow.provider, refreshToken: tokens.refresh_token || null }));
  return tokens.id_token;
}

let renewal = null;

/**
 * Keeps an OIDC session's token fresh: renews it with the refresh token a minute
 * before `token` expires and hands each new token to `onToken`; `onFailure` gets
 * the reason when a renewal fails. Does nothing for a pasted API token.
 */
export function keepFresh(token, onToken, onFailure) {
  clearTimeout(renewal);
  const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  const exp = expiryOf(token);
  if (!session || !session.refreshToken || !exp) return;
  const wait = Math.max(exp * 1000 - Date.now() - RENEW_BEFORE_MS, 0);
  renewal = setTimeout(async () => {
    try {
      const tokens = await tokenRequest(session.provider, {
        grant_type: "refresh_token",
        refresh_token: session.refreshToken,
        client_id: session.provider.clientId,
      });
      session.refreshToken = tokens.refresh_token || session.refreshToken;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      onToken(tokens.id_token);
      keepFresh(tokens.id_token, onToken, onFailure);
    } catch (error) {
      onFailure(error.message);
    }
  }, wait);
}

/** Forgets the OIDC session (sign-out). */
export function forget() {
  clearTimeout(renewal);
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(FLOW_KEY);
}
