import { test, expect, type Page } from '@playwright/test';
import { type ChildProcess } from 'child_process';
import { pickName, startNode, unique } from './helpers';

// A room with 1,000 messages, read back to its first one in a real browser: the newest 50 come
// with the join, older pages load as the reader nears the top, and what the reader is looking at
// does not move when a page goes in above it. The test's own node lets its writer send without
// the per-connection pace (a person could not type 1,000 messages in a test's time).
const TOTAL = 1000;

let server: ChildProcess | undefined;
let base = '';

test.describe('a room with 1,000 messages', () => {
  test.setTimeout(120_000);

  test.beforeAll(async () => {
    ({ node: server, base } = await startNode(['--sends-per-sec', '0', '--bytes-per-sec', '0']));
  });

  test.afterAll(() => server?.kill());

  // Writes `n` messages into `room` over a WebSocket of the page's own, and waits for the last ack.
  async function fill(page: Page, room: string, n: number) {
    await page.evaluate(
      ({ room, n }) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`);
          ws.onerror = () => reject(new Error('socket failed'));
          ws.onopen = () => {
            ws.send(JSON.stringify({ type: 'set_name', name: `writer${Math.random().toString(36).slice(2, 6)}` }));
            ws.send(JSON.stringify({ type: 'join', room }));
            for (let i = 1; i <= n; i++) {
              ws.send(JSON.stringify({ type: 'send', room, text: `message ${i}`, client_id: `w${i}` }));
            }
          };
          ws.onmessage = (e) => {
            const frame = JSON.parse(e.data);
            if (frame.type === 'ack' && frame.client_id === `w${n}`) {
              ws.close();
              resolve();
            }
            if (frame.type === 'error') reject(new Error(e.data));
          };
        }),
      { room, n },
    );
  }

  for (const size of [
    { name: 'phone', width: 390, height: 844 },
    { name: 'desktop', width: 1280, height: 800 },
  ]) {
    test(`reads back to the first message without the view jumping (${size.name})`, async ({ browser }) => {
      const context = await browser.newContext({ viewport: { width: size.width, height: size.height } });
      const page = await context.newPage();
      const room = unique('long');
      await page.goto(`${base}/r/${room}`);
      await expect(page.getByTestId('status')).toHaveText('Online');
      await fill(page, room, TOTAL);
      // The page read the room (no name yet) while 1,000 messages poured in, and followed.
      await expect(page.getByTestId('message').last()).toHaveText(/message 1000$/);
      await expect(page.getByTestId('message').last()).toBeInViewport();
      await page.reload();
      await expect(page.getByTestId('status')).toHaveText('Online');
      await pickName(page, unique('reader'));
      const messages = page.getByTestId('message');
      // The newest window, followed to its end.
      await expect(messages).toHaveCount(50);
      await expect(messages.last()).toHaveText(/message 1000$/);
      await expect(messages.last()).toBeInViewport();
      await page.screenshot({ path: test.info().outputPath(`history-newest-${size.name}.png`) });

      const list = page.getByTestId('messages');
      const edge = page.getByTestId('history-edge');
      let shown = 50;
      while (shown < TOTAL) {
        // Scrolled to the top, the oldest message shown is at some place on the screen; the page
        // that this scroll asks for goes in above it, and in the first frame drawn after that
        // the message must be where it was. Measured in the page, when the list has grown and
        // been laid out, just before it is drawn (a ResizeObserver made after the page's own,
        // so it runs after the page's correction, in the same frame).
        const { y0, y1 } = await list.evaluate(
          (el) =>
            new Promise<{ y0: number; y1: number }>((resolve) => {
              const oldest = el.querySelector('[data-testid=message]')!;
              const log = el.querySelector('[role=log]')!;
              const height = log.getBoundingClientRect().height;
              const grown = new ResizeObserver(() => {
                if (log.getBoundingClientRect().height <= height) return;
                grown.disconnect();
                resolve({ y0, y1: oldest.getBoundingClientRect().top });
              });
              grown.observe(log);
              el.scrollTop = 0;
              const y0 = oldest.getBoundingClientRect().top;
            }),
        );
        expect(Math.abs(y1 - y0), `the view jumped by ${y1 - y0} px after ${shown} messages`).toBeLessThan(2);
        await expect(messages).toHaveCount(Math.min(shown + 50, TOTAL));
        shown = await messages.count();
        if (shown === 100) {
          await page.screenshot({ path: test.info().outputPath(`history-paged-${size.name}.png`) });
        }
      }
      await expect(edge).toHaveAttribute('data-edge', 'Begins');
      await expect(edge).toHaveText('This is the beginning of the room.');
      await expect(messages.first()).toHaveText(/message 1$/);
      await list.evaluate((el) => el.scrollBy(0, -el.scrollTop));
      await page.screenshot({ path: test.info().outputPath(`history-first-${size.name}.png`) });
      await context.close();
    });
  }

  test('a reload returns the reader to where they were, paging back for it', async ({ browser }) => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const room = unique('place');
    await page.goto(`${base}/r/${room}`);
    await expect(page.getByTestId('status')).toHaveText('Online');
    await fill(page, room, 300);
    await page.reload();
    await expect(page.getByTestId('status')).toHaveText('Online');
    await pickName(page, unique('reader'));
    const messages = page.getByTestId('message');
    const list = page.getByTestId('messages');
    // Back past the window: message 180 is two pages up.
    while ((await messages.count()) < 150) {
      const shown = await messages.count();
      await list.evaluate((el) => el.scrollTo(0, 0));
      await expect.poll(() => messages.count()).toBeGreaterThan(shown);
    }
    const firstInView = () =>
      list.evaluate((el) => {
        const top = el.getBoundingClientRect().top;
        const m = [...el.querySelectorAll('[data-testid=message]')].find(
          (m) => m.getBoundingClientRect().bottom > top + 1,
        );
        return m?.querySelector('.text')?.textContent ?? '';
      });
    await page
      .locator('[data-testid=message]', { has: page.locator('.text', { hasText: /^message 180$/ }) })
      .evaluate((m) => m.scrollIntoView({ block: 'start' }));
    await expect.poll(firstInView).toBe('message 180');

    await page.reload();
    await expect(page.getByTestId('status')).toHaveText('Online');
    // Only the newest 50 come with the join: the page pages back to message 180 by itself.
    await expect.poll(firstInView, { timeout: 20_000 }).toBe('message 180');
    await page.screenshot({ path: test.info().outputPath('history-place-after-reload.png') });
    // At the bottom again, a reload shows the newest.
    await list.evaluate((el) => el.scrollTo(0, el.scrollHeight));
    await expect(page.getByTestId('jump-new')).toHaveCount(0);
    await page.waitForTimeout(300);
    await page.reload();
    await expect(page.getByTestId('status')).toHaveText('Online');
    await expect(messages.last()).toBeInViewport();
    await context.close();
  });
});
