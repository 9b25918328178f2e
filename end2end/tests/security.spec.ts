import { test, expect } from '@playwright/test';
import { openRoom, pickName, unique } from './helpers';

// The single node runs with the default limits: 10 sends a second, bursts of 30.

test('a page of another site cannot open a chat socket; the chat page itself can', async ({ browser, baseURL }) => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  // A real page served from another origin (the browser sends Origin: http://evil.example).
  await page.route('http://evil.example/**', (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>evil</title>' }),
  );
  await page.goto('http://evil.example/');
  const wsUrl = `${baseURL!.replace(/^http/, 'ws')}/ws`;
  const tryOpen = (url: string) =>
    new Promise<string>((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => {
        ws.close();
        resolve('open');
      };
      ws.onerror = () => resolve('refused');
      setTimeout(() => resolve('timeout'), 10_000);
    });
  expect(await page.evaluate(tryOpen, wsUrl)).toBe('refused');

  // The same socket from the chat's own page opens.
  const own = await ctx.newPage();
  await own.goto(`${baseURL}/r/${unique('sec-')}`);
  expect(await own.evaluate(tryOpen, wsUrl)).toBe('open');
  await ctx.close();
});

test('sending too fast shows a calm note, and every message still arrives once', async ({ browser }) => {
  const room = unique('sec-');
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  const fast = await openRoom(ctxA, room);
  const reader = await openRoom(ctxB, room);
  await pickName(fast, unique('fast'));
  await pickName(reader, unique('reader'));
  // The page keeps to the limits the server told it: never refused, so never cut off for it.
  const reopened: string[] = [];
  fast.on('websocket', (ws) => reopened.push(ws.url()));

  // 45 messages at once, as a stuck key or a paste-and-enter script would: over the burst.
  const count = 45;
  await fast.evaluate((n) => {
    const box = document.querySelector('[data-testid=composer]') as HTMLTextAreaElement;
    for (let i = 0; i < n; i++) {
      box.value = `burst ${i}`;
      box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    }
  }, count);

  // Said calmly: a status, not an alert. (The page paces itself by the limits in `welcome`, so
  // the server has nothing to refuse; how the page takes a refusal is unit-tested in model.rs.)
  const note = fast.getByTestId('error');
  await expect(note).toHaveAttribute('data-code', 'rate_limited');
  await expect(note).toHaveAttribute('role', 'status');
  await expect(note).toContainText('slower');

  // The page waits as told and sends the rest: the reader gets each message exactly once.
  const messages = reader.getByTestId('message');
  await expect(messages).toHaveCount(count, { timeout: 45_000 });
  const texts = await messages.locator('.text').allTextContents();
  expect(new Set(texts).size).toBe(count);
  // Once everything is out, the note is gone by itself.
  await expect(fast.getByTestId('pending')).toHaveCount(0);
  await expect(note).toHaveCount(0);
  expect(reopened, 'the page kept its one connection').toEqual([]);
  await ctxA.close();
  await ctxB.close();
});
