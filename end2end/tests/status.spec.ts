import { test, expect, type APIRequestContext } from '@playwright/test';
import { unique, openRoom } from './helpers';

// What /status.json says about the node that answers.
async function thisNode(request: APIRequestContext) {
  const response = await request.get('/status.json');
  expect(response.ok()).toBeTruthy();
  const report = await response.json();
  return report.nodes[0] as { node: string; connections: number };
}

test('the status page shows this node and its connections rise as a browser connects', async ({
  browser,
  request,
}) => {
  // Earlier tests' connections may still be closing: start from a count that holds still.
  let before = (await thisNode(request)).connections;
  await expect
    .poll(
      async () => {
        await new Promise((r) => setTimeout(r, 1_500));
        const now = (await thisNode(request)).connections;
        const still = now === before;
        before = now;
        return still;
      },
      { timeout: 30_000 },
    )
    .toBe(true);
  const { node } = await thisNode(request);

  const opsContext = await browser.newContext({ locale: 'en-US', viewport: { width: 390, height: 844 } });
  const ops = await opsContext.newPage();
  await ops.goto('/status');
  const here = ops.locator('.ops-node.here');
  // Rendered on the server with the numbers in it.
  await expect(here).toHaveAttribute('data-node', node);
  await expect(here.getByText('this node')).toBeVisible();
  await expect(here.locator('.ops-connections')).toHaveText(String(before));
  await expect(here.locator('.ops-chart')).toHaveCount(4);

  // A second browser opens the chat: the page, which refreshes itself, counts it.
  const chatContext = await browser.newContext({ locale: 'en-US' });
  await openRoom(chatContext, unique('status-'));
  await expect(here.locator('.ops-connections')).toHaveText(String(before + 1));
  // Readable at phone width: nothing wider than the screen.
  const overflow = await ops.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);

  await chatContext.close();
  await expect(here.locator('.ops-connections')).toHaveText(String(before));
  await opsContext.close();
});
