// The dashboard's demo journey in a real browser (README.md, "The
// dashboard"): headless Debian chromium driven by playwright-core.
// Opens DASHBOARD_URL, creates a user, an account and an order by
// clicking, and waits for the invoice to appear with the order's total
// without a reload (the event stream makes the page re-query it). Saves a
// screenshot to SCREENSHOT. Exit 0 on success; 1 with a message otherwise.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 30000; // each wait: an event through the whole pipeline
const url = process.env.DASHBOARD_URL;
const shot = process.env.SCREENSHOT;
const amount = process.env.AMOUNT || '12.34';
const email = process.env.EMAIL || `browser-${Date.now()}@example.test`;

if (!url || !shot) {
  console.error('journey: set DASHBOARD_URL and SCREENSHOT');
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  await page.goto(url);
  await page.locator('#stream-state', { hasText: 'live' }).waitFor();

  await page.fill('#user-form input[name=name]', 'Browser Journey');
  await page.fill('#user-form input[name=email]', email);
  await page.click('#create-user');
  await page.locator('#message', { hasText: /user \d+ created/ }).waitFor();
  const userId = (await page.textContent('#watched-user')).trim();

  await page.click('#create-account');
  await page.locator('#message', { hasText: /account \d+ created/ }).waitFor();

  await page.fill('#order-form input[name=amount]', amount);
  await page.click('#create-order');
  await page.locator('#message', { hasText: /order \d+ created/ }).waitFor();

  // Live: the invoice row appears with the total, no reload.
  await page.locator('#invoices tbody td.total', { hasText: Number(amount).toFixed(2) }).waitFor();
  await page.locator('#feed li', { hasText: `order.created user_id=${userId}` }).waitFor();
  // The name arrives with the user's event; the row shows it once applied.
  await page.locator('#invoices tbody tr', { hasText: 'Browser Journey' }).waitFor();
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`journey: user ${userId}, invoice total ${amount}, screenshot ${shot}`);
} catch (err) {
  failed = true;
  console.error(`journey failed: ${err.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
