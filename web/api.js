// The API client of the page. The access token lives in this module's memory
// only; the refresh token lives in an HttpOnly __Host- cookie that script
// cannot read (the server sets it on login and refresh). The server leaves the
// refresh token out of the JSON answers the page gets (it sees Sec-Fetch-Site,
// or SESSION's header), so the page never holds one; it never stores a token
// in localStorage, sessionStorage or a readable cookie.

let accessToken = null;
// When the access token should be exchanged (the page's clock): 30 s before it expires.
let freshUntil = 0;
let refreshTimer = null;
let refreshing = null;
let refreshRetry = 0;
let onSignedOut = () => {};
let onConnection = () => {};
// Bumped when a session ends here (logout, a refused refresh): an answer to
// a request of an earlier session is not acted on (no token adopted, no
// list shown to the next person at this computer).
let session = 0;
// The user the session is for (the access token's `sub`): a refresh that
// comes back for someone else (another tab logged out and another person
// logged in, with the cookie all tabs share) ends the session here rather
// than show that person's tasks under this one's name.
let subject = null;

// The tabs of this browser share one refresh cookie, so one session: a
// logout, or a session refused by the server, in one tab ends it in every
// tab (a tab left open would otherwise go on with the old token, then
// take the next person's session at its next refresh).
const otherTabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel('todo-session') : null;
// When this tab last found its session refused: a logout in another tab
// ends the session's access tokens at once, so this tab may hear it from
// the server a moment before it hears the other tab say why.
let refusedAt = -Infinity;
otherTabs?.addEventListener('message', (event) => {
  if (event.data?.type !== 'ended') return;
  if (accessToken === null) {
    if (event.data.loggedOut && performance.now() - refusedAt < 5000) {
      refusedAt = -Infinity;
      onSignedOut('You logged out in another tab.');
    }
    return;
  }
  endSession();
  onSignedOut(event.data.loggedOut ? 'You logged out in another tab.' : undefined);
});

// Asks for a cookie-only session: no refresh token in the answer's body.
const SESSION = { 'todo-session': 'cookie' };

/** An error answer: the problem details, with per-field errors when given. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem?.detail || `request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
    /** Seconds to wait before trying again (`Retry-After` of a 429 or 503), when the server said. */
    this.retryAfter = retryAfter;
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

/**
 * Whether the server refused the session: a 401, or a 400 (no refresh
 * cookie at all). Only this ends a session on the page; anything else (a
 * 403 or 404 from a proxy mid-deploy, an answer that cannot be read) is
 * treated as a failure to try again.
 */
export function isRefusal(error) {
  return error instanceof ApiError && (error.status === 400 || error.status === 401);
}

/** The current session's number, to check after an await that it has not ended meanwhile. */
export function currentSession() {
  return session;
}

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** `callback({ok: true})` when the server answers again, `{ok: false, retryIn, error}` while a refresh keeps failing. */
export function whenConnectionChanges(callback) {
  onConnection = callback;
}

async function send(method, path, { body, token, headers = {}, signal, keepalive, stream } = {}) {
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
  // (a stream's body is read by its caller, as it comes)
  if (stream && response.ok) return { status: response.status, body: response.body, headers: response.headers };
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const problem = data || { detail: `request failed (${response.status})` };
    if (response.status === 503 && !data) problem.detail = 'The server is unavailable (restarting or busy).';
    let retryAfter = null;
    if (response.status === 429 || response.status === 503) {
      const wait = response.headers.get('retry-after');
      if (wait) problem.detail = `${problem.detail} (try again in ${wait} s)`;
      if (/^\d+$/.test(wait || '')) retryAfter = Number(wait);
    }
    throw new ApiError(response.status, problem, retryAfter);
  }
  return { status: response.status, body: data, headers: response.headers };
}

/** The `sub` of an access token (a JWT; only read here, the servers verify it). */
function subjectOf(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub ?? null;
  } catch {
    return null;
  }
}

function adopt(pair) {
  if (typeof pair?.access_token !== 'string') throw new ApiError(0, { detail: 'The server sent an unreadable answer.' });
  const sub = subjectOf(pair.access_token);
  if (subject !== null && sub !== subject) {
    // Not told to the other tabs: the one that signed the other person in is theirs.
    endSession();
    onSignedOut('Someone else has signed in in another tab. Please log in again.');
    throw new ApiError(401, { detail: 'Signed in as someone else in another tab.' });
  }
  subject = sub;
  accessToken = pair.access_token;
  // The refresh token is in the HttpOnly cookie only, never in `pair`.
  const refreshIn = Math.max(5, pair.expires_in - 30);
  freshUntil = Date.now() + refreshIn * 1000;
  scheduleRefresh(refreshIn);
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
  const mine = session;
  try {
    await refresh();
  } catch (error) {
    if (mine !== session) return;
    if (isRefusal(error)) {
      signOutLocally();
      return;
    }
    refreshRetry = Math.min(refreshRetry ? refreshRetry * 2 : 2, 60);
    onConnection({ ok: false, retryIn: refreshRetry, error, retry: backgroundRefresh });
    scheduleRefresh(refreshRetry);
  }
}

/** Forgets the session here: its token, its timers, and the answers still to come to its requests. */
function endSession() {
  session += 1;
  subject = null;
  accessToken = null;
  refreshRetry = 0;
  clearTimeout(refreshTimer);
}

function signOutLocally() {
  endSession();
  refusedAt = performance.now();
  otherTabs?.postMessage({ type: 'ended' });
  onSignedOut();
}

/**
 * Ends the session here because the server ended it (the password
 * changed, the account deleted): no request made, the other tabs told,
 * `message` shown.
 */
export function endedByServer(message) {
  endSession();
  otherTabs?.postMessage({ type: 'ended' });
  onSignedOut(message);
}

export function signedIn() {
  return accessToken !== null;
}

export async function register(username, password, email) {
  const body = { username, password };
  if (email) body.email = email;
  return (await send('POST', '/v1/auth/register', { body })).body;
}

/** Sets a new password with a reset link's token (no session needed). */
export async function resetPassword(token, newPassword) {
  await send('POST', '/v1/auth/password-reset/confirm', { body: { token, new_password: newPassword } });
}

/** Asks for a reset link by mail (no session needed): answered alike whatever the account. */
export async function requestPasswordReset(login) {
  await send('POST', '/v1/auth/password-reset', { body: { login } });
}

/** Verifies an e-mail address with its mailed link's token (no session needed). */
export async function verifyEmail(token) {
  await send('POST', '/v1/auth/verify-email', { body: { token } });
}

/**
 * Signs in with a password. An account with a second factor answers no
 * tokens yet: the second step's `{ token, methods }` are returned, for
 * `loginSecondStep`; otherwise nothing.
 */
export async function login(username, password) {
  const { body } = await send('POST', '/v1/auth/login', { body: { username, password }, headers: SESSION });
  endSession(); // whatever came before is over
  if (body?.mfa_required) return { token: body.mfa_token, methods: body.methods || [] };
  adopt(body);
  return null;
}

/** A login's second step: the first step's token and a code (`kind`: `totp` or `recovery_code`). */
export async function loginSecondStep(token, kind, code) {
  const { body } = await send('POST', '/v1/auth/login/mfa', { body: { mfa_token: token, [kind]: code }, headers: SESSION });
  endSession();
  adopt(body);
}

// ---- passkeys (WebAuthn) ----------------------------------------------------
// The server's options carry their binary fields in base64url (as JSON
// must); the browser's API takes and gives ArrayBuffers.

const fromBase64url = (text) => {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)).buffer;
};
const toBase64url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** Whether this browser can use passkeys at all. */
export function passkeysSupported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

/** The browser's answer, as JSON can carry it. */
function credentialJson(credential) {
  const response = {};
  for (const name of ['clientDataJSON', 'attestationObject', 'authenticatorData', 'signature', 'userHandle']) {
    const value = credential.response[name];
    if (value) response[name] = toBase64url(value);
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response,
    extensions: credential.getClientExtensionResults?.() ?? {},
  };
}

/**
 * Registers a passkey on this device for the signed-in user, called
 * `name`, confirmed with `{current_password, code?, passkey?}`; the new
 * passkey (discoverable: the server's options ask it to live on the
 * authenticator, as a sign-in asks no username).
 */
export async function addPasskey(name, confirmation) {
  const { body: options } = await call('POST', '/v1/users/me/passkeys/register/start', { body: confirmation });
  const publicKey = options.publicKey;
  publicKey.challenge = fromBase64url(publicKey.challenge);
  publicKey.user.id = fromBase64url(publicKey.user.id);
  for (const excluded of publicKey.excludeCredentials || []) excluded.id = fromBase64url(excluded.id);
  const credential = await navigator.credentials.create({ publicKey });
  const { body } = await call('POST', '/v1/users/me/passkeys/register/finish', { body: { name, credential: credentialJson(credential) } });
  return body;
}

/** A passkey of this device answering a fresh challenge: `{challenge_id, credential}`. */
export async function passkeyAnswer() {
  const { body: options } = await send('POST', '/v1/auth/passkey/start', { headers: SESSION });
  const publicKey = options.publicKey;
  publicKey.challenge = fromBase64url(publicKey.challenge);
  for (const allowed of publicKey.allowCredentials || []) allowed.id = fromBase64url(allowed.id);
  const credential = await navigator.credentials.get({ publicKey });
  return { challenge_id: options.challenge_id, credential: credentialJson(credential) };
}

/** Signs in with a passkey of this device (no username: the passkey names its account). */
export async function loginWithPasskey() {
  const { body } = await send('POST', '/v1/auth/passkey/finish', { body: await passkeyAnswer(), headers: SESSION });
  endSession();
  adopt(body);
}

// Refreshes run one at a time across this browser's tabs too (Web Locks):
// each then sends the cookie the one before it set, a plain rotation. Tabs
// that refresh together (a laptop waking) would otherwise all send the same
// token, and past the server's 3 exchanges again within the reuse grace
// that is reuse, which ends the session in every tab. (A browser without
// Web Locks refreshes its tabs concurrently and meets that cap.)
//
// A refresh that gets no answer in 5 s is given up as a network failure
// (retried 2 s later), and lets go of the lock, but the request itself is
// not aborted: should the server have rotated the token, its answer still
// sets the new cookie, and the next refresh sends that one. (Aborting it
// would lose the cookie, and the old one sent after the grace is reuse.)
const REFRESH_PATIENCE_MS = 5_000;
function oneTabAtATime(work) {
  return navigator.locks ? navigator.locks.request('todo-refresh', work) : work();
}

function withPatience(request, ms = REFRESH_PATIENCE_MS) {
  let timer;
  const giveUp = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ApiError(0, { detail: 'The server is not answering.' })), ms);
  });
  request.catch(() => {}); // (answered after we gave up: nobody is waiting)
  return Promise.race([request, giveUp]).finally(() => clearTimeout(timer));
}

/**
 * A new access token from the refresh cookie; fails when there is no
 * session. One at a time: refresh tokens rotate, and two refreshes with the
 * same cookie would look like a stolen token being replayed.
 */
export function refresh() {
  const mine = session;
  refreshing ??= oneTabAtATime(() => withPatience(send('POST', '/v1/auth/refresh', { body: {}, headers: SESSION })))
    .then(({ body }) => {
      // Logged out meanwhile: the answer is not this session's to adopt.
      if (mine !== session) throw new ApiError(401, { detail: 'Logged out.' });
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
    // Ten seconds at most: a hung logout says so rather than leave the
    // person believing they logged out.
    await withPatience(send('POST', '/v1/auth/logout', { body: {}, headers: SESSION }), 10_000);
  } catch (error) {
    // Over only when the server said so: a 401 (already over) or 400 (no cookie).
    if (!isRefusal(error)) throw error;
  }
  endSession();
  otherTabs?.postMessage({ type: 'ended', loggedOut: true });
}

/**
 * An authenticated call; on an expired token, refreshes once and retries.
 * Signs out only when the server refuses the refresh; a refresh that cannot
 * reach the server throws its (transient) error and keeps the session.
 */
export async function call(method, path, { body, headers, signal, keepalive, stream } = {}) {
  try {
    return await send(method, path, { body, headers, signal, keepalive, stream, token: accessToken });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    const mine = session;
    try {
      await refresh();
    } catch (refreshError) {
      if (mine !== session || !isRefusal(refreshError)) throw refreshError;
      signOutLocally();
      throw error;
    }
    try {
      return await send(method, path, { body, headers, signal, keepalive, stream, token: accessToken });
    } catch (retryError) {
      // Refused even with a token just issued: the server cannot check it
      // yet (a task server that has not fetched a new signing key), which
      // passes. Not the end of the session (the refresh was accepted): a
      // failure to try again.
      if (retryError instanceof ApiError && retryError.status === 401) {
        throw new ApiError(503, { detail: 'The server could not check your session just now.' });
      }
      throw retryError;
    }
  }
}

// A live stream that says nothing for this long (the server sends a
// comment every 15 s) is taken for dead: a connection lost without a word
// (a laptop asleep, a network gone) would otherwise wait forever.
const QUIET_MS = 45_000;

/**
 * Follows this session's changes live (`GET /v1/events`, server-sent
 * events). EventSource cannot send the access token, so the stream is
 * read with fetch. With `lastEventId` it resumes after that event (no gap,
 * no duplicate); without, it starts now. `onOpen()` once the server took
 * it; `onEvent({id, type, change})` for each change, in order; `onId(id)`
 * for a block with an id and no change (the server names where a stream
 * starts, to resume from before any change came). Resolves
 * when the server ends the stream (the token expired or was revoked, a
 * shutdown); rejects with an ApiError: the refusal (410: the cursor is
 * older than what the server keeps; 429: too many streams, `retryAfter`),
 * or status 0 when the connection fails or goes quiet; with an AbortError
 * when `signal` aborts it. Nothing of a session that has ended is passed on.
 */
export async function follow({ lastEventId, signal, onOpen, onEvent, onId }) {
  const mine = session;
  const over = () => new DOMException('The session has ended.', 'AbortError');
  // A token due for its exchange is exchanged first (the stream would end
  // with it): one refresh, shared with the background one and the tabs'.
  if (Date.now() >= freshUntil) {
    try {
      await refresh();
    } catch (error) {
      if (mine === session && isRefusal(error)) signOutLocally();
      throw error;
    }
  }
  if (mine !== session || accessToken === null) throw over();
  const quiet = new AbortController();
  const stop = () => quiet.abort();
  signal?.addEventListener('abort', stop);
  let timer;
  let silent = false;
  const listen = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { silent = true; quiet.abort(); }, QUIET_MS);
  };
  let reader;
  try {
    listen();
    const headers = { accept: 'text/event-stream' };
    if (lastEventId) headers['last-event-id'] = lastEventId;
    const { body } = await call('GET', '/v1/events', { headers, signal: quiet.signal, stream: true });
    if (mine !== session) throw over();
    onOpen?.();
    reader = body.pipeThrough(new TextDecoderStream()).getReader();
    // The event-stream format (HTML's server-sent events): fields per
    // line, an event ends at a blank line, comments start with ":".
    let buffer = '';
    let id = lastEventId || null;
    let type = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (mine !== session) throw over();
      if (done) return;
      listen();
      buffer += value;
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // (a "\r" last may be half of a "\r\n" still to come)
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === '\r')) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
        if (line === '') {
          if (data.length) {
            let change = null;
            try {
              change = JSON.parse(data.join('\n'));
            } catch {
              // (unreadable: passed over, as a browser's EventSource would hand it on unread)
            }
            if (change) onEvent({ id, type: type || 'message', change });
          } else if (id !== null) {
            onId?.(id);
          }
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // a keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
        if (field === 'id' && !text.includes('\0')) id = text;
        else if (field === 'event') type = text;
        else if (field === 'data') data.push(text);
      }
    }
  } catch (error) {
    if (signal?.aborted || mine !== session) throw over();
    if (error instanceof ApiError) throw error;
    throw new ApiError(0, { detail: silent ? 'The live stream went quiet.' : 'The live stream was cut.' });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', stop);
    reader?.cancel().catch(() => {});
    quiet.abort(); // (the request too, whatever ended it)
  }
}
