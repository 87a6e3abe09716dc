// Drives the service's Swagger UI in a real headless Chromium: POST then GET on one route
// through "Try it out" / "Execute", asserting on the counts the page renders.
//   node swagger-ui.mjs <base-url> <route> <screenshot-dir>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(process.env.CLIENTS_NODE_MODULES + '/');
const { chromium } = require('playwright-core');

const [base, route, shots] = process.argv.slice(2);
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

async function execute(page, method, expected) {
  const block = page.locator(`.opblock-${method.toLowerCase()}`)
    .filter({ has: page.locator('.opblock-summary-path', { hasText: '/transactions/{route}' }) }).first();
  await block.locator('.opblock-summary').first().click();
  await block.locator('button.try-out__btn').click();
  const input = block.locator('tr[data-param-name="route"] input').first();
  await input.fill(route);
  await block.locator('button.execute').click();
  const live = block.locator('.live-responses-table');
  await live.waitFor();
  const status = (await live.locator('.response .response-col_status').first().innerText()).trim();
  const body = (await live.locator('.response-col_description pre').first().innerText()).trim();
  if (status !== '200') fail(`${method}: Swagger UI shows status ${status}, body ${body}`);
  let parsed;
  try { parsed = JSON.parse(body); } catch { fail(`${method}: response body is not JSON: ${body}`); }
  if (parsed.route !== canonical || parsed.transactions !== expected) {
    fail(`${method}: page shows ${body}, expected route ${canonical} with ${expected} transactions`);
  }
  console.log(`${method} /transactions/${route}: page shows ${body}`);
}

try {
  const page = await context.newPage();
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.locator('.swagger-ui .info .title').waitFor();
  const title = await page.locator('.swagger-ui .info .title').innerText();
  if (!/flight/i.test(title)) fail(`unexpected API title rendered: ${title}`);
  await execute(page, 'POST', 1);
  await page.screenshot({ path: join(shots, 'swagger-ui-post.png'), fullPage: true });
  await execute(page, 'GET', 1);
  await page.screenshot({ path: join(shots, 'swagger-ui.png'), fullPage: true });
  console.log(`rendered "${title.split('\n')[0]}"; screenshot ${join(shots, 'swagger-ui.png')}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
