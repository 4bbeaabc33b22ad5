// Drives the todo page in Debian's headless Chromium, as a person would:
// register, log in, create three tasks, complete one, filter, edit one,
// delete one, log out, reload, log back in — checking at each step what
// the page shows. Screenshots go to the directory given (target/browser).
//
//   node browser.mjs https://localhost:PORT OUT_DIR

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, out = 'target/browser'] = process.argv.slice(2);
if (!base) {
  console.error('usage: node browser.mjs BASE_URL [OUT_DIR]');
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1024, height: 820 } });
const page = await context.newPage();
const problems = [];
page.on('console', (msg) => {
  // Answers with error statuses are expected (the flow checks each one);
  // anything else, a CSP violation above all, is a problem.
  if (msg.type() === 'error' && !/^Failed to load resource: the server responded with a status of (400|401)/.test(msg.text())) {
    problems.push(msg.text());
  }
});
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
// Every token pair the page receives: none may carry the refresh token.
const pairs = [];
page.on('response', async (response) => {
  if (!/\/v1\/auth\/(login|refresh)$/.test(new URL(response.url()).pathname) || !response.ok()) return;
  try {
    pairs.push(await response.json());
  } catch (error) {
    problems.push(`unreadable token pair: ${error.message}`);
  }
});

let step = 0;
async function shot(name) {
  step += 1;
  await page.screenshot({ path: join(out, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}
const tasks = () => page.locator('#task-list > li');
const task = (title) => page.locator('#task-list > li', { hasText: title });
async function titles() {
  await page.waitForTimeout(50);
  return page.locator('#task-list .title').allTextContents();
}
async function waitForTitles(expected, message) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#task-list .title')].map((e) => e.textContent)) === JSON.stringify(want),
    expected,
    { timeout: 10_000 },
  ).catch(() => {});
  const got = await titles();
  check(JSON.stringify(got) === JSON.stringify(expected), `${message}: ${JSON.stringify(got)}`);
}

const username = `alice${Date.now() % 100000}`;
const password = 'correct horse battery';

try {
  // 1. The page starts at the login form.
  await page.goto(base);
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#auth-title').textContent() === 'Welcome back', 'the login form is shown first');
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
  await shot('register-error');
  await page.fill('#register-password', password);
  await page.click('#register-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  check((await page.locator('#whoami').textContent()).includes(username), 'registering logs in and names the user');
  check(await page.locator('#empty').isVisible(), 'a new account has an empty list');

  // 3. Create three tasks.
  await page.fill('#new-title', 'Buy milk');
  await page.click('.more summary');
  await page.fill('#new-labels', 'home, errands');
  await page.click('#new-task button[type=submit]');
  await waitForTitles(['Buy milk'], 'the first task appears');
  await page.fill('#new-title', 'Write report');
  await page.selectOption('#new-priority', '3');
  await page.fill('#new-labels', 'work');
  await page.click('#new-task button[type=submit]');
  await waitForTitles(['Write report', 'Buy milk'], 'the second task appears on top');
  await page.fill('#new-title', 'Call mom');
  await page.fill('#new-due', '2030-05-01T18:30');
  await page.click('#new-task button[type=submit]');
  await waitForTitles(['Call mom', 'Write report', 'Buy milk'], 'three tasks, newest first');
  check((await task('Write report').locator('.prio').textContent()) === 'High', 'the priority is shown');
  check((await task('Buy milk').locator('.chip').allTextContents()).join(',') === 'errands,home', 'the labels are shown');
  check((await task('Call mom').locator('.due').textContent()).startsWith('Due '), 'the due date is shown');
  // An invalid title is reported next to the title field.
  await page.fill('#new-title', '   ');
  await page.click('#new-task button[type=submit]');
  await page.locator('#new-task [data-error-for="title"]').waitFor({ state: 'visible' });
  check(true, 'a blank title is refused next to the title field');
  await page.fill('#new-title', '');
  await shot('three-tasks');

  // 4. Complete one.
  await task('Buy milk').locator('.toggle').check();
  await page.waitForSelector('#task-list > li.done');
  check(await task('Buy milk').evaluate((li) => li.classList.contains('done')), 'the completed task is shown done');
  await shot('completed');

  // 5. Filter: done only, then by label, then by text.
  await page.selectOption('#filter-done', 'true');
  await waitForTitles(['Buy milk'], 'the done filter shows only the done task');
  await page.selectOption('#filter-done', 'false');
  await waitForTitles(['Call mom', 'Write report'], 'the open filter hides it');
  await page.selectOption('#filter-done', '');
  await page.fill('#filter-label', 'work');
  await waitForTitles(['Write report'], 'the label filter');
  await page.fill('#filter-label', '');
  await page.fill('#filter-q', 'MOM');
  await waitForTitles(['Call mom'], 'the text search is case-insensitive');
  await shot('filtered');
  await page.fill('#filter-q', '');
  await waitForTitles(['Call mom', 'Write report', 'Buy milk'], 'clearing the filters shows all');

  // 6. Edit one.
  await task('Call mom').getByRole('button', { name: 'Edit Call mom' }).click();
  const editor = task('Call mom').locator('form.editor');
  await editor.waitFor({ state: 'visible' });
  await editor.locator('[name=title]').fill('Call mom tonight');
  await editor.locator('[name=labels]').fill('family');
  await shot('editing');
  await editor.locator('button[type=submit]').click();
  await waitForTitles(['Call mom tonight', 'Write report', 'Buy milk'], 'the edited title is shown');
  check((await task('Call mom tonight').locator('.chip').allTextContents()).join(',') === 'family', 'the edited labels are shown');

  // 7. Delete one: the page asks first; cancelling keeps it.
  await task('Write report').getByRole('button', { name: 'Delete Write report' }).click();
  await page.locator('#confirm-delete').waitFor({ state: 'visible' });
  check((await page.locator('#confirm-title').textContent()) === 'Write report', 'the dialog names the task');
  await shot('confirm-delete');
  await page.click('#confirm-delete button[value=cancel]');
  await waitForTitles(['Call mom tonight', 'Write report', 'Buy milk'], 'cancelling keeps the task');
  await task('Write report').getByRole('button', { name: 'Delete Write report' }).click();
  await page.click('#confirm-delete button[value=delete]');
  await waitForTitles(['Call mom tonight', 'Buy milk'], 'the deleted task is gone');

  // Tokens stay out of script's reach.
  const storage = await page.evaluate(() => ({
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
  }));
  check(!storage.cookie.includes('todo_refresh') && storage.local === 0 && storage.session === 0, 'no token in script-readable storage');

  // 8. A reload keeps the session (the HttpOnly refresh cookie).
  await page.reload();
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  await waitForTitles(['Call mom tonight', 'Buy milk'], 'after a reload the session and tasks are back');

  // 9. Log out; a reload stays logged out.
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#tasks-view').isHidden(), 'logging out hides the tasks');
  await page.reload();
  await page.locator('#login-form').waitFor({ state: 'visible' });
  check(await page.locator('#tasks-view').isHidden(), 'after logout a reload shows the login form');
  await shot('logged-out');

  // 10. A wrong password is refused; the right one logs back in.
  await page.fill('#login-username', username);
  await page.fill('#login-password', 'wrong password!');
  await page.click('#login-form button[type=submit]');
  const loginError = page.locator('#login-form .form-error');
  await loginError.waitFor({ state: 'visible' });
  check((await loginError.textContent()).includes('invalid username or password'), 'a wrong password is refused');
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#tasks-view').waitFor({ state: 'visible' });
  await waitForTitles(['Call mom tonight', 'Buy milk'], 'logging back in shows the same tasks');
  check(await task('Buy milk').evaluate((li) => li.classList.contains('done')), 'the done task is still done');
  await shot('logged-back-in');

  // A phone-sized screen.
  await page.setViewportSize({ width: 375, height: 740 });
  await shot('phone');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  check(!overflow, 'nothing overflows a 375 px wide screen');

  check(pairs.length >= 3 && pairs.every((p) => p.access_token && !('refresh_token' in p)),
    `the page's token pairs carry no refresh token (${pairs.length} seen)`);
  check(problems.length === 0, `no console errors or CSP violations${problems.length ? `: ${problems.join(' | ')}` : ''}`);
  console.log(`browser test passed; screenshots in ${out}`);
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(error);
  if (problems.length) console.error('console:', problems);
  process.exitCode = 1;
} finally {
  await browser.close();
}
