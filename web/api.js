// The API client of the page. The access token lives in this module's memory
// only; the refresh token lives in an HttpOnly __Host- cookie that script
// cannot read (the server sets it on login and refresh). The server leaves the
// refresh token out of the JSON answers the page gets (it sees Sec-Fetch-Site,
// or SESSION's header), so the page never holds one; it never stores a token
// in localStorage, sessionStorage or a readable cookie.

let accessToken = null;
let refreshTimer = null;
let onSignedOut = () => {};

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

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

async function send(method, path, { body, token, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: 'The server cannot be reached. Check your connection and try again.' });
  }
  if (response.status === 204) return { status: 204, body: null, headers: response.headers };
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : null;
  if (!response.ok) {
    const problem = data || { detail: `request failed (${response.status})` };
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
  clearTimeout(refreshTimer);
  const lead = Math.max(5, pair.expires_in - 30);
  refreshTimer = setTimeout(() => refresh().catch(() => signOutLocally()), lead * 1000);
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

/** A new access token from the refresh cookie; fails when there is no session. */
export async function refresh() {
  adopt((await send('POST', '/v1/auth/refresh', { body: {}, headers: SESSION })).body);
}

export async function logout() {
  try {
    await send('POST', '/v1/auth/logout', { body: {}, headers: SESSION });
  } finally {
    accessToken = null;
    clearTimeout(refreshTimer);
  }
}

/** An authenticated call; on an expired token, refreshes once and retries. */
export async function call(method, path, { body, headers } = {}) {
  try {
    return await send(method, path, { body, headers, token: accessToken });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    try {
      await refresh();
    } catch {
      signOutLocally();
      throw error;
    }
    return send(method, path, { body, headers, token: accessToken });
  }
}
