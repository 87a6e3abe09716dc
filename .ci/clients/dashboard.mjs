// The dashboard at /dashboard in a real headless Chromium, against a service with a known data
// set: every number its tables show is what the API answers.
//
//   node dashboard.mjs history
//     prints a snapshot (JSON Lines, for `flight-counter import`) of seven routes with counts
//     on each of the last 61 days (not today) and each of the last 24 months, and one with
//     counts only months ago;
//   node dashboard.mjs keys <base-url> <screenshot-dir> <read-key> <write-key>
//     the service runs on that history with API keys: records today's transactions (distinct
//     counts per route, so the ranking is known), then in the page: the key form, a refused key,
//     a read key, the top routes of today and this month, the default route's days and months,
//     another route picked from the form, an invalid route (the service's message shown), a
//     route added to the comparison, pause, resume and the live refresh, all through the
//     keyboard; each table against the API's own answer (read here with the key), the charts'
//     and the controls' accessible names, and a Content Security Policy that blocked nothing.
//     Screenshots: dashboard.png (1280x900, the charts; docs/images/dashboard.png is a copy)
//     and dashboard-tables.png (the whole page, tables open);
//   node dashboard.mjs open <base-url> <screenshot-dir>
//     the service runs on the same store without keys: the page asks for none and shows the
//     same ranking.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const DAYS = 62;
const MONTHS = 24;
// Route, transactions recorded today (the day ranking), and the weight of its history.
const ROUTES = [
  ['AR1133', 9, 6],
  ['LA0001', 7, 9],
  ['G31234', 5, 4],
  ['AA0100', 4, 7],
  ['JJ3456', 3, 2],
  ['AR1500', 2, 3],
  ['AV0042', 1, 5],
];
// A route with transactions only months ago: in no ranking, but listed by GET /transactions.
const QUIET = 'ZZ0999';

const pad = (n) => String(n).padStart(2, '0');
const dayText = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
const monthText = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
const utcDay = (now, offset) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + offset));
const utcMonth = (now, offset) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));

function fail(message) {
  throw new Error(message);
}

// A route's history relative to `now`: a weekly rhythm and a slow rise, the same on every run.
function historyOf(index, weight, now) {
  const days = new Map();
  for (let k = DAYS - 1; k >= 1; k--) {
    const rhythm = 1 + 0.6 * Math.sin((2 * Math.PI * (k + index)) / 7);
    const rise = 1 + (DAYS - k) / DAYS;
    days.set(dayText(utcDay(now, -k)), Math.round(weight * rhythm * rise));
  }
  const months = new Map();
  const firstDay = dayText(utcDay(now, -(DAYS - 1)));
  for (let j = MONTHS - 1; j >= 0; j--) {
    const start = utcMonth(now, -j);
    const month = monthText(start);
    let count = 0;
    // The days kept count as they are; the rest of the month at a rate of its own.
    for (let d = start; d.getUTCMonth() === start.getUTCMonth(); d = utcDay(d, 1)) {
      const day = dayText(d);
      if (day >= firstDay) count += days.get(day) ?? 0;
      else count += Math.round(weight * (1 + 0.4 * Math.sin(j / 3 + index)));
    }
    months.set(month, count);
  }
  return { days, months };
}

function history(now) {
  const lines = [JSON.stringify({
    format: 'flight-counter-snapshot',
    version: 1,
    id: `dashboard-check-${dayText(now)}`,
    source: 'memory',
    taken_at: Math.floor(now.getTime() / 1000),
  })];
  const sorted = ROUTES.map((r, i) => [...r, i]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  for (const [route, , weight, index] of sorted) {
    const { days, months } = historyOf(index, weight, now);
    const total = [...months.values()].reduce((a, v) => a + v, 0) + 100 * weight;
    lines.push(JSON.stringify({
      type: 'route',
      route,
      transactions: total,
      days: Object.fromEntries(days),
      months: Object.fromEntries(months),
    }));
  }
  lines.push(JSON.stringify({
    type: 'route',
    route: QUIET,
    transactions: 50,
    days: {},
    months: { [monthText(utcMonth(now, -6))]: 50 },
  }));
  lines.push(JSON.stringify({ type: 'end', routes: ROUTES.length + 1, keys: 0 }));
  return lines.join('\n') + '\n';
}

// The rankings the data set makes: today's from the POSTs alone, this month's from the history
// of the month and the POSTs; ties by route.
function expectedRankings(now) {
  const order = (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1);
  const day = ROUTES.map(([route, today]) => [route, today]).sort(order);
  const month = ROUTES.map(([route, today, weight], i) =>
    [route, historyOf(i, weight, now).months.get(monthText(now)) + today]).sort(order);
  return { day, month };
}

const mode = process.argv[2];
if (mode === 'history') {
  process.stdout.write(history(new Date()));
  process.exit(0);
}

const require = createRequire(process.env.CLIENTS_NODE_MODULES + '/');
const { chromium } = require('playwright-core');
const [base, shots, readKey, writeKey] = process.argv.slice(3);
if (!(mode === 'keys' && writeKey) && !(mode === 'open' && shots)) {
  fail('usage: dashboard.mjs history | keys <base-url> <screenshot-dir> <read-key> <write-key> | open <base-url> <screenshot-dir>');
}

async function api(path, key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const resp = await fetch(base + path, { headers });
  const body = await resp.json();
  return { status: resp.status, body, date: resp.headers.get('date') };
}

async function ok(path, key) {
  const answer = await api(path, key);
  if (answer.status !== 200) fail(`GET ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

function same(what, shown, expected, source = 'the API answers') {
  const a = JSON.stringify(shown);
  const b = JSON.stringify(expected);
  if (a !== b) fail(`${what}: ${a}, where ${source} ${b}`);
  console.log(`ok   ${what}: ${shown.length} rows, as ${source}`);
}

// The service's today and this month, from its clock (its Date header), as the page does.
const now = new Date(Date.parse((await api('/version')).date));
const today = dayText(now);
const month = monthText(now);
const firstDay = dayText(utcDay(now, -(DAYS - 1)));
const firstMonth = monthText(utcMonth(now, -(MONTHS - 1)));
const key = mode === 'keys' ? readKey : undefined;
const expected = expectedRankings(now);

const pairs = (rows) => rows.map((r) => [r.route, r.transactions]);
const top = async (period, value) => pairs((await ok(`/top-routes?${period}=${value}&limit=10`, key)).routes);

// Rankings are cached by the service for up to a minute: wait until today's has the POSTs.
async function waitForRanking() {
  const want = JSON.stringify(expected.day);
  let seen;
  for (let i = 0; i < 100; i++) {
    seen = JSON.stringify(await top('day', today));
    if (seen === want) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  fail(`today's ranking is ${seen} after 100 s; the data set makes ${want}`);
}

if (mode === 'keys') {
  for (const [route, count] of ROUTES) {
    for (let i = 0; i < count; i++) {
      const resp = await fetch(`${base}/transactions/${route}`, {
        method: 'POST', headers: { Authorization: `Bearer ${writeKey}` },
      });
      if (resp.status !== 200) fail(`POST ${route}: ${resp.status} ${await resp.text()}`);
    }
  }
  console.log(`recorded ${ROUTES.reduce((a, r) => a + r[1], 0)} transactions today on ${ROUTES.length} routes`);
}
await waitForRanking();
const monthRanking = await top('month', month);
same("the API's ranking of this month", monthRanking, expected.month, 'the data set makes');

// Polls a condition in the page. Playwright's waitForFunction evaluates a string in the page,
// which the page's policy (no 'unsafe-eval') rightly refuses; evaluate does not.
async function until(page, condition, arg, timeout = 20000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(condition, arg)) return;
    if (Date.now() > deadline) fail(`timed out waiting for ${condition.toString().slice(0, 160)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The numbers of a table view: its header cells and, per row, the row header then numbers.
async function tableOf(page, id) {
  return page.locator(`#view-${id} table`).evaluate((t) => ({
    columns: [...t.querySelectorAll('thead th')].map((th) => th.textContent.trim()),
    rows: [...t.querySelectorAll('tbody tr')].map((tr) => [
      tr.querySelector('th').textContent.trim(),
      ...[...tr.querySelectorAll('td')].map((td) => Number(td.textContent.replace(/,/g, ''))),
    ]),
  }));
}

// Opens a panel's table from the keyboard: focus its toggle, press Space.
async function openTable(page, id) {
  const toggle = page.locator(`#toggle-${id}`);
  if ((await toggle.getAttribute('aria-expanded')) === 'true') return;
  await toggle.focus();
  await page.keyboard.press('Space');
  if ((await toggle.getAttribute('aria-expanded')) !== 'true') fail(`#toggle-${id} did not open its table`);
  await page.locator(`#view-${id} table`).waitFor();
}

async function checkRanking(page, id, period, value, want) {
  await openTable(page, id);
  const shown = (await tableOf(page, id)).rows;
  const answered = await top(period, value);
  same(`top routes ${period === 'day' ? 'today' : 'this month'}`, shown, answered);
  same(`top routes ${period === 'day' ? 'today' : 'this month'} in order`, shown, want, 'the data set makes');
}

async function checkRoute(page, route) {
  await until(page, (r) => document.getElementById('title-daily').textContent.startsWith(r), route);
  await until(page, (r) => document.getElementById('title-monthly').textContent.startsWith(r), route);
  await openTable(page, 'daily');
  await openTable(page, 'monthly');
  const days = await ok(`/transactions/${route}/daily?from=${firstDay}&to=${today}`, key);
  const months = await ok(`/transactions/${route}/monthly?from=${firstMonth}&to=${month}`, key);
  same(`${route} per day`, (await tableOf(page, 'daily')).rows, days.days.map((d) => [d.date, d.transactions]));
  same(`${route} per month`, (await tableOf(page, 'monthly')).rows, months.months.map((m) => [m.month, m.transactions]));
  if (days.days.length !== DAYS || months.months.length !== MONTHS) fail('the series are not 62 days and 24 months');
}

async function checkCompared(page, routes) {
  await until(page, (n) => {
    const head = document.querySelectorAll('#view-compare thead th');
    return head.length === n.length + 1 && [...head].slice(1).every((th, i) => th.textContent === n[i]);
  }, routes);
  const table = await tableOf(page, 'compare');
  const series = await Promise.all(routes.map((r) => ok(`/transactions/${r}/daily?from=${firstDay}&to=${today}`, key)));
  const rows = series[0].days.map((d, i) => [d.date, ...series.map((s) => s.days[i].transactions)]);
  same(`${routes.join(', ')} compared per day`, table.rows, rows);
  const totals = await ok(`/transactions?${routes.map((r) => `route=${r}`).join('&')}`, key);
  await openTable(page, 'totals');
  same(`${routes.join(', ')} all-time totals`, (await tableOf(page, 'totals')).rows, pairs(totals.routes));
}

// Every chart is an image with a name; every control has a name; every input has a label.
async function checkAccessibility(page) {
  const problems = await page.evaluate(() => {
    const found = [];
    for (const svg of document.querySelectorAll('.chart svg')) {
      if (svg.getAttribute('role') !== 'img' || !svg.getAttribute('aria-label') || !svg.querySelector('title')) {
        found.push(`a chart without role=img, aria-label and title: ${svg.closest('.chart').id}`);
      }
    }
    for (const button of document.querySelectorAll('button')) {
      if (!(button.getAttribute('aria-label') || button.textContent.trim())) found.push('a button without a name');
    }
    for (const input of document.querySelectorAll('input')) {
      if (!input.labels || !input.labels.length) found.push(`input #${input.id} without a label`);
    }
    for (const toggle of document.querySelectorAll('.table-toggle')) {
      if (!document.getElementById(toggle.getAttribute('aria-controls'))) found.push(`${toggle.id} controls nothing`);
    }
    return found;
  });
  if (problems.length) fail(problems.join('; '));
  const charts = await page.locator('.chart svg[role="img"]').count();
  console.log(`ok   ${charts} charts are images with names; every control and input is named`);
}

const profile = mkdtempSync(join(tmpdir(), 'fc-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(20000);

try {
  const page = await context.newPage();
  // The page runs under the service's Content Security Policy: anything it blocks, and any
  // script error, is a failure. Refused reads are logged by Chromium as failed loads; those
  // are expected here (the 401s, the invalid route).
  const blocked = [];
  const scriptErrors = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) blocked.push(msg.text());
    else if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) scriptErrors.push(msg.text());
  });
  page.on('pageerror', (err) => scriptErrors.push(err.message));
  await page.exposeFunction('reportViolation', (v) => blocked.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.reportViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  await page.goto(base + '/dashboard', { waitUntil: 'load' });

  if (mode === 'keys') {
    const panel = page.locator('#key-panel');
    await panel.waitFor({ state: 'visible' });
    const asked = await page.locator('#key-message').innerText();
    if (!/needs an API key/.test(asked)) fail(`the key form says: ${asked}`);
    if (!(await page.locator('#key-input').evaluate((i) => i === document.activeElement))) {
      fail('the key input does not have the focus');
    }
    console.log(`ok   the page asks for a key, focus in the key input: "${asked}"`);
    // From the keyboard: type a key the service does not know, Enter.
    await page.keyboard.type('fck_not-a-key');
    await page.keyboard.press('Enter');
    await until(page, () => /did not accept this key/.test(document.getElementById('key-message').textContent));
    const refused = await page.locator('#key-message').innerText();
    if (!/401 unauthorized/.test(refused) || !(await panel.isVisible())) fail(`after a wrong key: ${refused}`);
    console.log(`ok   a refused key shows the form again: "${refused}"`);
    await page.keyboard.type(readKey);
    await page.keyboard.press('Enter');
    await panel.waitFor({ state: 'hidden' });
    const stored = await page.evaluate(() => sessionStorage.getItem('flight-counter.dashboard.key'));
    if (stored !== readKey) fail('the key is not in sessionStorage');
    console.log('ok   the read key is taken and kept in sessionStorage');
  } else if (await page.locator('#key-panel').isVisible()) {
    fail('without API keys the page asks for one');
  }

  for (const id of ['top-day', 'top-month', 'daily', 'monthly', 'compare', 'totals']) {
    await page.locator(`#view-${id} table`).waitFor({ state: 'attached' });
  }
  // Stop the live refresh, from the keyboard, so that what is read next stands still.
  await page.locator('#pause').focus();
  await page.keyboard.press('Enter');
  if ((await page.locator('#pause').innerText()) !== 'Resume live refresh') fail('pause did not pause');
  await until(page, () => document.getElementById('live').textContent === 'live refresh paused');
  const asOf = await page.locator('#meta-top-day').innerText();
  if (!/^Ranking as of \d\d:\d\d:\d\d UTC/.test(asOf)) fail(`the ranking's age is not shown: ${asOf}`);
  console.log(`ok   paused; "${asOf}"`);
  // The picture is of the charts, without the focus ring of the button just pressed.
  await page.evaluate(() => {
    document.activeElement.blur();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(shots, mode === 'keys' ? 'dashboard.png' : 'dashboard-open.png') });

  await checkRanking(page, 'top-day', 'day', today, expected.day);
  await checkRanking(page, 'top-month', 'month', month, expected.month);
  if (mode === 'open') {
    if (blocked.length) fail(`the Content Security Policy blocked: ${blocked.join(' | ')}`);
    if (scriptErrors.length) fail(`script errors: ${scriptErrors.join(' | ')}`);
    console.log('ok   without API keys: no key asked, the same ranking; nothing blocked');
  } else {
    // The busiest route today is shown until another is picked; the comparison starts with
    // this month's top three.
    await checkRoute(page, expected.day[0][0]);
    await openTable(page, 'compare');
    const defaults = expected.month.slice(0, 3).map((r) => r[0]);
    await checkCompared(page, defaults);

    // Another route, typed in any case: the page shows its canonical form.
    await page.locator('#route-input').fill('la1');
    await page.locator('#route-input').press('Enter');
    await checkRoute(page, 'LA0001');

    // A route the service refuses: its own message is shown, and the page keeps LA0001.
    const refusal = await api(`/transactions/A1/daily?from=${today}&to=${today}`, key);
    await page.locator('#route-input').fill('A1');
    await page.locator('#route-input').press('Enter');
    await until(page, () => document.getElementById('route-message').textContent !== '');
    const said = await page.locator('#route-message').innerText();
    if (refusal.status !== 400 || !said.includes(refusal.body.message) || !said.includes(refusal.body.error)) {
      fail(`for route A1 the page says "${said}"; the API answers ${refusal.status} ${JSON.stringify(refusal.body)}`);
    }
    console.log(`ok   the service's error is shown: "${said}"`);
    await checkRoute(page, 'LA0001');

    // One more route compared, added from the keyboard.
    await page.locator('#compare-input').focus();
    await page.keyboard.type('g31234');
    await page.keyboard.press('Enter');
    await checkCompared(page, [...defaults, 'G31234']);

    // The route pickers suggest the routes GET /transactions lists, not only those ranked.
    const suggested = await page.locator('#route-list option').evaluateAll((os) => os.map((o) => o.value));
    const missing = [...ROUTES.map((r) => r[0]), QUIET].filter((r) => !suggested.includes(r));
    if (missing.length) fail(`the route pickers do not suggest ${missing.join(', ')}`);
    console.log(`ok   the route pickers suggest the ${suggested.length} routes listed`);

    await checkAccessibility(page);

    // Resume: one refresh at once, then the live refresh on its own every 15 s.
    const updated = () => page.locator('#updated').getAttribute('datetime');
    const before = await updated();
    await page.locator('#pause').focus();
    await page.keyboard.press('Enter');
    await until(page, (b) => document.getElementById('updated').getAttribute('datetime') !== b, before);
    const resumed = await updated();
    await until(page, (b) => document.getElementById('updated').getAttribute('datetime') !== b, resumed, 25000);
    console.log(`ok   resumed: refreshed at ${resumed}, then on its own at ${await updated()}`);

    await page.screenshot({ path: join(shots, 'dashboard-tables.png'), fullPage: true });
    if (blocked.length) fail(`the Content Security Policy blocked: ${blocked.join(' | ')}`);
    if (scriptErrors.length) fail(`script errors: ${scriptErrors.join(' | ')}`);
    console.log('ok   the Content Security Policy blocked nothing; no script errors');
  }
  console.log(`screenshots in ${shots}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
