import { test, expect } from '@playwright/test';
import { openRoom, pickName, say, unique } from './helpers';

// Read before you join: a visitor without a name sees what the room said and who is there,
// live, without being counted or announced, and takes part once it picks a name.

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`a visitor reads the room before picking a name (${size.name})`, async ({ browser }) => {
    const room = unique('read');
    const viewport = { width: size.width, height: size.height };
    const annContext = await browser.newContext({ viewport });
    const visitorContext = await browser.newContext({ viewport });
    const ann = await openRoom(annContext, room);
    const annName = unique('ann');
    await pickName(ann, annName);
    await say(ann, 'said before you came');
    await expect(ann.getByTestId('message')).toHaveCount(1);
    const noticesBefore = await ann.getByTestId('notice').count();

    const visitor = await openRoom(visitorContext, room);
    const messages = visitor.getByTestId('message');
    await expect(messages.filter({ hasText: 'said before you came' })).toHaveCount(1);
    await expect(visitor.getByTestId('member-count')).toHaveAttribute('data-count', '1');
    await expect(visitor.getByTestId('members')).toContainText(annName);
    await expect(visitor.getByTestId('composer')).toBeDisabled();
    // Live, and still nobody was told.
    await say(ann, 'said while you read');
    await expect(messages.filter({ hasText: 'said while you read' })).toHaveCount(1);
    await expect(ann.getByTestId('member-count')).toHaveAttribute('data-count', '1');
    await expect(ann.getByTestId('notice')).toHaveCount(noticesBefore);
    await visitor.screenshot({ path: test.info().outputPath(`reading-${size.name}.png`) });

    // A name, and it takes part.
    const viName = unique('vi');
    await pickName(visitor, viName);
    await expect(ann.getByTestId('notice').filter({ hasText: `${viName} joined` })).toHaveCount(1);
    await say(visitor, 'hello, I read along');
    await expect(ann.getByTestId('message').filter({ hasText: 'hello, I read along' })).toHaveCount(1);
    // Nothing it had read came twice.
    await expect(messages.filter({ hasText: 'said while you read' })).toHaveCount(1);
    await annContext.close();
    await visitorContext.close();
  });
}
