// Drives the todo page in Debian's headless Chromium, as a person would, by
// mouse and by keyboard, at desktop and phone size: register, add tasks
// (quick add too), the views, complete / archive / delete with undo, edit,
// search, page, log out and back in; and what goes wrong in real life:
// network drops (requests failed by page.route), slow answers (delayed
// routes), a 503 at start, an expired token, a change made elsewhere, a
// double click. Focus is checked after every list action, and axe-core
// checks every state (light, dark, phone, dialogs and toasts) for zero
// violations. Mail (a reset asked for on the sign-in page, an address
// verified by its link) is read from the maildir a real SMTP server writes
// (aiosmtpd, started by scripts/browser-test and scripts/gateway-test).
// Screenshots go to the directory given (target/browser).
//
//   TODO_TEST_MAILDIR=DIR node browser.mjs https://localhost:PORT OUT_DIR

import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { chromium, request } from 'playwright-core';

const [base, out = 'target/browser'] = process.argv.slice(2);
if (!base) {
  console.error('usage: node browser.mjs BASE_URL [OUT_DIR]');
  process.exit(2);
}
// (required: without it the mail steps would pass over what they are for)
const maildir = process.env.TODO_TEST_MAILDIR;
if (!maildir) {
  console.error('TODO_TEST_MAILDIR is not set: the maildir the server\'s SMTP server writes to (scripts/browser-test starts one)');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
// A time zone away from UTC, so that "a date is a local day" is tested.
const contextOptions = {
  ignoreHTTPSErrors: true, viewport: { width: 1024, height: 820 }, locale: 'en-US', timezoneId: 'America/New_York',
};
// TODO_WEB_DIR=web: the page's files come from that directory instead of the
// binary (with the server's headers, CSP included), to try a change to the
// page, or check that a test fails without its fix, with no rebuild.
/** RFC 6238: the code of the step `ahead` steps from now, as an authenticator app computes it from a base32 key. */
function totpCode(base32, ahead) {
  let bits = '';
  for (const c of base32) bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + ahead));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[19] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

async function newContext() {
  const made = await browser.newContext(contextOptions);
  if (process.env.TODO_WEB_DIR) {
    await made.route((url) => /^\/(|[a-z]+\.(js|css|svg))$/.test(url.pathname), async (route) => {
      const response = await route.fetch();
      const name = new URL(route.request().url()).pathname.slice(1) || 'index.html';
      const type = { js: 'text/javascript', css: 'text/css', svg: 'image/svg+xml', html: 'text/html' }[name.split('.').pop()];
      // (status and type too: a file the binary does not have yet comes back 404 from it)
      await route.fulfill({ response, status: 200, contentType: `${type}; charset=utf-8`, body: readFileSync(join(process.env.TODO_WEB_DIR, name), 'utf8') });
    });
  }
  return made;
}
const context = await newContext();
const page = await context.newPage();
const problems = [];
// Failed requests that a step causes on purpose (page.route) log errors; they
// are allowed only while such a step runs.
let failuresExpected = false;
page.on('console', (msg) => {
  if (msg.type() !== 'error') return;
  const text = msg.text();
  // Answers with error statuses are expected (the flow checks each one);
  // anything else, a CSP violation above all, is a problem.
  if (/^Failed to load resource: the server responded with a status of (400|401)/.test(text)) return;
  if (failuresExpected && /^Failed to load resource/.test(text)) return;
  problems.push(text);
});
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
// Every token pair the page receives: none may carry the refresh token.
const pairs = [];
page.on('response', async (response) => {
  if (!/\/v1\/auth\/(login|refresh)$/.test(new URL(response.url()).pathname) || response.status() !== 200) return;
  try {
    pairs.push(await response.json());
  } catch (error) {
    if (!failuresExpected) problems.push(`unreadable token pair: ${error.message}`);
  }
});

// The page's live streams (GET /v1/events): sent, answered 200, ended.
const streams = { sent: 0, opened: 0, ended: 0 };
const isStream = (r) => new URL(r.url()).pathname === '/v1/events';
page.on('request', (r) => { if (isStream(r)) streams.sent += 1; });
page.on('response', (r) => { if (isStream(r) && r.status() === 200) streams.opened += 1; });
for (const end of ['requestfailed', 'requestfinished']) page.on(end, (r) => { if (isStream(r)) streams.ended += 1; });
/** Waits for a condition of the test's own (not the page's), polled. */
async function until(condition, timeout) {
  for (const began = Date.now(); !condition(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() - began > timeout) return false;
  }
  return true;
}

let step = 0;
async function shot(name, options = {}) {
  step += 1;
  await page.screenshot({ path: join(out, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true, ...options });
}
let checks = 0;
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  checks += 1;
  console.log(`ok - ${message}`);
}
// Requests by URL: the task list (GET and POST /v1/tasks) and one task.
const listUrl = (url) => url.pathname === '/v1/tasks';
const oneTaskUrl = (url) => /^\/v1\/tasks\/[^/]+$/.test(url.pathname);
const task = (title) => page.locator('#task-list li.task', { hasText: title });
const exactTask = (title) => page.locator('#task-list li.task').filter({ has: page.locator('.title', { hasText: new RegExp(`^${title}$`) }) });
async function titles() {
  await page.waitForTimeout(50);
  return page.locator('#task-list li.task .title').allTextContents();
}
async function waitForTitles(expected, message) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#task-list li.task .title')].map((e) => e.textContent)) === JSON.stringify(want),
    expected,
    { timeout: 10_000 },
  ).catch(() => {});
  const got = await titles();
  check(JSON.stringify(got) === JSON.stringify(expected), `${message}: ${JSON.stringify(got)}`);
}
async function waitFor(fn, arg, timeout = 10_000) {
  await page.waitForFunction(fn, arg, { timeout }).catch(() => {});
}
/** What has focus: its control name, its label, the title of the task it is in. */
function focused() {
  return page.evaluate(() => {
    const a = document.activeElement;
    return {
      tag: a.tagName.toLowerCase(),
      id: a.id,
      control: a.dataset?.control || '',
      label: a.getAttribute('aria-label') || a.textContent.trim(),
      task: a.closest('li.task')?.querySelector('.title')?.textContent || '',
    };
  });
}
/** Runs axe-core over the page as it is: zero violations of any rule. */
async function axe(state, on = page) {
  if (!(await on.evaluate(() => typeof window.axe !== 'undefined'))) {
    // The page's CSP refuses inline script (addScriptTag), so axe is
    // evaluated through the DevTools protocol, which the CSP does not govern.
    await on.evaluate(axeSource);
  }
  const violations = await on.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.id} (${v.nodes.length}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  check(violations.length === 0, `axe-core: no violations in the state "${state}"${violations.length ? `: ${violations.join(' | ')}` : ''}`);
}
/** A date in the page's time zone, as the date input wants it: today + `days`. */
function localDate(days) {
  return page.evaluate((n) => {
    const d = new Date();
    d.setDate(d.getDate() + n);
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  }, days);
}
async function addTask(title, { labels, priority, dueDate, dueTime } = {}) {
  const before = await page.locator('#task-list li.task').count();
  await page.fill('#new-title', title);
  if (labels !== undefined || priority !== undefined || dueDate !== undefined) {
    if (!(await page.locator('.more').evaluate((d) => d.open))) await page.click('.more summary');
  }
  if (labels !== undefined) await page.fill('#new-labels', labels);
  if (priority !== undefined) await page.selectOption('#new-priority', String(priority));
  if (dueDate !== undefined) await page.fill('#new-due', dueDate);
  if (dueTime !== undefined) await page.fill('#new-due-time', dueTime);
  await page.click('#new-task button[type=submit]');
  await waitFor((n) => document.querySelectorAll('#task-list li.task').length !== n && !document.querySelector('#new-task[aria-busy]'), before);
}
async function selectView(name) {
  await page.click(`.views [data-view="${name}"]`);
  await waitFor((n) => document.querySelector(`.views [data-view="${n}"]`).getAttribute('aria-current') === 'page'
    && document.querySelector('#task-list').getAttribute('aria-busy') !== 'true', name);
  await page.waitForTimeout(150);
}
const toastText = () => page.locator('#toasts .toast-text').textContent();

// ---- mail, as the SMTP server wrote it (a file per message in new/) ----
/** The names of the messages there now. */
function mailFiles() {
  try {
    return new Set(readdirSync(join(maildir, 'new')));
  } catch {
    return new Set(); // (no maildir yet: nothing has come)
  }
}
/** Undoes quoted-printable: soft line breaks, then =XX escapes (`#reset=` arrives as `#reset=3D`). */
function unquote(text) {
  return text.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}
/** A message's headers and the text of its parts, each decoded as its Content-Transfer-Encoding says. */
function readMail(raw) {
  const texts = [];
  const split = (entity) => {
    const at = entity.search(/\r?\n\r?\n/);
    const head = (at < 0 ? entity : entity.slice(0, at)).replace(/\r?\n[ \t]+/g, ' '); // (headers unfolded)
    return { head, body: at < 0 ? '' : entity.slice(at).replace(/^\r?\n\r?\n/, '') };
  };
  const visit = (entity) => {
    const { head, body } = split(entity);
    const boundary = /^content-type:\s*multipart\/.*?boundary="?([^";\r\n]+)"?/im.exec(head)?.[1];
    if (boundary) {
      for (const part of body.split(`--${boundary}`).slice(1)) {
        if (part.startsWith('--')) break;
        visit(part.replace(/^\r?\n/, ''));
      }
      return;
    }
    const encoding = /^content-transfer-encoding:\s*(\S+)/im.exec(head)?.[1].toLowerCase();
    if (encoding === 'quoted-printable') texts.push(unquote(body));
    else if (encoding === 'base64') texts.push(Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8'));
    else texts.push(body);
  };
  visit(raw);
  return { to: /^to:\s*(.*)$/im.exec(split(raw).head)?.[1] || '', text: texts.join('\n') };
}
/**
 * The newest message to `address` among those not in `seen` (mailFiles()
 * before it was asked for), waiting up to 20 s for one: null if none came.
 */
async function mailTo(address, seen) {
  for (const began = Date.now(); Date.now() - began < 20_000; await new Promise((r) => setTimeout(r, 100))) {
    const mine = [...mailFiles()].filter((name) => !seen.has(name)).map((name) => {
      const path = join(maildir, 'new', name);
      return { at: statSync(path).mtimeMs, mail: readMail(readFileSync(path, 'utf8')) };
    }).filter(({ mail }) => mail.to.toLowerCase().includes(address.toLowerCase()));
    if (mine.length) return mine.sort((a, b) => b.at - a.at)[0].mail.text;
    // (a message half written is read again at the next turn)
  }
  return null;
}
/** The page link in a message's text after `#what=`. */
const linkIn = (text, what) => new RegExp(`https://[^\\s"<>]+/#${what}=[A-Za-z0-9_-]+`).exec(text || '')?.[0] || null;

// What "Forgot password?" says whatever the login (step 17).
const FORGOT_SENT = 'If that account has a verified e-mail address, a reset link is on its way. It works once, for 30 minutes.';

const username = `alice${Date.now() % 100000}`;
const password = 'correct horse battery';

// The page's clock is midday in New York on today's date there (noon in
// winter, 1 pm in summer time): "Today",
// "Tomorrow" and the Today and Upcoming views hold whenever the test runs
// (at 23:59 in New York, "tomorrow 9am" and the checks' "Tomorrow" could
// fall on either side of midnight). The clock runs on from there; step 17
// moves it ahead.
const newYorkToday = new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York' }).format(new Date());
await page.clock.install({ time: new Date(`${newYorkToday}T12:00:00-05:00`) });

try {
  // 1. The start is never a blank page: "Loading" until the session is known
  //    (the refresh is held back here), then the login form.
  await page.route('**/v1/auth/refresh', async (route) => {
    await new Promise((r) => setTimeout(r, 800));
    await route.continue().catch(() => {}); // handled already once unrouted
  });
  await page.goto(base);
  await page.locator('#boot').waitFor({ state: 'visible' });
  check((await page.locator('#boot-text').textContent()).includes('Loading'), 'the start says it is loading, not a blank page');
  await page.unroute('**/v1/auth/refresh');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#auth-title').textContent() === 'Welcome back', 'the login form is shown first');
  check(await page.locator('#boot').isHidden(), 'the loading notice is gone');
  await axe('login');
  await shot('login');

  // 2. Register: an invalid password is reported next to its field.
  await page.click('#tab-register');
  await page.fill('#register-username', username);
  await page.fill('#register-password', 'short');
  await page.click('#register-form button[type=submit]');
  const passwordError = page.locator('#register-form [data-error-for="password"]');
  await passwordError.waitFor({ state: 'visible' });
  check((await passwordError.textContent()).includes('8 to 128'), 'a short password is refused next to the password field');
  check(await page.locator('#register-password').getAttribute('aria-invalid') === 'true', 'the field is marked invalid');
  await axe('register error');
  await shot('register-error');
  await page.fill('#register-password', password);
  await page.click('#register-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  check((await page.locator('#whoami').textContent()).includes(username), 'registering logs in and names the user');
  await page.locator('#empty').waitFor({ state: 'visible' });
  check((await page.locator('#empty').textContent()).includes('Nothing to do'), 'a new account has an empty list');
  await axe('empty list');

  // 3. Add tasks.
  await addTask('Buy milk', { labels: 'home, home, errands' });
  await waitForTitles(['Buy milk'], 'the first task appears');
  check((await task('Buy milk').locator('.chip').allTextContents()).join(',') === 'errands,home',
    '"home, home" is one label, not an error');
  await page.fill('#new-labels', '');
  await addTask('Write report', { priority: 3, labels: 'work' });
  await waitForTitles(['Write report', 'Buy milk'], 'the second task appears on top');
  await page.selectOption('#new-priority', '0');
  await page.fill('#new-labels', '');
  await addTask('Call mom', { dueDate: '2030-05-01', dueTime: '18:30' });
  await waitForTitles(['Call mom', 'Write report', 'Buy milk'], 'three tasks, newest first');
  check((await task('Call mom').locator('.due').textContent()) === 'Due May 1, 2030 6:30 PM', 'a due date and time are shown');
  // A date without a time is a date: kept, and shown without a time.
  await page.fill('#new-due-time', '');
  await addTask('Dentist', { dueDate: '2030-06-01' });
  await waitForTitles(['Dentist', 'Call mom', 'Write report', 'Buy milk'], 'a task due on a date is added');
  check((await task('Dentist').locator('.due').textContent()) === 'Due Jun 1, 2030', 'a due date without a time is kept, as a date');
  await page.fill('#new-due', '');
  // Overdue is said in words, and priority and labels are named for a screen reader.
  await addTask('Pay old bill', { dueDate: await localDate(-2) });
  await page.fill('#new-due', '');
  check((await task('Pay old bill').locator('.due').textContent()).startsWith('Overdue: '), 'an overdue task says "Overdue" in words');
  check((await task('Write report').locator('.meta').textContent()) === 'Priority: HighLabel: work',
    'priority and label are named, not colour or position only');
  check((await task('Buy milk').locator('.meta').textContent()) === 'Labels: errands, home', 'labels are named as labels');
  // An invalid title is reported next to the title field.
  await page.fill('#new-title', '   ');
  await page.click('#new-task button[type=submit]');
  await waitFor(() => document.querySelector('#new-task [data-error-for="title"]').textContent !== '');
  check((await page.locator('#new-task [data-error-for="title"]').textContent()).length > 0
    && await page.locator('#new-title').getAttribute('aria-invalid') === 'true', 'a blank title is refused next to the title field');
  await page.fill('#new-title', '');

  // A double click on Add (answer held back 600 ms) adds one task.
  let posts = 0;
  await page.route(listUrl, async (route) => {
    if (route.request().method() === 'POST') {
      posts += 1;
      await new Promise((r) => setTimeout(r, 600));
    }
    await route.continue().catch(() => {});
  });
  await page.fill('#new-title', 'Only once');
  await page.dblclick('#new-task button[type=submit]');
  check(await page.locator('#new-task button[type=submit]').isDisabled(), 'Add is disabled while the task is being added');
  await waitFor(() => !document.querySelector('#new-task[aria-busy]')
    && [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Only once'));
  await page.unroute(listUrl);
  check(posts === 1 && (await page.locator('#task-list li.task .title', { hasText: 'Only once' }).count()) === 1,
    `a double click on Add adds one task (${posts} sent)`);

  // Quick add: the title's date, label and priority, previewed as typed.
  await page.click('.more summary'); // fold the details again
  await page.fill('#new-title', 'Call mom');
  check(await page.locator('#quick-preview').isHidden(), 'plain text shows no quick-add preview');
  // Typed key by key: the preview follows; a screen reader hears it once,
  // when typing pauses.
  await page.evaluate(() => {
    window.statusSaid = [];
    new MutationObserver(() => {
      const text = document.querySelector('#status').textContent;
      if (text) window.statusSaid.push(text);
    }).observe(document.querySelector('#status'), { childList: true, characterData: true, subtree: true });
  });
  await page.fill('#new-title', '');
  await page.locator('#new-title').pressSequentially('Pay rent tomorrow 9am #home !2', { delay: 20 });
  await page.locator('#quick-preview').waitFor({ state: 'visible' });
  check((await page.locator('#quick-parts').textContent()) === 'Title: Pay rentDue: Tomorrow 9:00 AMPriority: MediumLabel: home',
    'quick add previews title, due, priority and label as they are typed');
  await waitFor(() => document.querySelector('#status').textContent.startsWith('Quick add reads'));
  const said = (await page.evaluate(() => window.statusSaid)).filter((text) => text.startsWith('Quick add'));
  check(JSON.stringify(said) === JSON.stringify(['Quick add reads: Title: Pay rent, Due: Tomorrow 9:00 AM, Priority: Medium, Label: home']),
    `the preview is said to a screen reader once, when typing pauses (${JSON.stringify(said)})`);
  await axe('quick add preview');
  await shot('quick-add');
  await page.press('#new-title', 'Enter');
  await waitFor(() => [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Pay rent'));
  check((await exactTask('Pay rent').locator('.meta').textContent()) === 'Priority: MediumDue Tomorrow 9:00 AMLabel: home',
    'the quick-added task has its due date, priority and label');
  check(await page.locator('#quick-preview').isHidden(), 'the preview is cleared after adding');
  // "Keep as typed" turns quick add off for one task.
  await page.fill('#new-title', 'Read Sunday papers on fri');
  await page.locator('#quick-preview').waitFor({ state: 'visible' });
  await page.click('#quick-literal');
  check(await page.locator('#quick-preview').isHidden(), '"Keep as typed" drops the preview');
  check((await focused()).id === 'new-title', 'and gives focus back to the title');
  await page.press('#new-title', 'Enter');
  await waitFor(() => [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Read Sunday papers on fri'));
  check((await exactTask('Read Sunday papers on fri').locator('.due').count()) === 0, 'text kept as typed has no due date');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom', 'Write report', 'Buy milk'], 'eight tasks');
  await axe('list');
  await shot('tasks');
  await page.setViewportSize({ width: 375, height: 740 });
  await shot('phone-tasks', { fullPage: false });
  await page.setViewportSize({ width: 1024, height: 820 });

  // 4. Complete one by keyboard: it leaves the Open view, focus goes to the
  //    task now in its place, and a toast offers undo.
  await task('Only once').locator('.toggle').focus();
  await page.keyboard.press('Space');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Pay old bill', 'Dentist', 'Call mom', 'Write report', 'Buy milk'], 'a completed task leaves the Open view');
  let f = await focused();
  check(f.control === 'toggle' && f.task === 'Pay old bill', `after completing, focus is on the next task's checkbox (${JSON.stringify(f)})`);
  check((await toastText()) === 'Completed “Only once”', 'a toast says what was completed');
  await axe('undo toast');
  await shot('undo-toast');
  await page.keyboard.press('Control+z');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom', 'Write report', 'Buy milk'], 'Ctrl+Z undoes the completion');
  await waitFor(() => document.activeElement.closest('li.task')?.querySelector('.title').textContent === 'Only once');
  f = await focused();
  check(f.control === 'toggle' && f.task === 'Only once', `after an undo, focus is on the task it brought back (${JSON.stringify(f)})`);
  await task('Buy milk').locator('.toggle').click();
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom', 'Write report'], 'Buy milk is done');
  f = await focused();
  check(f.control === 'toggle' && f.task === 'Write report', `completing the last task focuses the one before it (${JSON.stringify(f)})`);

  // 5. The views.
  await selectView('completed');
  await waitForTitles(['Buy milk'], 'Completed shows the done task');
  check(await task('Buy milk').evaluate((li) => li.classList.contains('done')), 'the completed task is shown done');
  await axe('completed view');
  await selectView('today');
  await waitForTitles(['Pay old bill'], 'Today shows what is due today and overdue');
  await selectView('overdue');
  await waitForTitles(['Pay old bill'], 'Overdue shows the overdue task');
  await selectView('upcoming');
  await waitForTitles(['Pay rent', 'Call mom', 'Dentist'], 'Upcoming shows the dated tasks from today on, soonest first');
  const headings = await page.locator('#task-list .day-heading').allTextContents();
  check(headings.length === 3 && headings[0].startsWith('Tomorrow · ') && headings[1] === 'Wednesday, May 1, 2030',
    `Upcoming is grouped by day: ${JSON.stringify(headings)}`);
  await axe('upcoming view');
  await shot('upcoming');
  await selectView('open');

  // 6. Filter by label (any case) and search; stale answers never win.
  await page.fill('#filter-label', 'WORK');
  await waitForTitles(['Write report'], 'the label filter ignores case');
  await page.fill('#filter-label', '');
  await page.fill('#filter-q', 'MOM');
  await waitForTitles(['Call mom'], 'the text search is case-insensitive');
  await page.fill('#filter-q', 'no such thing');
  await page.locator('#empty').waitFor({ state: 'visible' });
  check((await page.locator('#empty').textContent()) === 'No tasks match your search.', 'a search with no match says so');
  await axe('no match');
  // A slow answer to an older search must not replace a newer one.
  let slowOut;
  const slowSent = new Promise((resolve) => { slowOut = resolve; });
  let slowDone;
  const slowAnswered = new Promise((resolve) => { slowDone = resolve; });
  await page.route(listUrl, async (route) => {
    if (new URL(route.request().url()).searchParams.get('q') === 'Call') {
      slowOut();
      await new Promise((r) => setTimeout(r, 1500));
      await route.continue().catch(() => {}); // aborted by the page: fine
      slowDone();
      return;
    }
    await route.continue().catch(() => {});
  });
  failuresExpected = true;
  await page.fill('#filter-q', 'Call');
  await slowSent; // past the debounce: the slow request is out
  await page.fill('#filter-q', 'Dentist');
  await waitForTitles(['Dentist'], 'the newer search is shown');
  await slowAnswered;
  await page.waitForTimeout(200); // (time for the page to handle the late answer, were it to)
  await waitForTitles(['Dentist'], 'the newest search wins over an older, slower answer');
  await page.unroute(listUrl);
  failuresExpected = false;
  await page.fill('#filter-q', '');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom', 'Write report'], 'clearing the search shows all');
  // A slow sort says it is loading.
  await page.route(listUrl, async (route) => {
    await new Promise((r) => setTimeout(r, 3000));
    await route.continue().catch(() => {});
  });
  await page.selectOption('#filter-sort', '-due');
  await page.locator('#loading').waitFor({ state: 'visible', timeout: 2500 });
  check(await page.locator('#task-list').getAttribute('aria-busy') === 'true', 'a slow answer shows "Loading…" and marks the list busy');
  await page.unroute(listUrl);
  await page.locator('#loading').waitFor({ state: 'hidden' });
  // "Due latest": the latest first, undated tasks last.
  await waitForTitles(['Dentist', 'Call mom', 'Pay rent', 'Pay old bill', 'Read Sunday papers on fri', 'Only once', 'Write report'],
    '"Due latest" puts the latest first and undated tasks last');
  await page.selectOption('#filter-sort', '-created');
  await page.waitForTimeout(400);

  // 7. Edit: one editor at a time, Escape closes it, focus returns to Edit.
  await task('Call mom').getByRole('button', { name: 'Edit Call mom' }).click();
  await task('Write report').getByRole('button', { name: 'Edit Write report' }).click();
  check((await page.locator('form.editor').count()) === 1, 'opening a second editor closes the first');
  await page.keyboard.press('Escape');
  check((await page.locator('form.editor').count()) === 0, 'Escape closes the editor');
  f = await focused();
  check(f.control === 'edit' && f.task === 'Write report', `after Escape, focus is on the task's Edit button (${JSON.stringify(f)})`);
  await task('Call mom').getByRole('button', { name: 'Edit Call mom' }).click();
  const editor = task('Call mom').locator('form.editor');
  await editor.waitFor({ state: 'visible' });
  check(await editor.locator('[name=due_time]').inputValue() === '18:30', 'the editor shows the due time');
  await editor.locator('[name=title]').fill('Call mom tonight');
  await editor.locator('[name=labels]').fill('family');
  await axe('editor open');
  await shot('editing');
  await editor.locator('[name=title]').press('Enter');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'the edited title is shown');
  check((await task('Call mom tonight').locator('.chip').allTextContents()).join(',') === 'family', 'the edited labels are shown');
  f = await focused();
  check(f.control === 'edit' && f.task === 'Call mom tonight', `after saving, focus is on the task's Edit button (${JSON.stringify(f)})`);
  // Removing the time keeps the date.
  await task('Call mom tonight').getByRole('button', { name: 'Edit Call mom tonight' }).click();
  await task('Call mom tonight').locator('[name=due_time]').fill('');
  await task('Call mom tonight').locator('button[type=submit]').click();
  await waitFor(() => document.querySelector('form.editor') === null);
  await page.waitForTimeout(300);
  check((await task('Call mom tonight').locator('.due').textContent()) === 'Due May 1, 2030', 'clearing the time keeps the date');

  // 8. Archive: focus goes to the next task; the Archived view is readable.
  await task('Only once').getByRole('button', { name: 'Archive Only once' }).click();
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'the archived task leaves the list');
  f = await focused();
  check(f.task === 'Pay old bill' && f.tag !== 'body', `after archiving, focus is on the next task (${JSON.stringify(f)})`);
  check((await toastText()) === 'Archived “Only once”', 'a toast offers to undo the archive');
  await page.click('#toasts button[data-control="undo"]');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Only once', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'undo brings the archived task back');
  await waitFor(() => document.activeElement.closest('li.task')?.querySelector('.title').textContent === 'Only once');
  f = await focused();
  check(f.task === 'Only once', `after undoing the archive, focus is on the task (${JSON.stringify(f)})`);
  await task('Only once').getByRole('button', { name: 'Archive Only once' }).click();
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'archived again');
  await selectView('archived');
  await waitForTitles(['Only once'], 'the Archived view shows it');
  await axe('archived view');
  await shot('archived');
  await selectView('open');

  // 9. Delete: no dialog; the task goes at once, with undo; undo brings it back.
  await task('Pay old bill').getByRole('button', { name: 'Delete Pay old bill' }).click();
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Dentist', 'Call mom tonight', 'Write report'], 'a deleted task leaves the list at once');
  f = await focused();
  check(f.task === 'Dentist' && f.tag !== 'body', `after deleting, focus is on the next task (${JSON.stringify(f)})`);
  check((await toastText()) === 'Deleted “Pay old bill”', 'a toast offers to undo the delete');
  await page.click('#toasts button[data-control="undo"]');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'undo brings the deleted task back');
  await waitFor(() => document.activeElement.closest('li.task')?.querySelector('.title').textContent === 'Pay old bill');
  f = await focused();
  check(f.control === 'toggle' && f.task === 'Pay old bill', `after undoing a delete, focus is on the task (${JSON.stringify(f)})`);
  // The undo time stops while the toast is pointed at: past the usual six
  // seconds, Undo still restores, and the server still has the task (the
  // list is read again from it). (Attack of 2026-12-03: the delete went out
  // at 6 s while Undo was offered, and Undo then said "Restored".)
  await task('Pay old bill').getByRole('button', { name: 'Delete Pay old bill' }).click();
  check((await toastText()) === 'Deleted “Pay old bill”', 'the toast offers the undo again');
  await page.mouse.move(1, 1); // (a toast that appears under a still pointer is not "entered")
  await page.hover('#toasts .toast');
  await page.waitForTimeout(7_500);
  await page.click('#toasts button[data-control="undo"]');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Pay old bill', 'Dentist', 'Call mom tonight', 'Write report'], 'undo after a long hover brings the task back from the server');
  await task('Pay old bill').getByRole('button', { name: 'Delete Pay old bill' }).click();
  await page.click('#toasts button[data-control="dismiss"]'); // the undo time ends: deleted now
  await page.waitForTimeout(300);
  // A long title fits its toast.
  const long = `Averylongtitle${'withoutanyspaceorhyphen'.repeat(9)}`.slice(0, 200); // one long word
  await addTask(long);
  await task('Averylongtitle').getByRole('button', { name: `Delete ${long}` }).click();
  const toastFits = await page.locator('#toasts .toast').evaluate((t) => {
    const box = t.getBoundingClientRect();
    return box.left >= 0 && box.right <= window.innerWidth && t.scrollWidth <= t.clientWidth;
  });
  check(toastFits, 'a long title does not overflow its toast');
  await page.click('#toasts button[data-control="dismiss"]');
  await page.waitForTimeout(300);

  // 10. Failures: a tick that does not reach the server is undone, visibly.
  failuresExpected = true;
  await page.route(oneTaskUrl, (route) => (route.request().method() === 'PATCH' ? route.abort('internetdisconnected') : route.continue()));
  await task('Write report').locator('.toggle').focus();
  await page.keyboard.press('Space');
  await page.locator('#banner').waitFor({ state: 'visible' });
  check((await page.locator('#banner-text').textContent()).startsWith('Not saved: you are offline'), 'an offline tick says it was not saved');
  await waitFor(() => document.querySelector('li.task.rolled-back') !== null);
  check(!(await task('Write report').locator('.toggle').isChecked()), 'the offline tick is rolled back');
  check(await task('Write report').evaluate((li) => li.classList.contains('rolled-back')), 'the rolled-back task is marked');
  f = await focused();
  check(f.tag !== 'body', `focus survives the roll-back (${JSON.stringify(f)})`);
  await axe('rolled back');
  await page.unroute(oneTaskUrl);
  // A change made elsewhere (412) does not drop the user's tick, and the
  // message goes with the next change.
  let conflicts = 0;
  await page.route(oneTaskUrl, async (route) => {
    if (route.request().method() === 'PATCH' && conflicts === 0) {
      conflicts += 1;
      await route.fulfill({ status: 412, contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'urn:todo:problem:precondition-failed', title: 'Precondition Failed', status: 412, detail: 'stale version' }) });
    } else {
      await route.continue();
    }
  });
  await task('Write report').locator('.toggle').click();
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Dentist', 'Call mom tonight'], 'after a conflict the tick still leaves the list');
  await page.locator('#banner').waitFor({ state: 'visible' });
  check((await page.locator('#banner-text').textContent()).includes('changed elsewhere'), 'the conflict is explained');
  await page.unroute(oneTaskUrl);
  failuresExpected = false;
  await selectView('completed');
  await waitForTitles(['Write report', 'Buy milk'], 'the tick made during a conflict was saved');
  await selectView('open');
  await task('Dentist').locator('.toggle').click();
  await waitFor(() => document.querySelector('#banner').hidden);
  check(await page.locator('#banner').isHidden(), 'the conflict message clears with the next change');
  await page.keyboard.press('Control+z');
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Dentist', 'Call mom tonight'], 'Dentist is open again');
  // A failed change rolls back only its own task: a tick made meanwhile,
  // and saved, stays.
  const payRentId = await exactTask('Pay rent').getAttribute('data-id');
  let payRentFailed;
  const payRentDone = new Promise((resolve) => { payRentFailed = resolve; });
  await page.route(oneTaskUrl, async (route) => {
    if (route.request().method() !== 'PATCH' || !route.request().url().endsWith(payRentId)) return route.continue();
    await new Promise((r) => setTimeout(r, 1500));
    await route.abort('internetdisconnected');
    payRentFailed();
  });
  failuresExpected = true;
  await exactTask('Pay rent').locator('.toggle').click();
  await task('Call mom tonight').locator('.toggle').click();
  await waitForTitles(['Read Sunday papers on fri', 'Dentist'], 'both ticks show at once');
  await payRentDone;
  await page.locator('#banner').waitFor({ state: 'visible' });
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Dentist'], 'the failed tick comes back, the saved one stays done');
  check((await page.locator('#banner-text').textContent()).includes('“Pay rent” is back as it was'), 'the roll-back names its task');
  await page.unroute(oneTaskUrl);
  failuresExpected = false;
  await page.click('#toasts button[data-control="undo"]'); // Call mom tonight's toast
  await waitForTitles(['Read Sunday papers on fri', 'Pay rent', 'Dentist', 'Call mom tonight'], 'undo reopens the saved tick');

  // An expired token and a refresh that meets no network: the page stays
  // signed in, says "offline, retrying", and recovers by itself.
  failuresExpected = true;
  await page.route(listUrl, (route) => route.fulfill({
    status: 401, contentType: 'application/problem+json', headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
    body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'invalid token' }),
  }));
  await page.route('**/v1/auth/refresh', (route) => route.abort('internetdisconnected'));
  await page.fill('#new-title', 'Typed while offline');
  await selectView('today');
  await page.locator('#connection').waitFor({ state: 'visible' });
  check(/^Offline, retrying in \d+ s/.test(await page.locator('#connection-text').textContent()), 'a failed refresh says "offline, retrying"');
  check(await page.locator('#tasks-view').isVisible() && await page.locator('#login-form').isHidden(), 'a network blip does not log out');
  check(await page.inputValue('#new-title') === 'Typed while offline', 'what was typed is kept');
  await axe('offline');
  await shot('offline');
  await page.unroute(listUrl);
  await page.unroute('**/v1/auth/refresh');
  await page.click('#retry-now', { timeout: 2000 }).catch(() => {}); // (the page's own retry may come first)
  await page.locator('#connection').waitFor({ state: 'hidden' });
  await waitForTitles([], 'back online, the view loads again');
  check(await page.locator('#tasks-view').isVisible(), 'still signed in after the network came back');
  failuresExpected = false;
  await page.fill('#new-title', '');
  await selectView('open');

  // 11. Pages: 21 more tasks through the API, then Next and Previous by
  //     keyboard; focus stays on the pager; an empty last page steps back.
  const apiClient = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
  const login = await (await apiClient.post('/v1/auth/login', { data: { username, password } })).json();
  for (let i = 1; i <= 21; i += 1) {
    const created = await apiClient.post('/v1/tasks', { data: { title: `Bulk ${i}` }, headers: { authorization: `Bearer ${login.access_token}` } });
    if (!created.ok()) throw new Error(`creating a task through the API: ${created.status()}`);
  }
  await apiClient.dispose();
  // (the page follows the API's writes live: once it shows the last, it
  // has caught up, and the next list read is the sort's)
  await waitFor(() => [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Bulk 21'));
  await page.selectOption('#filter-sort', 'created'); // oldest first: the bulk tasks are on pages 1 and 2
  // (the oldest first shown: the page follows the API's writes live, so
  // the newest first may have filled a page, with Next, already)
  await waitFor(() => !document.querySelector('#next').disabled
    && [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Bulk 1'));
  await page.focus('#next');
  await page.keyboard.press('Enter');
  await waitFor(() => document.querySelector('#page-label').textContent === 'Page 2' && document.querySelector('#next').disabled);
  f = await focused();
  check(f.id === 'prev', `on the last page, focus moves from the disabled Next to Previous (${JSON.stringify(f)})`);
  check((await page.locator('#page-label').textContent()) === 'Page 2', 'the page is numbered');
  await waitFor(() => document.querySelector('#status').textContent === 'Page 2');
  check((await page.locator('#status').textContent()) === 'Page 2', 'the new page is said to a screen reader');
  await page.keyboard.press('Enter');
  await waitFor(() => document.querySelector('#page-label').textContent === 'Page 1');
  f = await focused();
  check(f.id === 'next', `back on the first page, focus moves to Next (${JSON.stringify(f)})`);
  // The last page empties (what was on it was done elsewhere).
  await page.route(listUrl, (route) => (new URL(route.request().url()).searchParams.get('cursor')
    ? route.fulfill({ status: 200, contentType: 'application/json', body: '{"items":[],"next_cursor":null}' })
    : route.continue()));
  await page.keyboard.press('Enter');
  // (the step back is two reads, each behind whatever read was out: wait
  // for where it must end, then say what was there if it did not)
  await waitFor(() => document.querySelector('#next').disabled && document.querySelector('#prev').disabled
    && document.querySelector('#page-label').textContent === 'Page 1'
    && document.querySelectorAll('#task-list li.task').length > 0);
  await page.waitForTimeout(300);
  const pager = await page.evaluate(() => ({
    label: document.querySelector('#page-label').textContent,
    prevDisabled: document.querySelector('#prev').disabled,
    nextDisabled: document.querySelector('#next').disabled,
    tasks: document.querySelectorAll('#task-list li.task').length,
    busy: document.querySelector('#task-list').getAttribute('aria-busy'),
  }));
  check(pager.label === 'Page 1' && pager.prevDisabled && pager.tasks > 0,
    `an empty last page steps back to the last page with tasks, numbered, without Previous (${JSON.stringify(pager)})`);
  check(await page.locator('#empty').isHidden(), 'and does not say the list is empty');
  f = await focused();
  check(f.tag !== 'body', `focus is not lost when the empty page steps back (${JSON.stringify(f)})`);
  await page.unroute(listUrl);
  await page.selectOption('#filter-sort', '-created');
  await page.waitForTimeout(400);

  // Tokens stay out of script's reach.
  const storage = await page.evaluate(() => ({
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
  }));
  check(!storage.cookie.includes('todo_refresh') && storage.local === 0 && storage.session === 0, 'no token in script-readable storage');

  // 12. Dark.
  await page.emulateMedia({ colorScheme: 'dark' });
  await task('Bulk 20').getByRole('button', { name: 'Edit Bulk 20' }).click();
  await axe('dark, editor open');
  await page.keyboard.press('Escape');
  await task('Bulk 21').locator('.toggle').click();
  await axe('dark, toast');
  await shot('dark');
  await selectView('archived');
  await waitFor(() => document.querySelectorAll('#task-list li.task').length > 0);
  await axe('dark, archived view');
  await selectView('open');
  await page.emulateMedia({ colorScheme: 'light' });

  // A page that is hidden (a phone switching apps, which may then kill it
  // without a pagehide) sends a delete still in its undo time, and its
  // toast no longer offers an Undo it cannot keep.
  const bulk18 = await task('Bulk 18').getAttribute('data-id');
  const deleteSent = page.waitForRequest((r) => r.method() === 'DELETE', { timeout: 5000 }).catch(() => null);
  await task('Bulk 18').getByRole('button', { name: 'Delete Bulk 18' }).click();
  check((await toastText()) === 'Deleted “Bulk 18”', 'a delete offers its undo');
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  check((await deleteSent)?.url().endsWith(`/v1/tasks/${bulk18}`), 'hiding the page sends the delete at once');
  check(await page.locator('#toasts .toast').count() === 0, 'and closes its toast');
  await page.evaluate(() => { delete document.visibilityState; });
  // A delete still in its undo time is sent when the page is left.
  await task('Bulk 19').getByRole('button', { name: 'Delete Bulk 19' }).click();
  await waitFor(() => ![...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === 'Bulk 19'));

  // 13. A phone: compact rows, actions behind one button, the add box pinned.
  await page.setViewportSize({ width: 375, height: 740 });
  await page.reload();
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  await waitFor(() => document.querySelectorAll('#task-list li.task').length >= 8);
  await selectView('open'); // (read again: the delete sent on the way out may have raced the reload's list)
  check(!(await titles()).includes('Bulk 19'), 'a delete in its undo time is sent when the page is left');
  await waitFor(() => document.querySelectorAll('#task-list li.task').length >= 8);
  const fit = await page.evaluate(() => {
    const addBox = document.querySelector('#new-task').getBoundingClientRect();
    return [...document.querySelectorAll('#task-list li.task')].filter((li) => li.getBoundingClientRect().bottom <= addBox.top).length;
  });
  check(fit >= 6, `on a phone, ${fit} tasks fit on the first screen (at least 6)`);
  const pinned = await page.evaluate(() => getComputedStyle(document.querySelector('#new-task')).position === 'fixed'
    && Math.abs(document.querySelector('#new-task').getBoundingClientRect().bottom - window.innerHeight) < 2);
  check(pinned, 'on a phone, the add box is pinned to the bottom');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  check(!overflow, 'nothing overflows a 375 px wide screen');
  await axe('phone');
  await shot('phone', { fullPage: false });
  const first = page.locator('#task-list li.task').first();
  check(await first.getByRole('button', { name: /^Delete / }).isHidden(), 'on a phone, the actions wait behind one button');
  await first.locator('[data-control="menu"]').click();
  check(await first.getByRole('button', { name: /^Delete / }).isVisible(), 'the actions button shows them');
  check(await first.locator('[data-control="menu"]').getAttribute('aria-expanded') === 'true', 'and says it is expanded');
  f = await focused();
  check(f.control === 'edit', `and moves focus to the first action (${JSON.stringify(f)})`);
  await axe('phone, actions open');
  await shot('phone-actions', { fullPage: false });
  await page.keyboard.press('Tab'); // Archive
  const archivedTitle = await first.locator('.title').textContent();
  await page.keyboard.press('Enter');
  await waitFor((t) => ![...document.querySelectorAll('#task-list li.task .title')].some((e) => e.textContent === t), archivedTitle);
  f = await focused();
  check(f.tag !== 'body' && f.task !== archivedTitle, `on a phone, archiving keeps focus in the list (${JSON.stringify(f)})`);
  await page.keyboard.press('Control+z');
  await page.waitForTimeout(500);
  await page.setViewportSize({ width: 1024, height: 820 });

  // 14. A reload keeps the session; a 503 on the first refresh is retried
  //     and said, never shown as a login form.
  failuresExpected = true;
  let refused = 0;
  await page.route('**/v1/auth/refresh', (route) => {
    refused += 1;
    return route.fulfill({ status: 503, contentType: 'application/problem+json', headers: { 'retry-after': '1' },
      body: JSON.stringify({ type: 'urn:todo:problem:unavailable', title: 'Service Unavailable', status: 503, detail: 'try again later' }) });
  });
  await page.reload();
  await waitFor(() => document.querySelector('#boot-text').textContent.includes('unavailable'));
  check((await page.locator('#boot-text').textContent()).startsWith('The server is unavailable. Retrying in'), 'a 503 at start is said, with a retry');
  check(await page.locator('#login-form').isHidden(), 'a 503 at start does not ask to log in');
  await axe('server unavailable at start');
  await page.unroute('**/v1/auth/refresh');
  await page.click('#boot-retry');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  check(refused >= 1, 'the page signed back in once the server answered');
  failuresExpected = false;
  await waitFor(() => document.querySelectorAll('#task-list li.task').length > 0);
  check(!(await titles()).includes('Pay old bill'), 'the task deleted after its undo time is gone for good');

  // 15. A logout that cannot reach the server says so and stays signed in
  //     (the refresh cookie would keep the session alive).
  failuresExpected = true;
  await page.route('**/v1/auth/logout', (route) => route.abort('internetdisconnected'));
  await page.click('#logout');
  await page.locator('#banner').waitFor({ state: 'visible' });
  check((await page.locator('#banner-text').textContent()).startsWith('Not logged out: you are offline'),
    'a logout that cannot reach the server says so');
  check(await page.locator('#tasks-view').isVisible() && await page.locator('#login-form').isHidden(), 'and stays signed in');
  await page.unroute('**/v1/auth/logout');
  failuresExpected = false;
  // Log out; nothing typed or searched outlives the session; a reload stays logged out.
  await page.fill('#new-title', 'Half typed');
  await page.fill('#filter-q', 'Bulk');
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#tasks-view').isHidden(), 'logging out hides the tasks');
  check(await page.inputValue('#new-title') === '' && await page.inputValue('#filter-q') === ''
    && await page.locator('#task-list li').count() === 0, 'nothing typed, searched or listed is left in the page after logout');
  await page.reload();
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#tasks-view').isHidden(), 'after logout a reload shows the login form');
  await shot('logged-out');

  // 16. A wrong password is refused; the right one logs back in.
  await page.fill('#login-username', username);
  await page.fill('#login-password', 'wrong password!');
  await page.click('#login-form button[type=submit]');
  const loginError = page.locator('#login-form .form-error');
  await loginError.waitFor({ state: 'visible' });
  check((await loginError.textContent()).includes('invalid username or password'), 'a wrong password is refused');
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  await selectView('completed');
  check((await titles()).includes('Buy milk'), 'logging back in shows the same tasks, the done one still done');
  await selectView('open');

  // 17. The background refresh (before the access token expires) meets no
  //     network: the page says so, keeps the session, and retries.
  await page.reload();
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  failuresExpected = true;
  await page.route('**/v1/auth/refresh', (route) => route.abort('internetdisconnected'));
  // What the notice first says (read as it is shown: its retry, 2 s on,
  // may have come by the time a slow machine reads it).
  await page.evaluate(() => {
    const box = document.querySelector('#connection');
    const seen = new MutationObserver(() => {
      if (box.hidden || window.firstNotice) return;
      window.firstNotice = document.querySelector('#connection-text').textContent;
      seen.disconnect();
    });
    seen.observe(box, { attributes: true, childList: true, subtree: true, characterData: true });
  });
  await page.clock.fastForward('05:00'); // past the refresh timer (the token lives 5 minutes)
  await page.locator('#connection').waitFor({ state: 'visible' });
  check(/^Offline, retrying in 2 s/.test(await page.evaluate(() => window.firstNotice)),
    'a failed background refresh says "offline, retrying"');
  await page.clock.fastForward('00:03');
  await waitFor(() => /retrying in 4 s/.test(document.querySelector('#connection-text').textContent));
  check(/retrying in 4 s/.test(await page.locator('#connection-text').textContent()), 'and backs off (2 s, then 4 s)');
  check(await page.locator('#tasks-view').isVisible() && await page.locator('#login-form').isHidden(), 'and does not log out');
  await page.unroute('**/v1/auth/refresh');
  await page.click('#retry-now', { timeout: 2000 }).catch(() => {}); // (the page's own retry may come first)
  await page.locator('#connection').waitFor({ state: 'hidden' });
  check(await page.locator('#tasks-view').isVisible(), 'the refresh succeeds once the network is back');

  failuresExpected = false;

  // 17b. Six tabs whose background refreshes fall due together (a laptop
  //      waking) keep the session: the tabs take turns, each sending the
  //      cookie the one before set. (All at once with one cookie is past
  //      the server's exchanges again within the grace: reuse, which ended
  //      the session in every tab.)
  const tabs = [];
  for (let i = 0; i < 5; i += 1) {
    const tab = await context.newPage();
    await tab.clock.install({ time: new Date(`${newYorkToday}T12:00:00-05:00`) });
    await tab.goto(base);
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    tabs.push(tab);
  }
  await page.reload(); // its refresh timer starts afresh, as the others' did
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  const everyTab = [page, ...tabs];
  const refreshAnswers = [];
  const countRefreshes = (response) => {
    if (new URL(response.url()).pathname === '/v1/auth/refresh') refreshAnswers.push(response.status());
  };
  context.on('response', countRefreshes);
  // (one clock for the context's pages: one jump of 5 minutes for all six;
  // a jump per tab was six in a row, 30 minutes in steps, whose later jumps
  // cut the earlier refreshes' 5 s patience short)
  await context.clock.fastForward('05:00');
  for (let waited = 0; refreshAnswers.length < 6 && waited < 30_000; waited += 100) await page.waitForTimeout(100);
  context.off('response', countRefreshes);
  check(refreshAnswers.length >= 6 && refreshAnswers.every((status) => status === 200),
    `six tabs refreshing at once: every refresh is answered 200 (${refreshAnswers})`);
  const signedIn = await Promise.all(everyTab.map((tab) => tab.locator('#login-form').isHidden()));
  check(signedIn.every(Boolean), `and all six stay signed in (${signedIn})`);
  for (const tab of tabs) await tab.close();
  // The cookie's family is alive: a reload signs in through it.
  await page.reload();
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  check(await page.locator('#login-form').isHidden(), 'and the session they share still works');

  // 17c. Logging out in one tab logs out every tab: a tab left open would
  //      go on with its token, then take the next person's session (the
  //      cookie they share) at its next refresh.
  const other = await context.newPage();
  await other.clock.install({ time: new Date(`${newYorkToday}T12:00:00-05:00`) });
  await other.goto(base);
  await other.locator('#tasks-view').waitFor({ state: 'visible' });
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await other.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 }).catch(() => {});
  check(await other.locator('#login-form').isVisible() && await other.locator('#task-list li').count() === 0,
    'logging out in one tab logs out the other');
  check((await other.locator('#banner-text').textContent()) === 'You logged out in another tab.', 'and it says why');
  await other.close();
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  failuresExpected = true;

  // 18. A refresh the server refuses ends the session, and the page says why.
  await page.route('**/v1/auth/refresh', (route) => route.fulfill({
    status: 401, contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'invalid refresh token' }),
  }));
  await page.clock.fastForward('05:00');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#banner').isVisible()
    && (await page.locator('#banner-text').textContent()).includes('Your session has ended'), 'a refused refresh shows the login form, saying why');
  const streamEnded = await until(() => streams.ended === streams.sent, 2000);
  check(streams.opened > 0 && streamEnded, `and its live stream ends with the session (${streams.sent} sent, ${streams.opened} opened, ${streams.ended} ended)`);
  await page.unroute('**/v1/auth/refresh');

  // 19. A request refused even with a token just refreshed (a task server
  //     that has not yet fetched a new signing key) is not the end of the
  //     session (the refresh was accepted): the page says it is retrying,
  //     and recovers, instead of an empty list or a login form.
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  await page.route(listUrl, (route) => route.fulfill({
    status: 401, contentType: 'application/problem+json', headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
    body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'invalid token' }),
  }));
  await page.click('.views [data-view="today"]');
  await page.locator('#connection').waitFor({ state: 'visible' });
  check((await page.locator('#connection-text').textContent()).startsWith('The server is not answering, retrying'),
    'a 401 with a token just refreshed says the page is retrying');
  check(await page.locator('#login-form').isHidden(), 'and does not end the session');
  await page.unroute(listUrl);
  // (the page's own retry, every 2 s, may come first and hide the button)
  await page.click('#retry-now', { timeout: 2000 }).catch(() => {});
  await page.locator('#connection').waitFor({ state: 'hidden' });
  check(await page.locator('#tasks-view').isVisible(), 'and the list comes back once the server accepts the token');
  failuresExpected = false;

  // 20. Live: two devices signed in as the same user see each other's
  //     changes (GET /v1/events) within 2 s, without a reload, and nothing
  //     of what the person there is doing (focus, typed text, an open
  //     editor) is touched; a stream cut while a change is made catches up
  //     once it is back (resumed after the last event heard: no gap, no
  //     duplicate); logging out ends it.
  // Device B reaches the server through a relay the test can cut: its
  // connections dropped, new ones refused (a network gone), then back.
  const relay = { up: true, sockets: new Set() };
  relay.server = createServer((client) => {
    if (!relay.up) return client.destroy();
    const upstream = connect(Number(new URL(base).port), '127.0.0.1');
    const close = () => {
      for (const socket of [client, upstream]) {
        socket.destroy();
        relay.sockets.delete(socket);
      }
    };
    for (const socket of [client, upstream]) {
      relay.sockets.add(socket);
      socket.on('error', close);
      socket.on('close', close);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
  const devices = [];
  for (const name of ['A', 'B']) {
    const ctx = await newContext();
    const tab = await ctx.newPage();
    const device = { name, ctx, tab, errors: [], streams: [], answered: 0, ended: 0 };
    tab.on('pageerror', (error) => device.errors.push(`${name}: ${error.message}`));
    tab.on('request', (r) => { if (isStream(r)) device.streams.push(r); });
    tab.on('response', (r) => { if (isStream(r) && r.status() === 200) device.answered += 1; });
    for (const end of ['requestfailed', 'requestfinished']) tab.on(end, (r) => { if (isStream(r)) device.ended += 1; });
    await tab.clock.install({ time: new Date(`${newYorkToday}T12:00:00-05:00`) });
    await tab.goto(name === 'B' ? `https://localhost:${relay.server.address().port}` : base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.fill('#login-username', username);
    await tab.fill('#login-password', password);
    await tab.click('#login-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    devices.push(device);
  }
  const [deviceA, deviceB] = devices;
  const [a, b] = [deviceA.tab, deviceB.tab];
  const following = (device) => device.answered > 0 && device.ended < device.streams.length;
  const bothFollow = await until(() => following(deviceA) && following(deviceB), 10_000);
  check(bothFollow, `after signing in, each device follows its live stream (${devices.map((d) => `${d.name}: ${d.answered} open, ${d.ended} ended`)})`);
  const rowOn = (tab, title) => tab.locator('#task-list li.task').filter({ has: tab.locator('.title', { hasText: new RegExp(`^${title}$`) }) });
  const within = (tab, fn, arg, timeout = 2000) => tab.waitForFunction(fn, arg, { timeout }).then(() => true, () => false);
  const titleShown = (title) => [...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === title);
  const viewOn = async (tab, name) => {
    await tab.click(`.views [data-view="${name}"]`);
    await tab.waitForFunction((n) => document.querySelector(`.views [data-view="${n}"]`).getAttribute('aria-current') === 'page'
      && document.querySelector('#task-list').getAttribute('aria-busy') !== 'true', name);
  };
  const written = (tab, method) => tab.waitForResponse((r) => r.request().method() === method && /^\/v1\/tasks/.test(new URL(r.url()).pathname));
  await b.evaluate(() => { window.sameDocument = true; }); // (gone if B reloads)
  await b.fill('#new-title', 'Half a thought');
  const statusB = await b.locator('#status').textContent();
  let wrote = written(a, 'POST');
  await a.fill('#new-title', 'Shared errand');
  await a.press('#new-title', 'Enter');
  await wrote;
  const appeared = await within(b, titleShown, 'Shared errand');
  const seenOnB = await b.evaluate(() => ({
    sameDocument: window.sameDocument === true,
    rows: [...document.querySelectorAll('#task-list .title')].filter((t) => t.textContent === 'Shared errand').length,
    focus: document.activeElement.id,
    typed: document.querySelector('#new-title').value,
    status: document.querySelector('#status').textContent,
  }));
  check(appeared && seenOnB.sameDocument && seenOnB.rows === 1 && seenOnB.focus === 'new-title' && seenOnB.typed === 'Half a thought'
    && seenOnB.status === statusB,
  `a task added on device A shows on device B within 2 s, once, without a reload; B's focus, typed text and screen-reader status stay (${JSON.stringify(seenOnB)})`);
  await b.fill('#new-title', '');
  await viewOn(b, 'completed');
  wrote = written(a, 'PATCH');
  await rowOn(a, 'Shared errand').locator('.toggle').click();
  await wrote;
  const ticked = await within(b, (title) => [...document.querySelectorAll('#task-list li.task')]
    .some((li) => li.querySelector('.title').textContent === title && li.querySelector('.toggle').checked), 'Shared errand');
  check(ticked, 'a task completed on A shows ticked on B (its Completed view) within 2 s');
  await viewOn(a, 'completed');
  const hadIt = await rowOn(b, 'Shared errand').count() === 1;
  await rowOn(a, 'Shared errand').getByRole('button', { name: 'Delete Shared errand' }).click();
  wrote = written(a, 'DELETE');
  await a.click('#toasts button[data-control="dismiss"]'); // the undo time ends: deleted now
  await wrote;
  const gone = await within(b, (title) => ![...document.querySelectorAll('#task-list .title')].some((t) => t.textContent === title), 'Shared errand');
  check(hadIt && gone && await b.evaluate(() => window.sameDocument === true), 'a task deleted on A leaves B within 2 s, without a reload');

  // A change to the task B is editing: shown around B's editor, which
  // keeps what B typed and its focus; B's save then keeps A's change.
  await viewOn(a, 'open');
  wrote = written(a, 'POST');
  await a.fill('#new-title', 'Shared note');
  await a.press('#new-title', 'Enter');
  await wrote;
  await viewOn(b, 'open');
  await b.waitForFunction(titleShown, 'Shared note', { timeout: 10_000 }).catch(() => {});
  await rowOn(b, 'Shared note').getByRole('button', { name: 'Edit Shared note' }).click();
  await b.locator('form.editor [name=title]').fill('Shared note, from B');
  await rowOn(a, 'Shared note').getByRole('button', { name: 'Edit Shared note' }).click();
  await a.locator('form.editor [name=priority]').selectOption('3');
  wrote = written(a, 'PATCH');
  await a.locator('form.editor [name=title]').press('Enter');
  await wrote;
  const prioritised = await within(b, () => document.querySelector('form.editor')?.closest('li.task')
    ?.querySelector('.meta')?.textContent.includes('Priority: High'));
  const editingOnB = await b.evaluate(() => ({
    typed: document.querySelector('form.editor [name=title]')?.value,
    focused: document.activeElement === document.querySelector('form.editor [name=title]'),
  }));
  check(prioritised && editingOnB.typed === 'Shared note, from B' && editingOnB.focused,
    `a change on A to the task B is editing shows on B within 2 s, and B's editor keeps what was typed, and focus (${JSON.stringify(editingOnB)})`);
  wrote = written(b, 'PATCH');
  await b.locator('form.editor [name=title]').press('Enter');
  await b.waitForFunction(() => document.querySelector('form.editor') === null, null, { timeout: 10_000 }).catch(() => {});
  const both = await within(a, () => [...document.querySelectorAll('#task-list li.task')]
    .some((li) => li.querySelector('.title').textContent === 'Shared note, from B' && li.querySelector('.meta')?.textContent.includes('Priority: High')), null, 4000);
  check(both, 'B\'s edit shows on A, with A\'s priority kept');

  // Cut: B's network goes (its stream fails), A adds a task, B's network
  // comes back: the task shows once, the stream resumed after its last event.
  const endedBefore = deviceB.ended;
  const streamsBefore = deviceB.streams.length;
  relay.up = false;
  for (const socket of relay.sockets) socket.destroy();
  const cut = await until(() => deviceB.ended > endedBefore, 5000);
  wrote = written(a, 'POST');
  await a.fill('#new-title', 'Made while B was away');
  await a.press('#new-title', 'Enter');
  await wrote;
  relay.up = true;
  const caughtUp = await within(b, titleShown, 'Made while B was away', 15_000);
  const resumedFrom = deviceB.streams.slice(streamsBefore).map((r) => r.headers()['last-event-id']).filter(Boolean);
  const rowsOnB = await rowOn(b, 'Made while B was away').count();
  check(cut && caughtUp && rowsOnB === 1 && resumedFrom.length > 0 && await b.evaluate(() => window.sameDocument === true),
    `a stream cut while a change is made catches up once back, resumed after its last event, with no duplicate (cut: ${cut}, rows: ${rowsOnB}, Last-Event-ID sent ${resumedFrom.length} times)`);

  // Logging out ends the stream (and no page error on either device).
  await b.click('#logout');
  await b.locator('#login-form').waitFor({ state: 'visible' });
  const closed = await until(() => deviceB.ended === deviceB.streams.length, 2000);
  check(deviceB.answered > 0 && closed && !deviceA.errors.length && !deviceB.errors.length,
    `logging out on B ends its live stream (${deviceB.streams.length} opened, ${deviceB.ended} ended)${deviceA.errors.concat(deviceB.errors).join(' | ')}`);
  // A stream cut before it heard any change resumes where it started (the
  // server names that first), not from the time it comes back.
  const answeredBefore = deviceB.answered;
  const readAfterOpen = b.waitForResponse((r) => new URL(r.url()).pathname === '/v1/tasks' && deviceB.answered > answeredBefore);
  await b.fill('#login-username', username);
  await b.fill('#login-password', password);
  await b.click('#login-form button[type=submit]');
  await b.locator('#tasks-view').waitFor({ state: 'visible' });
  await readAfterOpen.catch(() => {}); // (the read a stream from now makes once it is open)
  const streamsAtStart = deviceB.streams.length;
  const endedAtStart = deviceB.ended;
  relay.up = false;
  for (const socket of relay.sockets) socket.destroy();
  const cutEarly = await until(() => deviceB.ended > endedAtStart, 5000);
  wrote = written(a, 'POST');
  await a.fill('#new-title', 'Made before B heard anything');
  await a.press('#new-title', 'Enter');
  await wrote;
  relay.up = true;
  const caughtUpEarly = await within(b, titleShown, 'Made before B heard anything', 15_000);
  const resumedEarly = deviceB.streams.slice(streamsAtStart).some((r) => r.headers()['last-event-id']);
  check(cutEarly && caughtUpEarly && resumedEarly && await rowOn(b, 'Made before B heard anything').count() === 1,
    `a stream cut before any change resumes from where it started (cut: ${cutEarly}, shown: ${caughtUpEarly}, resumed with Last-Event-ID: ${resumedEarly})`);
  for (const device of devices) await device.ctx.close();
  relay.server.close();

  // 12. A project shared by three people, each in a browser of their own:
  //     the owner shares it by keyboard with an editor and a viewer; the
  //     editor adds a subtask, which the owner sees live; the viewer can
  //     change nothing; a recurring task, completed, shows its next one.
  const shared = {};
  const signUp = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
  for (const name of ['ann', 'ben', 'cat']) {
    const made = await signUp.post('/v1/auth/register', { data: { username: name, password: 'correct horse battery' } });
    if (!made.ok()) throw new Error(`registering ${name}: ${made.status()}`);
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.fill('#login-username', name);
    await tab.fill('#login-password', 'correct horse battery');
    await tab.click('#login-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    shared[name] = { ctx, tab };
  }
  await signUp.dispose();
  const [ann, ben, cat] = [shared.ann.tab, shared.ben.tab, shared.cat.tab];
  const showsOn = (tab, title, timeout = 5000) => tab.waitForFunction(
    (t) => [...document.querySelectorAll('#task-list .title')].some((e) => e.textContent === t), title, { timeout },
  ).then(() => true, () => false);
  const focusOn = (tab) => tab.evaluate(() => document.activeElement.id || document.activeElement.getAttribute('aria-label') || document.activeElement.textContent);
  await ann.click('#project-add summary');
  await ann.fill('#new-project-name', 'Garden');
  await ann.press('#new-project-name', 'Enter');
  await ann.waitForFunction(() => document.querySelector('#project-list [aria-current="page"]')?.textContent === 'Garden');
  check(await ann.locator('#share').isVisible() && await focusOn(ann) === 'Garden',
    'a new project is shown at once, with focus on it, and its owner may share it');
  await ann.focus('#share');
  await ann.keyboard.press('Enter');
  await ann.locator('#share-dialog').waitFor({ state: 'visible' });
  check(await focusOn(ann) === 'share-username', 'the sharing dialog opens with focus on the username');
  for (const [name, role] of [['ben', 'editor'], ['cat', 'viewer']]) {
    await ann.fill('#share-username', name);
    await ann.selectOption('#share-role', role);
    await ann.press('#share-username', 'Enter');
    await ann.waitForFunction((n) => [...document.querySelectorAll('#member-list .member-name')].some((e) => e.textContent === n), name);
  }
  const members = await ann.locator('#member-list .member').allTextContents();
  check(members.length === 3 && members.some((m) => m.includes('ben') && m.includes('editor')) && members.some((m) => m.includes('cat') && m.includes('viewer')),
    `the members are listed with their roles (${JSON.stringify(members)})`);
  await ann.fill('#share-username', 'nobody-here');
  await ann.press('#share-username', 'Enter');
  await ann.waitForFunction(() => [...document.querySelectorAll('#share-form .form-error, #share-form .field-error')].some((e) => e.textContent));
  const refusal = await ann.locator('#share-form').textContent();
  check(/nobody-here/.test(refusal), `sharing with an unknown name says so (${refusal.trim()})`);
  await axe('sharing dialog', ann);
  await ann.keyboard.press('Escape');
  await ann.locator('#share-dialog').waitFor({ state: 'hidden' });
  check(await focusOn(ann) === 'share', 'Escape closes the dialog, and focus goes back to Share');
  await ann.fill('#new-title', 'Plant tomatoes');
  await ann.press('#new-title', 'Enter');
  check(await showsOn(ann, 'Plant tomatoes'), 'the owner adds a task to the project');
  // Ben's page hears of the project's task and lists the project.
  await ben.waitForFunction(() => [...document.querySelectorAll('#project-list button')].some((b) => b.textContent.startsWith('Garden')), null, { timeout: 5000 });
  await ben.locator('#project-list button', { hasText: 'Garden' }).click();
  check(await showsOn(ben, 'Plant tomatoes'), 'the editor, once it is shared, sees the project and its task');
  await ben.click('[aria-label="Add subtask to Plant tomatoes"]');
  check(await ben.evaluate(() => document.activeElement.closest('form.subtask-form') !== null), 'the subtask form takes focus');
  await ben.keyboard.type('Buy seeds');
  await ben.keyboard.press('Enter');
  check(await showsOn(ben, 'Buy seeds'), 'the editor adds a subtask');
  const liveOnAnn = await showsOn(ann, 'Buy seeds', 3000);
  const order = await ann.locator('#task-list li.task .title').allTextContents();
  const nestedOnAnn = await ann.locator('#task-list li.task.subtask', { hasText: 'Buy seeds' }).count();
  check(liveOnAnn && nestedOnAnn === 1 && order.indexOf('Buy seeds') === order.indexOf('Plant tomatoes') + 1,
    `the owner sees the editor's subtask live, under its parent (${JSON.stringify(order)})`);
  await axe('project with a subtask', ann);
  await cat.waitForFunction(() => [...document.querySelectorAll('#project-list button')].some((b) => b.textContent.startsWith('Garden')), null, { timeout: 5000 });
  await cat.locator('#project-list button', { hasText: 'Garden' }).click();
  check(await showsOn(cat, 'Buy seeds'), 'the viewer sees the project\'s tasks');
  const viewer = await cat.evaluate(() => ({
    toggles: [...document.querySelectorAll('#task-list .toggle')].map((t) => t.disabled),
    edits: document.querySelectorAll('#task-list [data-control="edit"], #task-list [data-control="delete"], #task-list [data-control="subtask"]').length,
    newTask: document.querySelector('#new-task').hidden,
    share: document.querySelector('#share').hidden,
  }));
  check(viewer.toggles.length === 2 && viewer.toggles.every(Boolean) && viewer.edits === 0 && viewer.newTask && viewer.share,
    `the viewer cannot change anything: no enabled checkbox, no edit, no new task, no sharing (${JSON.stringify(viewer)})`);
  await axe('view-only project', cat);
  // A task that repeats every day, completed: its next occurrence shows.
  await ann.click('#new-task summary');
  await ann.fill('#new-title', 'Water the beds');
  await ann.fill('#new-due', '2031-05-05');
  await ann.fill('#new-due-time', '09:00');
  await ann.selectOption('#new-repeat', 'FREQ=DAILY');
  await ann.selectOption('#new-remind', 'PT15M');
  await ann.press('#new-title', 'Enter');
  check(await showsOn(ann, 'Water the beds'), 'a repeating task is added');
  const repeats = await ann.locator('#task-list li.task', { hasText: 'Water the beds' }).locator('.repeat').textContent();
  check(repeats === 'Every day', `it says how it repeats (${repeats})`);
  const completed = ann.waitForResponse((r) => r.request().method() === 'PATCH' && /^\/v1\/tasks\//.test(new URL(r.url()).pathname));
  const firstId = await ann.locator('#task-list li.task', { hasText: 'Water the beds' }).getAttribute('data-id');
  // (by its id: once done it leaves the list, and its next one has its title)
  await ann.locator(`#task-list li.task[data-id="${firstId}"] .toggle`).click();
  const answer = await (await completed).json();
  await ann.waitForFunction(() => [...document.querySelectorAll('#task-list li.task')].some((li) => li.querySelector('.title').textContent === 'Water the beds'
    && /May 6, 2031/.test(li.querySelector('.due')?.title || '')), null, { timeout: 5000 }).catch(() => {});
  const next = await ann.locator('#task-list li.task', { hasText: 'Water the beds' }).evaluateAll((rows) => rows.map((li) => ({
    done: li.querySelector('.toggle').checked, due: li.querySelector('.due')?.title || '', id: li.dataset.id,
  })));
  check(answer.done === true && answer.id === firstId && typeof answer.next_occurrence_id === 'string' && next.length === 1 && !next[0].done
    && next[0].id === answer.next_occurrence_id && /May 6, 2031/.test(next[0].due),
  `completing it keeps it done and shows its next occurrence, the next day (${JSON.stringify(next)})`);
  // The owner removes the viewer: the viewer's page, showing the project,
  // loses it and its tasks at once (member.removed), without a reload.
  await ann.click('#share');
  await ann.locator('#share-dialog').waitFor({ state: 'visible' });
  await ann.click('[aria-label="Remove cat"]');
  await ann.waitForFunction(() => ![...document.querySelectorAll('#member-list .member-name')].some((e) => e.textContent === 'cat'));
  await ann.keyboard.press('Escape');
  const goneForCat = await cat.waitForFunction(() => ![...document.querySelectorAll('#project-list button')].some((b) => b.textContent.startsWith('Garden'))
    && ![...document.querySelectorAll('#task-list .title')].some((e) => e.textContent === 'Buy seeds'), null, { timeout: 5000 }).then(() => true, () => false);
  const catSees = await cat.evaluate(() => ({
    projects: [...document.querySelectorAll('#project-list button')].map((b) => b.textContent),
    tasks: [...document.querySelectorAll('#task-list .title')].map((e) => e.textContent),
    error: document.querySelector('#filters .form-error')?.textContent || '',
  }));
  check(goneForCat, `a removed member's page drops the project and its tasks live (${JSON.stringify(catSees)})`);
  // No error in the filters after the removal. (A read of the project
  // racing the removal, a 404 now, takes the page back to all projects;
  // this run does not force that race, so this checks the common path.)
  check(catSees.error === '', `no error shown to the removed member (${catSees.error})`);
  // More projects than a page holds: fifty-five of the longest description
  // (40 KB each; a page holds about fifty). The sidebar, told of them live,
  // follows the pages and lists the last.
  {
    const client = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
    const login = await (await client.post('/v1/auth/login', { data: { username: 'cat', password: 'correct horse battery' } })).json();
    const description = '\u{1D11E}'.repeat(10_000);
    let made = 0;
    for (let i = 0; i < 55; i += 1) {
      const reply = await client.post('/v1/projects', { data: { name: `Big ${i}`, description }, headers: { authorization: `Bearer ${login.access_token}` } });
      if (reply.status() === 201) made += 1;
    }
    await client.dispose();
    const listed = await cat.waitForFunction(() => [...document.querySelectorAll('#project-list button')].some((b) => b.textContent.startsWith('Big 54')), null, { timeout: 10_000 }).then(() => true, () => false);
    const count = await cat.evaluate(() => [...document.querySelectorAll('#project-list button')].filter((b) => b.textContent.startsWith('Big ')).length);
    check(made === 55 && listed && count === 55, `the sidebar lists projects past a page of large ones (${made} made, ${count} listed)`);
  }
  for (const { ctx } of Object.values(shared)) await ctx.close();

  // 13. Sessions: signed in on a laptop and a phone, the phone's Sessions
  //     dialog lists both, this one marked; signing the laptop out ends it
  //     there: its next request finds the session over and shows the login.
  {
    const signUp = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
    const made = await signUp.post('/v1/auth/register', { data: { username: 'dee', password: 'correct horse battery' } });
    if (!made.ok()) throw new Error(`registering dee: ${made.status()}`);
    await signUp.dispose();
    const devices = {};
    for (const name of ['laptop', 'phone']) {
      const ctx = await newContext();
      const tab = await ctx.newPage();
      tab.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
      await tab.goto(base);
      await tab.locator('#login-form').waitFor({ state: 'visible' });
      await tab.fill('#login-username', 'dee');
      await tab.fill('#login-password', 'correct horse battery');
      // The phone's first list is held back until its user has moved on to
      // Sessions: the load, when it ends, must not take the focus away.
      let release = () => {};
      const held = new Promise((resolve) => { release = resolve; });
      if (name === 'phone') {
        await tab.route(listUrl, async (route) => { await held; await route.continue().catch(() => {}); }, { times: 1 });
      }
      await tab.click('#login-form button[type=submit]');
      await tab.locator('#tasks-view').waitFor({ state: 'visible' });
      if (name === 'phone') {
        await tab.focus('#sessions');
        release();
        // (dee has no tasks: the first load ends by saying so)
        await tab.locator('#empty').waitFor({ state: 'visible', timeout: 5000 });
        const focus = await tab.evaluate(() => document.activeElement.id);
        check(focus === 'sessions', `focus moved during the first load stays where the user put it (${focus})`);
      } else {
        // (the first load done: focus on the new task's title)
        await tab.waitForFunction(() => document.activeElement?.id === 'new-title');
      }
      devices[name] = { ctx, tab };
    }
    const { laptop, phone } = { laptop: devices.laptop.tab, phone: devices.phone.tab };
    await phone.keyboard.press('Enter');
    await phone.locator('#sessions-dialog').waitFor({ state: 'visible' });
    await phone.waitForFunction(() => document.querySelectorAll('#session-list .session').length === 2, null, { timeout: 5000 }).catch(() => {});
    const listed = await phone.locator('#session-list .session').allTextContents();
    check(listed.length === 2 && listed.filter((s) => s.includes('This device')).length === 1,
      `the Sessions dialog lists both sign-ins, this one marked (${JSON.stringify(listed)})`);
    // (what else reaches the account: its webhooks, none here)
    await phone.locator('#webhook-none').waitFor({ state: 'visible', timeout: 5000 }).catch(() => {});
    check(await phone.locator('#webhook-none').isVisible() && await phone.locator('#webhook-list li').count() === 0,
      'the Sessions dialog lists the webhooks too (none)');
    await axe('sessions dialog', phone);
    // From the laptop (the older sign-in), signing the phone out takes the
    // password; from the phone, the laptop goes with a click.
    await laptop.focus('#sessions');
    await laptop.keyboard.press('Enter');
    await laptop.locator('#sessions-dialog').waitFor({ state: 'visible' });
    await laptop.waitForFunction(() => document.querySelectorAll('#session-list [data-control="end-session"]').length === 1, null, { timeout: 5000 }).catch(() => {});
    await laptop.click('#session-list [data-control="end-session"]');
    await laptop.waitForFunction(() => /password/.test(document.querySelector('#sessions-error').textContent), null, { timeout: 5000 }).catch(() => {});
    const unconfirmed = await laptop.evaluate(() => ({
      error: document.querySelector('#sessions-error').textContent,
      focus: document.activeElement.id,
      sessions: document.querySelectorAll('#session-list .session').length,
    }));
    check(/password/.test(unconfirmed.error) && unconfirmed.focus === 'sessions-password' && unconfirmed.sessions === 2,
      `signing out a newer sign-in asks for the password first (${JSON.stringify(unconfirmed)})`);
    await laptop.fill('#sessions-password', 'not the password');
    await laptop.click('#session-list [data-control="end-session"]');
    await laptop.waitForFunction(() => /not your password/.test(document.querySelector('#sessions-error').textContent), null, { timeout: 5000 }).catch(() => {});
    check(/not your password/.test(await laptop.locator('#sessions-error').textContent()), 'a wrong password says so and signs nothing out');
    await laptop.keyboard.press('Escape');
    await phone.click('#session-list [data-control="end-session"]');
    await phone.waitForFunction(() => document.querySelectorAll('#session-list .session').length === 1, null, { timeout: 5000 }).catch(() => {});
    const left = await phone.evaluate(() => ({
      sessions: [...document.querySelectorAll('#session-list .session')].map((s) => s.textContent),
      othersDisabled: document.querySelector('#sessions-others').disabled,
      focus: document.activeElement.id,
    }));
    check(left.sessions.length === 1 && left.sessions[0].includes('This device') && left.othersDisabled && left.focus === 'sessions-close',
      `signing the other device out leaves this one, with nothing else to sign out (${JSON.stringify(left)})`);
    await phone.keyboard.press('Escape');
    await phone.locator('#sessions-dialog').waitFor({ state: 'hidden' });
    // (the dialog's close event, which moves the focus, follows its hiding)
    await phone.waitForFunction(() => document.activeElement?.id === 'sessions', null, { timeout: 5000 }).catch(() => {});
    check(await phone.evaluate(() => document.activeElement.id) === 'sessions', 'Escape closes it, and focus goes back to Sessions');
    await laptop.fill('#new-title', 'Written after the sign-out');
    await laptop.press('#new-title', 'Enter');
    const signedOut = await laptop.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false);
    check(signedOut, 'the signed-out laptop shows the login at its next request');
    await phone.fill('#new-title', 'Still signed in here');
    await phone.press('#new-title', 'Enter');
    check(await phone.waitForFunction(() => [...document.querySelectorAll('#task-list .title')].some((e) => e.textContent === 'Still signed in here'), null, { timeout: 5000 }).then(() => true, () => false),
      'the phone goes on');
    for (const { ctx } of Object.values(devices)) await ctx.close();
  }

  // 14. API tokens: made with the password, shown once, acting within
  //     their scopes; revoked with a click, refused at once.
  {
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`tokens: page error: ${error.message}`));
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.fill('#login-username', 'dee');
    await tab.fill('#login-password', 'correct horse battery');
    await tab.click('#login-form button[type=submit]');
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title');
    await tab.focus('#tokens');
    await tab.keyboard.press('Enter');
    await tab.locator('#tokens-dialog').waitFor({ state: 'visible' });
    check(await tab.evaluate(() => document.activeElement.id) === 'token-name', 'the API tokens dialog opens on the name');
    await tab.fill('#token-name', 'Nightly report');
    await tab.fill('#token-password', 'not the password');
    await tab.click('#token-form button[type=submit]');
    await tab.waitForFunction(() => /not your password/.test(document.querySelector('#token-form [data-error-for="current_password"]').textContent), null, { timeout: 5000 }).catch(() => {});
    const refusedForm = await tab.evaluate(() => ({
      error: document.querySelector('#token-form [data-error-for="current_password"]').textContent,
      focus: document.activeElement.id,
      made: !document.querySelector('#token-made').hidden,
    }));
    check(/not your password/.test(refusedForm.error) && refusedForm.focus === 'token-password' && !refusedForm.made,
      `a wrong password makes no token and says so (${JSON.stringify(refusedForm)})`);
    await tab.fill('#token-password', 'correct horse battery');
    await tab.click('#token-form button[type=submit]');
    await tab.locator('#token-made').waitFor({ state: 'visible', timeout: 5000 });
    const secret = await tab.inputValue('#token-secret');
    const listed = await tab.locator('#token-list .token').allTextContents();
    check(secret.startsWith('todo_pat_') && listed.length === 1 && listed[0].includes('Nightly report') && listed[0].includes('read tasks'),
      `a token is made, its secret shown once and it is listed (${JSON.stringify(listed)})`);
    check(await tab.evaluate(() => document.activeElement.id) === 'token-secret', 'focus goes to the new secret, to copy');
    await axe('API tokens dialog', tab);
    const script = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true, extraHTTPHeaders: { authorization: `Bearer ${secret}` } });
    const read = await script.get('/v1/tasks');
    const write = await script.post('/v1/tasks', { data: { title: 'from a script' } });
    check(read.status() === 200 && write.status() === 403 && /insufficient_scope/.test(write.headers()['www-authenticate'] || ''),
      `the token reads tasks and may not write them (${read.status()}, ${write.status()})`);
    await tab.click('#token-list [data-control="revoke-token"]');
    await tab.waitForFunction(() => document.querySelectorAll('#token-list .token').length === 0, null, { timeout: 5000 }).catch(() => {});
    check(await tab.locator('#token-list .token').count() === 0 && await tab.locator('#token-none').isVisible(), 'a revoked token leaves the list');
    // Refused within a second on every instance (behind the gateway, the
    // others may still hold what they read of it for that second).
    let after = await script.get('/v1/tasks');
    for (const started = Date.now(); after.status() !== 401 && Date.now() - started < 1500;) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await script.get('/v1/tasks');
    }
    check(after.status() === 401, `a revoked token is refused within a second (${after.status()})`);
    await script.dispose();
    await tab.keyboard.press('Escape');
    await tab.locator('#tokens-dialog').waitFor({ state: 'hidden' });
    // (the dialog's close event, which moves the focus, follows its hiding)
    await tab.waitForFunction(() => document.activeElement?.id === 'tokens', null, { timeout: 5000 }).catch(() => {});
    const closed = await tab.evaluate(() => ({ focus: document.activeElement.id, secret: document.querySelector('#token-secret').value }));
    check(closed.focus === 'tokens' && closed.secret === '',
      `Escape closes it, the secret leaves the page, and focus goes back to API tokens (${JSON.stringify(closed)})`);
    await ctx.close();
  }

  // 15. A reset link from an administrator: the page takes the token from
  //     the fragment (and clears it), sets the new password once, and the
  //     old one no longer signs in.
  {
    // (dee, of the sections before: registrations are limited per address)
    const admin = await request.newContext({ baseURL: base, ignoreHTTPSErrors: true });
    const signIn = async (username, password) => (await (await admin.post('/v1/auth/login', { data: { username, password } })).json()).access_token;
    const dee = await signIn('dee', 'correct horse battery');
    const deeId = (await (await admin.get('/v1/users/me', { headers: { authorization: `Bearer ${dee}` } })).json()).id;
    const root = await signIn('root', 'an admin password for the test');
    const link = await admin.post(`/v1/users/${deeId}/password-reset`, { headers: { authorization: `Bearer ${root}` } });
    if (!link.ok()) throw new Error(`a reset link for dee: ${link.status()} ${await link.text()}`);
    const { reset_url: resetUrl } = await link.json();
    await admin.dispose();
    const fragment = new URL(resetUrl).hash;
    check(link.status() === 201 && fragment.startsWith('#reset='), `an administrator gets a reset link (${link.status()})`);
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`reset: page error: ${error.message}`));
    await tab.goto(`${base}/${fragment}`);
    await tab.locator('#reset-form').waitFor({ state: 'visible' });
    const shown = await tab.evaluate(() => ({ hash: location.hash, focus: document.activeElement.id, title: document.querySelector('#auth-title').textContent }));
    check(shown.hash === '' && shown.focus === 'reset-password' && /new password/i.test(shown.title),
      `the reset form opens on the new password, the token gone from the address (${JSON.stringify(shown)})`);
    await axe('reset form', tab);
    await tab.fill('#reset-password', 'a fresh battery horse');
    await tab.click('#reset-form button[type=submit]');
    await tab.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 });
    check(/new password is set/.test(await tab.locator('#banner-text').textContent()), 'it says the password is set');
    await tab.fill('#login-username', 'dee');
    await tab.fill('#login-password', 'a fresh battery horse');
    await tab.click('#login-form button[type=submit]');
    check(await tab.locator('#tasks-view').waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false), 'the new password signs in');
    // A fragment that is no token (a malformed escape) opens the form too,
    // and the link is refused when used, said so.
    const odd = await ctx.newPage();
    await odd.goto(`${base}/#reset=%E0%A4%A`);
    check(await odd.locator('#reset-form').waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false),
      'a malformed reset fragment still shows the form');
    await odd.close();
    // The same link again: refused, and said so.
    const again = await ctx.newPage();
    await again.goto(`${base}/${fragment}`);
    await again.locator('#reset-form').waitFor({ state: 'visible' });
    await again.fill('#reset-password', 'yet another horse battery');
    await again.click('#reset-form button[type=submit]');
    await again.waitForFunction(() => /cannot be used/.test(document.querySelector('#reset-form .form-error').textContent), null, { timeout: 5000 }).catch(() => {});
    check(/cannot be used/.test(await again.locator('#reset-form .form-error').textContent()), 'a used link is refused, and said so');
    await ctx.close();
  }

  // 16. An address verified by mail: a new user registers with one; the
  //     Account dialog says it is not verified and sends a link, which the
  //     SMTP server takes (a real one: aiosmtpd, into TODO_TEST_MAILDIR);
  //     the link, opened in another tab as a mail's is, verifies it, and
  //     the dialog says so; opened again, signed out, it is refused. (Mail
  //     per account: 3, then one each 20 minutes; this user gets two.)
  const mailUser = `erin${Date.now() % 100000}`;
  const mailAddress = `${mailUser}@todo.test`;
  const mailPassword = 'correct horse battery';
  {
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`verify: page error: ${error.message}`));
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.click('#tab-register');
    await tab.fill('#register-username', mailUser);
    await tab.fill('#register-password', mailPassword);
    await tab.fill('#register-email', mailAddress);
    await tab.click('#register-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title');
    await tab.focus('#account');
    await tab.keyboard.press('Enter');
    await tab.locator('#account-dialog').waitFor({ state: 'visible' });
    await tab.waitForFunction(() => document.querySelector('#account-email').textContent !== '', null, { timeout: 5000 }).catch(() => {});
    const account = () => tab.evaluate(() => ({
      username: document.querySelector('#account-username').textContent,
      email: document.querySelector('#account-email').textContent,
      verified: document.querySelector('#account-verified').hidden ? '' : document.querySelector('#account-verified').textContent,
      offersLink: !document.querySelector('#account-verify').hidden,
      focus: document.activeElement.id,
    }));
    const before = await account();
    check(before.username === mailUser && before.email === mailAddress && before.verified === 'Not verified' && before.offersLink,
      `the Account dialog shows the username, the address, "Not verified" and a link to send (${JSON.stringify(before)})`);
    check(before.focus === 'account-email-input', `the Account dialog opens on the address field (${before.focus})`);
    await axe('account dialog', tab);
    const seen = mailFiles();
    await tab.click('#account-verify');
    await tab.waitForFunction(() => document.querySelector('#account-status').textContent || document.querySelector('#account-error').textContent, null, { timeout: 10_000 }).catch(() => {});
    const sent = await tab.evaluate(() => document.querySelector('#account-status').textContent || document.querySelector('#account-error').textContent);
    check(sent === `A link is on its way to ${mailAddress}.`, `sending the link says where it goes (${sent})`);
    await tab.screenshot({ path: join(out, 'mail-account-link-sent.png') });
    const link = linkIn(await mailTo(mailAddress, seen), 'verify-email');
    check(link !== null && link.startsWith(`${base}/#verify-email=`), `the mail arrives with a link to this page (${link?.slice(0, base.length + 14)}…)`);
    const opened = await ctx.newPage();
    opened.on('pageerror', (error) => problems.push(`verify link: page error: ${error.message}`));
    await opened.goto(link);
    await opened.locator('#tasks-view').waitFor({ state: 'visible' });
    await opened.waitForFunction(() => !document.querySelector('#banner').hidden, null, { timeout: 5000 }).catch(() => {});
    const verified = await opened.evaluate(() => ({ banner: document.querySelector('#banner-text').textContent, hash: location.hash }));
    check(verified.banner === 'Your e-mail address is verified.' && verified.hash === '',
      `the link, opened signed in, verifies the address and leaves the address bar (${JSON.stringify(verified)})`);
    await opened.close();
    // The first tab's dialog, opened again, reads the account afresh.
    await tab.keyboard.press('Escape');
    await tab.locator('#account-dialog').waitFor({ state: 'hidden' });
    // (the dialog's close event, which moves the focus, follows its hiding)
    await tab.waitForFunction(() => document.activeElement?.id === 'account', null, { timeout: 5000 }).catch(() => {});
    check(await tab.evaluate(() => document.activeElement.id) === 'account', 'Escape closes it, and focus goes back to Account');
    await tab.keyboard.press('Enter');
    await tab.waitForFunction(() => document.querySelector('#account-verified').textContent === 'Verified', null, { timeout: 5000 }).catch(() => {});
    const after = await account();
    check(after.email === mailAddress && after.verified === 'Verified' && !after.offersLink,
      `the Account dialog now says "Verified", and offers no link (${JSON.stringify(after)})`);
    await axe('account dialog, verified', tab);
    // Everything the account holds, downloaded as one file.
    const [download] = await Promise.all([
      tab.waitForEvent('download', { timeout: 10_000 }),
      tab.click('#account-export'),
    ]);
    const saved = JSON.parse(readFileSync(await download.path(), 'utf8'));
    const exported = {
      file: download.suggestedFilename(),
      format: saved.format,
      user: saved.account?.user?.username,
      verified: saved.account?.user?.email_verified,
      sessions: saved.account?.sessions?.length,
      projects: saved.projects?.map((p) => p.name),
      secretFree: !/password|argon2|todo_pat_/.test(JSON.stringify(saved)),
    };
    check(exported.file === 'todo-account.json' && exported.format === 'todo.account-export/1' && exported.user === mailUser
      && exported.verified === true && exported.sessions >= 1 && exported.projects?.includes('Inbox') && exported.secretFree,
      `"Download my data" saves the account's export, without secrets (${JSON.stringify(exported)})`);
    await tab.keyboard.press('Escape');
    // The same link again, in a browser signed in as nobody: refused, said so.
    const stranger = await newContext();
    const nobody = await stranger.newPage();
    nobody.on('pageerror', (error) => problems.push(`verify link again: page error: ${error.message}`));
    await nobody.goto(link);
    await nobody.locator('#login-form').waitFor({ state: 'visible' });
    await nobody.waitForFunction(() => !document.querySelector('#banner').hidden, null, { timeout: 5000 }).catch(() => {});
    const refused = await nobody.evaluate(() => ({ banner: document.querySelector('#banner-text').textContent, hash: location.hash }));
    check(refused.banner === 'This verification link cannot be used (it may have been used or have expired).' && refused.hash === '',
      `a used link, opened signed out, is refused and said so (${JSON.stringify(refused)})`);
    await stranger.close();
    await ctx.close();
  }

  // 17. "Forgot password?": signed out, by keyboard; the same words for an
  //     unknown login as for a real one, and no mail for it; the mailed
  //     link opens the reset form, the new password signs in and the old
  //     one no longer does; then the address is changed in the Account
  //     dialog (with the password only; unverified again) and removed.
  {
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`forgot: page error: ${error.message}`));
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.focus('#forgot');
    await tab.keyboard.press('Enter');
    await tab.locator('#forgot-form').waitFor({ state: 'visible' });
    const shown = await tab.evaluate(() => ({
      focus: document.activeElement.id,
      title: document.querySelector('#auth-title').textContent,
      login: !document.querySelector('#login-form').hidden,
    }));
    check(shown.focus === 'forgot-login' && /forgot/i.test(shown.title) && !shown.login,
      `"Forgot password?" opens its form by keyboard, on the login field (${JSON.stringify(shown)})`);
    await axe('forgot password', tab);
    const said = () => tab.evaluate(() => ({
      status: document.querySelector('#forgot-status').textContent,
      error: document.querySelector('#forgot-form .form-error').textContent,
    }));
    const ask = async (login) => {
      await tab.fill('#forgot-login', login);
      const answered = tab.waitForResponse((r) => new URL(r.url()).pathname === '/v1/auth/password-reset');
      await tab.press('#forgot-login', 'Enter');
      await answered;
      await tab.waitForFunction(() => document.querySelector('#forgot-status').textContent || document.querySelector('#forgot-form .form-error').textContent,
        null, { timeout: 5000 }).catch(() => {});
      return said();
    };
    // What a server without mail, and one asked too often, answer.
    await tab.route('**/v1/auth/password-reset', (route) => route.fulfill({
      status: 503, contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'urn:todo:problem:no-mail', title: 'Service unavailable', status: 503, detail: 'this server sends no mail' }),
    }), { times: 1 });
    const noMail = await ask(mailUser);
    check(noMail.error === 'This server sends no mail: ask an administrator for a reset link.' && noMail.status === '',
      `a server that sends no mail says to ask an administrator (${JSON.stringify(noMail)})`);
    await tab.route('**/v1/auth/password-reset', (route) => route.fulfill({
      status: 429, contentType: 'application/problem+json', headers: { 'retry-after': '3' },
      body: JSON.stringify({ type: 'urn:todo:problem:rate-limited', title: 'Too many requests', status: 429, detail: 'slow down' }),
    }), { times: 1 });
    const throttled = await ask(mailUser);
    check(throttled.error === 'Too many requests; try again in a while.' && throttled.status === '',
      `a throttled request says to wait (${JSON.stringify(throttled)})`);
    // An unknown login, then the real one: the same words, one mail.
    const seen = mailFiles();
    const unknown = await ask(`nobody${Date.now() % 100000}`);
    const known = await ask(mailUser);
    check(known.status === FORGOT_SENT && known.error === '', `asking for a reset link says a neutral "${known.status}"`);
    check(unknown.status === known.status && unknown.error === '', `an unknown login gets the very same words (${JSON.stringify(unknown)})`);
    await tab.screenshot({ path: join(out, 'mail-forgot-password.png') });
    const resetMail = await mailTo(mailAddress, seen);
    await new Promise((r) => setTimeout(r, 1000)); // (time for a mail that should not come, asked for first)
    const arrived = [...mailFiles()].filter((name) => !seen.has(name));
    check(resetMail !== null && arrived.length === 1, `the account's mail arrives, and nothing for the unknown login (${arrived.length} new)`);
    const link = linkIn(resetMail, 'reset');
    check(link !== null && link.startsWith(`${base}/#reset=`), `the mail holds a reset link to this page (${link?.slice(0, base.length + 7)}…)`);
    await tab.click('#forgot-back');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    check(await tab.evaluate(() => document.activeElement.id) === 'login-username' && await tab.locator('#forgot-form').isHidden(),
      '"Back to sign in" shows the login form, on the username');
    // The link, opened as a mail's is: the reset form; the new password set.
    const opened = await ctx.newPage();
    opened.on('pageerror', (error) => problems.push(`mailed reset link: page error: ${error.message}`));
    await opened.goto(link);
    await opened.locator('#reset-form').waitFor({ state: 'visible' });
    check(await opened.evaluate(() => location.hash) === '', 'the mailed link opens the reset form, the token gone from the address');
    await opened.fill('#reset-password', 'a mailed battery horse');
    await opened.click('#reset-form button[type=submit]');
    await opened.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 });
    check(/new password is set/.test(await opened.locator('#banner-text').textContent()), 'the mailed link sets the new password');
    await opened.fill('#login-username', mailUser);
    await opened.fill('#login-password', mailPassword);
    await opened.click('#login-form button[type=submit]');
    await opened.waitForFunction(() => document.querySelector('#login-form .form-error').textContent, null, { timeout: 10_000 }).catch(() => {});
    const oldRefused = await opened.evaluate(() => ({
      error: document.querySelector('#login-form .form-error').textContent,
      signedIn: !document.querySelector('#tasks-view').hidden,
    }));
    check(/invalid username or password/.test(oldRefused.error) && !oldRefused.signedIn, `the old password is refused (${JSON.stringify(oldRefused)})`);
    await opened.fill('#login-password', 'a mailed battery horse');
    await opened.click('#login-form button[type=submit]');
    check(await opened.locator('#tasks-view').waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false), 'the new one signs in');
    // The address moves only with the password; a new one is not verified;
    // a removed one leaves nothing to verify.
    await opened.waitForFunction(() => document.activeElement?.id === 'new-title');
    await opened.click('#account');
    await opened.locator('#account-dialog').waitFor({ state: 'visible' });
    await opened.waitForFunction(() => document.querySelector('#account-verified').textContent === 'Verified', null, { timeout: 5000 }).catch(() => {});
    const newAddress = `${mailUser}.new@todo.test`;
    await opened.fill('#account-email-input', newAddress);
    await opened.fill('#account-password', 'not the password');
    await opened.press('#account-email-input', 'Enter');
    await opened.waitForFunction(() => document.querySelector('#email-form [data-error-for="current_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    const kept = await opened.evaluate(() => ({
      error: document.querySelector('#email-form [data-error-for="current_password"]').textContent,
      email: document.querySelector('#account-email').textContent,
      focus: document.activeElement.id,
    }));
    check(kept.error === 'That is not your password.' && kept.email === mailAddress && kept.focus === 'account-password',
      `a wrong password changes no address, and says so (${JSON.stringify(kept)})`);
    await opened.fill('#account-password', 'a mailed battery horse');
    await opened.press('#account-email-input', 'Enter');
    await opened.waitForFunction((a) => document.querySelector('#account-email').textContent === a, newAddress, { timeout: 5000 }).catch(() => {});
    const changed = await opened.evaluate(() => ({
      email: document.querySelector('#account-email').textContent,
      verified: document.querySelector('#account-verified').textContent,
      offersLink: !document.querySelector('#account-verify').hidden,
      status: document.querySelector('#account-status').textContent,
      errors: [...document.querySelectorAll('#email-form .field-error, #email-form .form-error')].map((e) => e.textContent).join(''),
    }));
    check(changed.email === newAddress && changed.verified === 'Not verified' && changed.offersLink && /not verified yet/.test(changed.status),
      `a changed address shows at once, not verified, with a link to send (${JSON.stringify(changed)})`);
    await opened.fill('#account-password', 'a mailed battery horse');
    await opened.click('#email-remove');
    await opened.waitForFunction(() => document.querySelector('#account-email').textContent === 'None', null, { timeout: 5000 }).catch(() => {});
    const removed = await opened.evaluate(() => ({
      email: document.querySelector('#account-email').textContent,
      verifiedShown: !document.querySelector('#account-verified').hidden,
      offersLink: !document.querySelector('#account-verify').hidden,
      focus: document.activeElement.id,
    }));
    check(removed.email === 'None' && !removed.verifiedShown && !removed.offersLink && removed.focus === 'account-email-input',
      `a removed address leaves nothing to verify, and focus on the field for a new one (${JSON.stringify(removed)})`);
    await axe('account dialog, no address', opened);

    // 18. The password changed in the Account dialog: a wrong current one
    //     changes nothing; the right one signs out everywhere, and the new
    //     password signs in. Then the account is deleted: a wrong password
    //     keeps it, the right one ends it, and it no longer signs in.
    // Signed in, or refused as the server refuses a wrong login (not a
    // timeout of either).
    const relogin = async (password) => {
      await opened.fill('#login-username', mailUser);
      await opened.fill('#login-password', password);
      await opened.click('#login-form button[type=submit]');
      await opened.waitForFunction(() => !document.querySelector('#tasks-view').hidden
        || /invalid username or password/.test(document.querySelector('#login-form .form-error').textContent), null, { timeout: 10_000 });
      return opened.evaluate(() => !document.querySelector('#tasks-view').hidden);
    };
    await opened.fill('#password-current', 'not the password');
    await opened.fill('#password-new', 'a changed battery horse');
    await opened.click('#password-form button[type=submit]');
    await opened.waitForFunction(() => document.querySelector('#password-form [data-error-for="current_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    const wrongCurrent = await opened.evaluate(() => ({
      error: document.querySelector('#password-form [data-error-for="current_password"]').textContent,
      open: document.querySelector('#account-dialog').open,
    }));
    check(wrongCurrent.error === 'That is not your password.' && wrongCurrent.open,
      `a wrong current password changes nothing, and says so (${JSON.stringify(wrongCurrent)})`);
    await opened.fill('#password-current', 'a mailed battery horse');
    await opened.fill('#password-new', 'short');
    await opened.click('#password-form button[type=submit]');
    await opened.waitForFunction(() => document.querySelector('#password-form [data-error-for="new_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    const weak = await opened.evaluate(() => ({
      error: document.querySelector('#password-form [data-error-for="new_password"]').textContent,
      focus: document.activeElement.id,
    }));
    check(weak.error !== '' && weak.focus === 'password-new', `a refused new password is said on its field (${JSON.stringify(weak)})`);
    await opened.fill('#password-new', 'a changed battery horse');
    await opened.click('#password-form button[type=submit]');
    await opened.locator('#login-form').waitFor({ state: 'visible', timeout: 10_000 });
    const changedBanner = await opened.locator('#banner-text').textContent();
    check(/password is changed/.test(changedBanner), `a changed password signs out here, and says so (${changedBanner})`);
    // (the login form's error from before is gone with the session)
    await opened.evaluate(() => { document.querySelector('#login-form .form-error').textContent = ''; });
    check(!(await relogin('a mailed battery horse')), 'the old password no longer signs in');
    check(await relogin('a changed battery horse'), 'the new one does');
    await opened.waitForFunction(() => document.activeElement?.id === 'new-title');
    await opened.click('#account');
    await opened.locator('#account-dialog').waitFor({ state: 'visible' });
    await axe('account dialog, password and deletion', opened);
    await opened.fill('#delete-password', 'not the password');
    await opened.click('#delete-form button[type=submit]');
    await opened.waitForFunction(() => document.querySelector('#delete-form [data-error-for="current_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    const kept2 = await opened.evaluate(() => document.querySelector('#delete-form [data-error-for="current_password"]').textContent);
    check(kept2 === 'That is not your password.', `a wrong password deletes nothing (${kept2})`);
    await opened.fill('#delete-password', 'a changed battery horse');
    await opened.click('#delete-form button[type=submit]');
    await opened.locator('#login-form').waitFor({ state: 'visible', timeout: 10_000 });
    const deletedBanner = await opened.locator('#banner-text').textContent();
    check(/account is deleted/.test(deletedBanner), `a deleted account signs out, and says so (${deletedBanner})`);
    await opened.evaluate(() => { document.querySelector('#login-form .form-error').textContent = ''; });
    check(!(await relogin('a changed battery horse')), 'a deleted account no longer signs in');
    await ctx.close();
  }

  // 19. Two-step sign-in with an authenticator app: set up in the Account
  //     dialog (the password, the QR code and key, a code computed here
  //     from the key shown, as an app would; the recovery codes shown
  //     once); then signing in takes a code: a wrong one is said on its
  //     field, a right one signs in, a recovery code does too, once; it is
  //     turned off with the password and a code; and an account with it on
  //     is deleted with a code.
  {
    const name = `tess${Date.now() % 100000}`;
    const password = 'a two step battery';
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`two-step: page error: ${error.message}`));
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.click('#tab-register');
    await tab.fill('#register-username', name);
    await tab.fill('#register-password', password);
    await tab.click('#register-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title');
    await tab.click('#account');
    await tab.locator('#account-dialog').waitFor({ state: 'visible' });
    await tab.locator('#mfa-setup-form').waitFor({ state: 'visible', timeout: 5000 });
    check(/Off/.test(await tab.locator('#mfa-state').textContent()), 'the Account dialog says two-step sign-in is off');
    await tab.fill('#mfa-setup-password', 'not the password');
    await tab.click('#mfa-setup-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#mfa-setup-form [data-error-for="current_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    check(await tab.locator('#mfa-setup-form [data-error-for="current_password"]').textContent() === 'That is not your password.',
      'a wrong password sets nothing up, and says so');
    await tab.fill('#mfa-setup-password', password);
    await tab.click('#mfa-setup-form button[type=submit]');
    await tab.locator('#mfa-enrol').waitFor({ state: 'visible', timeout: 5000 });
    const enrolment = await tab.evaluate(() => ({
      key: document.querySelector('#mfa-secret').textContent,
      paths: document.querySelectorAll('#mfa-qr svg path').length,
      scripts: document.querySelectorAll('#mfa-qr script, #mfa-qr foreignObject').length,
      focus: document.activeElement.id,
    }));
    check(/^[A-Z2-7]{4}( [A-Z2-7]{4}){7}$/.test(enrolment.key) && enrolment.paths > 0 && enrolment.scripts === 0 && enrolment.focus === 'mfa-confirm-code',
      `setting up shows the QR code and the key, and asks for a code (${JSON.stringify({ ...enrolment, key: enrolment.key.length })})`);
    await axe('two-step set-up', tab);
    await tab.screenshot({ path: join(out, 'two-step-setup.png') });
    await tab.fill('#mfa-confirm-code', '12345');
    await tab.click('#mfa-confirm-form button[type=submit]');
    check(/six digits/.test(await tab.locator('#mfa-confirm-form [data-error-for="code"]').textContent()), 'five digits are not a code');
    const secret = enrolment.key.replaceAll(' ', '');
    const confirming = totpCode(secret, 0);
    await tab.fill('#mfa-confirm-code', confirming);
    await tab.click('#mfa-confirm-form button[type=submit]');
    await tab.locator('#mfa-codes').waitFor({ state: 'visible', timeout: 5000 });
    const codes = await tab.evaluate(() => [...document.querySelectorAll('#mfa-recovery-codes li')].map((li) => li.textContent));
    check(codes.length === 10 && codes.every((c) => /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/.test(c)),
      `a right code turns it on, and ten recovery codes are shown (${codes.length})`);
    await axe('two-step recovery codes', tab);
    await tab.click('#mfa-codes-done');
    await tab.waitForFunction(() => /^On/.test(document.querySelector('#mfa-state').textContent), null, { timeout: 5000 }).catch(() => {});
    const on = await tab.evaluate(() => ({
      state: document.querySelector('#mfa-state').textContent,
      codesGone: document.querySelectorAll('#mfa-recovery-codes li').length === 0,
      removal: !document.querySelector('#mfa-remove-form').hidden,
      deleteCode: !document.querySelector('#delete-code-field').hidden,
    }));
    check(/^On/.test(on.state) && on.codesGone && on.removal && on.deleteCode,
      `"I have saved them": the codes leave the page, the dialog says it is on (${JSON.stringify(on)})`);
    await tab.keyboard.press('Escape');
    await tab.locator('#account-dialog').waitFor({ state: 'hidden' });
    await tab.click('#logout');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    // Signing in: the password, then the code.
    const firstStep = async () => {
      await tab.fill('#login-username', name);
      await tab.fill('#login-password', password);
      await tab.click('#login-form button[type=submit]');
      await tab.locator('#mfa-form').waitFor({ state: 'visible', timeout: 10_000 });
    };
    await firstStep();
    const asked = await tab.evaluate(() => ({
      focus: document.activeElement.id,
      signedIn: !document.querySelector('#tasks-view').hidden,
      title: document.querySelector('#auth-title').textContent,
    }));
    check(asked.focus === 'mfa-code' && !asked.signedIn, `the password alone does not sign in: a code is asked for (${JSON.stringify(asked)})`);
    await axe('two-step sign-in', tab);
    await tab.screenshot({ path: join(out, 'two-step-sign-in.png') });
    // (the code that confirmed the set-up is spent)
    await tab.fill('#mfa-code', confirming);
    await tab.click('#mfa-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#mfa-form [data-error-for="code"]').textContent, null, { timeout: 5000 }).catch(() => {});
    const spent = await tab.evaluate(() => ({ error: document.querySelector('#mfa-form [data-error-for="code"]').textContent, focus: document.activeElement.id }));
    check(/wrong or was used/.test(spent.error) && spent.focus === 'mfa-code', `a used code is refused on its field (${JSON.stringify(spent)})`);
    await tab.fill('#mfa-code', totpCode(secret, 1));
    await tab.press('#mfa-code', 'Enter');
    check(await tab.locator('#tasks-view').waitFor({ state: 'visible', timeout: 10_000 }).then(() => true, () => false), 'the next code signs in');
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title', null, { timeout: 5000 }).catch(() => {});
    await tab.click('#logout');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await firstStep();
    await tab.click('#mfa-switch');
    check(await tab.locator('#mfa-code-label').textContent() === 'Recovery code', 'a recovery code can be used instead');
    await tab.fill('#mfa-code', codes[0]);
    await tab.click('#mfa-form button[type=submit]');
    check(await tab.locator('#tasks-view').waitFor({ state: 'visible', timeout: 10_000 }).then(() => true, () => false), 'a recovery code signs in');
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title', null, { timeout: 5000 }).catch(() => {});
    await tab.click('#logout');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await firstStep();
    await tab.click('#mfa-switch');
    await tab.fill('#mfa-code', codes[0]);
    await tab.click('#mfa-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#mfa-form [data-error-for="code"]').textContent, null, { timeout: 5000 }).catch(() => {});
    check(/wrong or was used/.test(await tab.locator('#mfa-form [data-error-for="code"]').textContent()), 'a recovery code works once');
    await tab.click('#mfa-back');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    check(await tab.locator('#mfa-form').isHidden() && await tab.evaluate(() => document.activeElement.id) === 'login-username',
      '"Back to sign in" leaves the code for the password');
    await firstStep();
    await tab.click('#mfa-switch');
    await tab.fill('#mfa-code', codes[1]);
    await tab.click('#mfa-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible', timeout: 10_000 });
    // Turned off with the password and a code; on again; then the
    // account deleted, which takes a code too.
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title', null, { timeout: 5000 }).catch(() => {});
    await tab.click('#account');
    await tab.locator('#mfa-remove-form').waitFor({ state: 'visible', timeout: 5000 });
    await tab.fill('#mfa-remove-password', password);
    await tab.fill('#mfa-remove-code', '000000' === totpCode(secret, 0) ? '111111' : '000000');
    await tab.click('#mfa-remove-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#mfa-remove-form [data-error-for="code"]').textContent, null, { timeout: 5000 }).catch(() => {});
    check(/wrong or was used/.test(await tab.locator('#mfa-remove-form [data-error-for="code"]').textContent()), 'a wrong code turns nothing off');
    await tab.fill('#mfa-remove-code', codes[2]);
    await tab.click('#mfa-remove-form button[type=submit]');
    await tab.waitForFunction(() => /^Off/.test(document.querySelector('#mfa-state').textContent), null, { timeout: 5000 }).catch(() => {});
    const off = await tab.evaluate(() => ({
      state: document.querySelector('#mfa-state').textContent,
      status: document.querySelector('#account-status').textContent,
      setup: !document.querySelector('#mfa-setup-form').hidden,
      deleteCode: !document.querySelector('#delete-code-field').hidden,
    }));
    check(/^Off/.test(off.state) && off.status === 'Two-step sign-in is off.' && off.setup && !off.deleteCode,
      `the password and a recovery code turn it off (${JSON.stringify(off)})`);
    await tab.fill('#mfa-setup-password', password);
    await tab.click('#mfa-setup-form button[type=submit]');
    await tab.locator('#mfa-enrol').waitFor({ state: 'visible', timeout: 5000 });
    const again = (await tab.locator('#mfa-secret').textContent()).replaceAll(' ', '');
    await tab.fill('#mfa-confirm-code', totpCode(again, 0));
    await tab.click('#mfa-confirm-form button[type=submit]');
    await tab.locator('#mfa-codes').waitFor({ state: 'visible', timeout: 5000 });
    await tab.click('#mfa-codes-done');
    await tab.locator('#delete-code-field').waitFor({ state: 'visible', timeout: 5000 });
    await tab.fill('#delete-password', password);
    await tab.click('#delete-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#delete-form [data-error-for="code"]').textContent, null, { timeout: 5000 }).catch(() => {});
    check(await tab.locator('#delete-form [data-error-for="code"]').textContent() !== '', 'deleting the account asks for a code too');
    await tab.fill('#delete-password', password);
    await tab.fill('#delete-code', totpCode(again, 1));
    await tab.click('#delete-form button[type=submit]');
    await tab.locator('#login-form').waitFor({ state: 'visible', timeout: 10_000 });
    check(/account is deleted/.test(await tab.locator('#banner-text').textContent()), 'with the code, the account is deleted');
    await ctx.close();
  }

  // 20. Passkeys, with Chromium's virtual authenticator (the DevTools
  //     WebAuthn domain: a platform authenticator that keeps discoverable
  //     credentials and verifies its user): one added in the Account
  //     dialog, listed; signed out, "Sign in with a passkey" signs in with
  //     no username or password; removed with the password, it signs in no
  //     more.
  {
    const name = `kim${Date.now() % 100000}`;
    const password = 'a passkey battery horse';
    const ctx = await newContext();
    const tab = await ctx.newPage();
    tab.on('pageerror', (error) => problems.push(`passkeys: page error: ${error.message}`));
    const devtools = await ctx.newCDPSession(tab);
    await devtools.send('WebAuthn.enable');
    const { authenticatorId } = await devtools.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    await tab.goto(base);
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    check(await tab.locator('#passkey-login').isVisible(), 'the sign-in page offers "Sign in with a passkey"');
    await tab.click('#tab-register');
    await tab.fill('#register-username', name);
    await tab.fill('#register-password', password);
    await tab.click('#register-form button[type=submit]');
    await tab.locator('#tasks-view').waitFor({ state: 'visible' });
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title');
    await tab.click('#account');
    await tab.locator('#passkey-form').waitFor({ state: 'visible', timeout: 5000 });
    await tab.click('#passkey-form button[type=submit]');
    check(/Name this passkey/.test(await tab.locator('#passkey-form [data-error-for="name"]').textContent()), 'a passkey needs a name');
    await tab.fill('#passkey-name', 'This laptop');
    await tab.click('#passkey-form button[type=submit]');
    check(/password/.test(await tab.locator('#passkey-form [data-error-for="current_password"]').textContent()),
      'a passkey takes the password: a session alone adds none');
    await tab.fill('#passkey-password', 'not the password');
    await tab.click('#passkey-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#passkey-form [data-error-for="current_password"]').textContent === 'That is not your password.', null, { timeout: 5000 }).catch(() => {});
    const { credentials: none } = await devtools.send('WebAuthn.getCredentials', { authenticatorId });
    check(none.length === 0 && await tab.locator('#passkey-form [data-error-for="current_password"]').textContent() === 'That is not your password.',
      'a wrong password makes no passkey');
    await tab.fill('#passkey-password', password);
    await tab.click('#passkey-form button[type=submit]');
    // (the page lists the passkey, then reads the account, then says so)
    await tab.waitForFunction(() => /is added/.test(document.querySelector('#account-status').textContent)
      || document.querySelector('#passkey-form .form-error').textContent
      || document.querySelector('#passkey-form [data-error-for="name"]').textContent, null, { timeout: 10_000 }).catch(() => {});
    const added = await tab.evaluate(() => ({
      items: [...document.querySelectorAll('#passkey-list li strong')].map((e) => e.textContent),
      status: document.querySelector('#account-status').textContent,
      error: document.querySelector('#passkey-form .form-error').textContent,
    }));
    const { credentials } = await devtools.send('WebAuthn.getCredentials', { authenticatorId });
    check(added.items.length === 1 && added.items[0] === 'This laptop' && /is added/.test(added.status)
      && credentials.length === 1 && credentials[0].isResidentCredential,
      `a passkey is made on the device and listed (${JSON.stringify({ ...added, credentials: credentials.length })})`);
    await axe('account dialog with a passkey', tab);
    await tab.keyboard.press('Escape');
    await tab.locator('#account-dialog').waitFor({ state: 'hidden' });
    await tab.click('#logout');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    // No username, no password: the passkey names its account.
    await tab.click('#passkey-login');
    check(await tab.locator('#tasks-view').waitFor({ state: 'visible', timeout: 10_000 }).then(() => true, () => false),
      'the passkey signs in with no username or password');
    await tab.waitForFunction((n) => document.querySelector('#whoami').textContent.includes(n), name, { timeout: 5000 }).catch(() => {});
    check((await tab.locator('#whoami').textContent()).includes(name), 'as its account');
    const { credentials: usedOnce } = await devtools.send('WebAuthn.getCredentials', { authenticatorId });
    check(usedOnce[0].signCount >= 1, `the authenticator signed (count ${usedOnce[0].signCount})`);
    // Removed with the password: it signs in no more.
    await tab.waitForFunction(() => document.activeElement?.id === 'new-title', null, { timeout: 5000 }).catch(() => {});
    await tab.click('#account');
    await tab.locator('#passkey-list li').first().waitFor({ state: 'visible', timeout: 5000 });
    const lastUsed = await tab.locator('#passkey-list li .meta').first().textContent();
    check(/last used/.test(lastUsed), `the list says when it was last used (${lastUsed})`);
    await tab.click('#passkey-list li button');
    await tab.locator('#passkey-remove-form').waitFor({ state: 'visible' });
    check(await tab.evaluate(() => document.activeElement.id) === 'passkey-remove-password', 'removing asks for the password');
    await tab.fill('#passkey-remove-password', 'not the password');
    await tab.click('#passkey-remove-form button[type=submit]');
    await tab.waitForFunction(() => document.querySelector('#passkey-remove-form [data-error-for="current_password"]').textContent, null, { timeout: 5000 }).catch(() => {});
    check(await tab.locator('#passkey-remove-form [data-error-for="current_password"]').textContent() === 'That is not your password.',
      'a wrong password removes nothing');
    await tab.fill('#passkey-remove-password', password);
    await tab.click('#passkey-remove-form button[type=submit]');
    // (the page lists the passkeys left, then reads the account, then says so)
    await tab.waitForFunction(() => document.querySelector('#account-status').textContent === 'The passkey is removed.'
      || document.querySelector('#passkey-remove-form .form-error')?.textContent, null, { timeout: 5000 }).catch(() => {});
    check(await tab.evaluate(() => document.querySelectorAll('#passkey-list li').length) === 0
      && await tab.locator('#account-status').textContent() === 'The passkey is removed.', 'the password removes it');
    await tab.keyboard.press('Escape');
    await tab.locator('#account-dialog').waitFor({ state: 'hidden' });
    await tab.click('#logout');
    await tab.locator('#login-form').waitFor({ state: 'visible' });
    await tab.click('#passkey-login');
    await tab.waitForFunction(() => document.querySelector('#login-form .form-error').textContent, null, { timeout: 10_000 }).catch(() => {});
    const refused = await tab.evaluate(() => ({
      error: document.querySelector('#login-form .form-error').textContent,
      signedIn: !document.querySelector('#tasks-view').hidden,
    }));
    check(/did not sign you in/.test(refused.error) && !refused.signedIn, `a removed passkey signs in no more (${JSON.stringify(refused)})`);
    await ctx.close();
  }

  check(pairs.length >= 3 && pairs.every((p) => p.access_token && !('refresh_token' in p)),
    `the page's token pairs carry no refresh token (${pairs.length} seen)`);
  check(problems.length === 0, `no console errors or CSP violations${problems.length ? `: ${problems.join(' | ')}` : ''}`);
  console.log(`browser test passed: ${checks} checks; screenshots in ${out}`);
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(error);
  if (problems.length) console.error('console:', problems);
  process.exitCode = 1;
} finally {
  await browser.close();
}
