import { test, expect, type Page, type BrowserContext } from '@playwright/test';

// Runs against the local cluster that scripts/test.sh starts with scripts/cluster.sh: redis, two
// nodes and nginx, whose URLs arrive in NODE_A_URL, NODE_B_URL and CLUSTER_URL.
const nodeA = process.env.NODE_A_URL;
const nodeB = process.env.NODE_B_URL;
const cluster = process.env.CLUSTER_URL;

const unique = (prefix: string) => `${prefix}${Math.random().toString(36).slice(2, 8)}`;

async function openRoom(context: BrowserContext, base: string, room: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/r/${room}`);
  await expect(page.getByTestId('status')).toHaveText('Online');
  return page;
}

async function pickName(page: Page, name: string) {
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('my-name')).toHaveText(name);
}

async function say(page: Page, text: string) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

test.beforeAll(() => {
  // Never skip silently: without the cluster these tests prove nothing.
  expect(nodeA && nodeB && cluster, 'NODE_A_URL, NODE_B_URL and CLUSTER_URL must be set').toBeTruthy();
});

test('two browsers on two different nodes chat through Redis', async ({ browser }) => {
  const room = unique('multi-');
  const [ann, bo] = [unique('ann'), unique('bo')];
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  const pageA = await openRoom(ctxA, nodeA!, room);
  const pageB = await openRoom(ctxB, nodeB!, room);
  await pickName(pageA, ann);
  await pickName(pageB, bo);

  // Presence crosses nodes...
  await expect(pageA.getByTestId('members')).toContainText(bo);
  await expect(pageB.getByTestId('members')).toContainText(ann);
  // ...and so do messages, both ways.
  await say(pageA, 'hello from node a');
  await say(pageB, 'hello from node b');
  for (const page of [pageA, pageB]) {
    const messages = page.getByTestId('message');
    await expect(messages.filter({ hasText: 'hello from node a' })).toContainText(ann);
    await expect(messages.filter({ hasText: 'hello from node b' })).toContainText(bo);
    await expect(messages).toHaveCount(2);
  }
  // A name held on node A is refused on node B.
  const ctxC = await browser.newContext({ locale: 'en-US' });
  const pageC = await openRoom(ctxC, nodeB!, room);
  await pageC.getByTestId('name-input').fill(ann);
  await pageC.getByTestId('name-submit').click();
  await expect(pageC.getByTestId('error')).toContainText('taken');

  // Leaving on B is seen on A.
  await ctxB.close();
  await expect(pageA.getByTestId('notice').filter({ hasText: `${bo} left` })).toBeVisible();
  await ctxA.close();
  await ctxC.close();
});

test('the app works through nginx in front of the nodes', async ({ browser }) => {
  const room = unique('lb-');
  const [ann, bo] = [unique('ann'), unique('bo')];
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  const pageA = await openRoom(ctxA, cluster!, room);
  const pageB = await openRoom(ctxB, cluster!, room);
  await pickName(pageA, ann);
  await pickName(pageB, bo);
  await say(pageB, 'via the balancer');
  await expect(pageA.getByTestId('message').filter({ hasText: 'via the balancer' })).toContainText(bo);
  await ctxA.close();
  await ctxB.close();
});
