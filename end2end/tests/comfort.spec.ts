import { test, expect, type Browser, type Page } from '@playwright/test';
import { pickName, say, unique } from './helpers';

// Reading comfort: a separator where each day begins, one person's run of messages grouped under
// one name, a colour per name that everyone sees the same, when a message was said on hover (and a
// long press on a phone), and a dark scheme that follows the system unless the reader picks one.

const langs = [
  { tag: 'en', today: 'Today', yesterday: 'Yesterday', now: /now|second/ },
  { tag: 'zh-Hans', today: '今天', yesterday: '昨天', now: /现在|秒/ },
  { tag: 'ja', today: '今日', yesterday: '昨日', now: /今|秒/ },
];
const sizes = [
  { name: 'phone', viewport: { width: 390, height: 844 }, touch: true },
  { name: 'desktop', viewport: { width: 1280, height: 800 }, touch: false },
];

async function open(browser: Browser, room: string, lang: string, size: (typeof sizes)[number], shift = 0) {
  const context = await browser.newContext({ viewport: size.viewport, hasTouch: size.touch });
  await context.addCookies([{ name: 'chorus_lang', value: lang, url: test.info().project.use.baseURL! }]);
  if (shift) await context.clock.setFixedTime(Date.now() + shift);
  const page = await context.newPage();
  await page.goto(`/r/${room}`);
  await expect(page.getByTestId('status')).toHaveClass(/online/);
  return page;
}

const fromClass = async (message: ReturnType<Page['getByTestId']>) =>
  (await message.locator('.from').getAttribute('class'))!.split(' ').find((c) => c.startsWith('name-'));

for (const size of sizes) {
  for (const lang of langs) {
    test(`days, runs, colours and times (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const room = unique('comfort');
      const ann = await open(browser, room, lang.tag, size);
      const bo = await open(browser, room, lang.tag, size);
      const annName = unique('ann');
      const boName = unique('bo');
      await pickName(ann, annName);
      await pickName(bo, boName);
      await say(ann, 'one');
      await say(ann, 'two');
      await expect(bo.getByTestId('message')).toHaveCount(2);
      await say(bo, 'three');
      await expect(ann.getByTestId('message')).toHaveCount(3);
      await say(ann, 'four');
      const messages = bo.getByTestId('message');
      await expect(messages).toHaveCount(4);

      // One day, said once, above the first message.
      await expect(bo.getByTestId('day')).toHaveCount(1);
      await expect(bo.getByTestId('day')).toHaveText(lang.today);
      // ann's second message runs on from her first; bo's breaks the run; ann's next starts one.
      const grouped = await messages.evaluateAll((els) => els.map((e) => e.classList.contains('grouped')));
      expect(grouped).toEqual([false, true, false, false]);
      // The grouped message's name is not shown again, and is still there for screen readers.
      await expect(messages.nth(1).locator('.from')).toHaveText(annName);
      const width = (n: number) => messages.nth(n).locator('.from').evaluate((e) => e.getBoundingClientRect().width);
      expect(await width(1)).toBeLessThanOrEqual(1);
      expect(await width(0)).toBeGreaterThan(10);

      // ann's colour is the same in both pages, in the messages and in the member list.
      const annColour = await fromClass(messages.nth(0));
      expect(annColour).toMatch(/^name-[0-7]$/);
      expect(await fromClass(ann.getByTestId('message').nth(0))).toBe(annColour);
      await expect(bo.getByTestId('members').locator(`.${annColour}`, { hasText: annName })).toHaveCount(1);

      // When, in full and how long ago.
      const year = String(new Date().getFullYear());
      if (size.touch) {
        const first = messages.nth(0);
        await first.dispatchEvent('pointerdown', { pointerType: 'touch', isPrimary: true });
        await expect(first.getByTestId('when')).toBeVisible();
        await first.dispatchEvent('pointerup', { pointerType: 'touch', isPrimary: true });
        await expect(first.getByTestId('when')).toContainText(year);
        await expect(first.getByTestId('when')).toContainText(lang.now);
        // A tap puts it away.
        await first.dispatchEvent('pointerdown', { pointerType: 'touch', isPrimary: true });
        await expect(first.getByTestId('when')).toHaveCount(0);
        // A short tap does not open it.
        await first.dispatchEvent('pointerdown', { pointerType: 'touch', isPrimary: true });
        await first.dispatchEvent('pointerup', { pointerType: 'touch', isPrimary: true });
        await bo.waitForTimeout(700);
        await expect(first.getByTestId('when')).toHaveCount(0);
      } else {
        await messages.nth(1).hover();
        await expect(messages.nth(1)).toHaveAttribute('title', new RegExp(year));
        await expect(messages.nth(1)).toHaveAttribute('title', lang.now);
        // A grouped message's time shows on hover.
        await expect(messages.nth(1).locator('.ts')).toHaveCSS('opacity', '1');
      }
      await bo.screenshot({ path: test.info().outputPath(`comfort-${lang.tag}-${size.name}.png`) });

      // Read a day later, the same messages were said yesterday.
      const later = await open(browser, room, lang.tag, size, 24 * 3600 * 1000);
      await expect(later.getByTestId('message')).toHaveCount(4);
      await expect(later.getByTestId('day')).toHaveText(lang.yesterday);
      await ann.context().close();
      await bo.context().close();
      await later.context().close();
    });
  }

  test(`dark follows the system until the reader picks (${size.name})`, async ({ browser }) => {
    const context = await browser.newContext({ viewport: size.viewport, colorScheme: 'dark' });
    const page = await context.newPage();
    const room = unique('dark');
    await page.goto(`/r/${room}`);
    await expect(page.getByTestId('status')).toHaveText('Online');
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const toggle = page.getByTestId('theme');
    await expect(toggle).toHaveAttribute('aria-pressed', 'true');
    const dark = await background();
    await pickName(page, unique('ann'));
    await say(page, 'in the dark');
    await page.screenshot({ path: test.info().outputPath(`dark-${size.name}.png`) });

    // Light, chosen: kept over a reload, rendered so from the first byte.
    await toggle.click();
    await expect(toggle).toHaveAttribute('aria-pressed', 'false');
    const light = await background();
    expect(light).not.toBe(dark);
    await page.reload();
    await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
    expect(await background()).toBe(light);
    await page.screenshot({ path: test.info().outputPath(`light-${size.name}.png`) });

    // Dark again is the system's: the choice is forgotten, and the page follows the system.
    await expect(page.getByTestId('status')).toHaveText('Online');
    await page.getByTestId('theme').click();
    await expect(page.locator('html')).not.toHaveAttribute('data-theme', /./);
    expect(await background()).toBe(dark);
    await page.emulateMedia({ colorScheme: 'light' });
    expect(await background()).toBe(light);
    await context.close();
  });
}
