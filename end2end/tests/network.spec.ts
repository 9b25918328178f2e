import { test, expect } from '@playwright/test';
import { CuttableProxy } from './proxy';
import { holdSends, openRoom, pickName, say, unique } from './helpers';

// Honest about the network: while the server cannot be reached the page says when it tries
// next and lets the user try now; each message says whether it waits, is on its way, or has
// not got through (with a way to try it again); the composer stays open and keeps its text.

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`a server out of reach: the next try, retry now, and each message's state (${size.name})`, async ({ browser, baseURL }) => {
    const proxy = await CuttableProxy.start(baseURL!);
    const context = await browser.newContext({ baseURL: proxy.url, viewport: { width: size.width, height: size.height } });
    const page = await openRoom(context, unique('net'));
    const name = unique('nell');
    await pickName(page, name);

    // The server is gone and stays gone: tries fail, and the waits between them grow.
    proxy.refusing = true;
    proxy.cut();
    const countdown = page.getByTestId('countdown');
    await expect(page.getByTestId('status')).toHaveText('Reconnecting…');
    await expect(countdown).toHaveText(/^in \d+ s$/);
    await say(page, 'written while away');
    const pending = page.getByTestId('pending');
    await expect(pending).toHaveAttribute('data-state', 'Queued');
    await expect(pending).toContainText('waiting to send');
    // The composer stays open, focused and ready for more.
    await expect(page.getByTestId('composer')).toBeEnabled();
    await expect(page.getByTestId('composer')).toBeFocused();
    // Wait for a long wait (a few failed tries in), then the server is back and the user does
    // not wait for it.
    await expect
      .poll(async () => Number((await countdown.textContent())?.match(/\d+/)?.[0] ?? 0), { timeout: 30_000 })
      .toBeGreaterThanOrEqual(4);
    await page.screenshot({ path: test.info().outputPath(`network-reconnecting-${size.name}.png`) });
    proxy.refusing = false;
    const tried = proxy.accepted;
    const left = Number((await countdown.textContent())?.match(/\d+/)?.[0]);
    await page.getByTestId('retry-now').click();
    // Sooner than the countdown said.
    await expect.poll(() => proxy.accepted, { timeout: (left - 1) * 1000 }).toBeGreaterThan(tried);
    await expect(page.getByTestId('status')).toHaveText('Online');
    await expect(countdown).toHaveCount(0);
    await expect(page.getByTestId('message').filter({ hasText: 'written while away' })).toHaveCount(1);
    await expect(pending).toHaveCount(0);
    await expect(page.getByTestId('my-name')).toHaveText(name);
    await context.close();
    await proxy.stop();
  });

  test(`a message the server does not answer is shown as not sent and can be tried again (${size.name})`, async ({ browser }) => {
    const context = await browser.newContext({ viewport: { width: size.width, height: size.height } });
    const page = await context.newPage();
    // What the page sends goes through the test; while `holding`, its messages are lost (helpers.holdSends).
    const send = await holdSends(page);
    await page.goto(`/r/${unique('lost')}`);
    await expect(page.getByTestId('status')).toHaveText('Online');
    await pickName(page, unique('lou'));
    send.holding = true;
    await say(page, 'lost on the way');
    const pending = page.getByTestId('pending');
    await expect(pending).toHaveAttribute('data-state', 'Sending');
    // The server under test beats every second: a few unanswered tries later, it says so.
    await expect(pending).toHaveAttribute('data-state', 'Failed', { timeout: 20_000 });
    await expect(pending).toContainText('not sent yet');
    await page.screenshot({ path: test.info().outputPath(`network-not-sent-${size.name}.png`) });
    send.holding = false;
    await page.getByTestId('retry-send').click();
    await expect(page.getByTestId('message').filter({ hasText: 'lost on the way' })).toHaveCount(1);
    await expect(pending).toHaveCount(0);
    await context.close();
  });
}
