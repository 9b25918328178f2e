import { test, expect, type Page } from '@playwright/test';
import { openRoom, pickName, say, setHidden, unique } from './helpers';

// Signs of new activity: a reader scrolled up is offered a button down to what came meanwhile,
// one's own message is always brought into view, and while the tab is hidden the title counts
// what others said and a divider marks where it starts.

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`new activity is shown where the reader is (${size.name})`, async ({ browser }) => {
    const room = unique('act');
    const viewport = { width: size.width, height: size.height };
    const annContext = await browser.newContext({ viewport });
    const boContext = await browser.newContext({ viewport });
    const ann = await openRoom(annContext, room);
    const bo = await openRoom(boContext, room);
    await pickName(ann, unique('ann'));
    await pickName(bo, unique('bo'));
    for (let i = 1; i <= 25; i++) await say(ann, `line ${i}`);
    const boMessages = bo.getByTestId('message');
    await expect(boMessages).toHaveCount(25);
    await expect(boMessages.last()).toBeInViewport();

    // Scrolled up to read: what comes is counted on a button, not scrolled to.
    const list = bo.getByTestId('messages');
    await list.evaluate((el) => el.scrollTo(0, 0));
    await expect(bo.getByTestId('jump-new')).toHaveCount(0);
    for (let i = 26; i <= 28; i++) await say(ann, `line ${i}`);
    await expect(boMessages).toHaveCount(28);
    const jump = bo.getByTestId('jump-new');
    await expect(jump).toHaveText('3 new messages ↓');
    await expect(jump).toBeInViewport();
    await expect(boMessages.last()).not.toBeInViewport();
    await bo.screenshot({ path: test.info().outputPath(`activity-jump-${size.name}.png`) });
    await jump.click();
    await expect(boMessages.last()).toBeInViewport();
    await expect(jump).toHaveCount(0);

    // One's own message is brought into view, wherever the reader was.
    await list.evaluate((el) => el.scrollTo(0, 0));
    const mine = unique('mine ');
    await say(bo, mine);
    await expect(boMessages.last()).toHaveText(new RegExp(`${mine}$`));
    await expect(boMessages.last()).toBeInViewport();

    // Hidden: the title counts what others say; shown again, a divider marks where it began.
    await expect(bo).toHaveTitle(`#${room} · Chorus`);
    await setHidden(bo, true);
    await say(ann, 'while you were away');
    await say(ann, 'and another');
    await expect(bo).toHaveTitle(`(2) #${room} · Chorus`);
    await setHidden(bo, false);
    await expect(bo).toHaveTitle(`#${room} · Chorus`);
    const divider = bo.getByTestId('new-divider');
    await expect(divider).toHaveCount(1);
    await expect(divider).toHaveText('New messages');
    // It sits right before the first message that came meanwhile.
    const next = await divider.evaluate((d) => d.nextElementSibling?.textContent ?? '');
    expect(next).toContain('while you were away');
    await bo.screenshot({ path: test.info().outputPath(`activity-divider-${size.name}.png`) });
    // Writing is reading: the divider goes.
    await say(bo, 'back');
    await expect(divider).toHaveCount(0);
    await annContext.close();
    await boContext.close();
  });
}
