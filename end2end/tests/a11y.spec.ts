import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { openRoom, pickName, say, unique } from './helpers';

// axe-core on the pages people use, at phone and desktop sizes: no serious or critical
// violation. And what axe cannot see: one announcement per message in the log, a favicon.
async function seriousViolations(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

for (const [size, viewport] of [
  ['phone', { width: 390, height: 844 }],
  ['desktop', { width: 1280, height: 800 }],
] as const) {
  for (const colorScheme of ['light', 'dark'] as const) {
    test(`the chat page has no serious accessibility violation (${size}, ${colorScheme})`, async ({ browser }) => {
      const context = await browser.newContext({ viewport, colorScheme });
      const page = await openRoom(context, unique('a11y'));
      expect(await seriousViolations(page), 'before a name').toEqual([]);
      await pickName(page, unique('ann'));
      await say(page, 'hello, screen readers');
      await say(page, 'and again, grouped');
      await expect(page.getByTestId('message')).toHaveCount(2);
      expect(await seriousViolations(page), 'chatting').toEqual([]);
      await context.close();
    });
  }

  test(`the status page has no serious accessibility violation (${size})`, async ({ browser }) => {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await page.goto('/status');
    await expect(page.locator('.ops-node').first()).toBeVisible();
    expect(await seriousViolations(page)).toEqual([]);
    await context.close();
  });
}

test('the conversation is a log, the composer is labelled, and a page asks for no missing icon', async ({
  browser,
}) => {
  const context = await browser.newContext();
  const missing: string[] = [];
  const page = await context.newPage();
  page.on('response', (r) => {
    if (r.status() === 404) missing.push(r.url());
  });
  await page.goto(`/r/${unique('log')}`);
  await expect(page.getByTestId('status')).toHaveText('Online');
  await expect(page.getByRole('log')).toBeVisible();
  await expect(page.getByRole('main')).toBeVisible();
  await expect(page.getByRole('textbox', { name: 'Message' })).toBeVisible();
  await pickName(page, unique('bo'));
  // One's own message enters the log once (when stored), not also while it is being sent.
  await say(page, 'once');
  await expect(page.getByRole('log').getByTestId('message')).toContainText('once');
  await expect(page.getByRole('log').getByTestId('pending')).toHaveCount(0);
  expect(missing, 'no 404 on a plain visit').toEqual([]);
  await context.close();
});
