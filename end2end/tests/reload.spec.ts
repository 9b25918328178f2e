import { test, expect } from '@playwright/test';
import { holdSends, openRoom, pickName, say, unique } from './helpers';

// A reload loses nothing and tells nobody: the tab resumes its session (the others see no
// "left" and "joined"), keeps its name, puts its draft back in the composer, and sends what it
// had not got out yet — once, with the same ids.

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`a reload keeps the session, the draft and the unsent message (${size.name})`, async ({ browser }) => {
    const room = unique('reload');
    const viewport = { width: size.width, height: size.height };
    const annContext = await browser.newContext({ viewport });
    const boContext = await browser.newContext({ viewport });
    const ann = await openRoom(annContext, room);
    await pickName(ann, unique('ann'));
    const bo = await boContext.newPage();
    // bo's socket goes through the test: while `holding`, what bo sends is not passed on (helpers.holdSends).
    const send = await holdSends(bo);
    await bo.goto(`/r/${room}`);
    await expect(bo.getByTestId('status')).toHaveText('Online');
    const boName = unique('bo');
    await pickName(bo, boName);
    const aboutBo = ann.getByTestId('notice').filter({ hasText: boName });
    await expect(aboutBo).toHaveCount(1); // "… joined"

    // A message that does not get out, and a draft.
    send.holding = true;
    await say(bo, 'written before the reload');
    await expect(bo.getByTestId('pending')).toHaveCount(1);
    await bo.getByTestId('composer').fill('half-written');
    send.holding = false;
    await bo.reload();
    await expect(bo.getByTestId('status')).toHaveText('Online');

    // Still bo, the draft is back, and the message went out once.
    await expect(bo.getByTestId('my-name')).toHaveText(boName);
    await expect(bo.getByTestId('composer')).toHaveValue('half-written');
    for (const page of [ann, bo]) {
      await expect(page.getByTestId('message').filter({ hasText: 'written before the reload' })).toHaveCount(1);
    }
    await expect(bo.getByTestId('pending')).toHaveCount(0);
    await bo.screenshot({ path: test.info().outputPath(`reload-${size.name}.png`) });
    // Past the server's grace for a page that went away (5 s): ann heard nothing of the reload.
    await ann.waitForTimeout(6000);
    await expect(aboutBo).toHaveCount(1);
    await expect(ann.getByTestId('members')).toContainText(boName);
    // Sending clears the draft for good.
    await bo.getByTestId('composer').press('Enter');
    await expect(ann.getByTestId('message').filter({ hasText: 'half-written' })).toHaveCount(1);
    await bo.reload();
    await expect(bo.getByTestId('status')).toHaveText('Online');
    await expect(bo.getByTestId('composer')).toHaveValue('');
    await annContext.close();
    await boContext.close();
  });
}
