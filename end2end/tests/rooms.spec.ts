import { test, expect, type Page } from '@playwright/test';
import { personIn as person, pickName, say, unique } from './helpers';

// Rooms in one page: a room list with what came in each room while it was not in view (a count,
// and a mark when it named you), switching without loading a page, joining a room by name,
// leaving; `/r/<room>` still opens a room, and the rooms and what is unread survive a reload.

const langs = [
  { tag: 'en', leave: (r: string) => `Leave #${r}` },
  { tag: 'zh-Hans', leave: (r: string) => `离开 #${r}` },
  { tag: 'ja', leave: (r: string) => `#${r} から退出` },
];

// On a phone the room list is in the panel behind the header's button.
async function rooms(page: Page) {
  const list = page.getByTestId('rooms');
  if (!(await list.isVisible())) await page.getByTestId('side-toggle').click();
  await expect(list).toBeVisible();
  return list;
}

for (const size of [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
]) {
  for (const lang of langs) {
    test(`rooms in one page (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const [first, second] = [unique('ra'), unique('rb')];
      const annName = unique('ann');
      const ann = await person(browser, first, lang.tag, size.viewport);
      await pickName(ann, annName);
      // Set once: a page load would lose it.
      await ann.evaluate(() => ((window as any).__samePage = true));

      // Join a second room by name: it is in view, the address says it, nothing was loaded.
      let list = await rooms(ann);
      await ann.getByTestId('join-room').fill(`#${second}`);
      await ann.getByTestId('join-room-submit').click();
      await expect(ann).toHaveURL(new RegExp(`/r/${second}$`));
      await expect(ann.locator('.topbar .room')).toHaveText(`#${second}`);
      await expect(ann.getByTestId('members')).toContainText(annName);
      list = await rooms(ann);
      await expect(list.getByTestId('room')).toHaveCount(2);
      await expect(list.locator(`[data-room=${second}]`)).toHaveAttribute('aria-current', 'page');
      // A bad name is refused with a reason.
      await ann.getByTestId('join-room').fill('no spaces here');
      await ann.getByTestId('join-room-submit').click();
      await expect(ann.getByTestId('room-error')).toBeVisible();

      // bo talks in the first room: ann's list counts it, and marks the mention.
      const bo = await person(browser, first, lang.tag, size.viewport);
      await pickName(bo, unique('bo'));
      await say(bo, 'hello from the first room');
      await say(bo, `@${annName} look here`);
      const firstInList = list.locator(`[data-room=${first}]`);
      await expect(firstInList.getByTestId('unread')).toHaveText('2');
      await expect(firstInList.getByTestId('mention-mark')).toBeVisible();
      // The tab's title counts the news of every room, not only the one in view.
      await expect(ann).toHaveTitle(`(@1 · 2) #${second} · Chorus`);
      await expect(ann.getByTestId('side-toggle')).toHaveClass(size.name === 'phone' ? /news/ : /.*/);
      await ann.screenshot({ path: test.info().outputPath(`rooms-${lang.tag}-${size.name}.png`) });

      // Switching shows the room's messages, clears its count, and loads no page.
      await firstInList.click();
      await expect(ann).toHaveURL(new RegExp(`/r/${first}$`));
      await expect(ann.getByTestId('message').last()).toContainText('look here');
      list = await rooms(ann);
      await expect(list.locator(`[data-room=${first}]`).getByTestId('unread')).toHaveCount(0);
      await expect(ann).toHaveTitle(`#${first} · Chorus`);
      expect(await ann.evaluate(() => (window as any).__samePage)).toBe(true);

      // Back in the second room, bo says more in the first; a reload keeps both rooms and
      // counts what ann has not read.
      await list.locator(`[data-room=${second}]`).click();
      await expect(ann).toHaveURL(new RegExp(`/r/${second}$`));
      await say(bo, 'while you were away');
      list = await rooms(ann);
      await expect(list.locator(`[data-room=${first}]`).getByTestId('unread')).toHaveText('1');
      await ann.reload();
      await expect(ann.getByTestId('status')).toHaveClass(/online/);
      await expect(ann.locator('.topbar .room')).toHaveText(`#${second}`);
      list = await rooms(ann);
      await expect(list.getByTestId('room')).toHaveCount(2);
      await expect(list.locator(`[data-room=${first}]`).getByTestId('unread')).toHaveText('1');

      // Leaving the room in view closes it; the other is in view, and bo sees ann gone from it.
      await ann.getByTestId('leave-room').click();
      await expect(ann).toHaveURL(new RegExp(`/r/${first}$`));
      list = await rooms(ann);
      await expect(list.getByTestId('room')).toHaveCount(1);
      await expect(ann.getByTestId('leave-room')).toHaveCount(0);
      await expect(ann.getByTestId('message').last()).toContainText('while you were away');
      await ann.reload();
      await expect(ann.getByTestId('status')).toHaveClass(/online/);
      list = await rooms(ann);
      await expect(list.getByTestId('room')).toHaveCount(1);
      for (const p of [ann, bo]) await p.context().close();
    });
  }
}

test('the leave button names the room, in each language', async ({ browser }) => {
  for (const lang of langs) {
    const [a, b] = [unique('la'), unique('lb')];
    const page = await person(browser, a, lang.tag, { width: 1280, height: 800 });
    await pickName(page, unique('cy'));
    await page.getByTestId('join-room').fill(b);
    await page.getByTestId('join-room-submit').click();
    await expect(page.getByTestId('leave-room')).toHaveText(lang.leave(b));
    await page.context().close();
  }
});
