// The page: log in or register, then list tasks by view (Open, Today,
// Upcoming, Overdue, Completed, Archived), search, add (with quick add),
// edit, complete, archive and delete them, with undo. Everything is built
// with DOM calls and textContent: user data never becomes markup.
//
// What it promises a person: focus stays where they were after every list
// action; a network blip never signs them out or loses what they typed;
// every change shows at once and is rolled back, visibly, if the server did
// not take it; only the newest answer to a search is shown.

import * as api from './api.js';
import {
  addDays, dateOnlyDue, dayHeading, daysFrom, friendlyDue, isDateOnly, parseQuickAdd, startOfDay, toApiTime,
} from './dates.js';

const $ = (id) => document.getElementById(id);
const view = { boot: $('boot'), auth: $('auth-view'), tasks: $('tasks-view') };
const PAGE_SIZE = 20;
const UNDO_MS = 6000;
const PRIORITY = ['None', 'Low', 'Medium', 'High'];
const FAR_FUTURE = '9999-12-31T00:00:00Z';

const state = {
  view: 'open',
  cursors: [null], // the cursor of each page seen, for Previous
  page: 0,
  next: null,
  items: [], // the tasks shown, in order
  me: null,
  loadSeq: 0, // only the newest list answer is shown
  loadAbort: null,
  loadRetry: 0,
  loadRetryTimer: null,
  pendingDeletes: new Map(), // id -> {task}: hidden now, deleted when the undo time is over
  pendingChanges: new Map(), // id -> the task as changed on the page, until the server answers
  editor: null, // {id, form, original, kept}
  quickLiteral: false,
  knownLabels: new Set(),
  loading: false, // a list read is on its way
  saved: new Map(), // id -> the version this page's own last write of it got back (its live event is not news)
  projects: [], // the caller's projects, each with their role, the Inbox first
  project: null, // the project shown (null: all of them)
};

// Repeat and remind choices: what the pickers offer, as the API spells them.
const REPEATS = [
  ['', 'Does not repeat'], ['FREQ=DAILY', 'Every day'], ['FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR', 'Every weekday'],
  ['FREQ=WEEKLY', 'Every week'], ['FREQ=MONTHLY', 'Every month'], ['FREQ=YEARLY', 'Every year'],
];
const REMINDS = [
  ['', 'No reminder'], ['PT0M', 'At the due time'], ['PT15M', '15 minutes before'],
  ['PT1H', '1 hour before'], ['P1D', '1 day before'],
];
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
function fillChoices(select, choices, chosen = '') {
  select.replaceChildren(...choices.map(([value, text]) => new Option(text, value, false, value === chosen)));
}
const repeatName = (rule) => REPEATS.find(([value]) => value === rule)?.[1] || 'Repeats';
/** The caller's role in a project (null: not one of theirs, as far as the page knows). */
const roleIn = (projectId) => state.projects.find((p) => p.id === projectId)?.role ?? null;

// What each view asks the API for. Today includes what is overdue (as
// Todoist's does); the dated views sort by due date.
const VIEWS = {
  open: { title: 'Open', empty: 'Nothing to do. Add a task above.', params: () => ({ done: 'false' }) },
  today: {
    title: 'Today', empty: 'Nothing due today.', sort: 'due',
    params: (now) => ({ done: 'false', due_before: toApiTime(startOfDay(addDays(now, 1))) }),
  },
  upcoming: {
    title: 'Upcoming', empty: 'Nothing scheduled from today on.', sort: 'due', byDay: true,
    params: (now) => ({ done: 'false', due_after: toApiTime(new Date(startOfDay(now) - 1000)) }),
  },
  overdue: {
    title: 'Overdue', empty: 'Nothing overdue.', sort: 'due',
    params: (now) => ({ done: 'false', due_before: toApiTime(now) }),
  },
  completed: { title: 'Completed', empty: 'No completed tasks yet.', params: () => ({ done: 'true' }) },
  archived: { title: 'Archived', empty: 'Nothing archived.', params: () => ({ archived: 'true' }) },
};

/** Whether a task belongs in the current view (after a change the page made itself). */
function belongs(task, now = new Date()) {
  if (state.view === 'archived') return task.archived;
  if (task.archived) return false;
  if (state.view === 'completed') return task.done;
  if (task.done) return false;
  const due = task.due_at ? new Date(task.due_at) : null;
  if (state.view === 'today') return due !== null && due < startOfDay(addDays(now, 1));
  if (state.view === 'overdue') return due !== null && due < now;
  if (state.view === 'upcoming') return due !== null && due >= startOfDay(now);
  return true;
}

// ---- feedback -------------------------------------------------------------

function announce(message) {
  $('status').textContent = '';
  requestAnimationFrame(() => { $('status').textContent = message; });
}

function showBanner(message) {
  $('banner-text').textContent = message;
  $('banner').hidden = !message;
}
// (on the sign-in page there is no new task's title to go to)
$('banner-dismiss').addEventListener('click', () => { showBanner(''); (view.tasks.hidden ? $('main') : $('new-title')).focus(); });

function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error, .form-error')) p.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/** Shows a problem next to the fields it names, or on the form. */
function showErrors(form, error) {
  clearErrors(form);
  const fields = error instanceof api.ApiError ? error.fields : {};
  let placed = false;
  for (const [field, message] of Object.entries(fields)) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (!slot) continue;
    slot.textContent = message;
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`) || slot.parentElement.querySelector('input, select, textarea');
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      if (!placed) input.focus();
    }
    placed = true;
  }
  if (!placed) form.querySelector('.form-error').textContent = error.message;
}

/** A problem the page finds itself in what was typed, shown as the server's are. */
const fieldError = (field, message) => new api.ApiError(400, { errors: [{ field, message }] });

// Typing in a field clears the error shown for it.
document.addEventListener('input', (event) => {
  const input = event.target;
  const form = input.closest?.('form');
  if (!form || !input.name) return;
  const slot = form.querySelector(`[data-error-for="${CSS.escape(input.name)}"]`);
  if (slot) slot.textContent = '';
  input.removeAttribute('aria-invalid');
});

/** "offline, retrying": shown while the server cannot be reached; the page keeps everything meanwhile. */
let retryNow = null;
function showConnection(problem) {
  const box = $('connection');
  if (!problem) {
    if (!box.hidden) announce('Back online');
    box.hidden = true;
    retryNow = null;
    return;
  }
  const why = problem.error?.status === 0 ? 'Offline' : 'The server is not answering';
  $('connection-text').textContent = `${why}, retrying in ${problem.retryIn} s. Nothing you typed is lost.`;
  retryNow = problem.retry;
  box.hidden = false;
}
$('retry-now').addEventListener('click', () => retryNow?.());
window.addEventListener('online', () => retryNow?.());
api.whenConnectionChanges((change) => showConnection(change.ok ? null : change));

/** The message for a change that did not reach the server. */
function failureText(error) {
  if (error instanceof api.ApiError && error.status === 0) return 'you are offline or the server cannot be reached';
  return error.message;
}

// ---- signing in and out ---------------------------------------------------

function selectTab(register) {
  $('tab-login').setAttribute('aria-selected', String(!register));
  $('tab-register').setAttribute('aria-selected', String(register));
  $('login-form').hidden = register;
  $('register-form').hidden = !register;
  $('auth-title').textContent = register ? 'Create your account' : 'Welcome back';
  (register ? $('register-username') : $('login-username')).focus();
}

/**
 * The login form, with nothing of the session before it left behind: no
 * list, no typed text, no search, no timer or request that would act for
 * the signed-out user (the next person at this computer starts afresh).
 */
function showAuth(message) {
  view.boot.hidden = true;
  view.tasks.hidden = true;
  view.auth.hidden = false;
  $('who').hidden = true;
  stopLive();
  closeEditor();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  clearAccount();
  $('session-list').replaceChildren();
  $('webhook-list').replaceChildren();
  // (the API tokens' dialog: its list, its projects, what was typed)
  $('token-list').replaceChildren();
  $('token-project').replaceChildren();
  $('token-secret').value = '';
  $('token-form').reset();
  // Deletes still waiting for their undo time were sent on logout; when the
  // session ended by itself they cannot be, and the tasks stay.
  closeToast();
  state.pendingDeletes.clear();
  state.pendingChanges.clear();
  state.saved.clear();
  state.loadSeq += 1;
  state.loadAbort?.abort();
  state.loadAbort = null;
  clearTimeout(state.loadRetryTimer);
  clearTimeout(filterTimer);
  clearTimeout(previewTimer);
  previewSaid = '';
  state.loadRetry = 0;
  Object.assign(state, { view: 'open', cursors: [null], page: 0, next: null, items: [], me: null, quickLiteral: false, projects: [], project: null });
  state.knownLabels = new Set();
  labelsReadAt = 0;
  $('known-labels').replaceChildren();
  $('task-list').replaceChildren();
  for (const form of [$('new-task'), $('filters')]) {
    form.reset();
    clearErrors(form);
  }
  showQuickPreview();
  showBanner(message || '');
  $('connection').hidden = true;
  retryNow = null;
  $('status').textContent = ''; // (it may still say what was typed)
  // The sign-in form, not a reset form or "Forgot password?" left open.
  $('reset-form').hidden = true;
  hideForgot();
  hideSecondStep();
  document.querySelector('#auth-view .tabs').hidden = false;
  selectTab(false);
}

async function showTasks(username) {
  view.boot.hidden = true;
  view.auth.hidden = true;
  view.tasks.hidden = false;
  $('who').hidden = false;
  if (username) state.me = username;
  $('whoami').textContent = state.me ? `Signed in as ${state.me}` : '';
  showBanner('');
  // The filters open on a wide screen; on a phone they wait behind their summary.
  $('filter-box').open = !matchMedia('(max-width: 560px)').matches;
  selectView(state.view, { load: false });
  fillChoices($('new-repeat'), REPEATS);
  fillChoices($('new-remind'), REMINDS);
  showNotifyButton();
  const mine = api.currentSession();
  await loadProjects();
  if (api.currentSession() !== mine) return;
  await loadPage({ first: true });
  if (api.currentSession() !== mine) return;
  // The first load takes a moment: focus goes to the new task's title only if
  // the user has not moved it meanwhile (a key pressed then must not be lost).
  const moved = document.activeElement && document.activeElement !== document.body
    && !view.auth.contains(document.activeElement);
  if (!moved) $('new-title').focus();
  startLive();
}

$('tab-login').addEventListener('click', () => selectTab(false));
$('tab-register').addEventListener('click', () => selectTab(true));

/** Runs a form's submit once at a time: a double click or a second Enter does not send twice. */
function guardSubmit(form, busyLabel, handler) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.dataset.busy) return;
    const button = form.querySelector('button[type=submit]');
    const label = button.textContent;
    form.dataset.busy = 'true';
    form.setAttribute('aria-busy', 'true');
    button.disabled = true;
    button.textContent = busyLabel;
    try {
      await handler(form);
    } finally {
      delete form.dataset.busy;
      form.removeAttribute('aria-busy');
      button.disabled = false;
      button.textContent = label;
    }
  });
}

guardSubmit($('login-form'), 'Logging in…', async (form) => {
  clearErrors(form);
  const username = form.username.value.trim();
  try {
    const secondStep = await api.login(username, form.password.value);
    form.reset();
    if (secondStep) {
      showSecondStep(username.toLowerCase(), secondStep);
      return;
    }
    await showTasks(username.toLowerCase());
    announce('Logged in');
  } catch (error) {
    showErrors(form, error);
  }
});

// A passkey signs in alone: no username, no password (the device checks
// it is its owner). Offered only where the browser can.
$('passkey-login').hidden = !api.passkeysSupported();
let passkeySigningIn = false;
$('passkey-login').addEventListener('click', async () => {
  if (passkeySigningIn) return;
  passkeySigningIn = true;
  const form = $('login-form');
  clearErrors(form);
  const button = $('passkey-login');
  button.setAttribute('aria-busy', 'true');
  try {
    await api.loginWithPasskey();
    const { body: me } = await api.call('GET', '/v1/users/me');
    form.reset();
    await showTasks(me.username);
    announce('Logged in');
  } catch (error) {
    // (the person closed the browser's dialog: nothing to say)
    if (error?.name === 'NotAllowedError' || error?.name === 'AbortError') return;
    const refused = error instanceof api.ApiError && error.problem.type === 'urn:todo:problem:invalid-passkey';
    form.querySelector('.form-error').textContent = refused
      ? 'That passkey did not sign you in: it may have been removed. Sign in with your password.'
      : (error instanceof api.ApiError ? failureText(error) : 'This device could not use a passkey.');
  } finally {
    passkeySigningIn = false;
    button.removeAttribute('aria-busy');
  }
});

// ---- a login's second step ----------------------------------------------------

// The first step's token lives here only while the second step is shown.
const secondStep = { username: null, token: null, kind: 'totp' };

function secondStepKind(kind) {
  secondStep.kind = kind;
  const recovery = kind === 'recovery_code';
  $('mfa-code-label').textContent = recovery ? 'Recovery code' : 'Code from your authenticator app';
  $('mfa-code-hint').textContent = recovery
    ? 'One of the codes you saved when you set up two-step sign-in; each works once.'
    : 'Six digits; a new one every 30 seconds.';
  $('mfa-code').inputMode = recovery ? 'text' : 'numeric';
  $('mfa-switch').textContent = recovery ? 'Use the authenticator app instead' : 'Use a recovery code instead';
  $('mfa-code').value = '';
}

function showSecondStep(username, step) {
  Object.assign(secondStep, { username, token: step.token });
  document.querySelector('#auth-view .tabs').hidden = true;
  $('login-form').hidden = true;
  $('register-form').hidden = true;
  $('auth-title').textContent = 'Enter your code';
  const form = $('mfa-form');
  clearErrors(form);
  secondStepKind('totp');
  $('mfa-switch').hidden = !step.methods.includes('recovery_code');
  form.hidden = false;
  $('mfa-code').focus();
}

/** Back to the password: the first step's token is forgotten. */
function hideSecondStep() {
  Object.assign(secondStep, { username: null, token: null, kind: 'totp' });
  const form = $('mfa-form');
  form.hidden = true;
  form.reset();
  clearErrors(form);
}

$('mfa-switch').addEventListener('click', () => {
  secondStepKind(secondStep.kind === 'totp' ? 'recovery_code' : 'totp');
  clearErrors($('mfa-form'));
  $('mfa-code').focus();
});
$('mfa-back').addEventListener('click', () => {
  hideSecondStep();
  document.querySelector('#auth-view .tabs').hidden = false;
  selectTab(false);
});

guardSubmit($('mfa-form'), 'Verifying…', async (form) => {
  clearErrors(form);
  const code = form.code.value.trim();
  if (!code) {
    showErrors(form, fieldError('code', secondStep.kind === 'totp' ? 'Enter the six digits the app shows.' : 'Enter a recovery code.'));
    return;
  }
  const { username, token, kind } = secondStep;
  if (!token) return;
  try {
    await api.loginSecondStep(token, kind, code);
  } catch (error) {
    const type = error instanceof api.ApiError ? error.problem.type : '';
    if (type === 'urn:todo:problem:invalid-mfa-token') {
      // Too late, or too many codes: the password again.
      hideSecondStep();
      showAuth('The sign-in took too long or too many codes were tried: sign in again.');
      return;
    }
    if (type === 'urn:todo:problem:invalid-second-factor') {
      showErrors(form, fieldError('code', kind === 'totp'
        ? 'That code is wrong or was used already: wait for the next one.'
        : 'That recovery code is wrong or was used already.'));
    } else {
      // (a code that is not one is named by the server as `totp` or `recovery_code`)
      const field = error instanceof api.ApiError && (error.fields.totp || error.fields.recovery_code);
      showErrors(form, field ? fieldError('code', field) : error);
    }
    form.code.select();
    return;
  }
  hideSecondStep();
  await showTasks(username);
  announce('Logged in');
});

guardSubmit($('register-form'), 'Creating…', async (form) => {
  clearErrors(form);
  const username = form.username.value.trim();
  try {
    const user = await api.register(username, form.password.value, form.email.value.trim());
    await api.login(username, form.password.value);
    form.reset();
    await showTasks(user.username);
    announce('Account created');
  } catch (error) {
    showErrors(form, error);
  }
});

// ---- a forgotten password -----------------------------------------------------

// The same words whatever the login: whether an account exists, or has a
// verified address, is not told (the server answers alike, and mails after).
const FORGOT_SENT = 'If that account has a verified e-mail address, a reset link is on its way. It works once, for 30 minutes.';

function showForgot() {
  const form = $('forgot-form');
  hideForgot();
  document.querySelector('#auth-view .tabs').hidden = true;
  $('login-form').hidden = true;
  $('register-form').hidden = true;
  $('auth-title').textContent = 'Forgot your password?';
  showBanner('');
  form.login.value = $('login-username').value.trim();
  form.hidden = false;
  form.login.focus();
}

function hideForgot() {
  const form = $('forgot-form');
  form.hidden = true;
  form.reset();
  clearErrors(form);
  $('forgot-status').textContent = '';
}

$('forgot').addEventListener('click', showForgot);
$('forgot-back').addEventListener('click', () => {
  hideForgot();
  document.querySelector('#auth-view .tabs').hidden = false;
  selectTab(false);
});

guardSubmit($('forgot-form'), 'Sending…', async (form) => {
  clearErrors(form);
  const status = $('forgot-status');
  status.textContent = '';
  const login = form.login.value.trim();
  if (!login) {
    showErrors(form, fieldError('login', 'Enter your username or e-mail address.'));
    return;
  }
  try {
    await api.requestPasswordReset(login);
    // (set a moment after clearing: a screen reader hears a second answer too)
    requestAnimationFrame(() => { status.textContent = FORGOT_SENT; });
  } catch (error) {
    if (error instanceof api.ApiError && Object.keys(error.fields).length) {
      showErrors(form, error);
      return;
    }
    const code = error instanceof api.ApiError ? error.status : 0;
    form.querySelector('.form-error').textContent = code === 429 ? 'Too many requests; try again in a while.'
      : error.problem?.type === 'urn:todo:problem:no-mail' ? 'This server sends no mail: ask an administrator for a reset link.'
        : failureText(error);
  }
  // (a click on the button, disabled while busy, left focus nowhere)
  if (document.activeElement === document.body) form.login.focus();
});

// Logging out ends the session on the server; when the server cannot be
// reached the page says so and stays signed in, rather than claim a logout
// while the refresh cookie still holds a live session.
let loggingOut = false;
$('logout').addEventListener('click', async () => {
  if (loggingOut) return;
  loggingOut = true;
  const button = $('logout');
  // Busy, without disabling the button (a disabled button drops focus to <body>).
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Logging out…';
  try {
    await flushDeletes();
    await api.logout();
  } catch (error) {
    showBanner(`Not logged out: ${failureText(error)}. You are still signed in here; try again.`);
    return;
  } finally {
    loggingOut = false;
    button.removeAttribute('aria-busy');
    button.textContent = 'Log out';
  }
  showAuth();
  announce('Logged out');
});

api.whenSignedOut((why) => showAuth(why || 'Your session has ended. Please log in again.'));

// ---- views and filters ------------------------------------------------------

function selectView(name, { load = true } = {}) {
  state.view = name;
  const config = VIEWS[name];
  for (const button of document.querySelectorAll('.views [data-view]')) {
    if (button.dataset.view === name) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  $('view-title').textContent = config.title;
  // The dated views are sorted by due date; the sort choice is for the others.
  $('sort-field').hidden = Boolean(config.sort);
  closeEditor();
  if (load) {
    state.cursors = [null];
    state.page = 0;
    loadPage({ first: true });
  }
}

for (const button of document.querySelectorAll('.views [data-view]')) {
  button.addEventListener('click', () => selectView(button.dataset.view));
}

// The labels in use, for the label filter's suggestions and its matching:
// read from the newest 100 tasks when the filter is first focused (the API
// has no list of labels), and from every list shown.
let labelsReadAt = 0;
$('filter-label').addEventListener('focus', async () => {
  if (Date.now() - labelsReadAt < 60_000) return;
  labelsReadAt = Date.now();
  const mine = api.currentSession();
  try {
    for (const archived of ['false', 'true']) {
      const { body } = await api.call('GET', `/v1/tasks?limit=100&archived=${archived}`);
      if (api.currentSession() !== mine) return;
      for (const task of body.items) for (const label of task.labels) state.knownLabels.add(label);
    }
    $('known-labels').replaceChildren(...[...state.knownLabels].sort().map((l) => new Option(l)));
  } catch {
    labelsReadAt = 0; // the labels already seen will do; try again next time
  }
});

/** A typed label as the tasks spell it: labels are matched exactly by the API, people type "Home" for "home". */
function resolveLabel(typed) {
  if (!typed) return '';
  const lower = typed.toLowerCase();
  const known = [...state.knownLabels];
  return known.find((l) => l === typed) || known.find((l) => l.toLowerCase() === lower) || typed;
}

function listQuery(cursor, overrides = {}) {
  const f = $('filters');
  const config = VIEWS[state.view];
  const params = new URLSearchParams({ sort: config.sort || f.sort.value, limit: String(PAGE_SIZE), ...config.params(new Date()) });
  if (f.q.value.trim()) params.set('q', f.q.value.trim());
  const label = resolveLabel(f.label.value.trim());
  if (label) params.set('label', label);
  if (state.project) params.set('project', state.project);
  if (cursor) params.set('cursor', cursor);
  for (const [key, value] of Object.entries(overrides)) params.set(key, value);
  return params;
}

// "Due latest" with undated tasks last. The API's descending due order puts
// undated tasks first, so the page reads the dated ones first (due_before
// leaves undated out), then the undated ones, which lead the plain order: a
// page cursor here is {undated, cursor}.
async function fetchDueLatest(cursor, signal) {
  const at = cursor || { undated: false, cursor: null };
  if (!at.undated) {
    const { body } = await api.call('GET', `/v1/tasks?${listQuery(at.cursor, { due_before: FAR_FUTURE })}`, { signal });
    if (body.next_cursor) return { items: body.items, next: { undated: false, cursor: body.next_cursor } };
    const rest = await fetchUndated(null, PAGE_SIZE - body.items.length, signal);
    return { items: body.items.concat(rest.items), next: rest.next };
  }
  return fetchUndated(at.cursor, PAGE_SIZE, signal);
}

async function fetchUndated(cursor, limit, signal) {
  if (limit <= 0) return { items: [], next: { undated: true, cursor: null } };
  const { body } = await api.call('GET', `/v1/tasks?${listQuery(cursor, { limit: String(limit) })}`, { signal });
  const undated = body.items.filter((t) => !t.due_at);
  const more = undated.length === body.items.length && body.next_cursor;
  return { items: undated, next: more ? { undated: true, cursor: body.next_cursor } : null };
}

async function fetchPage(cursor, signal) {
  if (!VIEWS[state.view].sort && $('filters').sort.value === '-due') return fetchDueLatest(cursor, signal);
  const { body } = await api.call('GET', `/v1/tasks?${listQuery(cursor)}`, { signal });
  return { items: body.items, next: body.next_cursor };
}

function setBusy(busy) {
  $('task-list').setAttribute('aria-busy', String(busy));
  $('loading').hidden = !busy;
}

/**
 * Loads the current page. Only the newest call's answer is shown (an older,
 * slower one is aborted and ignored); "Loading…" shows when an answer takes
 * more than a moment; a network failure is retried with backoff. Resolves
 * to whether this call's page is the one shown.
 */
async function loadPage({ first = false, quiet = false } = {}) {
  const seq = ++state.loadSeq;
  state.loadAbort?.abort();
  const abort = new AbortController();
  state.loadAbort = abort;
  clearTimeout(state.loadRetryTimer);
  // This read is sent after every change heard so far: it shows them.
  liveChanged = false;
  state.loading = true;
  // (a read for a change made elsewhere says nothing: no "Loading…")
  const busyTimer = quiet ? null : setTimeout(() => setBusy(true), first ? 0 : 150);
  const form = $('filters');
  try {
    const { items, next } = await fetchPage(state.cursors[state.page], abort.signal);
    if (seq !== state.loadSeq) return false;
    const shown = items.filter((t) => !state.pendingDeletes.has(t.id));
    clearErrors(form);
    state.loadRetry = 0;
    if (!$('connection').hidden) showConnection(null);
    if (!shown.length && state.page > 0) {
      // A page past the end (its tasks were done, archived or deleted):
      // step back to the last page that has tasks.
      state.page -= 1;
      state.next = null;
      announce('No more tasks');
      clearTimeout(busyTimer);
      loadPage().then(() => { state.next = null; $('next').disabled = true; fixPagerFocus(); });
      return false;
    }
    state.next = next;
    render(items);
    return true;
  } catch (error) {
    if (seq !== state.loadSeq || error.name === 'AbortError') return false;
    if (api.isTransient(error)) {
      state.loadRetry = Math.min(state.loadRetry ? state.loadRetry * 2 : 2, 60);
      const retry = () => { clearTimeout(state.loadRetryTimer); loadPage(); };
      showConnection({ error, retryIn: state.loadRetry, retry });
      state.loadRetryTimer = setTimeout(retry, state.loadRetry * 1000);
    } else if (state.project && error instanceof api.ApiError && error.status === 404) {
      // The project is gone for us (left, removed, deleted) between two
      // reads: back to all projects, as loadProjects does when it notices.
      await loadProjects();
      if (seq !== state.loadSeq) return false;
      if (state.project) showErrors(form, error);
      else loadPage();
    } else if (!(error instanceof api.ApiError && error.status === 401)) {
      showErrors(form, error);
    }
  } finally {
    clearTimeout(busyTimer);
    if (seq === state.loadSeq) {
      setBusy(false);
      state.loading = false;
      // A change heard while this read was out may not be in it.
      if (liveChanged) readAgainSoon();
    }
  }
  return false;
}

let filterTimer;
$('filters').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { state.cursors = [null]; state.page = 0; loadPage(); }, 250);
});
$('filters').addEventListener('submit', (event) => event.preventDefault());
$('next').addEventListener('click', async () => {
  if (!state.next) return;
  state.cursors[state.page + 1] = state.next;
  state.page += 1;
  const shown = await loadPage();
  fixPagerFocus();
  if (shown) announce(`Page ${state.page + 1}`);
});
$('prev').addEventListener('click', async () => {
  if (state.page === 0) return;
  state.page -= 1;
  const shown = await loadPage();
  fixPagerFocus();
  if (shown) announce(`Page ${state.page + 1}`);
});

/** A pager button that just turned disabled hands focus to the other one, never to <body>. */
function fixPagerFocus() {
  const active = document.activeElement;
  if (active && active !== document.body && !active.disabled) return;
  if (!$('prev').disabled) $('prev').focus();
  else if (!$('next').disabled) $('next').focus();
  else $('view-title').focus();
}

// ---- rendering and focus --------------------------------------------------

/** Where focus is in the list: which task, which of its controls, at which position. */
function rememberFocus() {
  const active = document.activeElement;
  const li = active?.closest?.('#task-list li.task');
  if (!li) return null;
  const rows = [...document.querySelectorAll('#task-list li.task')];
  return { id: li.dataset.id, control: active.dataset.control || 'toggle', index: rows.indexOf(li) };
}

/**
 * Puts focus back after the list changed: on the same control of the same
 * task; if that task left the list, on the task now in its place (or the
 * one before); in an empty list, on the view's heading.
 */
function restoreFocus(where) {
  if (!where) return;
  const rows = [...document.querySelectorAll('#task-list li.task')];
  const row = rows.find((li) => li.dataset.id === where.id)
    || rows[Math.min(where.index, rows.length - 1)];
  if (!row) {
    $('view-title').focus();
    return;
  }
  focusControl(row, row.dataset.id === where.id ? where.control : 'toggle');
}

/** A row's control, or the visible stand-in for it (on a phone the actions hide behind one button). */
function focusControl(row, control) {
  const wanted = row.querySelector(`[data-control="${control}"]`);
  if (wanted && wanted.checkVisibility()) wanted.focus();
  else if (row.querySelector('[data-control="menu"]')?.checkVisibility()) row.querySelector('[data-control="menu"]').focus();
  else row.querySelector('[data-control="toggle"]').focus();
}

// What each row (and day group) was built as: a list read that brings a
// task back as it is shown keeps its row, so focus, an open editor and a
// phone's open actions stay as they are, and a screen reader hears nothing.
const builtAs = new WeakMap();

function render(items, { focus } = {}) {
  const where = focus === undefined ? rememberFocus() : focus;
  const editor = state.editor;
  const shown = items.filter((t) => !state.pendingDeletes.has(t.id))
    .map((t) => state.pendingChanges.get(t.id) || t)
    .filter((t) => !state.pendingChanges.has(t.id) || belongs(t));
  // The task being edited stays while its editor is open, even when a read
  // no longer has it (changed or deleted elsewhere): what is typed is kept.
  if (editor) {
    editor.kept = false;
    const at = state.items.findIndex((t) => t.id === editor.id);
    if (at >= 0 && !shown.some((t) => t.id === editor.id)
      && !state.pendingChanges.has(editor.id) && !state.pendingDeletes.has(editor.id)) {
      shown.splice(Math.min(at, shown.length), 0, state.items[at]);
      editor.kept = true;
    }
  }
  state.items = VIEWS[state.view].byDay ? shown : nested(shown);
  for (const task of state.items) for (const label of task.labels) state.knownLabels.add(label);
  $('known-labels').replaceChildren(...[...state.knownLabels].sort().map((l) => new Option(l)));

  const list = $('task-list');
  const editorFocus = editor && editor.form.contains(document.activeElement) ? document.activeElement : null;
  const rows = new Map([...list.querySelectorAll('li.task')].map((li) => [li.dataset.id, li]));
  const row = (task) => reuseRow(rows.get(task.id), taskItem(task));
  if (VIEWS[state.view].byDay) place(list, dayGroups(state.items, row));
  else place(list, state.items.map(row));
  // An open editor survives a reload of the list, with what was typed in it.
  if (editor) {
    const row = list.querySelector(`li.task[data-id="${CSS.escape(editor.id)}"]`);
    if (row && editor.form.parentElement !== row) {
      row.append(editor.form);
      row.classList.add('editing');
      editorFocus?.focus();
    } else if (!row) {
      state.editor = null;
    }
  }

  const filtered = $('filter-q').value.trim() || $('filter-label').value.trim();
  $('empty').textContent = filtered ? 'No tasks match your search.' : VIEWS[state.view].empty;
  $('empty').hidden = state.items.length > 0;
  $('prev').disabled = state.page === 0;
  $('next').disabled = !state.next;
  // Numbered once there is more than one page (or was: an emptied last page steps back, numbered).
  $('page-label').textContent = state.page > 0 || state.next || state.cursors.length > 1 ? `Page ${state.page + 1}` : '';
  if (where && !editorFocus) restoreFocus(where);
}

/**
 * The row to show for a task: the one shown already when it would be built
 * the same; the one being edited, with what it shows renewed around its
 * editor (which keeps what is typed, and focus); else the new one.
 */
/** The tasks with each subtask after its parent (when both are on the page), in the list's order otherwise. */
function nested(items) {
  const here = new Set(items.map((t) => t.id));
  const children = new Map();
  for (const task of items) {
    if (task.parent_id && here.has(task.parent_id)) {
      if (!children.has(task.parent_id)) children.set(task.parent_id, []);
      children.get(task.parent_id).push(task);
    }
  }
  const out = [];
  const seen = new Set();
  const visit = (task) => {
    if (seen.has(task.id)) return;
    seen.add(task.id);
    out.push(task);
    for (const child of children.get(task.id) || []) visit(child);
  };
  for (const task of items) if (!task.parent_id || !here.has(task.parent_id)) visit(task);
  for (const task of items) visit(task); // (a cycle the page cannot place: in its order)
  return out;
}

/** How many of a task's parents are on the page (0 to 2): its indent. */
function depthOf(task) {
  let depth = 0;
  let at = task;
  while (depth < 2 && at.parent_id) {
    at = state.items.find((t) => t.id === at.parent_id);
    if (!at) break;
    depth += 1;
  }
  return depth;
}

function reuseRow(old, fresh) {
  const html = fresh.outerHTML;
  builtAs.set(fresh, html);
  if (!old) return fresh;
  if (builtAs.get(old) === html) {
    old.classList.remove('rolled-back'); // (as a row built anew would be)
    return old;
  }
  const form = state.editor?.form;
  if (form && form.parentElement === old) {
    for (const child of [...old.children]) if (child !== form) child.remove();
    form.before(...fresh.children);
    old.className = `${fresh.className} editing`;
    builtAs.set(old, html);
    return old;
  }
  return fresh;
}

/**
 * Makes `nodes` the children of `parent`, touching nothing when they are
 * already, and never taking out the one that holds focus (a node taken out
 * of the page loses it): the others are put around it.
 */
function place(parent, nodes) {
  const current = [...parent.children];
  if (current.length === nodes.length && current.every((node, i) => node === nodes[i])) return;
  const keep = nodes.find((node) => node.parentNode === parent && node.contains(document.activeElement));
  if (!keep) {
    parent.replaceChildren(...nodes);
    return;
  }
  for (const node of current) if (node !== keep) node.remove();
  const at = nodes.indexOf(keep);
  keep.before(...nodes.slice(0, at));
  keep.after(...nodes.slice(at + 1));
}

/** The Upcoming view: one group per day, each under its heading (a day's group kept as it is shown, when it is). */
function dayGroups(items, row) {
  const shownGroups = new Map([...$('task-list').querySelectorAll(':scope > li.day')].map((li) => [li.dataset.day, li]));
  const now = new Date();
  const groups = [];
  for (const task of items) {
    const day = startOfDay(new Date(task.due_at)).getTime();
    let group = groups.at(-1);
    if (!group || group.day !== day) {
      group = { day, tasks: [] };
      groups.push(group);
    }
    group.tasks.push(task);
  }
  return groups.map(({ day, tasks }) => {
    const said = dayHeading(new Date(day), now);
    const old = shownGroups.get(String(day));
    if (old && old.querySelector('.day-heading').textContent === said) {
      place(old.querySelector('ul.tasks'), tasks.map(row));
      return old;
    }
    const li = el('li', 'day');
    li.dataset.day = String(day);
    const id = `day-${day}`;
    const heading = el('h3', 'day-heading', said);
    heading.id = id;
    const ul = el('ul', 'tasks');
    ul.setAttribute('aria-labelledby', id);
    ul.append(...tasks.map(row));
    li.append(heading, ul);
    return li;
  });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, control, label, onClick, className = 'ghost') {
  const b = el('button', className, text);
  b.type = 'button';
  b.dataset.control = control;
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

/** Text a screen reader hears before a value that sighted people read from its colour or place. */
function srOnly(text) {
  return el('span', 'sr-only', text);
}

function taskItem(task) {
  const now = new Date();
  const viewOnly = roleIn(task.project_id) === 'viewer';
  const depth = depthOf(task);
  const li = el('li', `task${task.done ? ' done' : ''}${task.archived ? ' archived' : ''}${depth ? ` subtask depth-${depth}` : ''}`);
  li.dataset.id = task.id;

  const toggle = el('input', 'toggle');
  toggle.type = 'checkbox';
  toggle.checked = task.done;
  toggle.dataset.control = 'toggle';
  toggle.setAttribute('aria-label', `Done: ${task.title}`);
  // A viewer reads: no control that would write.
  toggle.disabled = viewOnly;
  toggle.addEventListener('change', () => setDone(task, toggle.checked));

  const body = el('div', 'body');
  const parent = task.parent_id && state.items.find((t) => t.id === task.parent_id);
  if (parent) body.append(srOnly(`Subtask of ${parent.title}: `));
  body.append(el('span', 'title', task.title));
  if (task.description) body.append(el('p', 'desc', task.description));
  const meta = el('div', 'meta');
  if (task.priority) {
    const prio = el('span', `prio p${task.priority}`);
    prio.append(srOnly('Priority: '), PRIORITY[task.priority]);
    meta.append(prio);
  }
  if (task.due_at) {
    const dueDate = new Date(task.due_at);
    const overdue = !task.done && dueDate < now;
    const due = el('span', `due${overdue ? ' overdue' : ''}`);
    // "Overdue" in words, not only in red.
    due.append(overdue ? 'Overdue: ' : 'Due ', friendlyDue(dueDate, now));
    due.title = dueDate.toLocaleString(undefined, isDateOnly(dueDate) ? { dateStyle: 'full' } : { dateStyle: 'full', timeStyle: 'short' });
    meta.append(due);
  }
  if (task.labels.length) {
    const labels = el('span', 'labels');
    labels.append(srOnly(task.labels.length === 1 ? 'Label: ' : 'Labels: '));
    task.labels.forEach((label, i) => {
      labels.append(el('span', 'chip', label));
      if (i < task.labels.length - 1) labels.append(srOnly(', '));
    });
    meta.append(labels);
  }
  if (task.recurrence) meta.append(el('span', 'chip plain repeat', repeatName(task.recurrence)));
  if (task.reminders?.length) meta.append(el('span', 'chip plain', task.reminders.length === 1 ? '1 reminder' : `${task.reminders.length} reminders`));
  if (!state.project && task.project_id) {
    const project = state.projects.find((p) => p.id === task.project_id);
    if (project && !project.inbox) meta.append(el('span', 'chip muted', project.name));
  }
  if (viewOnly) meta.append(el('span', 'chip muted', 'View only'));
  if (task.archived) meta.append(el('span', 'chip muted', 'Archived'));
  if (meta.childElementCount) body.append(meta);
  if (viewOnly) {
    li.append(toggle, body);
    return li;
  }

  const actions = el('div', 'actions');
  actions.id = `actions-${task.id}`;
  actions.append(
    // (the row a button is in when clicked: a row being edited is renewed around its editor)
    button('Edit', 'edit', `Edit ${task.title}`, (event) => openEditor(event.currentTarget.closest('li.task'), task)),
    button(task.archived ? 'Unarchive' : 'Archive', 'archive', `${task.archived ? 'Unarchive' : 'Archive'} ${task.title}`,
      () => setArchived(task, !task.archived)),
    button('Delete', 'delete', `Delete ${task.title}`, () => deleteTask(task), 'ghost danger-text'),
  );
  if (depth < 2) {
    // (last: the other actions keep their places for every task)
    actions.append(button('Add subtask', 'subtask', `Add subtask to ${task.title}`,
      (event) => openSubtaskForm(event.currentTarget.closest('li.task'), task)));
  }
  // On a phone the three actions wait behind one button.
  const menu = button('⋯', 'menu', `Actions for ${task.title}`, () => {
    const open = menu.closest('li.task').classList.toggle('menu-open');
    menu.setAttribute('aria-expanded', String(open));
    if (open) actions.querySelector('button').focus();
  }, 'ghost menu');
  menu.setAttribute('aria-expanded', 'false');
  menu.setAttribute('aria-controls', actions.id);

  li.append(toggle, body, menu, actions);
  return li;
}

// ---- changes: shown at once, rolled back visibly if the server refuses ----

const ifMatch = (task) => ({ 'if-match': `"v${task.version}"` });

/**
 * PATCHes a task. When it changed elsewhere meanwhile (412), the user's
 * change is applied to its latest version rather than dropped: the fields
 * they changed win, the others keep what the other change made.
 */
async function patchTask(task, changes) {
  const mine = api.currentSession();
  const path = `/v1/tasks/${task.id}`;
  try {
    return wrote((await api.call('PATCH', path, { body: changes, headers: ifMatch(task) })).body);
  } catch (error) {
    if (!(error instanceof api.ApiError && error.status === 412)) throw error;
    const latest = (await api.call('GET', path)).body;
    const updated = wrote((await api.call('PATCH', path, { body: changes, headers: ifMatch(latest) })).body);
    if (api.currentSession() === mine) {
      showBanner(`“${latest.title}” had changed elsewhere; your change was applied to its latest version.`);
    }
    return updated;
  }
}

/** Notes a task as this page's own write left it: its live event, when it comes, is not news. */
function wrote(task) {
  if (task?.id) {
    state.saved.delete(task.id); // (the newest last: the oldest are forgotten first)
    state.saved.set(task.id, task.version);
    if (state.saved.size > 500) state.saved.delete(state.saved.keys().next().value);
  }
  return task;
}

/**
 * Shows `changed` in place of `task` at once (or takes it out of a view it
 * no longer belongs to), then runs `send`. If that fails, the list goes
 * back as it was and says so; the row that came back is marked.
 */
async function optimistic(task, changed, send, { undoText, undo, focus }) {
  const mine = api.currentSession();
  const before = state.items;
  // `focus` (an undo's): the task, once it is in the list; a task that
  // comes back into a view is there only after the list is read again.
  const shown = before.some((t) => t.id === task.id);
  const where = focus && shown ? focus : rememberFocus();
  // Until the server answers, every read of the list shows the change too.
  state.pendingChanges.set(task.id, changed);
  render(before, { focus: where });
  // Where focus is now: by task and control in the list (whose elements
  // are new after each read), else the element.
  const landed = rememberFocus();
  const landedElement = document.activeElement;
  const stayed = () => {
    const now = rememberFocus();
    if (landed) return now?.id === landed.id && now.control === landed.control;
    return document.activeElement === landedElement || document.activeElement === document.body;
  };
  showBanner(''); // an earlier message (a conflict, a failure) is over once the next change is made
  const saving = send();
  // The toast comes at once, as the change does; its undo waits for the save.
  const offer = showToast(undoText, async () => {
    const saved = await saving.catch(() => null);
    if (saved) undo(saved);
  });
  try {
    const saved = await saving;
    if (api.currentSession() !== mine) return null; // signed out meanwhile: nothing of it is shown
    if (state.pendingChanges.get(task.id) === changed) state.pendingChanges.delete(task.id);
    state.items = state.items.map((t) => (t.id === task.id ? saved : t));
    await loadPage();
    // Unless the person has moved on meanwhile.
    if (focus && stayed() && $('task-list').querySelector(`li.task[data-id="${CSS.escape(task.id)}"]`)) restoreFocus(focus);
    return saved;
  } catch (error) {
    if (api.currentSession() !== mine) return null;
    if (state.pendingChanges.get(task.id) === changed) state.pendingChanges.delete(task.id);
    if (toast === offer) closeToast();
    rollBack(task, before, error);
    return null;
  }
}

/**
 * Puts `task` back as it was, in its place among the tasks shown. Only this
 * task: what other changes did meanwhile (a tick that was saved, a list
 * read since) stands.
 */
function rollBack(task, before, error) {
  if (error instanceof api.ApiError && error.status === 401) return;
  const where = rememberFocus();
  const others = state.items.filter((t) => t.id !== task.id);
  let items = others;
  if (belongs(task)) {
    // After the nearest task that came before it and is still shown.
    const at = before.findIndex((t) => t.id === task.id);
    let index = 0;
    for (let k = at - 1; k >= 0; k -= 1) {
      const j = others.findIndex((t) => t.id === before[k].id);
      if (j >= 0) {
        index = j + 1;
        break;
      }
    }
    items = [...others.slice(0, index), task, ...others.slice(index)];
  }
  render(items, { focus: where });
  const row = $('task-list').querySelector(`li.task[data-id="${CSS.escape(task.id)}"]`);
  row?.classList.add('rolled-back');
  const message = `Not saved: ${failureText(error)}. “${task.title}” is back as it was.`;
  showBanner(message);
}

// An undo puts focus on the task it brought back: the person sees it and
// goes on from there (not from the toast, which is gone).
const onTask = (task) => ({ id: task.id, control: 'toggle', index: state.items.length });

function setDone(task, done, focus) {
  const changed = { ...task, done };
  return optimistic(task, changed, () => patchTask(task, { done }), {
    undoText: done ? `Completed “${task.title}”${task.recurrence ? '; its next one is on the list' : ''}` : `Reopened “${task.title}”`,
    undo: (saved) => setDone(saved, !done, onTask(saved)),
    focus,
  });
}

function setArchived(task, archived, focus) {
  const changed = { ...task, archived };
  return optimistic(task, changed, () => patchTask(task, { archived }), {
    undoText: archived ? `Archived “${task.title}”` : `Unarchived “${task.title}”`,
    undo: (saved) => setArchived(saved, !archived, onTask(saved)),
    focus,
  });
}

// Deleting cannot be undone on the server, so the page waits: the task
// leaves the list at once and is deleted when the toast's undo time is
// over (its one clock, which stops while the toast is pointed at or
// focused), or the page is left, or another toast takes its place.
function deleteTask(task) {
  const where = rememberFocus();
  closeEditor();
  const before = state.items;
  const pending = { task };
  state.pendingDeletes.set(task.id, pending);
  render(before, { focus: where });
  const offer = showToast(`Deleted “${task.title}”`, () => {
    if (pending.sending) {
      // Too late (the page was being left, say): never claim a restore.
      showBanner(`Too late to undo: “${task.title}” was already deleted.`);
      return;
    }
    state.pendingDeletes.delete(task.id);
    announce(`Restored “${task.title}”`);
    const from = document.activeElement;
    loadPage().then(() => {
      // On the task brought back, unless the person has moved on meanwhile.
      if (document.activeElement !== from && document.activeElement !== document.body) return;
      const row = $('task-list').querySelector(`li.task[data-id="${CSS.escape(task.id)}"]`);
      if (row) focusControl(row, 'toggle');
    });
  }, () => commitDelete(task.id));
  pending.toast = offer;
  // The last task of a later page: step back to a page that has some.
  if (!state.items.length && state.page > 0) loadPage();
}

async function commitDelete(id, { keepalive = false } = {}) {
  const pending = state.pendingDeletes.get(id);
  if (!pending || pending.sending) return;
  pending.sending = true;
  // Sent before its undo time was over (the page was hidden): its toast no
  // longer offers an Undo it cannot keep.
  if (toast === pending.toast) closeToast();
  const mine = api.currentSession();
  try {
    await api.call('DELETE', `/v1/tasks/${id}`, { headers: ifMatch(pending.task), keepalive });
    state.pendingDeletes.delete(id);
  } catch (error) {
    state.pendingDeletes.delete(id);
    if (api.currentSession() !== mine) return;
    if (error instanceof api.ApiError && (error.status === 404 || error.status === 401)) return;
    // Not deleted: the task comes back into the list, marked, and the page says why.
    showBanner(`Not deleted: ${failureText(error)}. “${pending.task.title}” is back.`);
    await loadPage();
    $('task-list').querySelector(`li.task[data-id="${CSS.escape(id)}"]`)?.classList.add('rolled-back');
  }
}

function flushDeletes(options) {
  return Promise.all([...state.pendingDeletes.keys()].map((id) => commitDelete(id, options)));
}
// Leaving the page ends the undo time: the delete is sent on the way out.
// A phone may kill a page in the background without a pagehide, so a page
// that is hidden sends its deletes too (its Undo then says it is too late).
window.addEventListener('pagehide', () => { flushDeletes({ keepalive: true }); });
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') flushDeletes({ keepalive: true });
});

// ---- the undo toast -------------------------------------------------------

let toast = null; // {node, timer, onUndo, onExpire}

function showToast(text, onUndo, onExpire = () => {}) {
  dismissToast();
  const node = el('div', 'toast');
  node.append(el('span', 'toast-text', text));
  const undoButton = button('Undo', 'undo', null, () => {
    const current = toast;
    closeToast();
    current.onUndo();
  }, 'ghost small');
  const close = button('✕', 'dismiss', 'Dismiss', () => dismissToast(), 'ghost small');
  node.append(undoButton, close);
  const self = { node, onUndo, onExpire, timer: null };
  toast = self;
  // Every handler and timer acts on its own toast only: a closed toast's
  // node still gets events (a pointerleave as it goes from under the
  // pointer), and a clock it armed then must not end the next toast.
  const expire = () => { if (toast === self) dismissToast(); };
  const arm = () => {
    if (toast !== self) return;
    clearTimeout(self.timer);
    self.timer = setTimeout(expire, UNDO_MS);
  };
  const pause = () => { if (toast === self) clearTimeout(self.timer); };
  // The time stops while the toast is pointed at or focused.
  node.addEventListener('pointerenter', pause);
  node.addEventListener('focusin', pause);
  node.addEventListener('pointerleave', arm);
  node.addEventListener('focusout', (event) => { if (!node.contains(event.relatedTarget)) arm(); });
  $('toasts').replaceChildren(node);
  arm();
  return self;
}

/** Closes the toast without running anything. */
function closeToast() {
  if (!toast) return;
  const hadFocus = toast.node.contains(document.activeElement);
  clearTimeout(toast.timer);
  toast.node.remove();
  toast = null;
  if (hadFocus) $('view-title').focus();
}

/** Closes the toast: the change it offered to undo stands. */
function dismissToast() {
  const current = toast;
  closeToast();
  current?.onExpire();
}

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.editor?.form.contains(event.target)) {
    event.preventDefault();
    const row = state.editor.form.closest('li.task');
    closeEditor();
    if (row) focusControl(row, 'edit');
    return;
  }
  // Escape folds a phone's open actions back behind their button.
  const openRow = event.key === 'Escape' && event.target.closest?.('li.task.menu-open');
  if (openRow) {
    openRow.querySelector('[data-control="menu"]').click();
    openRow.querySelector('[data-control="menu"]').focus();
    return;
  }
  const typing = event.target.closest?.('input:not([type=checkbox]), textarea, select');
  if (toast && !typing && (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'z') {
    event.preventDefault();
    toast.node.querySelector('[data-control="undo"]').click();
  }
});

// ---- the editor -------------------------------------------------------------

function pad(n) {
  return String(n).padStart(2, '0');
}

/** The date and time inputs' values for a due_at (no time for a date-only due). */
function toInputs(iso) {
  if (!iso) return ['', ''];
  const d = new Date(iso);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return [date, isDateOnly(d) ? '' : `${pad(d.getHours())}:${pad(d.getMinutes())}`];
}

/**
 * due_at from a date and an optional time: a date alone is that day
 * (dates.js, dateOnlyDue); a time alone is today at that time. Null when
 * both are empty.
 */
function fromInputs(date, time) {
  if (!date && !time) return null;
  const now = new Date();
  const [y, m, d] = date ? date.split('-').map(Number) : [now.getFullYear(), now.getMonth() + 1, now.getDate()];
  if (!time) return toApiTime(dateOnlyDue(y, m - 1, d));
  const [hours, minutes] = time.split(':').map(Number);
  return toApiTime(new Date(y, m - 1, d, hours, minutes));
}

/** Labels from "home, Home, errands": trimmed, without blanks, each once (whatever its case). */
function labelsFrom(text) {
  const labels = [];
  for (const label of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!labels.some((l) => l.toLowerCase() === label.toLowerCase())) labels.push(label);
  }
  return labels;
}

function field(form, name, labelText, control, errorFor = name) {
  const wrap = el('div', 'field');
  const id = `${name}-${form.dataset.id}`;
  const label = el('label', '', labelText);
  label.htmlFor = id;
  control.id = id;
  control.name = name;
  const error = el('p', 'field-error');
  error.dataset.errorFor = errorFor;
  wrap.append(label, control, error);
  return wrap;
}

function closeEditor() {
  if (!state.editor) return;
  const { kept } = state.editor;
  state.editor.form.closest('li')?.classList.remove('editing');
  state.editor.form.remove();
  state.editor = null;
  // Its task, shown only while it was edited, has left the view (or been deleted) elsewhere.
  if (kept) liveChange();
}

function openEditor(li, task) {
  if (state.editor?.id === task.id) {
    state.editor.form.querySelector('[name=title]').focus();
    return;
  }
  closeEditor(); // one editor at a time
  const form = el('form', 'editor grid');
  form.dataset.id = task.id;
  form.noValidate = true;
  form.setAttribute('aria-label', `Edit ${task.title}`);
  const title = el('input');
  title.value = task.title;
  title.maxLength = 200;
  const description = el('textarea');
  description.rows = 3;
  description.value = task.description;
  const [dueDateValue, dueTimeValue] = toInputs(task.due_at);
  const dueDate = el('input');
  dueDate.type = 'date';
  dueDate.value = dueDateValue;
  const dueTime = el('input');
  dueTime.type = 'time';
  dueTime.value = dueTimeValue;
  const priority = el('select');
  PRIORITY.forEach((name, value) => priority.append(new Option(name, String(value), false, value === task.priority)));
  const labels = el('input');
  labels.value = task.labels.join(', ');
  const repeat = el('select');
  const repeats = REPEATS.some(([value]) => value === (task.recurrence || '')) ? REPEATS
    : [...REPEATS, [task.recurrence, 'As it repeats now']];
  fillChoices(repeat, repeats, task.recurrence || '');
  const remind = el('select');
  const reminders = task.reminders || [];
  const one = reminders.length === 1 && reminders[0].before_due;
  const remindNow = !reminders.length ? '' : (one && REMINDS.some(([value]) => value === one) ? one : '*');
  fillChoices(remind, remindNow === '*' ? [...REMINDS, ['*', 'Keep its reminders']] : REMINDS, remindNow);
  const titleField = field(form, 'title', 'Title', title);
  titleField.classList.add('span2');
  const descriptionField = field(form, 'description', 'Description', description);
  descriptionField.classList.add('span2');
  const labelsField = field(form, 'labels', 'Labels (comma-separated)', labels);
  labelsField.classList.add('span2');
  const buttons = el('div', 'row end span2');
  const cancel = el('button', 'ghost', 'Cancel');
  cancel.type = 'button';
  const save = el('button', 'primary', 'Save');
  save.type = 'submit';
  buttons.append(cancel, save);
  form.append(titleField, descriptionField, field(form, 'due_date', 'Due date', dueDate, 'due_at'),
    field(form, 'due_time', 'Time (optional)', dueTime, 'due_at'), field(form, 'priority', 'Priority', priority),
    labelsField, field(form, 'repeat', 'Repeat', repeat, 'recurrence'), field(form, 'remind', 'Remind', remind, 'reminders'),
    el('p', 'form-error span2'), buttons);
  cancel.addEventListener('click', () => {
    const row = form.closest('li.task');
    closeEditor();
    if (row) focusControl(row, 'edit');
  });
  guardSubmit(form, 'Saving…', async () => {
    clearErrors(form);
    // Only what was changed is sent: a concurrent change to another field stands.
    const original = state.editor?.original || task;
    const wanted = {
      title: title.value,
      description: description.value,
      due_at: fromInputs(dueDate.value, dueTime.value),
      priority: Number(priority.value),
      labels: labelsFrom(labels.value),
      recurrence: repeat.value || null,
    };
    if (remind.value !== '*') wanted.reminders = remind.value ? [{ before_due: remind.value }] : [];
    const changes = {};
    for (const [key, value] of Object.entries(wanted)) {
      const was = key === 'due_at' ? original.due_at && toApiTime(new Date(original.due_at)) : (original[key] ?? null);
      if (JSON.stringify(value) !== JSON.stringify(was)) changes[key] = value;
    }
    if (changes.recurrence) changes.time_zone = ZONE;
    if (!Object.keys(changes).length) {
      closeEditor();
      focusControl(li.isConnected ? li : $('task-list').querySelector(`li.task[data-id="${CSS.escape(task.id)}"]`) || li, 'edit');
      return;
    }
    const mine = api.currentSession();
    try {
      const saved = await patchTask(original, changes);
      if (api.currentSession() !== mine) return;
      const where = { id: task.id, control: 'edit', index: state.items.findIndex((t) => t.id === task.id) };
      closeEditor();
      render(state.items.map((t) => (t.id === task.id ? saved : t)).filter((t) => t.id !== task.id || belongs(t)), { focus: where });
      announce('Saved');
      loadPage();
    } catch (error) {
      if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
      // The editor stays open with what was typed.
      showErrors(form, error instanceof api.ApiError && error.status === 0
        ? new api.ApiError(0, { detail: `Not saved: ${failureText(error)}. Try again when you are back online.` }) : error);
    }
  });
  state.editor = { id: task.id, form, original: task };
  li.classList.add('editing');
  li.append(form);
  title.focus();
}


/** A small form under a task for a subtask's title: Enter adds it, Escape closes. */
function openSubtaskForm(li, parent) {
  closeEditor();
  li.querySelector('form.subtask-form')?.remove();
  const form = el('form', 'subtask-form row');
  form.noValidate = true;
  form.setAttribute('aria-label', `New subtask of ${parent.title}`);
  const title = el('input');
  title.maxLength = 200;
  const titleField = field(form, 'title', 'Subtask', title);
  titleField.classList.add('grow');
  const add = el('button', 'primary', 'Add subtask');
  add.type = 'submit';
  const cancel = el('button', 'ghost', 'Cancel');
  cancel.type = 'button';
  form.append(titleField, add, cancel, el('p', 'form-error'));
  const close = () => {
    form.remove();
    focusControl(li.isConnected ? li : $('task-list').querySelector(`li.task[data-id="${CSS.escape(parent.id)}"]`) || li, 'subtask');
  };
  cancel.addEventListener('click', close);
  form.addEventListener('keydown', (event) => { if (event.key === 'Escape') close(); });
  guardSubmit(form, 'Adding…', async () => {
    clearErrors(form);
    const mine = api.currentSession();
    try {
      const { body: created } = await api.call('POST', '/v1/tasks', { body: { title: title.value, parent_id: parent.id } });
      if (api.currentSession() !== mine) return;
      wrote(created);
      form.remove();
      announce(`Subtask added to ${parent.title}`);
      await loadPage();
      focusControl($('task-list').querySelector(`li.task[data-id="${CSS.escape(created.id)}"]`) || li, 'toggle');
    } catch (error) {
      if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
      showErrors(form, error);
    }
  });
  li.append(form);
  title.focus();
}

// ---- projects and sharing -------------------------------------------------------

async function loadProjects() {
  const mine = api.currentSession();
  try {
    // Every page: a page of projects with long descriptions holds fewer
    // than its limit (about 2 MiB of them); the quota bounds the pages.
    const projects = [];
    let cursor = null;
    do {
      const query = cursor ? `limit=100&cursor=${encodeURIComponent(cursor)}` : 'limit=100';
      const { body } = await api.call('GET', `/v1/projects?${query}`);
      if (api.currentSession() !== mine) return;
      projects.push(...body.items);
      cursor = body.next_cursor;
    } while (cursor);
    state.projects = projects;
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    state.projects = state.projects || [];
  }
  // A project no longer listed (left, removed, deleted): back to all of them.
  if (state.project && !state.projects.some((p) => p.id === state.project)) {
    Object.assign(state, { project: null, cursors: [null], page: 0 });
  }
  renderProjects();
}

function renderProjects() {
  const list = $('project-list');
  const entry = (id, name, extra) => {
    const li = el('li');
    const pick = el('button', 'ghost project', name);
    pick.type = 'button';
    pick.dataset.project = id || '';
    if ((state.project || '') === (id || '')) pick.setAttribute('aria-current', 'page');
    if (extra) pick.append(' ', srOnly(`(${extra})`));
    pick.addEventListener('click', () => selectProject(id));
    li.append(pick);
    return li;
  };
  // (drawn again when a change is heard: focus stays on the project it was on)
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.project : undefined;
  list.replaceChildren(entry(null, 'All projects'),
    ...state.projects.map((p) => entry(p.id, p.inbox ? 'Inbox' : p.name, p.role === 'owner' ? '' : p.role)));
  if (focused !== undefined) {
    [...list.querySelectorAll('button')].find((b) => b.dataset.project === focused)?.focus();
  }
  const current = state.projects.find((p) => p.id === state.project);
  $('project-role').hidden = !current || current.role === 'owner';
  $('project-role').textContent = current ? (current.role === 'viewer' ? 'You view this project' : `You are an ${current.role}`) : '';
  $('share').hidden = !current || current.inbox || current.role !== 'owner';
  // A viewer adds nothing here.
  $('new-task').hidden = current?.role === 'viewer';
}

function selectProject(id) {
  state.project = id;
  state.cursors = [null];
  state.page = 0;
  closeEditor();
  renderProjects();
  loadPage({ first: true });
  const current = state.projects.find((p) => p.id === id);
  announce(current ? `Project ${current.inbox ? 'Inbox' : current.name}` : 'All projects');
}

guardSubmit($('new-project'), 'Adding…', async (form) => {
  clearErrors(form);
  const mine = api.currentSession();
  try {
    const { body: project } = await api.call('POST', '/v1/projects', { body: { name: form.name.value } });
    if (api.currentSession() !== mine) return;
    form.reset();
    $('project-add').open = false;
    await loadProjects();
    selectProject(project.id);
    announce(`Project ${project.name} added`);
    $('project-list').querySelector('[aria-current="page"]')?.focus();
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    showErrors(form, error);
  }
});

async function showMembers() {
  const id = state.project;
  const { body } = await api.call('GET', `/v1/projects/${id}/members`);
  if (state.project !== id) return;
  $('member-list').replaceChildren(...body.items.map((member) => {
    const li = el('li', 'member');
    li.append(el('span', 'member-name', member.username), ' ', el('span', 'chip muted', member.role));
    if (member.role !== 'owner') {
      li.append(button('Remove', 'remove', `Remove ${member.username}`, async () => {
        await api.call('DELETE', `/v1/projects/${id}/members/${encodeURIComponent(member.username)}`);
        announce(`${member.username} removed`);
        await showMembers();
        $('share-username').focus();
      }, 'ghost danger-text'));
    }
    return li;
  }));
}

$('share').addEventListener('click', async () => {
  const current = state.projects.find((p) => p.id === state.project);
  $('share-title').textContent = `Share ${current?.name || ''}`;
  clearErrors($('share-form'));
  $('share-dialog').showModal();
  $('share-username').focus();
  await showMembers().catch(() => {});
});
$('share-close').addEventListener('click', () => $('share-dialog').close());
$('share-dialog').addEventListener('close', () => $('share').focus());
guardSubmit($('share-form'), 'Sharing…', async (form) => {
  clearErrors(form);
  const username = form.username.value.trim();
  try {
    await api.call('PUT', `/v1/projects/${state.project}/members/${encodeURIComponent(username)}`, { body: { role: form.role.value } });
    form.reset();
    announce(`Shared with ${username}`);
    await showMembers();
    form.username.focus();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    showErrors(form, error instanceof api.ApiError && error.status === 404
      ? new api.ApiError(404, { detail: `There is no user “${username}”.` }) : error);
  }
});

// ---- the account --------------------------------------------------------------

/** Shows the account as the server has it. */
function showAccount(user) {
  $('account-username').textContent = user.username;
  $('account-email').textContent = user.email || 'None';
  const verified = $('account-verified');
  verified.hidden = !user.email;
  verified.textContent = user.email_verified ? 'Verified' : 'Not verified';
  verified.className = user.email_verified ? 'chip' : 'chip muted';
  $('account-verify').hidden = !user.email || user.email_verified;
  $('email-remove').hidden = !user.email;
  // (the address a link is sent to: the one shown)
  $('account-dialog').dataset.email = user.email || '';
  showSecondFactor(user.mfa || []);
}

/** The account's passkeys, each with a Remove button. */
async function showPasskeys() {
  const supported = api.passkeysSupported();
  $('passkey-form').hidden = !supported;
  const mine = api.currentSession();
  const { body } = await api.call('GET', '/v1/users/me/passkeys');
  if (api.currentSession() !== mine) return;
  const list = $('passkey-list');
  list.replaceChildren(...body.items.map((passkey) => {
    const item = document.createElement('li');
    const text = document.createElement('span');
    const name = document.createElement('strong');
    name.textContent = passkey.name;
    const meta = document.createElement('span');
    meta.className = 'meta';
    const added = new Date(passkey.created_at).toLocaleDateString();
    const used = passkey.last_used_at ? `, last used ${new Date(passkey.last_used_at).toLocaleDateString()}` : ', not used yet';
    meta.textContent = ` added ${added}${used}`;
    text.append(name, meta);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'ghost danger-text';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove the passkey ${passkey.name}`);
    remove.addEventListener('click', () => askPasskeyRemoval(passkey));
    item.append(text, remove);
    return item;
  }));
}

/** The removal of one passkey, asked with the password (and a code when two-step sign-in is on). */
function askPasskeyRemoval(passkey) {
  const form = $('passkey-remove-form');
  form.reset();
  clearErrors(form);
  form.dataset.id = passkey.id;
  $('passkey-remove-title').textContent = `Remove the passkey “${passkey.name}”?`;
  $('passkey-remove-code-field').hidden = $('delete-code-field').hidden;
  form.hidden = false;
  $('passkey-remove-password').focus();
}

function hidePasskeyRemoval() {
  const form = $('passkey-remove-form');
  form.hidden = true;
  form.reset();
  clearErrors(form);
  delete form.dataset.id;
}

$('passkey-remove-cancel').addEventListener('click', () => {
  hidePasskeyRemoval();
  $('passkey-name').focus();
});

guardSubmit($('passkey-remove-form'), 'Removing…', async (form) => {
  clearErrors(form);
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password to remove the passkey.'));
    return;
  }
  const body = { current_password: form.current_password.value };
  const mine = api.currentSession();
  try {
    // A code when two-step sign-in is on and one is typed; else a passkey
    // of this device confirms it (the browser asks).
    const code = $('passkey-remove-code-field').hidden ? '' : form.code.value.trim();
    if (code) body.code = code;
    else body.passkey = await api.passkeyAnswer();
    await api.call('DELETE', `/v1/users/me/passkeys/${encodeURIComponent(form.dataset.id)}`, { body });
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    if (error?.name === 'NotAllowedError' || error?.name === 'AbortError') {
      form.querySelector('.form-error').textContent = 'Nothing was removed: confirm with a passkey of yours, or a code.';
      return;
    }
    codeRefusal(form, error);
    return;
  }
  if (api.currentSession() !== mine) return;
  hidePasskeyRemoval();
  await Promise.all([showPasskeys(), readAccount()]).catch(accountFailed);
  $('account-status').textContent = 'The passkey is removed.';
  $('passkey-name').focus();
});

guardSubmit($('passkey-form'), 'Adding…', async (form) => {
  clearErrors(form);
  const name = form.name.value.trim();
  if (!name) {
    showErrors(form, fieldError('name', 'Name this passkey, for instance after this device.'));
    return;
  }
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password to add a passkey.'));
    return;
  }
  const mine = api.currentSession();
  try {
    // A passkey signs in alone: the password, and the account's second
    // factor when it has one (a code typed, else one of its passkeys).
    const confirmation = { current_password: form.current_password.value };
    const code = $('passkey-code-field').hidden ? '' : form.code.value.trim();
    if (code) confirmation.code = code;
    else if ($('account-dialog').dataset.passkeys === 'true') confirmation.passkey = await api.passkeyAnswer();
    await api.addPasskey(name, confirmation);
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    if (error instanceof api.ApiError && (error.problem.type === 'urn:todo:problem:wrong-password'
      || error.problem.type === 'urn:todo:problem:wrong-code' || error.fields.code)) {
      codeRefusal(form, error);
      return;
    }
    if (error?.name === 'NotAllowedError' || error?.name === 'AbortError') {
      form.querySelector('.form-error').textContent = 'No passkey was made: the device\'s dialog was closed.';
    } else if (error?.name === 'InvalidStateError') {
      form.querySelector('.form-error').textContent = 'This device has a passkey of this account already.';
    } else {
      showErrors(form, error instanceof api.ApiError ? error : new api.ApiError(0, { detail: 'This device could not make a passkey.' }));
    }
    return;
  }
  if (api.currentSession() !== mine) return;
  form.reset();
  await Promise.all([showPasskeys(), readAccount()]).catch(accountFailed);
  $('account-status').textContent = `The passkey “${name}” is added: it signs you in on this device.`;
  announce('Passkey added');
});

/** Whether two-step sign-in is on, and the forms that go with each state. */
function showSecondFactor(methods) {
  const on = methods.includes('totp');
  $('account-dialog').dataset.passkeys = String(methods.includes('passkey'));
  const enrolling = !$('mfa-enrol').hidden || !$('mfa-codes').hidden;
  $('mfa-state').textContent = on
    ? 'On: signing in takes a code from your authenticator app (or a recovery code) after the password.'
    : 'Off: the password alone signs you in.';
  $('mfa-setup-form').hidden = on || enrolling;
  $('mfa-remove-form').hidden = !on || enrolling;
  $('delete-code-field').hidden = !on;
  $('passkey-code-field').hidden = !on;
}

/** The QR code the server drew, rebuilt from its paths alone (no markup of its put in the page). */
function drawQr(svgText) {
  const parsed = new DOMParser().parseFromString(svgText, 'image/svg+xml');
  const source = parsed.documentElement;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  const viewBox = source.getAttribute('viewBox') || `0 0 ${source.getAttribute('width')} ${source.getAttribute('height')}`;
  if (/^[\d. ]+$/.test(viewBox)) svg.setAttribute('viewBox', viewBox);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('aria-hidden', 'true');
  for (const shape of source.querySelectorAll('path, rect')) {
    const copy = document.createElementNS(NS, shape.localName);
    for (const name of ['d', 'x', 'y', 'width', 'height', 'fill']) {
      const value = shape.getAttribute(name);
      if (value !== null && /^[#\w\d. -]*$/.test(value)) copy.setAttribute(name, value);
    }
    svg.append(copy);
  }
  $('mfa-qr').replaceChildren(svg);
}

/** The enrolment's screens gone: its key and codes leave the page. */
function clearEnrolment() {
  $('mfa-enrol').hidden = true;
  $('mfa-codes').hidden = true;
  $('mfa-qr').replaceChildren();
  $('mfa-secret').textContent = '';
  $('mfa-recovery-codes').replaceChildren();
  for (const form of [$('mfa-setup-form'), $('mfa-confirm-form'), $('mfa-remove-form')]) {
    form.reset();
    clearErrors(form);
  }
}

guardSubmit($('mfa-setup-form'), 'Setting up…', async (form) => {
  clearErrors(form);
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password to set up two-step sign-in.'));
    return;
  }
  const mine = api.currentSession();
  let body;
  try {
    const confirmation = { current_password: form.current_password.value };
    // (an account with passkeys proves one: the browser asks)
    if ($('account-dialog').dataset.passkeys === 'true') confirmation.passkey = await api.passkeyAnswer();
    ({ body } = await api.call('POST', '/v1/users/me/totp', { body: confirmation }));
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    passwordRefusal(form, error);
    return;
  }
  if (api.currentSession() !== mine) return;
  form.reset();
  drawQr(body.qr_svg);
  // (grouped by four, as apps show keys; spaces are ignored when typed)
  $('mfa-secret').textContent = body.secret.replace(/(.{4})(?=.)/g, '$1 ');
  $('mfa-enrol').hidden = false;
  form.hidden = true;
  $('mfa-confirm-code').focus();
});

guardSubmit($('mfa-confirm-form'), 'Turning on…', async (form) => {
  clearErrors(form);
  const code = form.code.value.trim();
  if (!/^\d{3} ?\d{3}$/.test(code)) {
    showErrors(form, fieldError('code', 'Enter the six digits the app shows.'));
    return;
  }
  const mine = api.currentSession();
  let body;
  try {
    ({ body } = await api.call('POST', '/v1/users/me/totp/confirm', { body: { code } }));
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    const type = error instanceof api.ApiError ? error.problem.type : '';
    if (type === 'urn:todo:problem:wrong-code') showErrors(form, fieldError('code', 'That code is not the one the app shows: check the app and try again.'));
    else if (error instanceof api.ApiError && error.status === 409) {
      clearEnrolment();
      $('account-error').textContent = 'The set-up waited too long: start again.';
      await readAccount().catch(accountFailed);
      // (the form the focus was in is gone: to the one that starts again)
      $('mfa-setup-password').focus();
    } else showErrors(form, error);
    return;
  }
  if (api.currentSession() !== mine) return;
  $('mfa-enrol').hidden = true;
  $('mfa-qr').replaceChildren();
  $('mfa-secret').textContent = '';
  form.reset();
  const list = $('mfa-recovery-codes');
  list.replaceChildren(...body.recovery_codes.map((code) => {
    const item = document.createElement('li');
    item.textContent = code;
    return item;
  }));
  $('mfa-codes').hidden = false;
  $('mfa-codes-done').focus();
  announce('Two-step sign-in is on');
});

$('mfa-codes-done').addEventListener('click', async () => {
  clearEnrolment();
  await readAccount().catch(accountFailed);
  $('mfa-remove-password').focus();
});

guardSubmit($('mfa-remove-form'), 'Turning off…', async (form) => {
  clearErrors(form);
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password.'));
    return;
  }
  if (!form.code.value.trim()) {
    showErrors(form, fieldError('code', 'Enter a code from the app, or a recovery code.'));
    return;
  }
  const mine = api.currentSession();
  try {
    await api.call('DELETE', '/v1/users/me/totp', { body: { current_password: form.current_password.value, code: form.code.value.trim() } });
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    codeRefusal(form, error);
    return;
  }
  if (api.currentSession() !== mine) return;
  clearEnrolment();
  await readAccount().catch(accountFailed);
  $('account-status').textContent = 'Two-step sign-in is off.';
  $('mfa-setup-password').focus();
});

/** A refused password, code or passkey, on its field (shown if it was hidden: turned on in another tab). */
function codeRefusal(form, error) {
  const codeField = form.querySelector('[name="code"]')?.closest('.field');
  if (codeField?.hidden && error instanceof api.ApiError && error.fields.code) codeField.hidden = false;
  if (error instanceof api.ApiError && error.problem.type === 'urn:todo:problem:wrong-code') {
    if (codeField?.hidden || !form.code.value.trim()) {
      form.querySelector('.form-error').textContent = 'That passkey did not confirm it: use a passkey of this account.';
      return;
    }
    showErrors(form, fieldError('code', 'That code is wrong or was used already.'));
    form.code.select();
    return;
  }
  passwordRefusal(form, error);
}

/** Nothing of an account left in the page (a sign-out, or before it is read). */
function clearAccount() {
  for (const id of ['account-username', 'account-email', 'account-status', 'account-error']) $(id).textContent = '';
  for (const id of ['account-verified', 'account-verify', 'email-remove']) $(id).hidden = true;
  delete $('account-dialog').dataset.email;
  clearEnrolment();
  hidePasskeyRemoval();
  $('passkey-list').replaceChildren();
  $('passkey-form').reset();
  clearErrors($('passkey-form'));
  $('mfa-state').textContent = '';
  for (const id of ['mfa-setup-form', 'mfa-remove-form', 'delete-code-field']) $(id).hidden = true;
  for (const form of [$('email-form'), $('password-form'), $('delete-form')]) {
    form.reset();
    clearErrors(form);
  }
}

/** Reads the account afresh (an address may have been verified in another tab). */
async function readAccount() {
  const mine = api.currentSession();
  const { body } = await api.call('GET', '/v1/users/me');
  if (api.currentSession() !== mine) return null;
  showAccount(body);
  return body;
}

const accountFailed = (error) => {
  if (!(error instanceof api.ApiError && error.status === 401)) $('account-error').textContent = failureText(error);
};

$('account').addEventListener('click', async () => {
  clearAccount();
  $('account-dialog').showModal();
  $('account-email-input').focus();
  await Promise.all([readAccount(), showPasskeys()]).catch(accountFailed);
});
$('account-close').addEventListener('click', () => $('account-dialog').close());
// The account's export, as a file: read with the access token (a plain
// link would carry none), then handed to the browser to save.
// An export cut short (the connection lost part way) does not parse, and
// is not saved as if it were the data.
let exporting = false;
$('account-export').addEventListener('click', async () => {
  if (exporting) return;
  exporting = true;
  const button = $('account-export');
  // Busy, without disabling the button (a disabled button drops focus to <body>).
  button.setAttribute('aria-busy', 'true');
  $('account-status').textContent = '';
  $('account-error').textContent = '';
  const mine = api.currentSession();
  try {
    const { body } = await api.call('GET', '/v1/users/me/export');
    if (api.currentSession() !== mine) return;
    if (body?.format !== 'todo.account-export/1' || !Array.isArray(body.tasks)) {
      $('account-error').textContent = 'The download was cut short, and nothing was saved: try again.';
      return;
    }
    const file = new Blob([JSON.stringify(body, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(file);
    const save = document.createElement('a');
    save.href = url;
    save.download = 'todo-account.json';
    save.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    $('account-status').textContent = 'Your data is downloaded as todo-account.json.';
    announce('Your data is downloaded as todo-account.json');
  } catch (error) {
    if (api.currentSession() === mine) accountFailed(error);
  } finally {
    exporting = false;
    button.removeAttribute('aria-busy');
  }
});
// A page kept in the back-forward cache keeps no key or recovery codes.
window.addEventListener('pagehide', () => clearEnrolment());

$('account-dialog').addEventListener('close', () => {
  $('account-status').textContent = '';
  $('account-error').textContent = '';
  // (the passwords leave the page with the dialog)
  for (const id of ['account-password', 'password-current', 'password-new', 'delete-password', 'delete-code', 'passkey-password', 'passkey-code']) $(id).value = '';
  // (a key or recovery codes never stay on a closed dialog)
  clearEnrolment();
  hidePasskeyRemoval();
  $('account').focus();
});

/** What a refused verification link says (409, 429, 503 each have their own). */
async function verifyRefusal(error) {
  if (!(error instanceof api.ApiError)) return failureText(error);
  if (error.status === 409) {
    const user = await readAccount().catch(() => null);
    if (user?.email_verified) return 'This address is verified already.';
    if (user && !user.email) return 'The account has no e-mail address to verify.';
    // (an address kept from before that mail cannot be sent to, say)
    return error.message;
  }
  if (error.status === 429) {
    const minutes = Math.max(1, Math.ceil((error.retryAfter ?? 1200) / 60));
    return `Enough links have been mailed to this account for now; try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`;
  }
  if (error.problem.type === 'urn:todo:problem:no-mail') return 'This server sends no mail, so the address cannot be verified.';
  if (error.status === 503) return 'The server is sending as much mail as it may just now; try again in a minute.';
  return failureText(error);
}

// Each press mails a link, of the account's few: one at a time, and the
// button stays enabled (a disabled button drops focus to <body>).
let sendingLink = false;
$('account-verify').addEventListener('click', async () => {
  if (sendingLink) return;
  sendingLink = true;
  const button = $('account-verify');
  const to = $('account-dialog').dataset.email;
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Sending…';
  $('account-status').textContent = '';
  $('account-error').textContent = '';
  const mine = api.currentSession();
  try {
    await api.call('POST', '/v1/users/me/email/verify');
    if (api.currentSession() === mine) $('account-status').textContent = `A link is on its way to ${to}.`;
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    $('account-error').textContent = await verifyRefusal(error);
  } finally {
    sendingLink = false;
    button.removeAttribute('aria-busy');
    button.textContent = 'Send verification link';
    // (hidden meanwhile, verified elsewhere: focus is not left nowhere)
    if (button.hidden && document.activeElement === document.body) $('account-email-input').focus();
  }
});

/**
 * Changes the address (null removes it), with the password: reset links
 * go to a verified address, so a session alone may not move it. Whether
 * it was changed.
 */
async function changeEmail(email, done) {
  const form = $('email-form');
  clearErrors(form);
  $('account-status').textContent = '';
  $('account-error').textContent = '';
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password to change the address.'));
    return false;
  }
  const mine = api.currentSession();
  try {
    const { body } = await api.call('PATCH', '/v1/users/me', { body: { email, current_password: form.current_password.value } });
    if (api.currentSession() !== mine) return false;
    form.reset();
    showAccount(body);
    $('account-status').textContent = done(body);
    return true;
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return false;
    showErrors(form, error instanceof api.ApiError && error.problem.type === 'urn:todo:problem:wrong-password'
      ? fieldError('current_password', 'That is not your password.') : error);
    if (document.activeElement === form.current_password) form.current_password.select();
    return false;
  }
}

guardSubmit($('email-form'), 'Saving…', async (form) => {
  const email = form.email.value.trim();
  if (!email) {
    showErrors(form, fieldError('email', 'Enter the new address.'));
    return;
  }
  await changeEmail(email, (user) => (user.email_verified ? 'Saved.'
    : `Saved. ${user.email} is not verified yet: send it a verification link.`));
});

let removingEmail = false;
$('email-remove').addEventListener('click', async () => {
  if (removingEmail) return;
  removingEmail = true;
  try {
    // (the button goes with the address: focus goes to the field for a new one)
    if (await changeEmail(null, () => 'The address is removed.')) $('account-email-input').focus();
  } finally {
    removingEmail = false;
  }
});

/**
 * A form of the Account dialog that takes the password again: its refusal
 * (a wrong password, a refused new one) shown on its fields.
 */
function passwordRefusal(form, error) {
  showErrors(form, error instanceof api.ApiError && error.problem.type === 'urn:todo:problem:wrong-password'
    ? fieldError('current_password', 'That is not your password.') : error);
}

/**
 * The account's sessions are over (its password changed, or it is gone):
 * the server ended this one too, so it ends here without a request, the
 * other tabs told; unless it had ended here already.
 */
function accountEnded(mine, message) {
  if (api.currentSession() !== mine) return;
  $('account-dialog').close();
  api.endedByServer(message);
}

// A new password ends every session, this one too: sign in again with it.
guardSubmit($('password-form'), 'Changing…', async (form) => {
  clearErrors(form);
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your current password.'));
    return;
  }
  const mine = api.currentSession();
  try {
    await api.call('POST', '/v1/users/me/password', {
      body: { current_password: form.current_password.value, new_password: form.new_password.value },
    });
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    passwordRefusal(form, error);
    return;
  }
  accountEnded(mine, 'Your password is changed, and every session and API token of the account is ended: sign in with the new one.');
});

guardSubmit($('delete-form'), 'Deleting…', async (form) => {
  clearErrors(form);
  if (!form.current_password.value) {
    showErrors(form, fieldError('current_password', 'Enter your password to delete the account.'));
    return;
  }
  const mine = api.currentSession();
  try {
    const body = { current_password: form.current_password.value };
    const code = $('delete-code-field').hidden ? '' : form.code.value.trim();
    if (code) body.code = code;
    // (an account with passkeys and no authenticator: a passkey confirms it)
    else if ($('account-dialog').dataset.passkeys === 'true') body.passkey = await api.passkeyAnswer();
    await api.call('DELETE', '/v1/users/me', { body });
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    codeRefusal(form, error);
    return;
  }
  accountEnded(mine, 'Your account is deleted, with everything it held.');
});

// ---- sessions ---------------------------------------------------------------

/** Each login of the account, newest first: this one marked, the others can be ended. */
async function showSessions() {
  const { body } = await api.call('GET', '/v1/sessions');
  $('sessions-error').textContent = '';
  $('session-list').replaceChildren(...body.items.map((session) => {
    const li = el('li', 'member session');
    const token = session.kind === 'api_token';
    const made = new Date(session.created_at).toLocaleString();
    const device = token ? `API token made ${made}` : (session.user_agent || 'Unknown device');
    li.append(el('span', 'member-name', device));
    if (session.current) li.append(' ', el('span', 'chip', 'This device'));
    const seen = new Date(session.last_used_at).toLocaleString();
    const from = session.address || 'an unknown address';
    li.append(' ', el('span', 'muted', token ? `made from ${from}, last used ${seen}` : `signed in from ${from}, last active ${seen}`));
    if (!session.current) {
      li.append(button('Sign out', 'end-session', `Sign out ${device}`, async () => {
        await endSessions(`/v1/sessions/${session.id}`, 'DELETE', `${device} signed out`);
      }, 'ghost danger-text'));
    }
    return li;
  }));
  $('sessions-others').disabled = !body.items.some((session) => !session.current);
  // (read beside, not before: the sessions and the focus do not wait for it)
  showWebhooks().catch((error) => {
    if (!(error instanceof api.ApiError && error.status === 401)) $('sessions-error').textContent = failureText(error);
  });
}

/** The webhooks sending the account's changes out, each deletable here. */
async function showWebhooks() {
  // (until read: neither an old list nor a "none" that may not be true)
  $('webhook-none').hidden = true;
  const { body } = await api.call('GET', '/v1/webhooks');
  $('webhook-list').replaceChildren(...body.items.map((hook) => {
    const li = el('li', 'member webhook');
    li.append(el('span', 'member-name', hook.url));
    li.append(' ', el('span', 'muted', `made ${new Date(hook.created_at).toLocaleString()}`));
    li.append(button('Delete', 'delete-webhook', `Delete the webhook to ${hook.url}`, async (event) => {
      if (event.currentTarget.disabled) return;
      event.currentTarget.disabled = true;
      try {
        await api.call('DELETE', `/v1/webhooks/${hook.id}`);
        announce('Webhook deleted');
        await showWebhooks();
        $('sessions-close').focus();
      } catch (error) {
        if (!(error instanceof api.ApiError && error.status === 401)) $('sessions-error').textContent = failureText(error);
      }
    }, 'ghost danger-text'));
    return li;
  }));
  $('webhook-none').hidden = body.items.length > 0;
}

// Signing out a newer sign-in than this one takes the password again (the
// server says so with a 400): a stolen session must not be able to sign its
// owner out of a new one. An older one needs nothing more.
let endingSessions = false;
async function endSessions(path, method, done) {
  if (endingSessions) return;
  const password = $('sessions-password');
  const options = password.value ? { body: { current_password: password.value } } : {};
  endingSessions = true;
  try {
    await api.call(method, path, options);
    password.value = '';
    $('sessions-error').textContent = '';
    announce(done);
    await showSessions();
    $('sessions-close').focus();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    const status = error instanceof api.ApiError ? error.status : 0;
    $('sessions-error').textContent = status === 400 ? 'Enter your password to sign out a newer sign-in than this one.'
      : status === 403 ? 'That is not your password.' : failureText(error);
    if (status === 400 || status === 403) {
      password.focus();
      password.select();
    }
  } finally {
    endingSessions = false;
  }
}

$('sessions').addEventListener('click', async () => {
  $('session-list').replaceChildren();
  $('webhook-list').replaceChildren();
  $('webhook-none').hidden = true;
  $('sessions-error').textContent = '';
  $('sessions-dialog').showModal();
  $('sessions-close').focus();
  await showSessions().catch((error) => {
    if (!(error instanceof api.ApiError && error.status === 401)) $('sessions-error').textContent = failureText(error);
  });
});
$('sessions-others').addEventListener('click', () =>
  endSessions('/v1/sessions/revoke-others', 'POST', 'Signed out everywhere else'));
$('sessions-close').addEventListener('click', () => $('sessions-dialog').close());
$('sessions-dialog').addEventListener('close', () => {
  $('sessions-password').value = '';
  $('sessions').focus();
});

// ---- API tokens -------------------------------------------------------------

const SCOPE_NAMES = {
  'tasks:read': 'read tasks',
  'tasks:write': 'change tasks',
  'projects:read': 'read projects',
  'projects:write': 'change projects',
  'events:read': 'follow changes',
};

async function showTokens() {
  const { body } = await api.call('GET', '/v1/api-tokens');
  const projectName = (id) => {
    const project = state.projects.find((p) => p.id === id);
    return project ? (project.inbox ? 'Inbox' : project.name) : 'a project';
  };
  $('token-list').replaceChildren(...body.items.map((token) => {
    const li = el('li', 'member token');
    li.append(el('span', 'member-name', token.name));
    const where = token.project_id ? ` in ${projectName(token.project_id)}` : '';
    const scopes = token.scopes.map((scope) => SCOPE_NAMES[scope] || scope).join(', ');
    const until = new Date(token.expires_at).toLocaleDateString();
    const used = token.last_used_at === token.created_at ? 'never used' : `last used ${new Date(token.last_used_at).toLocaleString()}`;
    li.append(' ', el('span', 'muted', `may ${scopes}${where}; expires ${until}, ${used}`));
    li.append(button('Revoke', 'revoke-token', `Revoke ${token.name}`, () => revokeToken(token), 'ghost danger-text'));
    return li;
  }));
  $('token-none').hidden = body.items.length > 0;
}

async function revokeToken(token) {
  try {
    await api.call('DELETE', `/v1/api-tokens/${token.id}`);
    announce(`${token.name} revoked`);
    await showTokens();
    $('token-name').focus();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    $('tokens-error').textContent = failureText(error);
  }
}

$('tokens').addEventListener('click', async () => {
  const form = $('token-form');
  form.reset();
  clearErrors(form);
  $('token-made').hidden = true;
  $('token-secret').value = '';
  // Anywhere, or one of the projects the user may write in.
  $('token-project').replaceChildren(new Option('Every project', ''),
    ...state.projects.map((p) => new Option(p.inbox ? 'Inbox' : p.name, p.id)));
  $('token-list').replaceChildren();
  $('tokens-dialog').showModal();
  $('token-name').focus();
  await showTokens().catch((error) => {
    if (!(error instanceof api.ApiError && error.status === 401)) $('tokens-error').textContent = failureText(error);
  });
});

guardSubmit($('token-form'), 'Creating…', async (form) => {
  clearErrors(form);
  const scopes = [...form.querySelectorAll('input[name=scope]:checked')].map((box) => box.value);
  // (a little short of a year: this computer's clock may run ahead)
  const days = Math.min(Number(form.expires.value), 365 - 1 / 24);
  const body = {
    name: form.name.value,
    scopes,
    project_id: form.project_id.value || null,
    expires_at: new Date(Date.now() + days * 86400000).toISOString(),
    current_password: form.current_password.value,
  };
  try {
    const { body: made } = await api.call('POST', '/v1/api-tokens', { body });
    form.reset();
    // The list first, so that the secret appears beside its token; a list
    // that cannot be read now must not lose the secret, shown only once.
    await showTokens().catch(() => {});
    // Closed meanwhile (Escape, a sign-out): the secret is not put in a
    // page nobody looks at; the token is listed, to revoke.
    if (!$('tokens-dialog').open) return;
    $('token-secret').value = made.token;
    $('token-made').hidden = false;
    announce(`Token ${made.name} created: copy it now, it is not shown again`);
    $('token-secret').focus();
    $('token-secret').select();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    if (error instanceof api.ApiError && error.problem.type === 'urn:todo:problem:wrong-password') {
      form.querySelector('[data-error-for="current_password"]').textContent = 'That is not your password.';
      form.current_password.setAttribute('aria-invalid', 'true');
      form.current_password.focus();
      return;
    }
    showErrors(form, error);
  }
});

$('token-copy').addEventListener('click', async () => {
  await navigator.clipboard?.writeText($('token-secret').value).then(() => announce('Copied'), () => {
    $('token-secret').select();
  });
});
$('tokens-close').addEventListener('click', () => $('tokens-dialog').close());
$('tokens-dialog').addEventListener('close', () => {
  // The secret leaves the page with the dialog.
  $('token-secret').value = '';
  $('token-password').value = '';
  $('tokens').focus();
});

// ---- reminders --------------------------------------------------------------

function canNotify() {
  return 'Notification' in window && Notification.permission === 'granted';
}

function showNotifyButton() {
  $('notify').hidden = !('Notification' in window) || Notification.permission !== 'default';
}

$('notify').addEventListener('click', async () => {
  await Notification.requestPermission().catch(() => {});
  showNotifyButton();
});

/** A reminder heard: a system notification when allowed, in the page always. */
function remind(task) {
  if (!task) return;
  const text = `Reminder: ${task.title}`;
  if (canNotify()) {
    try {
      new Notification('todo', { body: task.title, tag: `reminder-${task.id}` });
    } catch { /* (some browsers allow notifications from a service worker only) */ }
  }
  showBanner(text);
  announce(text);
}

// ---- creating, with quick add -------------------------------------------------

function quickParse() {
  const text = $('new-title').value;
  if (state.quickLiteral) return { title: text.trim(), due: null, labels: [], priority: null, found: false };
  return parseQuickAdd(text, new Date());
}

// What quick add read out of the title, shown as it is typed, so nothing
// surprises; "Keep as typed" turns it off for this task.
function showQuickPreview() {
  const parsed = quickParse();
  const preview = $('quick-preview');
  if (!parsed.found) {
    preview.hidden = true;
    $('quick-parts').replaceChildren();
    return;
  }
  const parts = [el('span', 'chip plain', `Title: ${parsed.title}`)];
  if (parsed.due) parts.push(el('span', 'chip plain', `Due: ${friendlyDue(parsed.due, new Date())}`));
  if (parsed.priority) parts.push(el('span', 'chip plain', `Priority: ${PRIORITY[parsed.priority]}`));
  if (parsed.labels.length) parts.push(el('span', 'chip plain', `${parsed.labels.length === 1 ? 'Label' : 'Labels'}: ${parsed.labels.join(', ')}`));
  $('quick-parts').replaceChildren(...parts);
  preview.hidden = false;
}

// The preview is said to a screen reader too, once typing pauses (each
// keystroke would be noise).
let previewTimer;
let previewSaid = '';
function announcePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => {
    const parts = [...$('quick-parts').children].map((chip) => chip.textContent);
    const said = $('quick-preview').hidden ? '' : `Quick add reads: ${parts.join(', ')}`;
    if (said && said !== previewSaid) announce(said);
    previewSaid = said;
  }, 800);
}

$('new-title').addEventListener('input', () => {
  if (!$('new-title').value) state.quickLiteral = false;
  showQuickPreview();
  announcePreview();
});
$('quick-literal').addEventListener('click', () => {
  state.quickLiteral = true;
  showQuickPreview();
  announce('The text will be the title as typed');
  $('new-title').focus();
});

guardSubmit($('new-task'), 'Adding…', async (form) => {
  clearErrors(form);
  const parsed = quickParse();
  const body = { title: parsed.title || form.title.value };
  if (form.description.value) body.description = form.description.value;
  // The fields under "Details" win over what was typed in the title.
  const due = fromInputs(form.due_date.value, form.due_time.value);
  if (due) body.due_at = due;
  else if (parsed.due) body.due_at = toApiTime(parsed.due);
  if (form.priority.value !== '0') body.priority = Number(form.priority.value);
  else if (parsed.priority) body.priority = parsed.priority;
  const labels = labelsFrom([form.labels.value, ...parsed.labels].join(','));
  if (labels.length) body.labels = labels;
  if (state.project) body.project_id = state.project;
  if (form.repeat.value) {
    body.recurrence = form.repeat.value;
    body.time_zone = ZONE;
  }
  if (form.remind.value) body.reminders = [{ before_due: form.remind.value }];
  const mine = api.currentSession();
  try {
    const { body: created } = await api.call('POST', '/v1/tasks', { body });
    if (api.currentSession() !== mine) return;
    wrote(created);
    form.reset();
    fillChoices(form.repeat, REPEATS);
    fillChoices(form.remind, REMINDS);
    state.quickLiteral = false;
    showQuickPreview();
    showBanner('');
    const shown = belongs(created);
    // A task added outside the view shown (say, undated while in Today) is not lost from sight without a word.
    announce(shown ? 'Task added' : `Task added; it is not in ${VIEWS[state.view].title}`);
    state.cursors = [null];
    state.page = 0;
    await loadPage();
    form.title.focus();
  } catch (error) {
    if (api.currentSession() !== mine || (error instanceof api.ApiError && error.status === 401)) return;
    // What was typed stays in the form.
    showErrors(form, error instanceof api.ApiError && error.status === 0
      ? new api.ApiError(0, { detail: `Not added: ${failureText(error)}. Your text is kept; try again.` }) : error);
  }
});

// ---- live: what other tabs and devices change ---------------------------------

// The page follows the session's changes (api.follow, GET /v1/events) and
// reads its list again when one may show in it: a task created, changed or
// deleted elsewhere shows within a moment, where the view, filter and sort
// put it. Never over what the person is doing: a task with a change of
// theirs on its way is left to that change (whose answer reads the list
// again), its own writes' events are not news, a read that brings a task
// back as shown keeps its row (focus, an editor and what is typed stay; see
// render), and nothing is announced. A stream that ends or fails comes
// back after 1, 2, 4 ... 30 s (jittered), resuming after the last event
// heard, at once when the browser is back online or the page is shown.
const live = { session: null, abort: null, lastId: null, retries: 0, wake: null };
let liveChanged = false; // a change heard that no list read sent since shows
let liveTimer = null;

function startLive() {
  stopLive();
  const mine = api.currentSession();
  Object.assign(live, { session: mine, lastId: null, retries: 0 });
  followLive(mine);
}

/** Ends the stream and forgets it: its late events are dropped (a session's end, logout). */
function stopLive() {
  live.session = null;
  live.abort?.abort();
  live.abort = null;
  live.wake?.();
  liveChanged = false;
  clearTimeout(liveTimer);
  liveTimer = null;
}

const following = (mine) => live.session === mine && api.currentSession() === mine;

async function followLive(mine) {
  while (following(mine)) {
    const abort = new AbortController();
    live.abort = abort;
    let openedAt = 0;
    let wait;
    try {
      await api.follow({
        lastEventId: live.lastId,
        signal: abort.signal,
        onOpen: () => {
          openedAt = Date.now();
          // From now: what changed since the list was read is read again.
          if (!live.lastId) liveChange();
        },
        onEvent: ({ id, change }) => {
          if (!following(mine)) return; // (an ended session's: dropped)
          live.lastId = id;
          applyChange(change);
        },
        // Where a stream from now starts: a cut before any change resumes there.
        onId: (id) => { if (following(mine)) live.lastId = id; },
      });
      // Ended by the server (the token expired or was revoked, a shutdown).
      wait = backoff();
    } catch (error) {
      if (!following(mine)) return;
      if (error instanceof api.ApiError && (error.status === 410 || error.status === 400)) {
        // What changed after the cursor is no longer kept (or the cursor is
        // not one): read the list afresh and follow from now.
        live.lastId = null;
        liveChange();
        wait = 0;
      } else if (error instanceof api.ApiError && (error.status === 429 || error.status === 503) && error.retryAfter !== null) {
        // As many streams as the server allows (the user's other tabs and
        // devices, or the instance's), or a busy server: not before it says.
        wait = Math.max(error.retryAfter, backoff());
      } else {
        wait = backoff();
      }
    }
    // A stream that ran for a while starts the backoff afresh.
    if (openedAt && Date.now() - openedAt >= 10_000) {
      live.retries = 0;
      wait = backoff();
    }
    if (!following(mine)) return;
    await liveSleep(wait);
  }
}

/** 1, 2, 4 ... 30 s, each ±25%: tabs and devices cut together do not all come back together. */
function backoff() {
  const seconds = Math.min(30, 2 ** live.retries);
  live.retries += 1;
  return Math.min(30, seconds * (0.75 + Math.random() * 0.5));
}

/** Waits `seconds`, or less when the browser is back online, the page is shown, or the stream stopped. */
function liveSleep(seconds) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener('online', done);
      document.removeEventListener('visibilitychange', shown);
      if (live.wake === done) live.wake = null;
      resolve();
    };
    const shown = () => { if (document.visibilityState === 'visible') done(); };
    const timer = setTimeout(done, seconds * 1000);
    window.addEventListener('online', done);
    document.addEventListener('visibilitychange', shown);
    live.wake = done;
  });
}

/** Whether a task may show in the list as it is viewed and filtered (the search is left to the server). */
function mayShow(task) {
  if (!belongs(task)) return false;
  const label = resolveLabel($('filter-label').value.trim()).toLowerCase();
  return !label || task.labels.some((l) => l.toLowerCase() === label);
}

/** One change heard: the list is read again when it may show there. */
function applyChange({ type, id, object }) {
  if (type === 'reminder.due') {
    remind(object);
    return;
  }
  if (type.startsWith('project.') || type.startsWith('member.')) {
    // The projects row shows names, roles and membership: read it again
    // (changes heard together, once), then the list when tasks may come
    // into it or leave it (this person joined, left or was removed, or the
    // project was deleted), after the row: a project no longer listed is
    // no longer the one shown.
    // (a page that does not know its name yet reads the list anyway)
    const mine = type.startsWith('member.') && (!state.me || object?.username === state.me);
    projectsAgainSoon(type === 'project.deleted' || mine);
    return;
  }
  // The person's own change to it is on its way: what they see stands.
  if (state.pendingChanges.has(id) || state.pendingDeletes.has(id)) return;
  const shown = state.items.find((t) => t.id === id);
  if (type === 'task.deleted') {
    if (state.editor?.id === id) {
      // Not taken from under the person: the editor stays, and says why saving will fail.
      state.editor.form.querySelector('.form-error').textContent = 'This task was deleted elsewhere.';
    }
    if (shown) liveChange();
    return;
  }
  if (!object) return;
  // A task of a project the page does not know: shared with this person
  // since the list of projects was read.
  if (object.project_id && !state.projects.some((p) => p.id === object.project_id)) loadProjects();
  if ((state.saved.get(id) ?? -1) >= object.version) return; // this page's own write
  if (shown ? shown.version >= object.version : !mayShow(object)) return;
  // (the newest known, for a row kept while it is edited; the read shows the rest)
  if (shown) state.items = state.items.map((t) => (t.id === id ? object : t));
  liveChange();
}

// One read of the projects at a time, and one more after it if changes
// were heard meanwhile: answers are shown in the order they were asked
// for, so an older one never brings back a project just lost.
const projectsRead = { running: false, again: false, tasksMove: false };

function projectsAgainSoon(tasksMove) {
  projectsRead.tasksMove ||= tasksMove;
  if (projectsRead.running) {
    projectsRead.again = true;
    return;
  }
  projectsRead.running = true;
  (async () => {
    do {
      projectsRead.again = false;
      const move = projectsRead.tasksMove;
      projectsRead.tasksMove = false;
      await loadProjects();
      if (move) liveChange();
    } while (projectsRead.again && live.session !== null);
    projectsRead.running = false;
  })();
}

/** The list is to be read again, in a moment (changes heard together are read once). */
function liveChange() {
  if (live.session === null) return;
  liveChanged = true;
  readAgainSoon();
}

function readAgainSoon() {
  if (liveTimer !== null) return;
  liveTimer = setTimeout(() => {
    liveTimer = null;
    // Not over a read already out (a page, a search, an undo): its answer
    // is shown and said, and a read after it follows (loadPage).
    if (liveChanged && !state.loading && api.signedIn()) loadPage({ quiet: true });
  }, 100);
}

// ---- start ------------------------------------------------------------------

/** Waits `ms`, or less when `wake` is clicked or the browser is back online. */
function sleep(ms, wake) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wake.onclick = null;
      window.removeEventListener('online', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    wake.onclick = done;
    window.addEventListener('online', done);
  });
}

// A session from before the reload comes back through the refresh cookie.
// No session (400/401) shows the login form; a server that cannot be reached
// or is unavailable is tried again with backoff, and the page says so
// instead of asking to log in.
// A reset link: its token is taken from the fragment (which no server or
// log sees) and cleared from the address bar and the back button's entry
// (the browser's own history keeps the visited address: the link is
// single-use and lives 30 minutes). The token is base64url: taken as it is.
let resetToken = null;
if (location.hash.startsWith('#reset=')) {
  resetToken = location.hash.slice('#reset='.length);
  history.replaceState(null, '', location.pathname + location.search);
}

// A verification link (#verify-email=…): its token is taken and cleared
// the same way; it needs no session, so it is checked whether or not one
// comes back, and what came of it is said once the page is shown.
let verifyToken = null;
if (location.hash.startsWith('#verify-email=')) {
  verifyToken = location.hash.slice('#verify-email='.length);
  history.replaceState(null, '', location.pathname + location.search);
}

/** Verifies an address with its link's token: what to say of it. */
async function verifyEmail(token) {
  try {
    await api.verifyEmail(token);
    return 'Your e-mail address is verified.';
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 400) {
      return 'This verification link cannot be used (it may have been used or have expired).';
    }
    return `The link was not checked: ${failureText(error)}. Open it again from the mail in a moment.`;
  }
}

// A link opened in a tab that shows the page already changes only the
// fragment: a verification is checked here; a reset link loads the page
// afresh (its form replaces whatever was shown).
window.addEventListener('hashchange', async () => {
  if (location.hash.startsWith('#reset=')) {
    location.reload();
    return;
  }
  if (!location.hash.startsWith('#verify-email=')) return;
  const token = location.hash.slice('#verify-email='.length);
  history.replaceState(null, '', location.pathname + location.search);
  showBanner(await verifyEmail(token));
  if ($('account-dialog').open) readAccount().catch(accountFailed);
});

function showReset() {
  showAuth();
  $('auth-title').textContent = 'Choose a new password';
  document.querySelector('#auth-view .tabs').hidden = true;
  $('login-form').hidden = true;
  $('register-form').hidden = true;
  $('reset-form').hidden = false;
  $('reset-password').focus();
}

guardSubmit($('reset-form'), 'Setting…', async (form) => {
  clearErrors(form);
  try {
    await api.resetPassword(resetToken, form.new_password.value);
    resetToken = null;
    form.reset();
    form.hidden = true;
    document.querySelector('#auth-view .tabs').hidden = false;
    showAuth('Your new password is set, and every sign-in of the account has ended. Log in with it.');
    $('login-username').focus();
  } catch (error) {
    if (error instanceof api.ApiError && error.fields.token) {
      form.querySelector('.form-error').textContent = 'This link cannot be used: it may have been used or have expired. Ask for a new one (“Forgot password?” on the sign-in page), or ask your administrator.';
      return;
    }
    showErrors(form, error);
  }
});

async function start() {
  if (resetToken) {
    showReset();
    return;
  }
  // (beside the session's return, and said after it: showing a view clears the banner)
  const verified = verifyToken ? verifyEmail(verifyToken) : null;
  verifyToken = null;
  for (let delay = 1; ; delay = Math.min(delay * 2, 30)) {
    try {
      await api.refresh();
      const me = await api.call('GET', '/v1/users/me');
      await showTasks(me.body.username);
      if (verified) showBanner(await verified);
      return;
    } catch (error) {
      if (api.isRefusal(error) || !(error instanceof api.ApiError)) {
        showAuth();
        if (verified) showBanner(await verified);
        return;
      }
      const why = error.status === 0 ? 'The server cannot be reached' : 'The server is unavailable';
      $('boot-text').textContent = `${why}. Retrying in ${delay} s…`;
      $('boot-text').classList.remove('busy-text');
      $('boot-retry').hidden = false;
      await sleep(delay * 1000, $('boot-retry'));
      $('boot-text').textContent = 'Connecting…';
      $('boot-text').classList.add('busy-text');
    }
  }
}

start();

// For the week view's "Tomorrow" headings after midnight: a page left open
// overnight reloads its list when it becomes visible again on another day.
let shownDay = startOfDay(new Date()).getTime();
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !api.signedIn()) return;
  if (daysFrom(new Date(shownDay), new Date()) !== 0) {
    shownDay = startOfDay(new Date()).getTime();
    loadPage();
  }
});
