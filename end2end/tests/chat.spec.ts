import { test, expect } from '@playwright/test';
import { CuttableProxy } from './proxy';
import { unique, openRoom, pickName, recordStatuses, say, statuses } from './helpers';

test('the page hydrates and the composer waits for a name', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'en-US' });
  const page = await openRoom(context, unique('e2e-'));
  await expect(page.getByTestId('send')).toBeDisabled();
  await expect(page.getByTestId('composer')).toBeDisabled();
  await pickName(page, unique('ann'));
  await expect(page.getByTestId('send')).toBeEnabled();
  await context.close();
});

test('two people on two browsers chat and each sees the other', async ({ browser }) => {
  const room = unique('e2e-');
  const [ann, bo] = [unique('ann'), unique('bo')];
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  const pageA = await openRoom(ctxA, room);
  const pageB = await openRoom(ctxB, room);
  await pickName(pageA, ann);
  await pickName(pageB, bo);

  await expect(pageA.getByTestId('members')).toContainText(bo);
  await expect(pageA.getByTestId('notice').filter({ hasText: `${bo} joined` })).toBeVisible();

  await say(pageA, 'hello from ann');
  await say(pageB, 'hi ann, bo here');
  for (const page of [pageA, pageB]) {
    const messages = page.getByTestId('message');
    await expect(messages.filter({ hasText: 'hello from ann' })).toContainText(ann);
    await expect(messages.filter({ hasText: 'hi ann, bo here' })).toContainText(bo);
  }
  // Enter sent the message and cleared the box.
  await expect(pageA.getByTestId('composer')).toHaveValue('');

  await ctxB.close();
  await expect(pageA.getByTestId('notice').filter({ hasText: `${bo} left` })).toBeVisible();
  await expect(pageA.getByTestId('members')).not.toContainText(bo);
  await ctxA.close();
});

test('a message containing HTML is shown literally, never interpreted', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'en-US' });
  const page = await openRoom(context, unique('e2e-'));
  await pickName(page, unique('eve'));
  const nasty = '<b>bold</b><img src=x onerror="window.__pwned=1">';
  await say(page, nasty);
  const message = page.getByTestId('message').filter({ hasText: '<b>bold</b>' });
  await expect(message.locator('.text')).toHaveText(nasty);
  await expect(message.locator('b, img')).toHaveCount(0);
  expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
  await context.close();
});

test('a late joiner sees the earlier messages', async ({ browser }) => {
  const room = unique('e2e-');
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const pageA = await openRoom(ctxA, room);
  await pickName(pageA, unique('ann'));
  await say(pageA, 'first');
  await say(pageA, 'second');
  await expect(pageA.getByTestId('message')).toHaveCount(2);

  const ctxB = await browser.newContext({ locale: 'en-US' });
  const pageB = await openRoom(ctxB, room);
  await pickName(pageB, unique('bo'));
  await expect(pageB.getByTestId('message').locator('.text')).toHaveText(['first', 'second']);
  await ctxA.close();
  await ctxB.close();
});

test('a taken name is refused with a visible message', async ({ browser }) => {
  const room = unique('e2e-');
  const name = unique('sam');
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  await pickName(await openRoom(ctxA, room), name);
  const pageB = await openRoom(ctxB, room);
  await pageB.getByTestId('name-input').fill(name.toUpperCase());
  await pageB.getByTestId('name-submit').click();
  await expect(pageB.getByTestId('error')).toContainText('taken');
  await expect(pageB.getByTestId('send')).toBeDisabled();
  await ctxA.close();
  await ctxB.close();
});

test('the name is remembered across a reload', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'en-US' });
  const room = unique('e2e-');
  const page = await openRoom(context, room);
  const name = unique('rita');
  await pickName(page, name);
  await page.reload();
  await expect(page.getByTestId('status')).toHaveText('Online');
  await expect(page.getByTestId('my-name')).toHaveText(name);
  await expect(page.getByTestId('send')).toBeEnabled();
  await context.close();
});

test('the language follows the browser and the switcher changes it', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'ja-JP' });
  const page = await context.newPage();
  await page.goto(`/r/${unique('e2e-')}`);
  await expect(page.getByTestId('status')).toHaveText('オンライン');
  await expect(page.getByTestId('send')).toHaveText('送信');

  await page.getByTestId('lang').selectOption('zh-Hans');
  await expect(page.getByTestId('send')).toHaveText('发送');
  await expect(page.getByTestId('status')).toHaveText('在线');

  await page.getByTestId('lang').selectOption('en');
  await expect(page.getByTestId('send')).toHaveText('Send');
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  // The choice is remembered over the browser's language.
  await page.reload();
  await expect(page.getByTestId('status')).toHaveText('Online');
  await context.close();
});

test("the server renders the visitor's language from the first byte, and <html lang> follows", async ({
  browser,
}) => {
  const context = await browser.newContext({ locale: 'ja-JP' });
  const page = await context.newPage();
  const room = `/r/${unique('e2e-')}`;
  // What the server sent, before any script ran.
  const first = await (await page.goto(room))!.text();
  expect(first).toContain('<html lang="ja"');
  expect(first).toContain('送信');
  await expect(page.locator('html')).toHaveAttribute('lang', 'ja');
  await expect(page.getByTestId('status')).toHaveText('オンライン');
  // Han characters in Japanese forms for ja, simplified Chinese ones for zh.
  const fonts = () => page.evaluate(() => getComputedStyle(document.body).fontFamily);
  expect(await fonts()).toContain('Noto Sans CJK JP');

  // A choice goes with the next request: the reload is Chinese from its first byte.
  await page.getByTestId('lang').selectOption('zh-Hans');
  await expect(page.locator('html')).toHaveAttribute('lang', 'zh-Hans');
  await expect.poll(fonts).toContain('Noto Sans CJK SC');
  expect(await fonts()).not.toContain('JP');
  const reloaded = await (await page.reload())!.text();
  expect(reloaded).toContain('<html lang="zh-Hans"');
  expect(reloaded).toContain('发送');
  await expect(page.getByTestId('send')).toHaveText('发送');
  await context.close();
});

test('after the connection drops the page reconnects by itself and keeps its name', async ({ browser, baseURL }) => {
  // Note: context.setOffline() does not close an open WebSocket in Chromium, so the drop is made
  // by a proxy that cuts the TCP connections.
  const proxy = await CuttableProxy.start(baseURL!);
  const room = unique('e2e-');
  const name = unique('nora');
  const context = await browser.newContext({ locale: 'en-US', baseURL: proxy.url });
  const page = await openRoom(context, room);
  await pickName(page, name);

  await recordStatuses(page);
  const before = proxy.accepted;
  proxy.cut();
  await expect.poll(() => proxy.accepted).toBeGreaterThan(before);
  await expect(page.getByTestId('status')).toHaveText('Online');
  expect(await statuses(page)).toContain('Reconnecting…');
  await expect(page.getByTestId('my-name')).toHaveText(name);
  await expect(page.getByTestId('members')).toContainText(name);
  await expect(page.getByTestId('error')).toHaveCount(0);
  await say(page, 'back again');
  await expect(page.getByTestId('message').filter({ hasText: 'back again' })).toBeVisible();
  await context.close();
  await proxy.stop();
});

test('a browser cut off the network shows what was said meanwhile once each, and its own message gets out', async ({ browser, baseURL }) => {
  // Chromium keeps an open WebSocket working when a context goes offline, so the link is also
  // made silent (not closed) by a proxy, as a dead Wi-Fi link is: only the page's own heartbeat
  // can notice. The server under test pings every second (scripts/test.sh).
  const proxy = await CuttableProxy.start(baseURL!);
  const room = unique('e2e-');
  const [ann, bo] = [unique('ann'), unique('bo')];
  const offline = await browser.newContext({ locale: 'en-US', baseURL: proxy.url });
  const online = await browser.newContext({ locale: 'en-US' });
  const a = await openRoom(offline, room);
  await pickName(a, ann);
  const b = await openRoom(online, room);
  await pickName(b, bo);
  await say(b, 'before');
  await expect(a.getByTestId('message').filter({ hasText: 'before' })).toHaveCount(1);

  await recordStatuses(a);
  const connections = proxy.accepted;
  await offline.setOffline(true);
  proxy.freeze();
  // Typed before the page can know the link is dead: it waits, shown as sending.
  await say(a, 'sent while offline');
  await expect(a.getByTestId('pending')).toHaveCount(1);
  const meanwhile = ['meanwhile one', 'meanwhile two', 'meanwhile three'];
  for (const text of meanwhile) await say(b, text);
  // The browser says it is offline: the page says so and drops the link (Chromium would keep an
  // open WebSocket, silent behind the frozen proxy).
  await expect.poll(() => statuses(a)).toContain('Offline');

  await offline.setOffline(false);
  await expect.poll(() => proxy.accepted).toBeGreaterThan(connections);
  await expect(a.getByTestId('status')).toHaveText('Online');
  // A round trip after everything: anything late or repeated would have arrived by now.
  await say(b, 'after');
  await expect(a.getByTestId('message').filter({ hasText: 'after' })).toHaveCount(1);
  for (const text of ['before', ...meanwhile]) {
    await expect(a.getByTestId('message').filter({ hasText: text })).toHaveCount(1);
  }
  await expect(b.getByTestId('message').filter({ hasText: 'sent while offline' })).toHaveCount(1);
  await expect(a.getByTestId('message').filter({ hasText: 'sent while offline' })).toHaveCount(1);
  await expect(a.getByTestId('pending')).toHaveCount(0);
  await expect(a.getByTestId('gap')).toHaveCount(0);
  // In order, as sent.
  const texts = await a.getByTestId('message').locator('.text').allTextContents();
  const order = ['before', ...meanwhile, 'after'].map((t) => texts.indexOf(t));
  expect(order).toEqual([...order].sort((x, y) => x - y));
  await offline.close();
  await online.close();
  await proxy.stop();
});

test('offline, the page says so and the composer keeps its focus, its draft and what is sent', async ({
  browser,
}) => {
  const room = unique('e2e-');
  const context = await browser.newContext({ locale: 'en-US' });
  const a = await openRoom(context, room);
  await pickName(a, unique('ann'));
  const composer = a.getByTestId('composer');
  await composer.click();
  await composer.pressSequentially('half a thou');
  await context.setOffline(true);
  await expect(a.getByTestId('status')).toHaveText('Offline');
  await expect(composer).toBeEnabled();
  await expect(composer).toBeFocused();
  await expect(composer).toHaveValue('half a thou');
  await composer.pressSequentially('ght');
  await composer.press('Enter');
  await expect(a.getByTestId('pending')).toHaveCount(1);
  await a.waitForTimeout(1500);
  await expect(a.getByTestId('status'), 'still honest a moment later').toHaveText('Offline');

  await context.setOffline(false);
  await expect(a.getByTestId('status')).toHaveText('Online');
  await expect(a.getByTestId('message').filter({ hasText: 'half a thought' })).toHaveCount(1);
  await expect(a.getByTestId('pending')).toHaveCount(0);
  await context.close();
});

test('a page for a malformed room name says so', async ({ page }) => {
  await page.goto('/r/not%20a%20room');
  await expect(page.getByTestId('error')).toContainText('Room names');
});

// What others say while the reader is scrolled up does not move the view: activity.spec.ts.
test('the list follows new messages, and one\'s own even from higher up', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 800, height: 500 } });
  const page = await openRoom(context, unique('e2e-'));
  await pickName(page, unique('sky'));
  const list = page.getByTestId('messages');
  const gapToBottom = () => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);

  for (let i = 1; i <= 25; i++) await say(page, `line ${i}`);
  await expect(page.getByTestId('message').filter({ hasText: 'line 25' })).toBeVisible();
  await expect.poll(gapToBottom).toBeLessThan(5);

  // Scrolled up to read, one writes: what one wrote is brought into view.
  await list.evaluate((el) => el.scrollTo(0, 0));
  await say(page, 'while reading');
  await expect(page.getByTestId('message').filter({ hasText: 'while reading' })).toHaveCount(1);
  await expect.poll(gapToBottom).toBeLessThan(5);

  // Back at the bottom, it follows again.
  await list.evaluate((el) => el.scrollTo(0, el.scrollHeight));
  await say(page, 'following again');
  await expect(page.getByTestId('message').filter({ hasText: 'following again' })).toBeVisible();
  await expect.poll(gapToBottom).toBeLessThan(5);
  await context.close();
});
