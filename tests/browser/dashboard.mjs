// The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core):
// sign in, create an API key, send traffic with it through Envoy, see its usage, revoke it
// from the page and time until Envoy refuses it; then a burst of forged tokens, blocked by the
// filter, shows on the Alerts page. Screenshots of every page go to
// $TW_SCREENSHOTS. Run by tests/e2e/dashboard.rs, which starts the control plane, Envoy and
// the mock provider and reads the one JSON line this prints.
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/e2e/dashboard.rs sets it)`);
  return value;
};
const ui = env('TW_UI');
const gateway = env('TW_GATEWAY');
const adminKey = env('TW_ADMIN_KEY');
const shots = env('TW_SCREENSHOTS');
const subject = 'browser-team';

const chat = (key) =>
  fetch(`${gateway}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello from the dashboard test' }] }),
  });

const browser = await chromium.launch({
  executablePath: process.env.TW_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage', '--disable-gpu'],
});
const result = {};
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
try {
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  // Sign in.
  await page.goto(`${ui}/ui/login`);
  await shot('login');
  await page.fill('#credential', adminKey);
  await Promise.all([page.waitForURL('**/ui/keys'), page.click('form.login button[type=submit]')]);
  result.signed_in = (await page.textContent('header .who span')).trim();

  // Create a key; it is shown once.
  await page.click('details.panel summary');
  await page.fill('input[name=subject]', subject);
  await page.fill('input[name=scopes]', 'chat');
  await page.fill('input[name=models]', 'gpt-4o*');
  await page.fill('input[name=plan]', 'team');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Create key")')]);
  const key = await page.inputValue('#new-key');
  result.key_id = (await page.textContent('.created code')).trim();
  result.key_prefix = key.slice(0, 3);
  await shot('key-created');

  // Traffic through Envoy with the new key (it reaches Envoy over xDS first).
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = (await chat(key)).status;
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  result.first_status = status;
  const statuses = [];
  for (let i = 0; i < 2; i++) statuses.push((await chat(key)).status);
  result.statuses = statuses;

  // Its usage, once the Envoy has reported it.
  const deadline = Date.now() + 20000;
  let seen = '0';
  while (Date.now() < deadline) {
    await page.goto(`${ui}/ui/usage?subject=${subject}&by=model`);
    seen = (await page.textContent('#total-requests')).trim();
    if (seen === '3') break;
    await new Promise((r) => setTimeout(r, 250));
  }
  result.usage_requests = Number(seen);
  result.usage_model = (await page.textContent('#usage-by tbody tr td')).trim();
  await page.goto(`${ui}/ui/usage`);
  await shot('usage');

  for (const name of ['fleet', 'signing-keys', 'audit']) {
    await page.goto(`${ui}/ui/${name}`);
    await shot(name);
    if (name === 'fleet') result.fleet = (await page.innerText('#fleet tbody tr')).replace(/\s+/g, ' ').trim();
  }
  await page.goto(`${ui}/ui/keys`);
  result.listed = (await page.textContent(`tr[data-key="${result.key_id}"] .status`)).trim();
  await shot('keys');

  // Revoke it from the page, with the confirmation, and time until Envoy refuses it.
  await page.click(`tr[data-key="${result.key_id}"] a:has-text("Revoke")`);
  await page.waitForSelector('button:has-text("Revoke key")');
  const started = Date.now();
  await Promise.all([page.waitForURL('**/ui/keys'), page.click('button:has-text("Revoke key")')]);
  let refused = 0;
  while (Date.now() - started < 10000) {
    const reply = await chat(key);
    if (reply.status === 401) {
      refused = 401;
      result.refusal = (await reply.json()).error.code;
      break;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  result.refused_status = refused;
  result.revoke_to_401_ms = Date.now() - started;
  result.status_after = (await page.textContent(`tr[data-key="${result.key_id}"] .status`)).trim();

  // Last (it blocks this address): a burst of forged tokens is blocked by the filter, and the
  // block reaches the Alerts page through the Envoy's next report.
  let blocked = 0;
  for (let i = 0; i < 40 && blocked !== 429; i++) {
    blocked = (await chat(`tw_forged${i}_${'x'.repeat(24)}`)).status;
  }
  result.burst_status = blocked;
  const until = Date.now() + 20000;
  result.alert = '';
  while (Date.now() < until && !result.alert) {
    await page.goto(`${ui}/ui/alerts`);
    const row = await page.$('#alerts tr:has(.status.auth_block)');
    if (row) result.alert = (await row.innerText()).replace(/\s+/g, ' ').trim();
    else await new Promise((r) => setTimeout(r, 250));
  }
  await shot('alerts');
} catch (error) {
  // What the page showed when a step failed, for the test's failure message.
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`at ${page.url()}:\n${await page.content().catch(() => '')}`);
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
