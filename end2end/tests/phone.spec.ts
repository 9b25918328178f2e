import { test, expect } from '@playwright/test';
import { openRoom, pickName, say, unique } from './helpers';

// A phone, 320 to 430 px wide, with more history than a screen holds: the header stays on top,
// the conversation scrolls between it and the composer, and the name form and the members are a
// panel opened from the header.
for (const width of [320, 390, 430]) {
  test(`a long conversation on a ${width} px phone keeps its header and composer and scrolls`, async ({
    browser,
  }) => {
    const context = await browser.newContext({ viewport: { width, height: 740 }, isMobile: true, hasTouch: true });
    const room = unique('phone');
    const page = await openRoom(context, room);
    // Before a name the panel is open: the name form is what to do first.
    await expect(page.getByTestId('name-input')).toBeVisible();
    await pickName(page, unique('ann'));
    await expect(page.getByTestId('name-input')).toBeHidden();
    for (let i = 0; i < 40; i++) {
      await say(page, `line ${i} ${'words '.repeat(i % 7)}`);
    }
    await expect(page.getByTestId('message').last()).toContainText('line 39');

    const header = await page.locator('.topbar').boundingBox();
    const list = await page.getByTestId('messages').boundingBox();
    const composer = await page.getByTestId('composer').boundingBox();
    expect(header!.y, 'the header is at the top').toBe(0);
    expect(list!.y, 'the list starts below the header').toBeGreaterThanOrEqual(header!.y + header!.height - 1);
    expect(composer!.y + composer!.height, 'the composer is on screen').toBeLessThanOrEqual(740);
    // The newest message is in view, the first is not; a swipe back reaches it.
    await expect(page.getByTestId('message').last()).toBeInViewport();
    const first = page.getByTestId('message').first();
    await expect(first).not.toBeInViewport();
    await page.getByTestId('messages').evaluate((el) => (el.scrollTop = 0));
    await expect(first).toBeInViewport();
    expect((await page.locator('.topbar').boundingBox())!.y).toBe(0);

    // The members are a tap away, and away again.
    const toggle = page.getByTestId('side-toggle');
    await expect(toggle).toHaveAttribute('aria-expanded', 'false');
    await toggle.click();
    await expect(page.getByTestId('members')).toBeVisible();
    await expect(toggle).toHaveAttribute('aria-expanded', 'true');
    await page.screenshot({ path: test.info().outputPath(`phone-${width}-members.png`) });
    await toggle.click();
    await expect(page.getByTestId('members')).toBeHidden();
    await page.screenshot({ path: test.info().outputPath(`phone-${width}.png`) });
    await context.close();
  });
}

test('on a desktop the members stay beside the conversation', async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await openRoom(context, unique('desk'));
  await pickName(page, unique('bo'));
  await expect(page.getByTestId('side-toggle')).toBeHidden();
  await expect(page.getByTestId('members')).toBeVisible();
  await page.screenshot({ path: test.info().outputPath('desktop.png') });
  await context.close();
});
