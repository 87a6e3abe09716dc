// Drives the service's Swagger UI in a real headless Chromium: a GET without a key shows the
// 401; then "Authorize" with a write key, and POST then GET on one route through "Try it out"
// / "Execute", asserting on the statuses and counts the page renders, and that the service's
// Content Security Policy blocks nothing the page uses.
//   node swagger-ui.mjs <base-url> <route> <screenshot-dir> <write-api-key>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(process.env.CLIENTS_NODE_MODULES + '/');
const { chromium } = require('playwright-core');

const [base, route, shots, apiKey] = process.argv.slice(2);
if (!apiKey) throw new Error('usage: swagger-ui.mjs <base-url> <route> <screenshot-dir> <write-api-key>');
const canonical = route.toUpperCase();
const profile = mkdtempSync(join(tmpdir(), 'fc-chromium-'));

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 1600 },
});
context.setDefaultTimeout(20000);

function fail(msg) { throw new Error(msg); }

// Runs one operation through the page and returns the status and parsed body it renders.
async function execute(page, method) {
  const block = page.locator(`.opblock-${method.toLowerCase()}`)
    .filter({ has: page.locator('.opblock-summary-path', { hasText: '/transactions/{route}' }) }).first();
  if (!(await block.getAttribute('class')).includes('is-open')) {
    await block.locator('.opblock-summary').first().click();
  }
  const tryOut = block.locator('button.try-out__btn');
  if (/try it out/i.test(await tryOut.innerText())) await tryOut.click();
  const clear = block.locator('button.btn-clear');
  if (await clear.count()) await clear.click();
  const input = block.locator('tr[data-param-name="route"] input').first();
  await input.fill(route);
  await block.locator('button.execute').click();
  const live = block.locator('.live-responses-table');
  await live.waitFor();
  const status = (await live.locator('.response .response-col_status').first().innerText()).trim();
  const body = (await live.locator('.response-col_description pre').first().innerText()).trim();
  let parsed;
  try { parsed = JSON.parse(body); } catch { fail(`${method}: response body is not JSON: ${body}`); }
  console.log(`${method} /transactions/${route}: page shows ${status} ${body}`);
  return { status, parsed, body };
}

async function expectCount(page, method, expected) {
  const { status, parsed, body } = await execute(page, method);
  if (status !== '200') fail(`${method}: Swagger UI shows status ${status}, body ${body}`);
  if (parsed.route !== canonical || parsed.transactions !== expected) {
    fail(`${method}: page shows ${body}, expected route ${canonical} with ${expected} transactions`);
  }
}

async function authorize(page) {
  await page.locator('.auth-wrapper button.authorize').click();
  const modal = page.locator('.modal-ux');
  await modal.waitFor();
  await modal.locator('input').first().fill(apiKey);
  await modal.locator('button.authorize').click();
  await modal.locator('button.btn-done').click();
  await modal.waitFor({ state: 'detached' });
  console.log('authorized with a write key through "Authorize"');
}

try {
  const page = await context.newPage();
  // The page runs under the service's Content Security Policy: anything it blocks is a failure.
  const blocked = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) blocked.push(msg.text());
  });
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.locator('.swagger-ui .info .title').waitFor();
  const title = await page.locator('.swagger-ui .info .title').innerText();
  if (!/flight/i.test(title)) fail(`unexpected API title rendered: ${title}`);
  if (!(await page.locator('.swagger-ui .info a[href="/dashboard"]').count())) {
    fail('the description has no link to the dashboard');
  }
  const refused = await execute(page, 'GET');
  if (refused.status !== '401' || refused.parsed.error !== 'unauthorized') {
    fail(`GET without a key: page shows ${refused.status} ${refused.body}, expected 401 unauthorized`);
  }
  await page.screenshot({ path: join(shots, 'swagger-ui-401.png'), fullPage: true });
  await authorize(page);
  await expectCount(page, 'POST', 1);
  await page.screenshot({ path: join(shots, 'swagger-ui-post.png'), fullPage: true });
  await expectCount(page, 'GET', 1);
  await page.screenshot({ path: join(shots, 'swagger-ui.png'), fullPage: true });
  if (blocked.length) fail(`the Content Security Policy blocked: ${blocked.join(' | ')}`);
  console.log('the Content Security Policy blocked nothing the page uses');
  console.log(`rendered "${title.split('\n')[0]}"; screenshot ${join(shots, 'swagger-ui.png')}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
