import { test, expect, Page } from '@playwright/test';
import { openRoom, pickName, say, startNode, unique } from './helpers';

// Several tabs of one browser are one person: one name, one entry in the member list, one
// "joined" for everyone else, a rename made in every tab, and a "left" only when the last tab
// goes. Two pages of one browser context share its storage, as a browser's tabs do.

// The server waits this long before it announces that a page that went away has left.
const GRACE_MS = 500;

let node: Awaited<ReturnType<typeof startNode>>;
test.beforeAll(async () => {
  node = await startNode(['--leave-grace-ms', String(GRACE_MS), '--ping-interval-ms', '1000']);
});
test.afterAll(() => {
  node?.node.kill();
});

// The name form: open until a name is taken; on a phone, behind the header's button after.
async function rename(page: Page, name: string) {
  if (!(await page.getByTestId('name-input').isVisible())) {
    await page.getByTestId('side-toggle').click();
  }
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('my-name')).toHaveText(name);
}

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`several tabs of one browser are one person (${size.name})`, async ({ browser }) => {
    const room = unique('tabs');
    const viewport = { width: size.width, height: size.height };
    const mine = await browser.newContext({ viewport });
    const theirs = await browser.newContext({ viewport });
    const cy = await openRoom(theirs, room, node.base);
    const cyName = unique('cy');
    await pickName(cy, cyName);

    // Two tabs open before a name is picked; the name picked in one is the other's too.
    const tab1 = await openRoom(mine, room, node.base);
    const tab2 = await openRoom(mine, room, node.base);
    const ann = unique('ann');
    await pickName(tab1, ann);
    await expect(tab2.getByTestId('my-name')).toHaveText(ann);
    await expect(tab2.getByTestId('composer')).toBeEnabled();
    // A tab opened later is that person from the start.
    const tab3 = await openRoom(mine, room, node.base);
    await expect(tab3.getByTestId('my-name')).toHaveText(ann);

    const aboutAnn = (page: Page) => page.getByTestId('notice').filter({ hasText: ann });
    await expect(aboutAnn(cy)).toHaveCount(1); // "… joined", once
    await expect(cy.getByTestId('member-count')).toHaveAttribute('data-count', '2');
    for (const tab of [tab1, tab2, tab3]) {
      await expect(tab.getByTestId('member-count')).toHaveAttribute('data-count', '2');
    }

    // What one tab says is said by ann, and every tab shows it as its own.
    await say(tab2, 'from the second tab');
    const said = (page: Page) => page.getByTestId('message').filter({ hasText: 'from the second tab' });
    await expect(said(cy)).toHaveCount(1);
    await expect(said(cy)).toContainText(ann);
    await expect(said(tab1)).toHaveCount(1);
    await expect(said(tab1)).toHaveClass(/mine/);

    // Renamed in one tab: every tab goes by the new name, and cy hears of it once.
    const bo = unique('bo');
    await rename(tab3, bo);
    for (const tab of [tab1, tab2]) {
      await expect(tab.getByTestId('my-name')).toHaveText(bo);
    }
    const aboutBo = (page: Page) => page.getByTestId('notice').filter({ hasText: bo });
    await expect(aboutBo(cy)).toHaveCount(1);
    await tab1.screenshot({ path: test.info().outputPath(`tabs-${size.name}.png`) });

    // Tabs close: nobody hears of it until the last one goes.
    await tab2.close();
    await tab3.close();
    await cy.waitForTimeout(GRACE_MS + 1500);
    await expect(aboutBo(cy)).toHaveCount(1);
    await expect(cy.getByTestId('member-count')).toHaveAttribute('data-count', '2');
    await say(tab1, 'still here');
    await expect(cy.getByTestId('message').filter({ hasText: 'still here' })).toHaveCount(1);
    await tab1.close();
    await expect(aboutBo(cy)).toHaveCount(2); // "… left"
    await expect(cy.getByTestId('member-count')).toHaveAttribute('data-count', '1');
    await mine.close();
    await theirs.close();
  });
}
