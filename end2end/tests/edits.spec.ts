import { test, expect } from '@playwright/test';
import { personIn as person, pickName, say, unique } from './helpers';

// Editing and deleting one's own messages: Edit puts the text in the composer (Enter saves, Esc
// cancels, the draft comes back), Delete deletes; everyone sees "(edited)" or "deleted", also a
// page that comes later; nobody gets the buttons on someone else's message.

const langs = [
  { tag: 'en', edit: 'Edit', del: 'Delete', edited: '(edited)', deleted: 'This message was deleted.' },
  { tag: 'zh-Hans', edit: '编辑', del: '删除', edited: '（已编辑）', deleted: '此消息已删除。' },
  { tag: 'ja', edit: '編集', del: '削除', edited: '（編集済み）', deleted: 'このメッセージは削除されました。' },
];

for (const size of [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
]) {
  for (const lang of langs) {
    test(`edit and delete one's own messages (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const room = unique('ed');
      const ann = await person(browser, room, lang.tag, size.viewport);
      await pickName(ann, unique('ann'));
      const bo = await person(browser, room, lang.tag, size.viewport);
      await pickName(bo, unique('bo'));
      await say(ann, 'helo wrold');
      await say(ann, 'to be deleted');
      const annSees = ann.getByTestId('message');
      const boSees = bo.getByTestId('message');
      await expect(boSees).toHaveCount(2);
      // bo gets no buttons on ann's messages.
      await expect(bo.getByTestId('edit')).toHaveCount(0);

      // A draft waits while ann edits.
      const composer = ann.getByTestId('composer');
      await composer.fill('my draft');
      await annSees.nth(0).hover();
      await annSees.nth(0).getByTestId('edit').click();
      await expect(ann.getByTestId('editing')).toBeVisible();
      await expect(composer).toHaveValue('helo wrold');
      await composer.fill('hello **world**');
      await composer.press('Enter');
      await expect(ann.getByTestId('editing')).toHaveCount(0);
      await expect(composer).toHaveValue('my draft');
      await expect(boSees.nth(0).locator('.text')).toHaveText('hello world');
      await expect(boSees.nth(0).locator('strong')).toHaveText('world');
      await expect(boSees.nth(0).getByTestId('edited')).toHaveText(lang.edited);
      await expect(boSees).toHaveCount(2);

      // Esc cancels an edit.
      await annSees.nth(1).hover();
      await annSees.nth(1).getByTestId('edit').click();
      await composer.press('Escape');
      await expect(composer).toHaveValue('my draft');

      await annSees.nth(1).hover();
      await annSees.nth(1).getByTestId('delete').click();
      await expect(boSees.nth(1).getByTestId('deleted')).toHaveText(lang.deleted);
      await expect(boSees.nth(1)).not.toContainText('to be deleted');
      await expect(annSees.nth(1).getByTestId('edit')).toHaveCount(0);
      await bo.screenshot({ path: test.info().outputPath(`edits-${lang.tag}-${size.name}.png`) });
      await ann.screenshot({ path: test.info().outputPath(`edits-author-${lang.tag}-${size.name}.png`) });

      // A page that comes later sees the same.
      const cy = await person(browser, room, lang.tag, size.viewport);
      const cySees = cy.getByTestId('message');
      await expect(cySees).toHaveCount(2);
      await expect(cySees.nth(0).locator('.text')).toHaveText('hello world');
      await expect(cySees.nth(0).getByTestId('edited')).toBeVisible();
      await expect(cySees.nth(1).getByTestId('deleted')).toBeVisible();
      for (const p of [ann, bo, cy]) await p.context().close();
    });
  }
}
