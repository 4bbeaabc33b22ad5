// The page: log in or register, then list, filter, create, edit, complete,
// archive and delete tasks. Everything is built with DOM calls and
// textContent: user data never becomes markup.

import * as api from './api.js';

const $ = (id) => document.getElementById(id);
const view = { auth: $('auth-view'), tasks: $('tasks-view') };
const state = { cursors: [null], page: 0, next: null, tasks: new Map(), me: null };
const PRIORITY = ['', 'Low', 'Medium', 'High'];

// ---- feedback -------------------------------------------------------------

function announce(message) {
  $('status').textContent = '';
  requestAnimationFrame(() => { $('status').textContent = message; });
}

function showBanner(message) {
  const banner = $('banner');
  banner.textContent = message;
  banner.hidden = !message;
}

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
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      if (!placed) input.focus();
    }
    placed = true;
  }
  if (!placed) form.querySelector('.form-error').textContent = error.message;
}

// Typing in a field clears the error shown for it.
document.addEventListener('input', (event) => {
  const input = event.target;
  const form = input.closest?.('form');
  if (!form || !input.name) return;
  const slot = form.querySelector(`[data-error-for="${CSS.escape(input.name)}"]`);
  if (slot) slot.textContent = '';
  input.removeAttribute('aria-invalid');
});

// ---- signing in and out ---------------------------------------------------

function selectTab(register) {
  $('tab-login').setAttribute('aria-selected', String(!register));
  $('tab-register').setAttribute('aria-selected', String(register));
  $('login-form').hidden = register;
  $('register-form').hidden = !register;
  $('auth-title').textContent = register ? 'Create your account' : 'Welcome back';
  (register ? $('register-username') : $('login-username')).focus();
}

function showAuth(message) {
  view.tasks.hidden = true;
  view.auth.hidden = false;
  $('who').hidden = true;
  state.tasks.clear();
  $('task-list').replaceChildren();
  showBanner(message || '');
  selectTab(false);
}

async function showTasks(username) {
  view.auth.hidden = true;
  view.tasks.hidden = false;
  $('who').hidden = false;
  if (username) state.me = username;
  $('whoami').textContent = state.me ? `Signed in as ${state.me}` : '';
  showBanner('');
  state.cursors = [null];
  state.page = 0;
  await loadPage();
  $('new-title').focus();
}

$('tab-login').addEventListener('click', () => selectTab(false));
$('tab-register').addEventListener('click', () => selectTab(true));

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const username = form.username.value.trim();
  try {
    await api.login(username, form.password.value);
    form.reset();
    await showTasks(username.toLowerCase());
    announce('Logged in');
  } catch (error) {
    showErrors(form, error);
  }
});

$('register-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
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

$('logout').addEventListener('click', async () => {
  try {
    await api.logout();
  } finally {
    state.me = null;
    showAuth();
    announce('Logged out');
  }
});

api.whenSignedOut(() => showAuth('Your session has ended. Please log in again.'));

// ---- listing ----------------------------------------------------------------

function listQuery() {
  const f = $('filters');
  const params = new URLSearchParams({ sort: f.sort.value, limit: '20' });
  if (f.q.value.trim()) params.set('q', f.q.value.trim());
  if (f.label.value.trim()) params.set('label', f.label.value.trim());
  if (f.done.value) params.set('done', f.done.value);
  if (f.archived.checked) params.set('archived', 'true');
  const cursor = state.cursors[state.page];
  if (cursor) params.set('cursor', cursor);
  return params;
}

async function loadPage() {
  const form = $('filters');
  clearErrors(form);
  try {
    const { body } = await api.call('GET', `/v1/tasks?${listQuery()}`);
    state.next = body.next_cursor;
    render(body.items);
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    showErrors(form, error);
  }
}

function render(items) {
  state.tasks = new Map(items.map((t) => [t.id, t]));
  $('task-list').replaceChildren(...items.map(taskItem));
  $('empty').hidden = items.length > 0;
  $('prev').disabled = state.page === 0;
  $('next').disabled = !state.next;
  $('page-label').textContent = items.length ? `Page ${state.page + 1}` : '';
}

let filterTimer;
$('filters').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { state.cursors = [null]; state.page = 0; loadPage(); }, 250);
});
$('filters').addEventListener('submit', (event) => event.preventDefault());
$('next').addEventListener('click', () => {
  if (!state.next) return;
  state.cursors[state.page + 1] = state.next;
  state.page += 1;
  loadPage();
});
$('prev').addEventListener('click', () => {
  if (state.page === 0) return;
  state.page -= 1;
  loadPage();
});

// ---- one task ---------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatDue(iso) {
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function taskItem(task) {
  const li = el('li', `task${task.done ? ' done' : ''}${task.archived ? ' archived' : ''}`);
  li.dataset.id = task.id;

  const toggle = el('input', 'toggle');
  toggle.type = 'checkbox';
  toggle.checked = task.done;
  toggle.setAttribute('aria-label', `Done: ${task.title}`);
  toggle.addEventListener('change', () => patch(task, { done: toggle.checked }, toggle.checked ? 'Marked done' : 'Marked open'));

  const body = el('div', 'body');
  body.append(el('span', 'title', task.title));
  if (task.description) body.append(el('p', 'desc', task.description));
  const meta = el('div', 'meta');
  if (task.priority) meta.append(el('span', `prio p${task.priority}`, PRIORITY[task.priority]));
  if (task.due_at) {
    const due = el('span', 'due', `Due ${formatDue(task.due_at)}`);
    if (!task.done && new Date(task.due_at) < new Date()) due.classList.add('overdue');
    meta.append(due);
  }
  for (const label of task.labels) meta.append(el('span', 'chip', label));
  if (task.archived) meta.append(el('span', 'chip muted', 'archived'));
  if (meta.childElementCount) body.append(meta);

  const actions = el('div', 'actions');
  const edit = el('button', 'ghost', 'Edit');
  edit.type = 'button';
  edit.setAttribute('aria-label', `Edit ${task.title}`);
  edit.addEventListener('click', () => openEditor(li, task));
  const archive = el('button', 'ghost', task.archived ? 'Unarchive' : 'Archive');
  archive.type = 'button';
  archive.setAttribute('aria-label', `${task.archived ? 'Unarchive' : 'Archive'} ${task.title}`);
  archive.addEventListener('click', () => patch(task, { archived: !task.archived }, task.archived ? 'Unarchived' : 'Archived'));
  const remove = el('button', 'ghost danger-text', 'Delete');
  remove.type = 'button';
  remove.setAttribute('aria-label', `Delete ${task.title}`);
  remove.addEventListener('click', () => confirmDelete(task, remove));
  actions.append(edit, archive, remove);

  li.append(toggle, body, actions);
  return li;
}

async function patch(task, changes, message) {
  try {
    await api.call('PATCH', `/v1/tasks/${task.id}`, { body: changes, headers: { 'if-match': `"v${task.version}"` } });
    announce(message);
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 412) {
      showBanner('That task changed elsewhere; the list is refreshed.');
    } else if (!(error instanceof api.ApiError && error.status === 401)) {
      showBanner(error.message);
    }
  }
  await loadPage();
}

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : null;
}

function labelsFrom(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

function field(form, name, labelText, control) {
  const wrap = el('div', 'field');
  const id = `${name}-${form.dataset.id}`;
  const label = el('label', '', labelText);
  label.htmlFor = id;
  control.id = id;
  control.name = name;
  const error = el('p', 'field-error');
  error.dataset.errorFor = name;
  wrap.append(label, control, error);
  return wrap;
}

function openEditor(li, task) {
  if (li.querySelector('.editor')) return;
  const form = el('form', 'editor grid');
  form.dataset.id = task.id;
  form.noValidate = true;
  const title = el('input');
  title.value = task.title;
  title.maxLength = 200;
  const description = el('textarea');
  description.rows = 3;
  description.value = task.description;
  const due = el('input');
  due.type = 'datetime-local';
  due.value = toLocalInput(task.due_at);
  const priority = el('select');
  PRIORITY.forEach((name, value) => priority.append(new Option(name || 'None', String(value), false, value === task.priority)));
  const labels = el('input');
  labels.value = task.labels.join(', ');
  const titleField = field(form, 'title', 'Title', title);
  titleField.classList.add('span2');
  const descriptionField = field(form, 'description', 'Description', description);
  descriptionField.classList.add('span2');
  const labelsField = field(form, 'labels', 'Labels', labels);
  labelsField.classList.add('span2');
  const buttons = el('div', 'row end span2');
  const cancel = el('button', 'ghost', 'Cancel');
  cancel.type = 'button';
  const save = el('button', 'primary', 'Save');
  save.type = 'submit';
  buttons.append(cancel, save);
  form.append(titleField, descriptionField, field(form, 'due_at', 'Due', due), field(form, 'priority', 'Priority', priority), labelsField, el('p', 'form-error span2'), buttons);
  cancel.addEventListener('click', () => { form.remove(); li.querySelector('.actions button').focus(); });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const changes = {
      title: title.value,
      description: description.value,
      due_at: fromLocalInput(due.value),
      priority: Number(priority.value),
      labels: labelsFrom(labels.value),
    };
    try {
      await api.call('PATCH', `/v1/tasks/${task.id}`, { body: changes, headers: { 'if-match': `"v${task.version}"` } });
      announce('Saved');
      await loadPage();
    } catch (error) {
      if (error instanceof api.ApiError && error.status === 412) {
        showBanner('That task changed elsewhere; the list is refreshed.');
        await loadPage();
      } else {
        showErrors(form, error);
      }
    }
  });
  li.append(form);
  title.focus();
}

function confirmDelete(task, opener) {
  const dialog = $('confirm-delete');
  $('confirm-title').textContent = task.title;
  dialog.returnValue = '';
  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'delete') {
      opener.focus();
      return;
    }
    try {
      await api.call('DELETE', `/v1/tasks/${task.id}`, { headers: { 'if-match': `"v${task.version}"` } });
      announce('Deleted');
    } catch (error) {
      showBanner(error.message);
    }
    await loadPage();
  }, { once: true });
  dialog.showModal();
}

// ---- creating ---------------------------------------------------------------

$('new-task').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const body = { title: form.title.value };
  if (form.description.value) body.description = form.description.value;
  if (form.due_at.value) body.due_at = fromLocalInput(form.due_at.value);
  if (form.priority.value !== '0') body.priority = Number(form.priority.value);
  const labels = labelsFrom(form.labels.value);
  if (labels.length) body.labels = labels;
  try {
    await api.call('POST', '/v1/tasks', { body });
    form.reset();
    announce('Task added');
    state.cursors = [null];
    state.page = 0;
    await loadPage();
    form.title.focus();
  } catch (error) {
    showErrors(form, error);
  }
});

// ---- start ------------------------------------------------------------------

(async () => {
  try {
    await api.refresh(); // a session from before the reload, via the cookie
    const me = await api.call('GET', '/v1/users/me');
    await showTasks(me.body.username);
  } catch {
    showAuth();
  }
})();
