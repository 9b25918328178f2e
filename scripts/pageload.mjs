// How fast the chat page is ready, cold, in Debian's Chromium: first contentful paint, and the
// moment the composer takes text (hydrated, connected, the remembered name claimed, the room
// joined). A fresh browser context per run (nothing cached); the median of RUNS.
//
//   node scripts/pageload.mjs http://127.0.0.1:3000 [runs] [--slow]
//
// --slow: the slow-phone profile (4x CPU throttling, 1.6 Mbps down, 150 ms latency).
// Run it against a release build (scripts/run.sh, or `cargo leptos build --release` and the
// binary), never in the test command: it measures, it does not judge.
import { createRequire } from 'node:module';
const require = createRequire(new URL('../end2end/package.json', import.meta.url));
const { chromium } = require('@playwright/test');

const [base = 'http://127.0.0.1:3000', runsArg = '9'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const slow = process.argv.includes('--slow');
const runs = Number(runsArg);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const paint = [];
const ready = [];
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(() => localStorage.setItem('chorus.name', `load${Math.random().toString(36).slice(2, 7)}`));
  const page = await context.newPage();
  if (slow) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 150,
      downloadThroughput: (1.6 * 1024 * 1024) / 8,
      uploadThroughput: (750 * 1024) / 8,
    });
  }
  await page.goto(`${base}/r/load-${i}-${Date.now()}`);
  await page.waitForFunction(() => {
    const c = document.querySelector('[data-testid=composer]');
    return c && !c.disabled && document.querySelector('[data-testid=my-name]');
  }, null, { timeout: 60_000, polling: 'raf' });
  const at = await page.evaluate(() => performance.now());
  const fcp = await page.evaluate(
    () => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN,
  );
  paint.push(fcp);
  ready.push(at);
  await context.close();
}
await browser.close();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => xs.map((x) => Math.round(x)).join(' ');
console.log(`first contentful paint: median ${Math.round(median(paint))} ms  (${fmt(paint)})`);
console.log(`composer ready:         median ${Math.round(median(ready))} ms  (${fmt(ready)})`);
