// Cross-origin access as a browser dashboard uses it, in a real headless Chromium: a page served
// from another origin (a port of its own) reads a count, records a transaction with a write key
// and an Idempotency-Key (a preflighted POST), reads the count again and sees the replay header
// exposed; a page on an origin the service does not list is blocked by the browser.
//   node cors.mjs <service-base-url> <allowed-page-port> <other-page-port> <write-api-key>
// The service runs with --cors-allow-origin http://127.0.0.1:<allowed-page-port>.
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(process.env.CLIENTS_NODE_MODULES + '/');
const { chromium } = require('playwright-core');

const [service, allowedPort, otherPort, apiKey] = process.argv.slice(2);
if (!apiKey) throw new Error('usage: cors.mjs <service-base-url> <allowed-page-port> <other-page-port> <write-api-key>');
const route = `CO${1000 + Math.floor(Math.random() * 9000)}`;

// The dashboard page: its script talks to the service on another origin and writes what it
// saw into the page as JSON.
const page = `<!doctype html><html><body><pre id="out">running</pre><script>
(async () => {
  const out = {};
  try {
    const base = ${JSON.stringify(service)};
    const auth = { Authorization: 'Bearer ${apiKey}' };
    let r = await fetch(base + '/transactions/${route}', { headers: auth });
    out.before = [r.status, (await r.json()).transactions];
    const post = () => fetch(base + '/transactions/${route}', {
      method: 'POST', headers: { ...auth, 'Idempotency-Key': 'cors-${route}' } });
    r = await post();
    out.posted = [r.status, (await r.json()).transactions];
    r = await post();
    out.replayed = [r.status, r.headers.get('Idempotent-Replayed')];
    r = await fetch(base + '/transactions/${route}', { headers: auth });
    out.after = [r.status, (await r.json()).transactions];
  } catch (err) {
    out.error = String(err);
  }
  document.getElementById('out').textContent = JSON.stringify(out);
})();
</script></body></html>`;

function serve(port) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
}

const servers = [await serve(allowedPort), await serve(otherPort)];
const profile = mkdtempSync(join(tmpdir(), 'fc-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(20000);

async function visit(port) {
  const tab = await context.newPage();
  await tab.goto(`http://127.0.0.1:${port}/`);
  const out = tab.locator('#out');
  await tab.waitForFunction(() => document.getElementById('out').textContent !== 'running');
  const seen = JSON.parse(await out.innerText());
  await tab.close();
  return seen;
}

let failed = false;
function check(name, ok, seen) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${JSON.stringify(seen)}`);
  failed ||= !ok;
}

try {
  const allowed = await visit(allowedPort);
  check(`page on http://127.0.0.1:${allowedPort} reads, records and sees the replay`,
    !allowed.error && allowed.before?.[0] === 200 && allowed.before[1] === 0
      && allowed.posted?.[0] === 200 && allowed.posted[1] === 1
      && allowed.replayed?.[0] === 200 && allowed.replayed[1] === 'true'
      && allowed.after?.[0] === 200 && allowed.after[1] === 1,
    allowed);
  const other = await visit(otherPort);
  check(`page on http://127.0.0.1:${otherPort} (not listed) is blocked by the browser`,
    typeof other.error === 'string' && other.error.includes('Failed to fetch'), other);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  for (const server of servers) server.close();
}
if (failed) process.exit(1);
