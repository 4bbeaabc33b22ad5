// The API client of the page. The access token lives in this module's memory
// only; the refresh token lives in an HttpOnly __Host- cookie that script
// cannot read (the server sets it on login and refresh). The server leaves the
// refresh token out of the JSON answers the page gets (it sees Sec-Fetch-Site,
// or SESSION's header), so the page never holds one; it never stores a token
// in localStorage, sessionStorage or a readable cookie.

let accessToken = null;
let refreshTimer = null;
let refreshing = null;
let refreshRetry = 0;
let onSignedOut = () => {};
let onConnection = () => {};

// Asks for a cookie-only session: no refresh token in the answer's body.
const SESSION = { 'todo-session': 'cookie' };

/** An error answer: the problem details, with per-field errors when given. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
  }

  /** Field errors as {field: message}. */
  get fields() {
    const out = {};
    for (const e of this.problem.errors || []) out[e.field] = out[e.field] || e.message;
    return out;
  }
}

/**
 * Whether trying again later may work: no answer at all (offline, a server
 * restarting), a timeout, too many requests, or a server error. Only these
 * keep the session through a failed refresh; a 401 ends it.
 */
export function isTransient(error) {
  return error instanceof ApiError
    && (error.status === 0 || error.status === 408 || error.status === 429 || error.status >= 500);
}

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** `callback({ok: true})` when the server answers again, `{ok: false, retryIn, error}` while a refresh keeps failing. */
export function whenConnectionChanges(callback) {
  onConnection = callback;
}

async function send(method, path, { body, token, headers = {}, signal, keepalive } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store', signal, keepalive };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { detail: 'The server cannot be reached. Check your connection.' });
  }
  if (response.status === 204) return { status: 204, body: null, headers: response.headers };
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const problem = data || { detail: `request failed (${response.status})` };
    if (response.status === 503 && !data) problem.detail = 'The server is unavailable (restarting or busy).';
    if (response.status === 429 || response.status === 503) {
      const wait = response.headers.get('retry-after');
      if (wait) problem.detail = `${problem.detail} (try again in ${wait} s)`;
    }
    throw new ApiError(response.status, problem);
  }
  return { status: response.status, body: data, headers: response.headers };
}

function adopt(pair) {
  accessToken = pair.access_token;
  // The refresh token is in the HttpOnly cookie only, never in `pair`.
  scheduleRefresh(Math.max(5, pair.expires_in - 30));
}

function scheduleRefresh(seconds) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(backgroundRefresh, seconds * 1000);
}

// The refresh before the access token expires. A network blip (wifi drop, a
// laptop waking, a server restart) is not the end of the session: it is
// tried again with backoff (2, 4, 8 ... 60 s) and the page says so; only a
// refusal (401) from the server signs out.
async function backgroundRefresh() {
  try {
    await refresh();
  } catch (error) {
    if (!isTransient(error)) {
      signOutLocally();
      return;
    }
    refreshRetry = Math.min(refreshRetry ? refreshRetry * 2 : 2, 60);
    onConnection({ ok: false, retryIn: refreshRetry, error, retry: backgroundRefresh });
    scheduleRefresh(refreshRetry);
  }
}

function signOutLocally() {
  accessToken = null;
  clearTimeout(refreshTimer);
  onSignedOut();
}

export function signedIn() {
  return accessToken !== null;
}

export async function register(username, password, email) {
  const body = { username, password };
  if (email) body.email = email;
  return (await send('POST', '/v1/auth/register', { body })).body;
}

export async function login(username, password) {
  adopt((await send('POST', '/v1/auth/login', { body: { username, password }, headers: SESSION })).body);
}

// Refreshes run one at a time across this browser's tabs too (Web Locks):
// each then sends the cookie the one before it set, a plain rotation. Tabs
// that refresh together (a laptop waking) would otherwise all send the same
// token, and past the server's few exchanges again within the reuse grace
// that is reuse, which ends the session in every tab. A refresh gives up
// after 15 s (as a network failure, retried), so a hung one never holds
// the other tabs' lock.
const REFRESH_TIMEOUT_MS = 15_000;
function oneTabAtATime(work) {
  return navigator.locks ? navigator.locks.request('todo-refresh', work) : work();
}

/**
 * A new access token from the refresh cookie; fails when there is no
 * session. One at a time: refresh tokens rotate, and two refreshes with the
 * same cookie would look like a stolen token being replayed.
 */
export function refresh() {
  refreshing ??= oneTabAtATime(() => send('POST', '/v1/auth/refresh',
    { body: {}, headers: SESSION, signal: AbortSignal.timeout(REFRESH_TIMEOUT_MS) }))
    .then(({ body }) => {
      adopt(body);
      if (refreshRetry) onConnection({ ok: true });
      refreshRetry = 0;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * Ends the session on the server. When the server cannot be reached, the
 * error is thrown and the page stays signed in: the refresh cookie (which
 * script cannot clear) would otherwise keep a session alive that the person
 * believes ended, on a shared computer above all. Any answer from the server
 * (a 401 for a session already over, too) ends it here.
 */
export async function logout() {
  try {
    await send('POST', '/v1/auth/logout', { body: {}, headers: SESSION });
  } catch (error) {
    if (isTransient(error)) throw error;
  }
  accessToken = null;
  clearTimeout(refreshTimer);
}

/**
 * An authenticated call; on an expired token, refreshes once and retries.
 * Signs out only when the server refuses the refresh; a refresh that cannot
 * reach the server throws its (transient) error and keeps the session.
 */
export async function call(method, path, { body, headers, signal, keepalive } = {}) {
  try {
    return await send(method, path, { body, headers, signal, keepalive, token: accessToken });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    try {
      await refresh();
    } catch (refreshError) {
      if (isTransient(refreshError)) throw refreshError;
      signOutLocally();
      throw error;
    }
    try {
      return await send(method, path, { body, headers, signal, keepalive, token: accessToken });
    } catch (retryError) {
      // Refused even with a token just issued (the account was disabled,
      // say): the session is over.
      if (retryError instanceof ApiError && retryError.status === 401) signOutLocally();
      throw retryError;
    }
  }
}
