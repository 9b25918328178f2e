import { test, expect } from '@playwright/test';
import { unique, openRoom, pickName, say } from './helpers';

// Runs against the local cluster that scripts/test.sh starts with scripts/cluster.sh: redis, two
// nodes and nginx, whose URLs arrive in NODE_A_URL, NODE_B_URL and CLUSTER_URL.
const nodeA = process.env.NODE_A_URL;
const nodeB = process.env.NODE_B_URL;
const cluster = process.env.CLUSTER_URL;

test.beforeAll(() => {
  // Never skip silently: without the cluster these tests prove nothing.
  expect(nodeA && nodeB && cluster, 'NODE_A_URL, NODE_B_URL and CLUSTER_URL must be set').toBeTruthy();
});

test('two browsers on two different nodes chat through Redis', async ({ browser }) => {
  const room = unique('multi-');
  const [ann, bo] = [unique('ann'), unique('bo')];
  const ctxA = await browser.newContext({ locale: 'en-US' });
  const ctxB = await browser.newContext({ locale: 'en-US' });
  const pageA = await openRoom(ctxA, room, nodeA!);
  const pageB = await openRoom(ctxB, room, nodeB!);
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
  const pageC = await openRoom(ctxC, room, nodeB!);
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
  const pageA = await openRoom(ctxA, room, cluster!);
  const pageB = await openRoom(ctxB, room, cluster!);
  await pickName(pageA, ann);
  await pickName(pageB, bo);
  await say(pageB, 'via the balancer');
  await expect(pageA.getByTestId('message').filter({ hasText: 'via the balancer' })).toContainText(bo);
  await ctxA.close();
  await ctxB.close();
});
