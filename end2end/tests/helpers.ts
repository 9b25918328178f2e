import { expect, test, type Browser, type Page, type BrowserContext } from '@playwright/test';
import { spawn, type ChildProcess } from 'child_process';
import * as net from 'net';
import * as path from 'path';

// The checkout: where the test command built the node and the load tool.
export const root = path.resolve(__dirname, '../..');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// A node of a test's own (built by the test command) with extra flags, on a free port, serving
// the site the test command built; resolves once it answers /healthz.
export async function startNode(flags: string[]): Promise<{ node: ChildProcess; port: number; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const node = spawn(
    path.join(root, 'target/debug/chorus'),
    ['--config', '/dev/null', '--listen', `127.0.0.1:${port}`, '--log', 'warn', ...flags],
    { env: { ...process.env, LEPTOS_SITE_ROOT: path.join(root, 'target/site') }, stdio: 'inherit' },
  );
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  return { node, port, base };
}

// Every test uses its own room and names: the servers live across tests.
export const unique = (prefix: string) => `${prefix}${Math.random().toString(36).slice(2, 8)}`;

// Opens /r/<room> on `base` (default: the configured baseURL) and waits until it is live.
export async function openRoom(context: BrowserContext, room: string, base = ''): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/r/${room}`);
  // "Online" appears only once the WASM has hydrated the page and its WebSocket is open.
  await expect(page.getByTestId('status')).toHaveText('Online');
  return page;
}

export async function pickName(page: Page, name: string) {
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('my-name')).toHaveText(name);
  await expect(page.getByTestId('members')).toContainText(name);
}

export async function say(page: Page, text: string) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

// Records every status the page shows from now on (some last only a moment).
export async function recordStatuses(page: Page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid=status]')!;
    const seen: string[] = ((window as any).__statuses = []);
    new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, {
      subtree: true,
      characterData: true,
      childList: true,
    });
  });
}

export async function statuses(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as any).__statuses ?? []);
}

// Routes the page's WebSocket through the test: while `holding` is set, the messages the page
// sends (`send` frames) are swallowed on the way, as a link that loses them would.
export async function holdSends(page: Page): Promise<{ holding: boolean }> {
  const control = { holding: false };
  await page.routeWebSocket(/\/ws/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      if (control.holding && typeof frame === 'string' && JSON.parse(frame).type === 'send') return;
      server.send(frame);
    });
    server.onMessage((frame) => ws.send(frame));
  });
  return control;
}

// Makes the page believe its tab was hidden (or shown again), as switching tabs does.
export async function setHidden(page: Page, hidden: boolean) {
  await page.evaluate((hidden) => {
    Object.defineProperty(document, 'hidden', { value: hidden, configurable: true });
    Object.defineProperty(document, 'visibilityState', {
      value: hidden ? 'hidden' : 'visible',
      configurable: true,
    });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

// A person on their own browser context, in language `lang` (the page's cookie), at `viewport`
// (touch below 500 px wide), on /r/<room> and online.
export async function personIn(browser: Browser, room: string, lang: string, viewport: { width: number; height: number }): Promise<Page> {
  const context = await browser.newContext({ viewport, hasTouch: viewport.width < 500 });
  await context.addCookies([{ name: 'chorus_lang', value: lang, url: test.info().project.use.baseURL! }]);
  const page = await context.newPage();
  await page.goto(`/r/${room}`);
  await expect(page.getByTestId('status')).toHaveClass(/online/);
  return page;
}
