// Every request the console makes to the server is listed here, and this module is the only one
// that talks to the server. Each operator call is an ordinary /api/v1 route, checked by the same
// middleware, roles and audit log as the command line (`offpay admin`); the test
// crates/server/tests/console.rs reads this file and checks every entry against the route table.

// The console's own routes (login, logout, who am I).
export const CONSOLE = Object.freeze({
  login: { method: "POST", path: "/console/login" },
  logout: { method: "POST", path: "/console/logout" },
  session: { method: "GET", path: "/console/session" },
});

// The operator API calls of the console.
export const API = Object.freeze({
  search: { method: "GET", path: "/api/v1/search" },
  customer: { method: "GET", path: "/api/v1/customers/{phone}" },
  accounts: { method: "GET", path: "/api/v1/accounts" },
  totals: { method: "GET", path: "/api/v1/totals" },
  account: { method: "GET", path: "/api/v1/accounts/{id}" },
  accountHistory: { method: "GET", path: "/api/v1/accounts/{id}/history" },
  fraud: { method: "GET", path: "/api/v1/fraud" },
  fraudClear: { method: "POST", path: "/api/v1/fraud/{id}/clear" },
  fraudEscalate: { method: "POST", path: "/api/v1/fraud/{id}/escalate" },
  approvals: { method: "GET", path: "/api/v1/approvals" },
  approve: { method: "POST", path: "/api/v1/approvals/{id}/approve" },
  refuse: { method: "POST", path: "/api/v1/approvals/{id}/refuse" },
  audit: { method: "GET", path: "/api/v1/audit" },
  auditVerify: { method: "GET", path: "/api/v1/audit/verify" },
  purses: { method: "GET", path: "/api/v1/purse/purses" },
  purseSchemeKey: { method: "GET", path: "/api/v1/purse/scheme-key" },
  purse: { method: "GET", path: "/api/v1/purse/purses/{phone}" },
  purseStatement: { method: "GET", path: "/api/v1/purse/purses/{phone}/statement" },
  purseBlock: { method: "POST", path: "/api/v1/purse/purses/{phone}/block" },
  purseSyncs: { method: "GET", path: "/api/v1/purse/purses/{phone}/syncs" },
  purseFloat: { method: "POST", path: "/api/v1/purse/purses/{phone}/float" },
  purseSettle: { method: "POST", path: "/api/v1/purse/purses/{phone}/settle" },
  smsAccount: { method: "GET", path: "/api/v1/sms/accounts/{number}" },
  smsAccountUpdate: { method: "PATCH", path: "/api/v1/sms/accounts/{number}" },
  smsEnvelope: { method: "GET", path: "/api/v1/sms/envelopes/{euin}" },
  smsEnvelopeUnlock: { method: "POST", path: "/api/v1/sms/envelopes/{euin}/unlock" },
  smsStatus: { method: "GET", path: "/api/v1/sms/status" },
  smsOutbox: { method: "GET", path: "/api/v1/sms/outbox" },
  smsDeadLetters: { method: "GET", path: "/api/v1/sms/dead-letters" },
  smsSent: { method: "GET", path: "/api/v1/sms/sent" },
  wallets: { method: "GET", path: "/api/v1/wallets" },
  wallet: { method: "GET", path: "/api/v1/wallets/{id}" },
  walletBlock: { method: "POST", path: "/api/v1/wallets/{id}/block" },
  walletCharge: { method: "POST", path: "/api/v1/wallets/{id}/charge" },
  microcheckPayers: { method: "GET", path: "/api/v1/microcheck/payers" },
  microcheckPayer: { method: "GET", path: "/api/v1/microcheck/payers/{name}" },
  microcheckMerchants: { method: "GET", path: "/api/v1/microcheck/merchants" },
  microcheckStrategy: { method: "GET", path: "/api/v1/microcheck/strategy" },
  microcheckDeposits: { method: "GET", path: "/api/v1/microcheck/deposits" },
  microcheckStrikes: { method: "GET", path: "/api/v1/microcheck/strikes" },
  microcheckPayerBlock: { method: "POST", path: "/api/v1/microcheck/payers/{name}/block" },
  microcheckPayerUnblock: { method: "POST", path: "/api/v1/microcheck/payers/{name}/unblock" },
});

// The session's CSRF token: given at login (or by /console/session after a reload), kept in
// this module's memory only, sent on every request that changes something.
let csrfToken = null;
// What the user's role may call: a set of "METHOD /path/{pattern}" (paths under /api/v1).
let allowed = new Set();
// Called when the server says the session is gone (expired, logged out, user revoked).
let onSessionEnded = () => {};

export function whenSessionEnds(callback) {
  onSessionEnded = callback;
}

// Whether the logged-in user's role may make `call` (the server refuses it anyway).
export function may(call) {
  if (!call) return false;
  return allowed.has(`${call.method} ${call.path.replace(/^\/api\/v1/, "")}`);
}

// Whether the role may call the route "METHOD /path/{pattern}" (relative to the API's root).
export function mayRoute(route) {
  return allowed.has(route);
}

function remember(session) {
  csrfToken = session.csrf_token || null;
  allowed = new Set((session.allowed || []).map((route) => `${route.method} ${route.path}`));
}

function forget() {
  csrfToken = null;
  allowed = new Set();
}

// An error from the server in words: { status, code, message }.
export class ServerError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || String(status);
    this.body = body;
  }
}

function fill(path, params) {
  return path.replace(/\{([a-z_]+)\}/g, (_, name) => {
    if (params[name] === undefined || params[name] === "") throw new Error(`missing ${name}`);
    return encodeURIComponent(params[name]);
  });
}

async function send(call, { params = {}, query, body, headers = {} } = {}) {
  let url = fill(call.path, params);
  if (query) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") search.set(name, value);
    }
    const text = search.toString();
    if (text) url += `?${text}`;
  }
  const init = { method: call.method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (call.method !== "GET") {
    if (csrfToken) init.headers["X-CSRF-Token"] = csrfToken;
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { error: { code: "not_json", message: text.slice(0, 200) } };
  }
  return { status: response.status, json };
}

// Makes an operator API call. Resolves to the answer's JSON (2xx), rejects with a ServerError.
// options: { params, query, body, reauth (the user's token again), idempotencyKey }.
export async function call(apiCall, options = {}) {
  const headers = {};
  if (options.reauth) headers["X-Reauth-Token"] = options.reauth;
  if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  const { status, json } = await send(apiCall, { ...options, headers });
  if (status === 401) {
    forget();
    onSessionEnded(new ServerError(status, json));
  }
  if (status < 200 || status > 299) throw new ServerError(status, json);
  return { status, body: json };
}

// Logs in; resolves to the session.
export async function login(user, token) {
  const { status, json } = await send(CONSOLE.login, { body: { user, token } });
  if (status !== 200) throw new ServerError(status, json);
  return restore();
}

// The current session (after a reload), or null when there is none.
export async function restore() {
  const { status, json } = await send(CONSOLE.session);
  if (status !== 200) {
    forget();
    return null;
  }
  remember(json);
  return json;
}

export async function logout() {
  try {
    await send(CONSOLE.logout);
  } finally {
    forget();
  }
}

// A fresh idempotency key for a money-moving request (one per form submission).
export function freshKey(prefix) {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}
